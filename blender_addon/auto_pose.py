"""Auto Pose: the animator drags the hand, foot, torso and head controls in Pose Mode; the rest of the body follows
live (one /pose_from_effectors call per change, on a worker thread), Enter keys what is shown, Esc puts the rig back.

`Session` is the whole mode without Blender's event loop: `start` (records the rig and the controls), `tick` (a
moved control -> the newest request; the newest answer -> the pose shown), `key` (Enter) and `restore` (Esc). The
modal operator calls exactly these, from a timer, so scripts, tests and the benchmark drive the same code.
"""
from __future__ import annotations

import time

import bpy
import numpy as np

from . import live, plan, posing, rig_io
from .engine_client import EngineError
from .engine_op import connect_and_bind, post_bound
from .jobs import Job
from .preferences import engine_info, engine_spec, known_effector_groups, set_status

TICK_BUSY, TICK_IDLE = 0.004, 0.02     # seconds between ticks while an answer is awaited / while idle
SETTLE_S = 30.0                        # Enter waits at most this long for the answer to the newest move
HINT = "Auto Pose: drag the controls · Enter keys the pose · Esc puts the rig back"

_sessions: dict[str, "Session"] = {}   # armature object name -> its running Auto Pose


def pins_of(obj) -> list[str] | None:
    """The controls the animator marked on this armature (None: none marked, the defaults apply)."""
    text = obj.gfpose.auto_pose_pins
    return None if not text else [b for b in text.split("\n") if b]


def set_pins(obj, bones) -> None:
    obj.gfpose.auto_pose_pins = "\n".join(bones)


def pin_choices(obj, binding: dict) -> tuple[list[str], list[str]]:
    """(bones the panel offers as pins, the pins in effect): Rigify's controls on a Rigify rig, then every bone
    the rig map keys."""
    names = [b.name for b in obj.data.bones]
    rigify = live.is_rigify(binding, names)
    offered = (list(live.RIGIFY_CONTROLS) if rigify else []) + [b for b in binding["write"]["bones"]
                                                                 if b in obj.pose.bones]
    marked = pins_of(obj)
    groups = known_effector_groups()
    return offered, marked if marked is not None else live.default_pins(binding["write"], groups, rigify)


