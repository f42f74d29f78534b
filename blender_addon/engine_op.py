"""What every GFPose operator shares: reaching the engine, the rig map's binding for the armature (cached by the
armature's signature, on both sides), and the operator shell that runs engine calls as a modal job.

Each operator runs headless through `execute` (scripts, tests, redo) and interactively through `invoke` as a modal
job: the engine calls run on a background thread (jobs.py), a progress bar shows, ESC cancels. Nothing in the scene
changes until every engine call has answered, so an error or a cancel leaves the file as it was; a finished run is
one undo step.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from . import live, plan, rig_io
from .engine_client import EngineClient, EngineError
from .jobs import Call, Cancelled, Job
from .preferences import (
    connect,
    describe_info,
    engine_info,
    engine_spec,
    forget_engines,
    ready,
    set_status,
)

_bindings: dict[tuple, dict] = {}      # (object, rig choice, armature signature) -> /bind reply
_solve_ids: dict[tuple, str] = {}      # (engine URL, rig, signature of the armature as solved) -> binding id
_last_binding: dict[str, dict] = {}    # object name -> the latest binding (for the panel)


def binding_for_panel(obj) -> dict | None:
    return _last_binding.get(obj.name_full) if obj is not None else None


def clear_bindings():
    for cache in (_bindings, _solve_ids, _last_binding):
        cache.clear()
    forget_engines()


@dataclass
class Bound:
    """An engine and an armature matched to it: what each operator's steps work with."""
    client: EngineClient
    binding: dict                  # /bind: how to read the engine's joints off the rig, and what to key
    desc: dict                     # the armature as /pose_for_rig solves it (the map's switches set)
    skeleton: plan.Skeleton        # the engine's joint set (/info)
    motion: plan.MotionLimits | None

    @property
    def write(self) -> dict:
        return self.binding["write"]


def connect_and_bind(obj, spec: dict, rig_choice: str, progress: float = 0.1):
    """Job steps: the engine client, its /info, the binding (cached per armature) and the armature described with
    the rig map's switches set (e.g. Rigify limbs in FK), as /pose_for_rig needs it. Changes nothing in the scene."""
    client = ready(spec)
    if client is None:      # starting the engine takes seconds: off the main thread
        client = yield Call(connect, spec, progress=0.02, label="Starting the engine")
    info = yield Call(engine_info, client, progress=0.05, label="Asking the engine")
    desc = rig_io.describe_armature(obj)
    rig = None if rig_choice in ("", "AUTO") else rig_choice
    key = (obj.name_full, rig, plan.armature_signature(desc))
    binding = _bindings.get(key)
    if binding is None:
        binding = yield Call(client.post, "/bind", {"armature": desc, "rig": rig}, progress=progress,
                             label="Matching the rig map")
        _bindings[key] = binding
    _last_binding[obj.name_full] = binding
    if not binding.get("can_write") or not binding.get("write"):
        raise ValueError(f"rig map '{binding.get('rig')}' reads poses but has no [write] table to key this rig")
    return Bound(client, binding, described_with_switches(obj, binding["properties"], desc),
                 plan.Skeleton.from_info(info), plan.MotionLimits.from_info(info))


def solve_on_rig(bound: Bound, joints: np.ndarray, progress: float = 0.7, current: dict | None = None):
    """Job step: poses of the engine's joints -> the rig's channels for every pose (/pose_for_rig). The armature is
    sent once per engine; later calls name the engine's cached binding (sent again if the engine forgot it).
    current: the pose the rig has now (posing.current_pose), which the engine then edits: each bone keeps its twist
    and turns only as far as its aim must (the engine is the one side that solves the rig)."""
    body = {"joints": joints.tolist(), "rig": bound.binding["rig"], "root_scale": 1.0}
    if current is not None:
        body["current"] = current
    return (yield Call(post_bound, bound, "/pose_for_rig", body, progress=progress, label="Solving the rig"))


def post_bound(bound: Bound, path: str, body: dict) -> dict:
    """POST to an endpoint that solves the rig (/pose_for_rig, /pose_from_effectors): the armature sent once per
    engine, the engine's binding_id after, and the armature again when the engine forgot the binding (its 409;
    a 409 for a superseded live request is the caller's to handle)."""
    key = (bound.client.url, bound.binding["rig"], plan.armature_signature(bound.desc))
    bid = _solve_ids.get(key)
    if bid is not None:
        try:
            return bound.client.post(path, body | {"binding_id": bid})
        except EngineError as e:
            if e.status != 409 or live.is_superseded(e):
                raise
            _solve_ids.pop(key, None)
    reply = bound.client.post(path, body | {"armature": bound.desc})
    if reply.get("binding_id"):
        _solve_ids[key] = reply["binding_id"]
    return reply


