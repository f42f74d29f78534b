"""Work for a client that went away stops at the next sampler step, so the next client is served."""
import threading

import httpx
import numpy as np
import pytest
from service_app import engine

from gfpose_core.service.cancel import Stopper


class Watched:
    """The real engine, with a record of how its denoise calls end (steps done, and why they stopped)."""

    def __init__(self, eng):
        self._eng = eng
        self.steps, self.ended, self.how = 0, threading.Event(), None

    def __getattr__(self, name):
        return getattr(self._eng, name)

    def denoise(self, *args, callback=None, **kwargs):
        def counting(i, n):
            self.steps = i
            callback(i, n)
        try:
            out = self._eng.denoise(*args, callback=counting, **kwargs)
            self.how = "finished"
            return out
        except BaseException as e:
            self.how = type(e).__name__
            raise
        finally:
            self.ended.set()


def test_a_cancelled_long_denoise_frees_the_engine_for_the_next_complete():
    from gfpose_core.service.server import ServerThread
    watched = Watched(engine())
    pose = engine().generate(1, seed=2)[0]
    take = (pose[None] + np.random.default_rng(0).normal(0, 0.01, (5000, 24, 3))).round(3).tolist()
    with ServerThread(watched) as url:
        with pytest.raises(httpx.TimeoutException):       # the client gives up after two seconds
            httpx.post(url + "/denoise", json={"take": take, "temporal": False, "steps": 200}, timeout=2.0)
        assert watched.ended.wait(60), "the denoise kept running for a client that had gone"
        assert watched.how == "Gone" and 0 < watched.steps < 200
        r = httpx.post(url + "/complete", json={"joints": [pose.tolist()], "seed": 1}, timeout=60)
        assert r.status_code == 200
        assert httpx.get(url + "/health").json() == {"status": "ok"}


def test_the_time_limit_stops_work_with_413_naming_it():
    from fastapi import HTTPException
    stop = Stopper(None, seconds=0.0)
    with pytest.raises(HTTPException) as e:
        stop.check(1, 10)
    assert e.value.status_code == 413 and "limit of 0 s per request" in e.value.detail
    gone = threading.Event()
    gone.set()
    from gfpose_core.service.cancel import Gone
    with pytest.raises(Gone):
        Stopper(gone).check(1, 10)
    lock = threading.Lock()
    lock.acquire()                 # another request holds the device: a client that left stops waiting for it
    with pytest.raises(Gone):
        Stopper(gone).acquire(lock)


def test_a_one_pose_complete_is_answered_while_a_long_denoise_runs():
    """Short work goes through between the long one's sampler steps; the long one still finishes, whole."""
    from gfpose_core.service.server import ServerThread
    watched = Watched(engine())
    pose = engine().generate(1, seed=2)[0]
    take = (pose[None] + np.random.default_rng(1).normal(0, 0.01, (500, 24, 3))).round(3).tolist()
    partial = pose.tolist()
    for j in (7, 8, 9, 10):
        partial[j] = [None] * 3
    box = {}
    with ServerThread(watched) as url:
        def long_denoise():
            box["denoise"] = httpx.post(url + "/denoise", json={"take": take, "temporal": False, "steps": 50},
                                        timeout=300)
        t = threading.Thread(target=long_denoise)
        t.start()
        while watched.steps < 2:             # the denoise is on the device, between its steps
            assert t.is_alive(), box
            threading.Event().wait(0.05)
        for seeded in (False, True):          # the batched path and the one-request path
            body = {"joints": [partial], **({"seed": 1} if seeded else {})}
            r = httpx.post(url + "/complete", json=body, timeout=300)
            assert r.status_code == 200, r.text
            assert not watched.ended.is_set(), "the completion waited for the whole denoise"
        t.join(timeout=300)
    assert watched.how == "finished" and box["denoise"].status_code == 200
    assert np.array(box["denoise"].json()["joints"]).shape == (500, 24, 3)
