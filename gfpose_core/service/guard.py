"""The door of the engine server, as plain ASGI so that it holds whatever FastAPI or Starlette version runs it.

- Host: a loopback engine answers only loopback names (and the host it was started on). Otherwise a web page on
  any site could re-point its own domain at 127.0.0.1 (DNS rebinding) and talk to the engine as same-origin.
- Origin: a browser names the page that sends a request; a page that is not on this machine is refused.
- Content type: a POST must say application/json. Browsers send text/plain and form bodies across origins without
  asking first (no CORS preflight); refusing them makes blind requests from web pages fail.
- Token: `Authorization: Bearer <token>`, the scheme in any case (RFC 9110), compared in constant time.
- Body size: counted on the stream as it arrives, so a chunked body (no Content-Length) cannot pass the cap; a
  body that stops arriving (BODY_IDLE_S without a byte) is answered 408.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import threading

from gfpose_core.service.cancel import SCOPE_KEY

LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
OPEN_PATHS = ("/docs", "/openapi.json")     # the schema is no secret; a client generator needs it
MIN_TOKEN_CHARS = 16
BODY_IDLE_S = 20.0     # a client that stops sending its body this long holds a connection and a task: 408


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(token: str | None) -> str | None:
    """A usable token or a ValueError saying why not (HTTP headers carry latin-1, so one outside it can never
    match; a short one can be guessed)."""
    if token is None:
        return None
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the token must have at least {MIN_TOKEN_CHARS} characters (it has {len(token)})")
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("the token must be printable ASCII without spaces (it travels in an HTTP header)")
    return token


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):                       # [::1]:8765
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _origin_host(origin: str) -> str:
    rest = origin.split("://", 1)[1] if "://" in origin else ""
    return _hostname(rest.split("/", 1)[0])


class Guard:
    """ASGI middleware: host, origin, token, content type and body size, checked before the app sees a request."""

    def __init__(self, app, *, host: str = "127.0.0.1", token: str | None = None, max_body: int):
        self.app, self.token, self.max_body = app, token, max_body
        # Only a loopback engine pins its names: one bound to the network is reached under names we cannot know,
        # and there the token (required) is what keeps pages out.
        self.hosts = None if not is_loopback(host) else {_hostname(host)}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self._problem(scope, headers)
        if problem is not None:
            return await _reply(send, *problem)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        size = headers.get("content-length")
        if size is not None and (not size.strip().isdigit() or int(size) > self.max_body):
            return await _reply(send, 413, f"request body over the limit of {self.max_body} bytes")
        body, more = [], True
        total = 0
        while more:
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_S)
            except asyncio.TimeoutError:
                return await _reply(send, 408, f"the request body stopped arriving for {BODY_IDLE_S:g} s")
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                return await _reply(send, 413, f"request body over the limit of {self.max_body} bytes")
            body.append(chunk)
            more = message.get("more_body", False)
        whole = b"".join(body)
        sent = False
        # A watcher reads on after the body so that a client that goes away is seen while the work runs (the
        # app reads nothing more); the endpoint stops its sampler at the next step (cancel.py).
        gone = threading.Event()
        later: asyncio.Queue = asyncio.Queue()

        async def watch():
            while True:
                message = await receive()
                await later.put(message)
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await later.get()
        watcher = asyncio.ensure_future(watch())
        try:
            return await self.app(dict(scope, **{SCOPE_KEY: gone}), replay, send)
        finally:
            watcher.cancel()

    def _problem(self, scope, headers) -> tuple[int, str] | None:
        if self.hosts is not None:
            name = _hostname(headers.get("host", ""))
            if not (is_loopback(name) or name in self.hosts):
                return 400, "this engine answers on loopback only: Host must be localhost or a loopback address"
        origin = headers.get("origin")
        if origin is not None and origin != "null" and not is_loopback(_origin_host(origin)):
            return 403, "requests from web pages of other sites are refused (Origin is not this machine)"
        if origin == "null":
            return 403, "requests from sandboxed or file pages are refused (Origin: null)"
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            scheme, _, given = headers.get("authorization", "").strip().partition(" ")
            if not (scheme.lower() == "bearer"
                    and hmac.compare_digest(given.strip().encode("latin-1"), self.token.encode())):
                return 401, "missing or wrong token (Authorization: Bearer ...)"
        if scope["method"] in ("POST", "PUT", "PATCH"):
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                return 415, f"the body must be application/json (got {kind[:40] or 'no content type'})"
        return None


async def _reply(send, status: int, detail: str):
    body = json.dumps({"detail": detail}).encode()
    extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")] + extra})
    await send({"type": "http.response.body", "body": body})
