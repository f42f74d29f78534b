"""Long work without freezing Blender: a job is a generator that runs on Blender's main thread and yields the slow
parts (HTTP calls to the engine) as `Call`s, which run on a background thread.

    def steps():
        desc = rig_io.describe_armature(obj)            # main thread: bpy is only safe here
        reply = yield Call(client.post, "/bind", {...}, progress=0.3, label="Binding")
        ...                                             # main thread again, with the reply
        return "done: 12 keys"                          # the message for the status bar

`Job.run()` drives it inline (an operator's execute: scripts, tests, redo). `Job.start()` + `Job.poll()` drive it
from a modal operator's timer: the call runs on a thread, the generator resumes on the main thread when it is done.
An exception raised by a call is thrown into the generator at its `yield` (so it can clean up) and, unless caught
there, ends the job with that error. `cancel()` closes the generator (its `finally` blocks run on the main thread);
a call still running on its thread is left to finish and its answer is dropped.

No bpy here: this module is plain Python and testable on its own.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Generator


class Call:
    """Work for the background thread: fn(*args, **kwargs). progress (0..1) and label describe the job so far."""

    def __init__(self, fn: Callable, *args, progress: float | None = None, label: str = "", **kwargs):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.progress, self.label = progress, label

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)


class Cancelled(Exception):
    """The job was cancelled (ESC) before it finished."""


class Job:
    def __init__(self, steps: Generator[Call, Any, Any]):
        self.steps = steps
        self.progress = 0.0
        self.label = ""
        self.done = False
        self.cancelled = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._call: Call | None = None
        self._thread: threading.Thread | None = None
        self._box: dict = {}

    # --- inline (execute) ---------------------------------------------------------------------------------------

    def run(self):
        """Drive the job to its end on this thread; returns its result or raises its error."""
        send, throw = None, None
        while True:
            try:
                call = self.steps.throw(throw) if throw is not None else self.steps.send(send)
            except StopIteration as stop:
                self.done, self.result = True, stop.value
                return stop.value
            except BaseException as e:
                self.done, self.error = True, e
                raise
            self._note(call)
            send, throw = None, None
            try:
                send = call()
            except Exception as e:  # handed to the generator, which may clean up and re-raise
                throw = e

    # --- threaded (modal) ---------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Run up to the first call and start it on a thread. Returns True when the job already ended."""
        self._advance(None, None)
        return self.done

    def poll(self) -> bool:
        """Call from the main thread (a timer). Resumes the generator when the running call is done; returns True
        when the whole job has ended (see `result` / `error`)."""
        if self.done:
            return True
        if self._thread is not None and self._thread.is_alive():
            return False
        box, self._box, self._thread = self._box, {}, None
        self._advance(box.get("value"), box.get("error"))
        return self.done

    def cancel(self):
        """Stop at once: the generator is closed on this (main) thread; a running call's answer is dropped."""
        if self.done:
            return
        self.cancelled, self.done = True, True
        self.error = Cancelled("cancelled")
        self._thread = None
        try:
            self.steps.close()
        except Exception as e:  # a cleanup that failed: keep the first reason, cancelled
            self.error = Cancelled(f"cancelled ({e})")

    def _advance(self, value, error):
        try:
            call = self.steps.throw(error) if error is not None else self.steps.send(value)
        except StopIteration as stop:
            self.done, self.result = True, stop.value
            return
        except BaseException as e:
            self.done, self.error = True, e
            return
        self._note(call)
        box = self._box = {}

        def work():
            try:
                box["value"] = call()
            except BaseException as e:
                box["error"] = e

        self._thread = threading.Thread(target=work, name="gfpose-job", daemon=True)
        self._thread.start()

    def _note(self, call):
        if not isinstance(call, Call):
            raise TypeError(f"a job may only yield Call objects, got {call!r}")
        if call.progress is not None:
            self.progress = max(0.0, min(1.0, float(call.progress)))
        if call.label:
            self.label = call.label
