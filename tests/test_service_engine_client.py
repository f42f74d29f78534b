"""The engine the add-on starts: its output drained to a log file, a killed engine reported, a dead one restarted."""
import os
import signal
import sys

import pytest

from blender_addon.engine_client import EngineClient, EngineError, LocalEngine


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    # one engine for both tests (the second kills it)
    eng = LocalEngine(sys.executable, device="cpu", log_dir=str(tmp_path_factory.mktemp("logs")))
    yield eng
    eng.stop()


def test_a_started_engine_still_answers_after_100_failing_requests(engine):
    client = EngineClient(engine.url)
    junk = "x" * 2000     # each failing request logs a line of 2 kB: 200 kB in all, three times a pipe's buffer
    for i in range(100):
        with pytest.raises(EngineError) as e:
            client._request(f"/no_such_endpoint?{junk}{i}", {"n": 1}, timeout=10)
        assert e.value.status == 404
    assert client.health(timeout=5)
    with open(engine.log_path, "rb") as f:
        log = f.read()
    assert len(log) > 3 * 65536 and b"no_such_endpoint" in log
    assert client.post("/generate", {"n": 1, "seed": 1})["joints"]


def test_an_engine_killed_mid_request_is_reported_not_mistaken_for_a_missing_one(engine):
    import threading
    client = EngineClient(engine.url)
    box = {}

    def long_call():
        try:
            client.post("/generate", {"n": 20000, "steps": 50})
        except EngineError as e:
            box["error"] = e

    t = threading.Thread(target=long_call)
    t.start()
    import time
    time.sleep(1.0)
    os.kill(engine.proc.pid, signal.SIGKILL)
    t.join(timeout=30)
    engine.proc.wait(timeout=10)
    err = box.get("error")
    assert err is not None and err.status is None
    assert "stopped during the request" in str(err) and "killed" in str(err) and engine.log_path in str(err)
    assert "started again on the next call" in str(err)


@pytest.mark.blender
def test_the_add_on_restarts_a_dead_engine_on_the_next_call():
    pytest.importorskip("bpy")
    from blender_addon import preferences
    spec = {"python": sys.executable, "device": "cpu", "url": "", "token": ""}
    try:
        first = preferences.connect(spec)
        assert first.health()
        eng = next(iter(preferences._local.values()))
        os.kill(eng.proc.pid, signal.SIGKILL)
        eng.proc.wait(timeout=10)
        assert preferences.ready(spec) is None      # the add-on sees it is gone
        second = preferences.connect(spec)
        assert second.url != first.url and second.health()
    finally:
        preferences.stop_local()
