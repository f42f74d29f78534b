"""The server's connections: silent and slowloris sockets are closed after the header deadline, and past the
connection cap idle sockets are shed so that /health and real clients are still served."""
import socket
import time

import httpx
from service_app import engine

from gfpose_core.service.server import ServerThread


def _addr(url: str) -> tuple[str, int]:
    host, port = url.rsplit("/", 1)[1].split(":")
    return host, int(port)


def _closed_by_server(s: socket.socket, within_s: float) -> bool:
    s.settimeout(within_s)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_silent_and_slow_header_sockets_are_closed_after_the_header_deadline():
    with ServerThread(engine(), header_timeout_s=0.5) as url:
        silent = socket.create_connection(_addr(url))
        slow = socket.create_connection(_addr(url))
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")       # and then never the blank line
        # Byte by byte, each well inside the deadline: the deadline counts from the first byte, not the last.
        drip = socket.create_connection(_addr(url))
        start = time.monotonic()
        for ch in b"GET /health HTTP/1.1\r\nX-Drip: " + b"a" * 40:
            try:
                drip.sendall(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            if time.monotonic() - start > 3:
                break
        assert _closed_by_server(silent, 3.0)
        assert _closed_by_server(slow, 3.0)
        assert _closed_by_server(drip, 3.0)
        for s in (silent, slow, drip):
            s.close()
        assert httpx.get(url + "/health", timeout=5).status_code == 200


def test_a_request_being_answered_is_not_cut_by_the_deadline():
    # The deadline is for headers only: a keep-alive client making requests on one connection keeps being served.
    with ServerThread(engine(), header_timeout_s=0.5) as url:
        with httpx.Client(timeout=10) as c:
            for _ in range(3):
                assert c.get(url + "/info").status_code == 200
                time.sleep(0.2)


def test_past_the_connection_cap_idle_sockets_are_shed_and_health_is_served():
    with ServerThread(engine(), max_connections=20) as url:
        idle = [socket.create_connection(_addr(url)) for _ in range(60)]
        time.sleep(0.3)
        answers = [httpx.get(url + "/health", timeout=5).status_code for _ in range(5)]
        assert answers == [200] * 5
        closed = sum(_closed_by_server(s, 0.05) for s in idle)
        assert closed >= 60 - 20, closed          # the oldest idle ones went, to keep the server under its cap
        for s in idle:
            s.close()
