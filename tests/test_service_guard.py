"""The server's door: body size on the stream, loopback Host names, foreign origins, JSON bodies only, tokens."""
import socket

import pytest
from service_app import client, engine

from gfpose_core.service.guard import check_token

TOKEN = "a-long-enough-token-1234"


@pytest.fixture(scope="module")
def api():
    return client()


@pytest.fixture(scope="module")
def live():
    from gfpose_core.service.server import ServerThread
    with ServerThread(engine()) as url:
        yield url


def _exchange(url: str, head: bytes, chunks=()) -> bytes:
    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(head)
        try:
            for c in chunks:
                s.sendall(c)
        except (BrokenPipeError, ConnectionResetError):
            pass       # the server answered and closed before the whole body was sent: what we want
        got = b""
        try:
            while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < 20:
                piece = s.recv(4096)
                if not piece:
                    break
                got += piece
        except ConnectionResetError:
            pass
        return got


def test_a_35_mb_chunked_body_gets_413(live):
    piece = b"1" * (1 << 20)
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 35 + [b"0\r\n\r\n"]
    head = (b"POST /complete HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    answer = _exchange(live, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"limit" in answer


def test_chunked_small_body_still_served(api):
    from service_app import engine as eng
    pose = eng().generate(1, seed=3)[0].tolist()
    import json
    raw = json.dumps({"joints": [pose], "seed": 1}).encode()
    r = api.post("/complete", content=iter([raw[:100], raw[100:]]), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_a_foreign_host_is_refused_on_a_loopback_engine(api, live):
    for host in ("evil.example.com", "evil.example.com:8765", "192.168.1.5", "localhost.evil.com"):
        r = api.get("/health", headers={"host": host})
        assert r.status_code == 400 and "loopback" in r.text, (host, r.status_code)
    for host in ("localhost", "127.0.0.1:8765", "[::1]:8765", "LOCALHOST"):
        assert api.get("/health", headers={"host": host}).status_code == 200, host
    answer = _exchange(live, b"GET /health HTTP/1.1\r\nHost: rebind.attacker.net\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]


def test_cross_origin_pages_and_non_json_bodies_are_refused(api):
    body = '{"n": 1, "seed": 1}'
    r = api.post("/generate", content=body, headers={"content-type": "application/json",
                                                      "origin": "https://evil.example.com"})
    assert r.status_code == 403 and "Origin" in r.text
    assert api.get("/info", headers={"origin": "null"}).status_code == 403
    ok = api.post("/generate", content=body, headers={"content-type": "application/json",
                                                       "origin": "http://localhost:3000"})
    assert ok.status_code == 200, ok.text
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {} if kind is None else {"content-type": kind}
        r = api.post("/generate", content=body, headers=headers)
        assert r.status_code == 415 and "application/json" in r.text, (kind, r.status_code)
    assert api.post("/generate", content=body,
                    headers={"content-type": "Application/JSON; charset=utf-8"}).status_code == 200


def test_tokens_bearer_in_any_case_minimum_length_and_ascii():
    api = client(token=TOKEN)
    assert api.get("/info").status_code == 401
    assert api.get("/info", headers={"authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert api.get("/info", headers={"authorization": TOKEN}).status_code == 401
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert api.get("/info", headers={"authorization": f"{scheme} {TOKEN}"}).status_code == 200, scheme
    assert api.get("/openapi.json").status_code == 200
    for bad, words in (("s3cret", "at least 16"), ("jeton-très-secret-123", "ASCII"), ("with space inside 12", "ASCII")):
        with pytest.raises(ValueError, match=words):
            check_token(bad)


def test_serve_takes_its_token_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from gfpose_core.service.cli import _token, build_parser
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    args = build_parser().parse_args(["serve", "--token-file", str(f)])
    assert _token(args) == TOKEN
    monkeypatch.setenv("GFPOSE_TOKEN", "x" * 20)
    assert _token(build_parser().parse_args(["serve"])) == "x" * 20
    monkeypatch.setenv("GFPOSE_TOKEN", "short")
    from gfpose_core.service.cli import CliError
    with pytest.raises(CliError, match="at least 16"):
        _token(build_parser().parse_args(["serve"]))


def test_serve_raises_the_open_files_limit_to_what_the_system_allows():
    import resource

    from gfpose_core.service.server import raise_open_files
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    got = raise_open_files(4096)
    assert got >= (4096 if hard == resource.RLIM_INFINITY else min(4096, hard))


def test_a_body_that_stops_arriving_gets_408_and_the_server_goes_on(live, monkeypatch):
    from gfpose_core.service import guard
    monkeypatch.setattr(guard, "BODY_IDLE_S", 0.5)
    head = (b"POST /complete HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"joints\": ")
    answer = _exchange(live, head)          # then silence
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"stopped arriving" in answer
    assert _exchange(live, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.1 200")