class Session:
    """One Auto Pose on one armature.

    How a control gives its joints (rig-independent): when the mode starts, each control's joints (live.
    control_joints: an effector group, or the segment a pinned bone carries) are read off the rig through the
    binding and recorded in the control's own frame (its world matrix). When the animator moves the control, its
    joints go where its new matrix carries them, rigidly: a dragged hand control moves wrist and hand end, turning
    it turns the hand. A joint several controls drive follows the one moved last. A control that the rig map also
    keys (the torso, the head, a pinned hand bone) keeps the orientation the animator gave it (`current.keep`):
    the engine solves the bones above it so that it stays, and moves the root only as far as the pelvis joints
    must (bones that turn with the pelvis, e.g. a BVH rig's hip joints, may shift it).

    What counts as the animator's move: a control whose own transform (location, rotation, scale) changed; and a
    control whose world matrix changed with no answer shown since the last tick, carried by a bone the animator
    moved (Rigify's root moves the whole character, its torso the head) - except a hand or foot control carried by
    another control moved in the same tick, which stays where it was put (a BVH rig's hands and feet stay planted
    when its hips are dragged, as Rigify's IK hands and feet do when its torso is)."""

    def __init__(self, obj, bound, patience: float = 0.25):
        self.obj, self.bound = obj, bound
        self.binding, self.write = bound.binding, bound.write
        self.error: BaseException | None = None
        self.ended = False
        self.frame = bpy.context.scene.frame_current
        info = engine_info(bound.client)
        self.groups = live.effector_groups(info)
        sk = bound.skeleton
        parents = {n: sk.names[p] for n, p in zip(sk.names, sk.parents) if p >= 0}
        names = [b.name for b in obj.data.bones]
        self.rigify = live.is_rigify(self.binding, names)
        pins = pins_of(obj)
        if pins is None:
            pins = live.default_pins(self.write, self.groups, self.rigify)
        missing = [b for b in pins if b not in obj.pose.bones]
        if missing:
            raise ValueError(f"Auto Pose: armature '{obj.name}' has no bone(s) {', '.join(missing)} marked as pins")
        if not pins:
            raise ValueError("Auto Pose: no control to drag; mark some bones as pins in the GFPose panel")
        self.controls = {b: live.control_joints(b, self.write, self.groups, parents, self.rigify) for b in pins}
        effector_joints = {j for g in self.groups.values() for j in g}
        self.pins = sorted({j for js in self.controls.values() for j in js} - effector_joints)
        self.joint_names = list(sk.names)
        self.mapped = list(self.write["bones"])
        self.kept = [b for b in pins if b in self.write["bones"]]      # controls the rig map keys too
        # What Esc puts back: every bone's own transform and the custom properties the mode switches.
        pbs = obj.pose.bones
        self.saved = {pb.name: posing.basis_values(pb) for pb in pbs}
        self.saved_props = [(p["bone"], p["name"], pbs[p["bone"]][p["name"]]) for p in self.binding["properties"]
                            if pbs.get(p["bone"]) is not None and p["name"] in pbs[p["bone"]].keys()]
        # The joints as the animator sees them, in each control's frame.
        joints0 = rig_io.read_body24(obj, self.binding)[0]
        index = {n: i for i, n in enumerate(self.joint_names)}
        self.local, self.targets, self.orient = {}, {}, {}
        for b, js in self.controls.items():
            m = self._world(b)
            self.local[b] = live.offsets(m, joints0[[index[j] for j in js]])
            self.targets.update({j: joints0[index[j]] for j in js})
            self.orient[b] = self._armature_rotation(b)
        self.shown: dict | None = None
        self.reply: dict | None = None          # the engine's answer the rig shows
        self.slot = live.LatestWins(self._send, min_patience=patience)
        self.timings: list[float] = []
        try:
            rig_io.apply_properties(obj, self.binding["properties"])   # e.g. Rigify's limbs to FK
            self.current = self._current()
            bpy.context.view_layer.update()
            self.baseline = {b: self._world(b) for b in self.controls}
            self.seen = {b: posing.basis_values(pbs[b]) for b in self.controls}
            self.carriers = {b: (posing.ancestors(obj, [b]) - {b}) & set(self.controls) for b in self.controls}
            self.limb_ends = {b for b, js in self.controls.items() if live.LIMB_ENDS & set(js)}
            self._shown = False
            self.slot.offer(self._target())
        except Exception:
            self.restore()
            raise

    # --- reading the rig ------------------------------------------------------------------------------------------

    def _world(self, bone: str) -> np.ndarray:
        return np.array(self.obj.matrix_world, np.float64) @ np.array(self.obj.pose.bones[bone].matrix, np.float64)

    def _armature_rotation(self, bone: str) -> list:
        r = np.array(self.obj.pose.bones[bone].matrix, np.float64)[:3, :3]
        return (r / np.maximum(np.linalg.norm(r, axis=0, keepdims=True), 1e-12)).tolist()

    def _current(self) -> dict:
        """/pose_for_rig's `current` as the mode starts (limbs switched): the mapped bones with a twist of their
        own keep it; the bones above the mapped ones posed off rest stay as they are, and so do the controls the
        map keys (with the orientation the animator gives them, `_target`)."""
        obj = self.obj
        mapped = set(self.mapped)
        above = {b for b in posing.ancestors(obj, mapped) - mapped if posing.has_twist(obj, b)}
        own = {b for b in mapped if posing.has_twist(obj, b)}
        bones = sorted(own | above | set(self.kept))
        joints = rig_io.read_body24(obj, self.binding)
        got = posing.current_pose(obj, joints, bones)
        # The controls the map keys stay exactly as the animator turns them (the torso's tilt about the hip line,
        # a head's or a pinned hand's twist are not in body24).
        got["keep"] = sorted(above | set(self.kept))
        return got

    # --- one request ----------------------------------------------------------------------------------------------

    def _target(self) -> dict:
        rows, known = live.payload_joints(self.targets, self.joint_names)
        rotations = dict(self.current["rotations"])
        rotations.update({b: [self.orient[b]] for b in self.kept})
        return {"joints": [rows], "known": [known], "pins": self.pins,
                "current": {"joints": self.current["joints"], "rotations": rotations, "keep": self.current["keep"]}}

    def _send(self, target: dict, session: str, sequence: int) -> dict:
        """Worker thread: one /pose_from_effectors round trip (the armature sent once, its binding id after)."""
        body = target | {"rig": self.binding["rig"], "session": session, "sequence": sequence}
        return post_bound(self.bound, "/pose_from_effectors", body)

    # --- the mode's steps -----------------------------------------------------------------------------------------

    def tick(self) -> bool:
        """One step of the mode (the modal timer's): controls the animator moved give the newest target; the newest
        answer is shown. Returns whether the rig shows the newest target. Raises the engine's error."""
        if self.ended:
            return True
        bpy.context.view_layer.update()         # next to nothing once Blender's redraw has evaluated the move
        pbs = self.obj.pose.bones
        turned = {b for b in self.controls if posing.basis_values(pbs[b]) != self.seen[b]}
        changed = False
        for b in self.controls:
            m = self._world(b)
            carried = not self._shown and live.moved(self.baseline[b], m)
            planted = b in self.limb_ends and turned & self.carriers[b]
            by_hand = b in turned or (carried and not planted)
            if by_hand:
                self.targets.update(zip(self.controls[b], live.carried(m, self.local[b])))
                self.orient[b] = self._armature_rotation(b)
                self.seen[b] = posing.basis_values(pbs[b])
                changed = True
            self.baseline[b] = m
        self._shown = False
        if changed:
            self.slot.offer(self._target())
        answer = self.slot.poll()
        if answer is not None:
            if answer.error is not None:
                raise answer.error
            self._show(answer.reply)
            self.timings.append(answer.answered_at - answer.sent_at)
        return self.slot.settled()

    def _show(self, solved: dict) -> None:
        """The engine's pose on the rig, without keys: every mapped bone's rotation and the root's location (a
        control the map keys turns as the engine kept it, `current.keep`; the root may shift where bones that turn
        with the pelvis, e.g. a BVH rig's hip joints, move the pelvis); a pinned bone below the root keeps its own
        place on its parent."""
        obj, root = self.obj, self.write["root"]
        now = posing.channel_values(obj, self.mapped, solved.get("rotation_modes", {}))
        pose = plan.keys_of_pose(solved, 0, self.mapped, root, now)
        pbs = obj.pose.bones
        for b in self.kept:
            if b != root:
                pbs[b].location = self.saved[b][4]
        for bone, mode in pose["rotation_modes"].items():
            if pbs[bone].rotation_mode != mode:
                pbs[bone].rotation_mode = mode
        for c in pose["channels"]:
            setattr(pbs[c["bone"]], c["path"], c["values"][0])
        # Blender's redraw evaluates it; the controls the map keys were turned by us, not by the animator.
        self.seen.update({b: posing.basis_values(pbs[b]) for b in self.kept})
        self._shown = True
        self.shown, self.reply = pose, solved

    def settle(self, timeout: float = SETTLE_S) -> None:
        """Tick until the rig shows the answer to the newest move (Enter, scripts)."""
        deadline = time.monotonic() + timeout
        while not self.tick():
            if time.monotonic() > deadline:
                raise EngineError(f"the engine did not answer Auto Pose within {timeout:.0f} s")
            self.slot.wait_any(0.05)

    def key(self) -> str:
        """Enter: key the pose shown at the current frame, the controls where they were put, the map's switches;
        every other key stays bit for bit (rig_io.write_keys)."""
        self.settle()
        obj = self.obj
        pbs = obj.pose.bones
        channels, modes = [], {}
        for b in dict.fromkeys(self.mapped + list(self.controls)):
            pb = pbs[b]
            path = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(
                pb.rotation_mode, "rotation_euler")
            channels.append({"bone": b, "path": path, "values": [list(getattr(pb, path))]})
            modes[b] = pb.rotation_mode
            if b == self.write["root"] or b not in self.write["bones"]:
                channels.append({"bone": b, "path": "location", "values": [list(pb.location)]})
            if b not in self.write["bones"] and tuple(pb.scale) != self.saved[b][5]:
                channels.append({"bone": b, "path": "scale", "values": [list(pb.scale)]})
        pose = {"frames": 1, "channels": channels, "rotation_modes": modes,
                "properties": self.binding["properties"]}
        rig_io.write_keys(obj, pose, frame_start=bpy.context.scene.frame_current)
        self.end()
        return f"Auto Pose: keyed {len(set(c['bone'] for c in channels))} bone(s) at frame " \
               f"{bpy.context.scene.frame_current}"

    def restore(self) -> None:
        """Esc: every bone's own transform and every switched custom property exactly as they were; no keys."""
        obj = self.obj
        self.slot.close()
        pbs = obj.pose.bones
        for name, values in self.saved.items():
            pb = pbs.get(name)
            if pb is not None and posing.basis_values(pb) != values:
                posing.set_basis(pb, values)
        for bone, name, value in self.saved_props:
            pbs[bone][name] = value
        obj.update_tag()
        bpy.context.view_layer.update()
        self.end()

    def end(self) -> None:
        self.slot.close()
        self.ended = True
        if _sessions.get(self.obj.name) is self:
            del _sessions[self.obj.name]

    def interval(self) -> float:
        return TICK_BUSY if self.slot.busy else TICK_IDLE


