"""Reaching the engine over HTTP (urllib: Blender's Python has no torch and needs no extra packages).

Either a running engine at a URL, or one this module starts from a configured Python (`gfpose serve` on a free
loopback port) and stops again when the add-on goes away. A started engine writes its output to a log file: a pipe
nobody reads fills after a few tracebacks and then the engine hangs, answering nothing, not even /health.
"""
from __future__ import annotations

import atexit
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

_started: dict[str, "LocalEngine"] = {}    # url -> the engine this add-on started there, to explain its end


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
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            local = _started.get(self.url)
            if local is not None and not local.alive(grace=1.0):
                raise EngineError(local.ended()) from None
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                raise EngineError(f"the engine at {self.url} did not answer {path} within "
                                  f"{timeout or self.timeout:.0f} s") from None
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


def log_folder() -> str:
    return os.path.join(tempfile.gettempdir(), "gfpose")


class LocalEngine:
    """An engine process this add-on started from `python` (which must have gfpose_core installed); its output
    goes to `log_path`."""

    def __init__(self, python: str, device: str = "auto", start_timeout: float = 120.0, log_dir: str | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder = log_dir or log_folder()
        os.makedirs(folder, exist_ok=True)
        self.log_path = os.path.join(folder, f"engine-{self.port}.log")
        try:
            with open(self.log_path, "wb") as log:   # the child keeps its own handle; ours closes here
                self.proc = subprocess.Popen(
                    [python, "-m", "gfpose_core", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--device", device], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as e:
            raise EngineError(f"cannot start the engine with {python}: {e}") from None
        atexit.register(self.stop)
        client = EngineClient(self.url)
        deadline = time.time() + start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"the engine exited at start: {self.last_line()} (is gfpose_core installed in "
                                  f"{python}? log: {self.log_path})")
            if client.health(timeout=1.0):
                _started[self.url] = self
                return
            time.sleep(0.2)
        self.stop()
        raise EngineError(f"the engine did not answer within {start_timeout:.0f} s (log: {self.log_path})")

    def alive(self, grace: float = 0.0) -> bool:
        """grace: how long to wait for an end already under way (a killed process closes its sockets a moment
        before the system reports it gone)."""
        if grace:
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.poll() is None

    def last_line(self, size: int = 4096) -> str:
        """The log's last line that says something (a traceback ends with the error)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - size))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return lines[-1][:300] if lines else "no message"

    def ended(self) -> str:
        """Why the engine is gone, for the status bar; the add-on starts a new one on the next call."""
        code = self.proc.poll()
        how = ("it was killed (signal %d%s)" % (-code, ": out of memory?" if code == -9 else "") if code < 0
               else f"it exited with status {code}: {self.last_line()}")
        return (f"the engine this add-on started stopped during the request: {how}. Nothing was changed; it is "
                f"started again on the next call (log: {self.log_path})")

    def stop(self):
        _started.pop(self.url, None)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
