"""`gfpose serve` as a real process on a free loopback port, with the shipped model."""
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*extra, env=None):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gfpose_core", "serve", "--port", str(port), "--device",
                             "cpu", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, **(env or {})))
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read())
        try:
            if httpx.get(url + "/health", timeout=1).status_code in (200, 401):
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def server():
    proc, url = _start()
    yield url
    proc.terminate()  # SIGTERM: uvicorn finishes, then re-raises the signal as its exit status
    assert proc.wait(timeout=20) in (0, -15)
    assert "Finished server process" in proc.stdout.read()


@pytest.fixture(scope="module")
def pose():
    from gfpose_core.engine import Engine
    return Engine.load(device="cpu").generate(1, seed=5)[0]


def test_health_info_and_schema(server):
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    info = httpx.get(server + "/info").json()
    assert info["joints"][0] == "pelvis" and "limits" in info
    schema = httpx.get(server + "/openapi.json").json()
    assert {"/complete", "/denoise", "/generate", "/lift"} <= set(schema["paths"])


def test_complete_keeps_known_joints(server, pose):
    joints = pose.tolist()
    for j in (7, 8, 9, 10):
        joints[j] = [None, None, None]
    r = httpx.post(server + "/complete", json={"joints": [joints], "seed": 1}, timeout=30)
    assert r.status_code == 200, r.text
    out = np.array(r.json()["joints"])
    assert out.shape == (1, 24, 3)
    known = [j for j in range(24) if j not in (7, 8, 9, 10)]
    np.testing.assert_array_equal(out[0, known], pose[known])
    r = httpx.post(server + "/complete", json={"joints": [joints], "n_hypotheses": 3, "seed": 1}, timeout=30)
    assert np.array(r.json()["joints"]).shape == (1, 3, 24, 3)


def test_denoise_generate_lift(server, pose):
    take = (pose[None] + np.random.default_rng(0).normal(0, 0.02, (20, 24, 3))).tolist()
    r = httpx.post(server + "/denoise", json={"take": take, "fps": 30}, timeout=30)
    assert r.status_code == 200 and np.array(r.json()["joints"]).shape == (20, 24, 3)
    r = httpx.post(server + "/generate", json={"n": 2, "around": pose.tolist(), "pinned": ["pelvis"]}, timeout=30)
    assert r.status_code == 200 and np.array(r.json()["joints"]).shape == (2, 24, 3)
    r = httpx.post(server + "/lift", json={"keypoints2d": [pose[:, [0, 2]].tolist()]}, timeout=30)
    assert r.status_code == 200 and np.array(r.json()["joints"]).shape == (1, 24, 3)


def test_inbetween_fills_between_keys_and_refuses_far_keys(server, pose):
    info = httpx.get(server + "/info").json()
    assert info["motion_model"]["frames"] == 64 and info["motion_model"]["max_gap_frames"] == 62
    take = np.full((31, 24, 3), np.nan)
    take[0], take[30] = pose, pose + [0.3, 0.0, 0.0]
    body = {"take": np.where(np.isnan(take), None, take).tolist(), "fps": 30, "seed": 2}
    r = httpx.post(server + "/inbetween", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = np.array(r.json()["joints"], dtype=float)
    assert out.shape == (31, 24, 3) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[[0, 30]], take[[0, 30]])
    far = np.full((100, 24, 3), None, dtype=object)
    far[0], far[99] = pose.tolist(), pose.tolist()
    r = httpx.post(server + "/inbetween", json={"take": far.tolist()}, timeout=60)
    assert r.status_code == 422 and "frames 1-98" in r.text
    assert httpx.get(server + "/health").json() == {"status": "ok"}   # still serving