def start(obj, spec: dict | None = None, patience: float = 0.25) -> Session:
    """Start Auto Pose on an armature now (scripts and tests; the operator does the same off the main thread's
    critical path): bind the rig, record it and send the first request."""
    spec = spec or engine_spec()
    job = Job(connect_and_bind(obj, spec, obj.gfpose.rig))
    bound = job.run()
    return _begin(obj, bound, patience)


def _begin(obj, bound, patience: float = 0.25) -> Session:
    old = _sessions.get(obj.name)
    if old is not None:
        old.restore()
    session = Session(obj, bound, patience)
    _sessions[obj.name] = session
    return session


def _tick_all():
    """bpy.app.timers: runs even while a transform (G, R) is under way, so the body follows during the drag."""
    if not _sessions:
        return None
    wait = TICK_IDLE
    for s in list(_sessions.values()):
        try:
            s.tick()
            wait = min(wait, s.interval())
        except ReferenceError:          # the armature went away (undo, file load): nothing left to restore
            s.ended = True
            _sessions.pop(next((k for k, v in _sessions.items() if v is s), None), None)
        except Exception as e:          # the engine failed: the rig goes back, the operator reports it
            s.error = e
            try:
                s.restore()
            except ReferenceError:
                s.ended = True
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
    return wait if _sessions else None


