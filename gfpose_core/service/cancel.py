"""Stopping work nobody waits for: a request whose client went away, or one past the time limit, ends at the next
sampler step (the samplers' progress callback), and one still waiting for the device gives up its place.

Without this, a client that gives up leaves its denoise running, and the next one-pose completion waits for it.
"""
from __future__ import annotations

import threading
import time

from fastapi import HTTPException

MAX_SECONDS = 300.0     # one request's work; longer jobs belong in `gfpose denoise` or in smaller requests
SCOPE_KEY = "gfpose.gone"   # Guard puts a threading.Event here that is set when the client disconnects


class Gone(Exception):
    """The client is no longer there to read an answer."""


class Stopper:
    def __init__(self, gone: threading.Event | None, seconds: float = MAX_SECONDS):
        self.gone = gone
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def check(self, *_progress):
        if self.gone is not None and self.gone.is_set():
            raise Gone()
        if time.monotonic() > self.deadline:
            raise HTTPException(413, f"the request ran past this server's limit of {self.seconds:.0f} s per "
                                     "request: send less work (fewer frames, hypotheses or steps) at a time")

    def acquire(self, lock: threading.Lock):
        """The device lock, while the client still waits and the time limit allows."""
        while not lock.acquire(timeout=0.05):
            self.check()


def stopper_for(request) -> Stopper:
    return Stopper(request.scope.get(SCOPE_KEY) if request is not None else None)