@pytest.mark.parametrize("path, body, code, words", [
    ("/complete", {"joints": [[[0, 0, 0]] * 23]}, 422, "shape"),
    ("/complete", {"joints": [[[None] * 3] * 24]}, 422, "no known joints"),
    ("/complete", {"joints": [[[0, 0]] * 24]}, 422, "shape"),
    ("/complete", {"joints": [[[0, 0, 0]] * 24], "n_hypotheses": 10**6}, 422, "n_hypotheses"),
    ("/complete", {"joints": [[[0, 0, 0]] * 24] * 20001}, 413, "limit"),
    ("/complete", {"joints": "pose"}, 422, "joints"),
    ("/complete", {"joints": [[[0, 0, 0]] * 24], "bogus": 1}, 422, "bogus"),
    ("/denoise", {"take": [[[0, 0, 0]] * 24], "fps": -3}, 422, "fps"),
    ("/generate", {"n": 2, "pinned": ["pelvis"]}, 422, "pinned"),
    ("/generate", {"n": 0}, 422, "n"),
    ("/lift", {"keypoints2d": [[[0, 0, 0]] * 24]}, 422, "shape"),
    ("/inbetween", {"take": [[[0, 0, 0]] * 24], "known": [[True] * 23]}, 422, "known"),
    ("/inbetween", {"take": [[[None] * 3] * 24] * 5}, 422, "no known joints"),
])
def test_bad_requests_get_4xx_naming_the_problem(server, path, body, code, words):
    r = httpx.post(server + path, json=body, timeout=60)
    assert r.status_code == code, r.text
    assert words in r.text
    assert httpx.get(server + "/health").status_code == 200


def test_nan_inf_and_malformed_bodies(server):
    for raw in ['{"joints": [[[NaN, 0, 0]]]}', '{"joints": [[[Infinity, 0, 0]' + ', [0,0,0]' * 23 + ']]}',
                "{not json", "", "[]", '{"joints": [[[1e400, 0, 0]]]}']:
        r = httpx.post(server + "/complete", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (raw, r.status_code, r.text)
    host, port = server.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:  # a client that claims a huge body
        s.sendall(b"POST /complete HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 10000000000\r\n\r\n{")
        assert b" 413 " in s.recv(4096).split(b"\r\n")[0] + b" "
    assert httpx.get(server + "/health").status_code == 200


coords = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=3),
                   st.integers(-10**6, 10**6))
bodies = st.fixed_dictionaries({}, optional={
    "joints": st.lists(st.lists(st.lists(coords, min_size=2, max_size=4), min_size=23, max_size=25),
                       min_size=0, max_size=2),
    "known": st.lists(st.lists(st.booleans(), max_size=25), max_size=2),
    "n_hypotheses": st.integers(-3, 3), "seed": st.one_of(st.none(), st.integers(-5, 2**63)),
    "sampler": st.sampled_from(["mode", "em", "x", None]), "steps": st.integers(-1, 3),
})


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_fuzzed_complete_requests_never_5xx(server, body):
    r = httpx.post(server + "/complete", json=body, timeout=60)
    assert r.status_code < 500, r.text


def test_non_loopback_bind_needs_a_token():
    proc = subprocess.run([sys.executable, "-m", "gfpose_core", "serve", "--host", "0.0.0.0", "--port",
                           str(_free_port())], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "GFPOSE_TOKEN"})
    assert proc.returncode != 0
    assert "token" in proc.stderr and "Traceback" not in proc.stderr


def test_token_is_required_when_set():
    proc, url = _start("--token", "s3cret-s3cret-s3cret")
    try:
        assert httpx.get(url + "/info").status_code == 401
        assert httpx.get(url + "/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url + "/info", headers={"Authorization": "Bearer s3cret-s3cret-s3cret"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_concurrent_completions_are_batched_and_each_gets_its_own(server, pose):
    """Many one-keyframe requests at once: every answer keeps its own known joints and fills the rest."""
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(1)
    poses = [pose + rng.normal(0, 0.02, pose.shape) * [1, 1, 0] + [k * 0.1, 0, 0] for k in range(12)]

    def ask(p):
        joints = p.tolist()
        for j in (16, 17, 18, 19):
            joints[j] = [None, None, None]
        r = httpx.post(server + "/complete", json={"joints": [joints]}, timeout=60)
        assert r.status_code == 200, r.text
        return np.array(r.json()["joints"])[0]

    with ThreadPoolExecutor(12) as pool:
        outs = list(pool.map(ask, poses))
    for p, out in zip(poses, outs):
        keep = [j for j in range(24) if j not in (16, 17, 18, 19)]
        np.testing.assert_array_equal(out[keep], p[keep])
        assert np.linalg.norm(out[16] - p[0]) < 0.3  # the hip lands beside its own pelvis
    # A bad request among good ones fails alone.
    bad = {"joints": [[[None, None, None]] * 24]}
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda b: httpx.post(server + "/complete", json=b, timeout=60).status_code,
                              [bad, {"joints": [pose.tolist()]}, bad]))
    assert codes == [422, 200, 422]