class GFPOSE_OT_auto_pose(bpy.types.Operator):
    bl_idname = "gfpose.auto_pose"
    bl_label = "Auto Pose"
    bl_description = ("Drag the hand, foot, torso and head controls (or the bones marked as pins): the rest of the "
                      "body follows. Enter keys the pose, Esc puts the rig back")
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "ARMATURE" and context.mode == "POSE"

    def execute(self, context):
        self.report({"ERROR"}, "Auto Pose is interactive: start it from the 3D View (scripts use auto_pose.start)")
        return {"CANCELLED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        obj = context.active_object
        self._obj_name = obj.name
        self._starting = Job(connect_and_bind(obj, engine_spec(context), obj.gfpose.rig))
        self._session = None
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.02, window=context.window)
        wm.modal_handler_add(self)
        self._starting.start()
        self._status(context, "Auto Pose: reaching the engine... (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if self._session is None:                       # still binding the rig
            if event.type == "ESC" and event.value == "PRESS":
                self._starting.cancel()
                return self._stop(context, {"WARNING"}, "Auto Pose: cancelled, nothing changed")
            if event.type == "TIMER" and self._starting.poll():
                if self._starting.error is not None:
                    return self._stop(context, {"ERROR"}, f"Auto Pose: {self._starting.error}")
                try:
                    self._session = _begin(bpy.data.objects[self._obj_name], self._starting.result)
                except Exception as e:
                    return self._stop(context, {"ERROR"}, f"Auto Pose: {e}")
                if not bpy.app.timers.is_registered(_tick_all):
                    bpy.app.timers.register(_tick_all, first_interval=0.0)
                self._status(context, HINT)
            return {"RUNNING_MODAL"} if self._session is None or event.type == "TIMER" else {"PASS_THROUGH"}
        s = self._session
        if s.error is not None:
            return self._stop(context, {"ERROR"}, f"Auto Pose ended, the rig is as it was: {s.error}")
        if s.ended:
            return self._stop(context, {"WARNING"}, "Auto Pose ended, the rig is as it was")
        if context.scene.frame_current != s.frame:
            s.restore()
            return self._stop(context, {"WARNING"}, "Auto Pose: the frame changed; the rig is as it was, no keys")
        if event.value == "PRESS":
            if event.type in {"ESC", "RIGHTMOUSE"}:
                s.restore()
                return self._stop(context, {"INFO"}, "Auto Pose: the rig is as it was, nothing keyed")
            if event.type in {"RET", "NUMPAD_ENTER"}:
                try:
                    bpy.ops.gfpose.auto_pose_key("EXEC_DEFAULT", True)
                except RuntimeError as e:
                    if not s.ended:
                        s.restore()
                    return self._stop(context, {"ERROR"}, str(e))
                return self._stop(context, {"INFO"}, "Auto Pose: keyed", finished=True)
            if event.type == "Z" and (event.ctrl or event.oskey):
                self._status(context, "Undo waits until Auto Pose ends: " + HINT)
                return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}

    def _stop(self, context, level, message, finished=False):
        context.window_manager.event_timer_remove(self._timer)
        self._status(context, None)
        if level == {"ERROR"}:
            set_status("no engine" if "no engine" in message else "error", context)
        self.report(level, message)
        return {"FINISHED"} if finished else {"CANCELLED"}

    @staticmethod
    def _status(context, text):
        ws = getattr(context, "workspace", None)
        if ws is not None:
            ws.status_text_set(text)


