"""The server's connections: a deadline for a request's headers and a cap on open connections that sheds idle ones.

uvicorn has neither. Without them a client that opens sockets and sends nothing, or sends its headers a byte at a
time (slowloris), holds a descriptor each for as long as it likes: a few hundred of them starve the engine of
descriptors, and uvicorn's own `limit_concurrency` answers 503 to everyone, `/health` and the animator included.
Here a connection must deliver a request's headers within HEADER_TIMEOUT_S of starting to send it (or of opening),
and when more than MAX_CONNECTIONS are open the oldest connections that are not inside a request are closed, so a
new client, `/health` or an authorised one, is always served. A request that is being answered is never cut.
"""
from __future__ import annotations

import time

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 512


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and idle-connection shedding (class attributes: the limits)."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_connections = MAX_CONNECTIONS

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._header_deadline = None
        self._opened = time.monotonic()
        super().connection_made(transport)
        self._arm()
        self._shed_idle()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self.cycle is not None:
            self._disarm()            # a whole request's headers arrived: it runs for as long as it needs
        elif self._idle() and self._header_deadline is None:
            self._arm()               # the first bytes of a next request: its headers now have a deadline

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._idle() and not self.transport.is_closing():
            self.transport.close()

    def _shed_idle(self) -> None:
        extra = len(self.connections) - self.max_connections
        if extra <= 0:
            return
        idle = sorted((c for c in self.connections if c is not self and isinstance(c, GuardedH11) and c._idle()),
                      key=lambda c: c._opened)
        for conn in idle[:extra]:
            conn._disarm()
            conn.transport.close()


def guarded(header_timeout_s: float = HEADER_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> type:
    """The protocol class for uvicorn.Config(http=...) with these limits."""
    return type("GuardedH11", (GuardedH11,), {"header_timeout_s": float(header_timeout_s),
                                              "max_connections": int(max_connections)})
