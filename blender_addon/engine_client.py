"""Reaching the engine over HTTP (urllib: Blender's Python has no torch and needs no extra packages).

Either a running engine at a URL, or one this module starts from a configured Python (`gfpose serve` on a free
loopback port) and stops again when the add-on goes away.
"""
from __future__ import annotations

import atexit
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request


class EngineError(RuntimeError):
    """The engine could not be reached or refused the request; the message says why, for the status bar.
    `status` is the HTTP status of a refusal (None when no engine answered)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class EngineClient:
    def __init__(self, url: str, token: str = "", timeout: float = 120.0):
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def _request(self, path: str, payload: dict | None = None, timeout: float | None = None) -> dict:
        data = None if payload is None else json.dumps(payload, allow_nan=False).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST")
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("detail", e.reason)
            except (ValueError, AttributeError):
                detail = e.reason
            if isinstance(detail, list):  # pydantic's list of field errors
                detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
            raise EngineError(f"engine refused {path} ({e.code}): {detail}", e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise EngineError(f"no engine at {self.url} ({reason}); start one or check the add-on preferences") \
                from None

    def health(self, timeout: float = 2.0) -> bool:
        try:
            return self._request("/health", timeout=timeout).get("status") == "ok"
        except EngineError:
            return False

    def info(self) -> dict:
        return self._request("/info")

    def post(self, path: str, payload: dict) -> dict:
        return self._request(path, payload)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalEngine:
    """An engine process this add-on started from `python` (which must have gfpose_core installed)."""

    def __init__(self, python: str, device: str = "auto", start_timeout: float = 120.0):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "gfpose_core", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--device", device], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            raise EngineError(f"cannot start the engine with {python}: {e}") from None
        atexit.register(self.stop)
        client = EngineClient(self.url)
        deadline = time.time() + start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()
                raise EngineError(f"the engine exited at start: {err[-1] if err else 'no message'} "
                                  f"(is gfpose_core installed in {python}?)")
            if client.health(timeout=1.0):
                return
            time.sleep(0.2)
        self.stop()
        raise EngineError(f"the engine did not answer within {start_timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