class GFPOSE_OT_auto_pose_key(bpy.types.Operator):
    """Enter in Auto Pose: one undo step holding the keys."""
    bl_idname = "gfpose.auto_pose_key"
    bl_label = "Key Auto Pose"
    bl_description = "Key the pose Auto Pose shows at the current frame (the controls where they were put)"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.name in _sessions

    def execute(self, context):
        s = _sessions[context.active_object.name]
        try:
            message = s.key()
        except Exception as e:
            s.restore()
            self.report({"ERROR"}, f"Auto Pose: {e}; the rig is as it was")
            return {"CANCELLED"}
        self.report({"INFO"}, message)
        return {"FINISHED"}


class GFPOSE_OT_toggle_pin(bpy.types.Operator):
    bl_idname = "gfpose.toggle_pin"
    bl_label = "Pin"
    bl_description = "Drag this bone in Auto Pose (its joints follow it; the body follows them)"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    bone: bpy.props.StringProperty(name="Bone")

    def execute(self, context):
        from .engine_op import binding_for_panel
        obj = context.active_object
        binding = binding_for_panel(obj)
        if binding is None or not binding.get("write"):
            self.report({"ERROR"}, "Detect the rig map first")
            return {"CANCELLED"}
        _, pins = pin_choices(obj, binding)
        set_pins(obj, [b for b in pins if b != self.bone] if self.bone in pins else pins + [self.bone])
        return {"FINISHED"}


classes = (GFPOSE_OT_auto_pose, GFPOSE_OT_auto_pose_key, GFPOSE_OT_toggle_pin)