def described_with_switches(obj, props: list[dict], desc: dict) -> dict:
    """The armature described as it is with the map's custom properties set (e.g. Rigify's IK_FK = 1), then the
    properties put back as they were: the scene is left unchanged."""
    pbs = obj.pose.bones
    present = [p for p in props if pbs.get(p["bone"]) is not None and p["name"] in pbs[p["bone"]].keys()]
    old = [{"bone": p["bone"], "name": p["name"], "value": pbs[p["bone"]][p["name"]]} for p in present]
    if all(float(o["value"]) == float(p["value"]) for o, p in zip(old, present)):
        return desc
    try:
        rig_io.apply_properties(obj, present)
        return rig_io.describe_armature(obj)
    finally:
        rig_io.apply_properties(obj, old)


class EngineOperator:
    """Modal with a progress bar when invoked from the UI (ESC cancels); plain execute for scripts and tests."""
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "ARMATURE"

    def steps(self, obj, spec, scene):  # a generator of Calls; returns the message for the status bar
        raise NotImplementedError

    def _job(self, context):
        return Job(self.steps(context.active_object, engine_spec(context), context.scene))

    def execute(self, context):
        job = self._job(context)
        try:
            message = job.run()
        except Exception as e:  # every failure is a report; the steps changed nothing before their last part
            return self._fail(context, e)
        return self._done(context, message)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        self._running = self._job(context)
        wm = context.window_manager
        wm.progress_begin(0, 100)
        if self._running.start():
            return self._finish(context)
        self._timer = wm.event_timer_add(0.02, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, f"GFPose: {self._running.label or self.bl_label}... (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._running
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
            self._cleanup(context)
            self.report({"WARNING"}, f"{self.bl_label}: cancelled, nothing changed")
            return {"CANCELLED"}
        if event.type == "TIMER":
            if job.poll():
                return self._finish(context)
            context.window_manager.progress_update(int(job.progress * 100))
            self._status(context, f"GFPose: {job.label}... {job.progress * 100:.0f}% (Esc to cancel)")
            return {"RUNNING_MODAL"}
        if event.type in {"MIDDLEMOUSE", "WHEELUPMOUSE", "WHEELDOWNMOUSE", "TRACKPADPAN", "TRACKPADZOOM"}:
            return {"PASS_THROUGH"}   # the view may move; the scene may not
        return {"RUNNING_MODAL"}

    def _finish(self, context):
        self._cleanup(context)
        job = self._running
        if job.error is not None:
            return self._fail(context, job.error)
        return self._done(context, job.result)

    def _cleanup(self, context):
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        self._status(context, None)

    @staticmethod
    def _status(context, text):
        ws = getattr(context, "workspace", None)
        if ws is not None:
            ws.status_text_set(text)

    def _fail(self, context, error):
        if isinstance(error, Cancelled):
            self.report({"WARNING"}, f"{self.bl_label}: cancelled, nothing changed")
            return {"CANCELLED"}
        if isinstance(error, EngineError):
            set_status("no engine" if "no engine" in str(error) else "error", context)
            msg = str(error)
        elif isinstance(error, KeyError):    # str() of a KeyError quotes its message
            msg = str(error).strip("'\"")
        elif isinstance(error, ValueError):  # its message may start with a quoted name ('rig' has no action)
            msg = str(error)
        else:
            msg = f"{type(error).__name__}: {error}"
        self.report({"ERROR"}, f"{self.bl_label}: {msg}")
        return {"CANCELLED"}

    def _done(self, context, message):
        self.report({"INFO"}, message)
        return {"FINISHED"}


class GFPOSE_OT_detect_rig(EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.detect_rig"
    bl_label = "Detect Rig Map"
    bl_description = "Ask the engine which rig map fits the active armature (kept for this armature)"
    bl_options = {"REGISTER"}

    def steps(self, obj, spec, scene):
        for key in [k for k in _bindings if k[0] == obj.name_full]:
            del _bindings[key]
        forget_engines()
        bound = yield from connect_and_bind(obj, spec, obj.gfpose.rig)
        set_status(describe_info(engine_info(bound.client)))
        binding = bound.binding
        n_read, n_keyed = len(binding["bones"]), len(binding["write"]["bones"])
        return f"rig map '{binding['rig']}' ({n_read} bones read, {n_keyed} keyed)"
