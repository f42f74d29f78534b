"""Latest wins: live posing sends a request per mouse move, and only the newest answer is worth anything.

Requests carrying the same `session` are ordered by their `sequence`. A newer one supersedes every older one of its
session: one still waiting for the device gives up its place, one running stops at its next sampler step (both
through the request's Stopper, as for clients that went away), and a request older than one already seen is refused
before any work. Sessions are forgotten when idle and beyond a cap, so memory stays bounded whatever clients send.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

from gfpose_core.service.cancel import Stopper

MAX_SESSIONS = 1024       # live sessions held; the least recently used go first beyond it
FORGET_AFTER_S = 600.0    # a session idle this long is forgotten (its next request starts it afresh)


class Superseded(Exception):
    """A newer request of the same session arrived: nobody wants this one's answer."""

    def __init__(self, session: str, sequence: int, newest: int):
        super().__init__(f"superseded: session {session!r} has sequence {newest}, newer than this request's "
                         f"{sequence}; only the newest request of a session is answered")


class Ticket:
    """One request's place in its session; `superseded` is set once a newer request of the session arrives."""

    def __init__(self, session: str, sequence: int):
        self.session, self.sequence = session, sequence
        self.superseded = threading.Event()
        self.newest = sequence

    def check(self):
        if self.superseded.is_set():
            raise Superseded(self.session, self.sequence, self.newest)


class _Session:
    __slots__ = ("newest", "running", "seen")

    def __init__(self):
        self.newest = -1
        self.running: set[Ticket] = set()
        self.seen = time.monotonic()


class Sessions:
    def __init__(self, max_sessions: int = MAX_SESSIONS, forget_after_s: float = FORGET_AFTER_S):
        self.max_sessions, self.forget_after_s = max_sessions, forget_after_s
        self._lock = threading.Lock()
        self._held: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def enter(self, session: str, sequence: int) -> Ticket:
        """The request's ticket; Superseded at once when its session has seen a newer sequence. Every older request
        of the session still in flight is superseded (an equal sequence, a client's retry, replaces the first)."""
        with self._lock:
            now = time.monotonic()
            state = self._held.pop(session, None) or _Session()
            self._held[session] = state                     # most recently used last
            state.seen = now
            if sequence < state.newest:
                raise Superseded(session, sequence, state.newest)
            state.newest = sequence
            for older in state.running:
                older.newest = sequence
                older.superseded.set()
            ticket = Ticket(session, sequence)
            state.running = {ticket}
            self._forget(now)
            return ticket

    def leave(self, ticket: Ticket):
        with self._lock:
            state = self._held.get(ticket.session)
            if state is not None:
                state.running.discard(ticket)

    def _forget(self, now: float):
        while self._held:
            name, oldest = next(iter(self._held.items()))
            if len(self._held) <= self.max_sessions and now - oldest.seen <= self.forget_after_s:
                break
            del self._held[name]


class SessionStopper(Stopper):
    """A request's Stopper that also stops it once its ticket is superseded."""

    def __init__(self, base: Stopper, ticket: Ticket | None):
        super().__init__(base.gone, base.seconds, base.lock)
        self.ticket = ticket

    def check(self, *_progress):
        if self.ticket is not None:
            self.ticket.check()
        super().check()
