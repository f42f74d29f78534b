"""Sharing the device between requests: work nobody waits for stops, and short work is not stuck behind long work.

A request whose client went away, or one past the time limit, ends at the next sampler step (the samplers'
progress callback), and one still waiting for the device gives up its place. Without this, a client that gives up
leaves its denoise running and the next one-pose completion waits for it.

Long work lets short work through between its sampler steps: at each step it hands the device to the short
requests waiting, then takes it back. The engine keeps no state of its own between the steps of a call (each call
has its own arrays and generator), so another call may run in that gap.
"""
from __future__ import annotations

import threading
import time

from fastapi import HTTPException

SHORT_WORK = 2_000        # pose x sampler steps: a few keyframes' completion; such work goes first
MAX_SECONDS = 300.0     # one request's work; longer jobs belong in `gfpose denoise` or in smaller requests
SCOPE_KEY = "gfpose.gone"   # Guard puts a threading.Event here that is set when the client disconnects


class Gone(Exception):
    """The client is no longer there to read an answer."""


class DeviceLock:
    """One job on the device at a time; short jobs waiting go before long ones, also in the middle of a long one
    (`let_short_through`, called between its steps)."""

    def __init__(self):
        self._cv = threading.Condition()
        self._held = False
        self._short_waiting = 0

    def acquire(self, short: bool = False, check=None):
        with self._cv:
            self._short_waiting += short
            try:
                while self._held or (not short and self._short_waiting):
                    self._cv.wait(0.05)
                    if check is not None:
                        check()
                self._held = True
            finally:
                self._short_waiting -= short

    def release(self):
        with self._cv:
            self._held = False
            self._cv.notify_all()

    def let_short_through(self, check=None):
        if self._short_waiting:      # read without the condition: a step late at worst
            self.release()
            self.acquire(short=False, check=check)

    def __enter__(self):
        self.acquire(short=True)     # the batcher's one-hypothesis completions
        return self

    def __exit__(self, *exc):
        self.release()


class Stopper:
    def __init__(self, gone: threading.Event | None, seconds: float = MAX_SECONDS, lock: DeviceLock | None = None):
        self.gone = gone
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.lock = lock

    def step(self, *_progress):
        """The samplers' callback: stop here if nobody waits or time is up, else let short work through."""
        self.check()
        if self.lock is not None:
            self.lock.let_short_through(self.check)

    def check(self, *_progress):
        if self.gone is not None and self.gone.is_set():
            raise Gone()
        if time.monotonic() > self.deadline:
            raise HTTPException(413, f"the request ran past this server's limit of {self.seconds:.0f} s per "
                                     "request: send less work (fewer frames, hypotheses or steps) at a time")

    def acquire(self, lock, short: bool = False):
        """The device lock, while the client still waits and the time limit allows."""
        if isinstance(lock, DeviceLock):
            self.lock = lock
            return lock.acquire(short=short, check=self.check)
        while not lock.acquire(timeout=0.05):
            self.check()


def stopper_for(request) -> Stopper:
    return Stopper(request.scope.get(SCOPE_KEY) if request is not None else None)
