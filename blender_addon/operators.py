"""The GFPose operators: Complete Pose, Denoise Action, Fill In-betweens, Generate Variations (and hypotheses, rig
detection).

Each runs headless through `execute` (scripts, tests, redo) and interactively through `invoke` as a modal job: the
engine calls run on a background thread (jobs.py), a progress bar shows, ESC cancels. Nothing in the scene changes
until every engine call has answered, so an error or a cancel leaves the file as it was; a finished run is one undo
step. Poses go to the engine as body24 joints read through the rig map's binding (/bind), and come back as keys
(/pose_for_rig), written by rig_io.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bpy
import numpy as np

from . import posing, rig_io
from .engine_client import EngineError
from .jobs import Call, Cancelled, Job
from .preferences import connect, describe_info, engine_spec, ready, set_status

ADDON_DIR = Path(__file__).resolve().parent

# --- rig maps: the chooser and the per-armature binding cache -------------------------------------------------------

_rig_items_cache: list = []


def rig_map_names() -> list[str]:
    """Rig map names shipped with the add-on (rigs/ in the installed extension) or in the repository's rigs/."""
    names = set()
    for folder in (ADDON_DIR / "rigs", ADDON_DIR.parent / "gfpose_core" / "rigs" / "maps"):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def _rig_items(self, context):
    # Blender keeps only pointers to these strings: the list must outlive the call.
    if not _rig_items_cache:
        _rig_items_cache.append(("AUTO", "Auto-detect", "Detect the rig map from the bone names"))
        _rig_items_cache.extend((n, n, f"rigs/{n}.toml") for n in rig_map_names())
    return _rig_items_cache


_bindings: dict[tuple, dict] = {}     # (object, rig choice, armature signature) -> /bind reply
_last_binding: dict[str, dict] = {}   # object name -> the latest binding (for the panel)


def _signature(desc: dict) -> str:
    h = hashlib.sha1()
    for b in desc["bones"]:
        h.update(json.dumps([b["name"], b["parent"], np.round(b["matrix_local"], 6).tolist()]).encode())
    return h.hexdigest()


def binding_for_panel(obj) -> dict | None:
    return _last_binding.get(obj.name_full) if obj is not None else None


def clear_bindings():
    _bindings.clear()
    _last_binding.clear()


MOTION_MODEL_TIP = ("Clean with the temporal (motion) model, which sees windows of frames (about two seconds) "
                    "at once, rather than each pose on its own")


class GFPoseObjectSettings(bpy.types.PropertyGroup):
    rig: bpy.props.EnumProperty(name="Rig Map", items=_rig_items,
                                description="Which rigs/*.toml maps this armature to body24")
    hypotheses: bpy.props.StringProperty(name="Hypotheses", default="",
                                         description="Completions waiting to be cycled or accepted (JSON)")
    hypothesis: bpy.props.IntProperty(name="Hypothesis", default=0, min=0)


class GFPoseSceneSettings(bpy.types.PropertyGroup):
    frames: bpy.props.EnumProperty(
        name="Frames", default="CURRENT",
        items=[("CURRENT", "Current Frame", "Complete the pose at the current frame"),
               ("RANGE", "Keyframes in Range", "Complete the pose at every keyframe between start and end")])
    known_from: bpy.props.EnumProperty(
        name="Keep", default="KEYED",
        items=[("KEYED", "Keyed Bones", "The bones keyed at the frame are what the animator posed"),
               ("SELECTED", "Selected Bones", "The selected bones are what the animator posed")])
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    n_hypotheses: bpy.props.IntProperty(name="Hypotheses", default=1, min=1, max=16,
                                        description="Completions to cycle through before accepting one")
    auto_strength: bpy.props.BoolProperty(name="Auto Strength", default=True,
                                          description="Let the engine judge how noisy the take is")
    strength: bpy.props.FloatProperty(name="Strength", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    use_motion_model: bpy.props.BoolProperty(name="Motion Model", default=True, description=MOTION_MODEL_TIP)
    use_action_range: bpy.props.BoolProperty(name="Whole Action", default=True)
    n_variations: bpy.props.IntProperty(name="Variations", default=4, min=1, max=64)
    diversity: bpy.props.FloatProperty(name="Diversity", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="0: a new draw every time")


# --- the parts every operator shares --------------------------------------------------------------------------------

def _connect_and_bind(obj, spec: dict, rig_choice: str, progress: float = 0.1):
    """Job steps: the engine client, the binding (cached per armature) and the armature described with the rig
    map's switches set (e.g. Rigify limbs in FK), as /pose_for_rig needs it. Changes nothing in the scene."""
    client = ready(spec)
    if client is None:      # starting the engine takes seconds: off the main thread
        client = yield Call(connect, spec, progress=0.02, label="Starting the engine")
    desc = rig_io.describe_armature(obj)
    rig = None if rig_choice in ("", "AUTO") else rig_choice
    key = (obj.name_full, rig, _signature(desc))
    binding = _bindings.get(key)
    if binding is None:
        binding = yield Call(client.post, "/bind", {"armature": desc, "rig": rig}, progress=progress,
                             label="Matching the rig map")
        _bindings[key] = binding
    _last_binding[obj.name_full] = binding
    if not binding.get("can_write") or not binding.get("write"):
        raise ValueError(f"rig map '{binding.get('rig')}' reads poses but has no [write] table to key this rig")
    return client, binding, described_with_switches(obj, binding["properties"], desc)


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


def _joints_payload(joints: np.ndarray, known) -> list:
    out = []
    for pose, kn in zip(joints, known):
        out.append([[float(x) for x in p] if k else [None, None, None] for p, k in zip(pose, kn)])
    return out


def _jitter_mm(take: np.ndarray) -> float:
    """Mean size of the second difference of every joint, mm per frame^2 (what jitter adds to a smooth take)."""
    t = np.asarray(take, dtype=np.float64)
    if len(t) < 3:
        return 0.0
    return float(np.linalg.norm(t[2:] - 2 * t[1:-1] + t[:-2], axis=-1).mean() * 1000)


class _EngineOperator:
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


# --- Complete Pose ---------------------------------------------------------------------------------------------------

class GFPOSE_OT_complete_pose(_EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.complete_pose"
    bl_label = "Complete Pose"
    bl_description = ("Fill in the bones you did not pose with a plausible pose, keeping what you posed exactly "
                      "(keys only the other mapped bones)")

    frames: bpy.props.EnumProperty(
        name="Frames", default="CURRENT",
        items=[("CURRENT", "Current Frame", ""), ("RANGE", "Keyframes in Range", "")])
    known_from: bpy.props.EnumProperty(
        name="Keep", default="KEYED",
        items=[("KEYED", "Keyed Bones", "Bones keyed at the frame"), ("SELECTED", "Selected Bones", "")])
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    n_hypotheses: bpy.props.IntProperty(name="Hypotheses", default=1, min=1, max=16)
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="0: a new draw every time")

    def steps(self, obj, spec, scene):
        client, binding, desc = yield from _connect_and_bind(obj, spec, obj.gfpose.rig)
        write = binding["write"]
        cur = scene.frame_current
        if self.frames == "RANGE":
            frames = posing.key_frames(obj, self.frame_start, self.frame_end)
            if not frames:
                raise ValueError(f"no keyframes between frames {self.frame_start} and {self.frame_end}")
        else:
            frames = [cur]
        entries, joints, known, rootless = [], [], [], False
        selected = posing.selected_bones(obj) if self.known_from == "SELECTED" else None
        try:
            for f in frames:
                if self.frames == "RANGE":
                    scene.frame_set(f)
                posed = selected if selected is not None else posing.keyed_bones(obj, f)
                kn = posing.known_joints(write, posed)
                bones = posing.bones_to_key(write, posed, kn)
                if not any(kn) or not bones:
                    rootless = rootless or (not kn[0] and bool(posed & set(write["bones"])))
                    continue
                entries.append((f, posed, bones))
                joints.append(rig_io.read_body24(obj, binding)[0])
                known.append(kn)
        finally:
            if self.frames == "RANGE":
                scene.frame_set(cur)
        if not entries:
            what = "selected" if selected is not None else "keyed"
            if rootless:
                raise ValueError(f"nothing to complete: the root bone '{write['root']}' is not {what}; the posed "
                                 "joints are the ones your bones fix from the root down, so pose the root too")
            mapped = ", ".join(sorted(write["bones"])[:8])
            raise ValueError(f"nothing to complete: no frame has some but not all of the mapped bones {what} "
                             f"(mapped bones include {mapped} ...)")
        h = self.n_hypotheses
        reply = yield Call(client.post, "/complete",
                           {"joints": _joints_payload(np.array(joints), known), "n_hypotheses": h,
                            "seed": self.seed or None}, progress=0.35, label="Completing")
        done = np.asarray(reply["joints"], dtype=np.float64).reshape(len(entries) * h, 24, 3)
        solved = yield Call(client.post, "/pose_for_rig",
                            {"armature": desc, "joints": done.tolist(), "rig": binding["rig"], "root_scale": 1.0},
                            progress=0.7, label="Solving the rig")
        # Everything answered: now the scene changes (one undo step).
        rig_io.apply_properties(obj, solved.get("properties", []))
        stored, keyed = [], 0
        try:
            for i, (f, posed, bones) in enumerate(entries):
                if self.frames == "RANGE":
                    scene.frame_set(f)
                saved = {b: posing._save_basis(obj.pose.bones[b]) for b in bones}
                per_h = []
                for k in reversed(range(h)):      # hypothesis 0 last: it is what the armature shows
                    if k != h - 1:
                        for b, s in saved.items():
                            posing._load_basis(obj.pose.bones[b], s)
                    per_h.append(posing.solved_keys(obj, solved, i * h + k, bones, write["root"]))
                per_h.reverse()
                rig_io.write_keys(obj, per_h[0], frame_start=f)
                keyed += len(bones)
                stored.append({"frame": f, "keys": per_h})
        finally:
            if self.frames == "RANGE":
                scene.frame_set(cur)
        obj.gfpose.hypotheses = json.dumps({"entries": stored}) if h > 1 else ""
        obj.gfpose.hypothesis = 0
        n_known = int(np.sum(known))
        msg = (f"Completed {len(entries)} frame(s) with rig map '{binding['rig']}': kept {n_known} known joint(s), "
               f"keyed {keyed} bone(s)" + (" over those frames" if len(entries) > 1 else ""))
        if h > 1:
            msg += f"; hypothesis 1 of {h} (Cycle to see the others)"
        return msg


def _write_hypothesis(obj, scene, data: dict, index: int):
    for e in data["entries"]:
        keys = e["keys"][index]
        rig_io.write_keys(obj, keys, frame_start=e["frame"])
        if e["frame"] == scene.frame_current:
            posing.set_pose_values(obj, keys)


def _poll_hypotheses(cls, context) -> bool:
    """Cycle and Accept are available while the active armature holds hypotheses from Complete Pose."""
    obj = context.active_object
    return obj is not None and obj.type == "ARMATURE" and bool(obj.gfpose.hypotheses)


class GFPOSE_OT_cycle_hypothesis(bpy.types.Operator):
    bl_idname = "gfpose.cycle_hypothesis"
    bl_label = "Cycle Hypothesis"
    bl_description = "Key the next of the completions Complete Pose proposed"
    bl_options = {"REGISTER", "UNDO"}

    step: bpy.props.IntProperty(name="Step", default=1)

    poll = classmethod(_poll_hypotheses)

    def execute(self, context):
        obj = context.active_object
        try:
            data = json.loads(obj.gfpose.hypotheses)
            n = len(data["entries"][0]["keys"])
            index = (obj.gfpose.hypothesis + self.step) % n
            _write_hypothesis(obj, context.scene, data, index)
        except (ValueError, KeyError, IndexError) as e:
            self.report({"ERROR"}, f"Cycle Hypothesis: {e}")
            return {"CANCELLED"}
        obj.gfpose.hypothesis = index
        self.report({"INFO"}, f"hypothesis {index + 1} of {n}")
        return {"FINISHED"}


class GFPOSE_OT_accept_hypothesis(bpy.types.Operator):
    bl_idname = "gfpose.accept_hypothesis"
    bl_label = "Accept"
    bl_description = "Keep the hypothesis now keyed and forget the others"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(_poll_hypotheses)

    def execute(self, context):
        obj = context.active_object
        obj.gfpose.hypotheses = ""
        obj.gfpose.hypothesis = 0
        return {"FINISHED"}


# --- Denoise Action ------------------------------------------------------------------------------------------------

def _action_of(obj, what: str):
    ad = obj.animation_data
    action = ad.action if ad is not None else None
    if action is None:
        raise ValueError(f"'{obj.name}' has no action to {what}")
    return action


def _solve_on_rig(client, desc: dict, binding: dict, joints: np.ndarray):
    """body24 joints of a take -> the rig's channels for every frame (the engine's /pose_for_rig)."""
    return (yield Call(client.post, "/pose_for_rig",
                       {"armature": desc, "joints": joints.tolist(), "rig": binding["rig"], "root_scale": 1.0},
                       progress=0.7, label="Solving the rig"))


def _keys_into_copy(obj, action, suffix: str, solved: dict, start: int, scene):
    """The last step, once every engine call has answered: a new action '<name><suffix>', a copy of the original
    (so the channels the map does not key stay), with the mapped bones' keys replaced from `start` on, assigned to
    the object. The original is never written to; a failure removes the copy and puts the original back."""
    new = action.copy()
    new.name = f"{action.name}{suffix}"
    try:
        rig_io.write_keys(obj, solved, frame_start=start, action=new)
    except Exception:
        if obj.animation_data.action == new:
            obj.animation_data.action = action
        bpy.data.actions.remove(new)
        raise
    scene.frame_set(scene.frame_current)
    return new


class GFPOSE_OT_denoise_action(_EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.denoise_action"
    bl_label = "Denoise Action"
    bl_description = ("Clean a noisy take (jitter, spikes, dropouts) into a new action '<name>_denoised'; the "
                      "original action is kept as it is")

    use_action_range: bpy.props.BoolProperty(name="Whole Action", default=True)
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    auto_strength: bpy.props.BoolProperty(name="Auto Strength", default=True)
    strength: bpy.props.FloatProperty(name="Strength", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    use_motion_model: bpy.props.BoolProperty(name="Motion Model", default=True, description=MOTION_MODEL_TIP)

    def steps(self, obj, spec, scene):
        action = _action_of(obj, "denoise")
        if self.use_action_range:
            start, end = (int(round(x)) for x in action.frame_range)
        else:
            start, end = self.frame_start, self.frame_end
        if end - start < 2:
            raise ValueError(f"frames {start}..{end}: a take needs at least 3 frames to denoise")
        client, binding, desc = yield from _connect_and_bind(obj, spec, obj.gfpose.rig)
        take = rig_io.read_body24(obj, binding, frames=range(start, end + 1))
        fps = scene.render.fps / scene.render.fps_base
        reply = yield Call(client.post, "/denoise",
                           {"take": take.tolist(), "fps": fps,
                            "strength": None if self.auto_strength else self.strength,
                            "temporal": bool(self.use_motion_model)},
                           progress=0.3, label=f"Denoising {len(take)} frames")
        clean = np.asarray(reply["joints"], dtype=np.float64)
        solved = yield from _solve_on_rig(client, desc, binding, clean)
        new = _keys_into_copy(obj, action, "_denoised", solved, start, scene)
        how = "with the motion model" if self.use_motion_model else "pose by pose"
        return (f"Denoised frames {start}..{end} {how} into action '{new.name}' (jitter {_jitter_mm(take):.1f} -> "
                f"{_jitter_mm(clean):.1f} mm/frame^2); '{action.name}' is unchanged")


# --- Fill In-betweens ---------------------------------------------------------------------------------------------

# The motion model sees 64 frames at 30 fps at once, so the frames between two keys must fit in one window with both
# keys (the engine refuses wider gaps, naming frames of the take it was sent; this says it in the scene's frames).
MOTION_FPS = 30.0
MAX_KEY_GAP = 63    # motion-model frames from one key to the next


def _check_key_gaps(frames: list[int], fps: float) -> None:
    """Refuse keys too far apart for the motion model, naming the scene frames (the engine's own message counts
    frames of the take it was sent, at its own rate)."""
    at_rate = [round((f - frames[0]) * MOTION_FPS / fps) for f in frames]
    for (a, b), (ra, rb) in zip(zip(frames, frames[1:]), zip(at_rate, at_rate[1:])):
        if rb - ra > MAX_KEY_GAP:
            raise ValueError(f"keys on frames {a} and {b} are {(b - a) / fps:.2f} s apart: the motion model fills "
                             f"at most {MAX_KEY_GAP / MOTION_FPS:.1f} s ({MAX_KEY_GAP - 1} frames at "
                             f"{MOTION_FPS:.0f} fps) between keys; select a key between them")


def _fill_frames(obj, mapped: set[str] | None) -> list[int]:
    """The frames of the selected keyframes of the mapped bones (None: of any bone, a first check before the map is
    known): at least two, and with the mapped bones a frame to fill between them."""
    frames = posing.selected_key_frames(obj, mapped)
    whose = "of the mapped bones " if mapped is not None else ""
    if len(frames) < 2:
        found = f"only frame {frames[0]} has one" if frames else "none are selected"
        raise ValueError(f"select keyframes {whose}on at least two frames to fill between them ({found})")
    if mapped is not None and frames[-1] - frames[0] + 1 == len(frames):
        raise ValueError(f"nothing to fill: the selected keyframes are on every frame {frames[0]}..{frames[-1]}")
    return frames


class GFPOSE_OT_fill_inbetweens(_EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.fill_inbetweens"
    bl_label = "Fill In-betweens"
    bl_description = ("Fill the frames between the selected keyframes with plausible motion, into a new action "
                      "'<name>_inbetween' keyed on every frame from the first selected key to the last (the mapped "
                      "bones' other keys there are replaced, the selected keys keep their values); the original "
                      "action is kept as it is")

    lock_feet: bpy.props.BoolProperty(name="Keep Feet Planted", default=True,
                                      description="A foot resting in the same place at two keys stays there "
                                                  "between them")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="0: a new draw every time")

    def steps(self, obj, spec, scene):
        action = _action_of(obj, "fill")
        _fill_frames(obj, None)          # the selection is wrong whatever the map: say so before the engine starts
        client, binding, desc = yield from _connect_and_bind(obj, spec, obj.gfpose.rig)
        write = binding["write"]
        keys = _fill_frames(obj, set(write["bones"]) | {write["root"]})
        fps = scene.render.fps / scene.render.fps_base
        _check_key_gaps(keys, fps)
        first, last = keys[0], keys[-1]
        take = np.full((last - first + 1, 24, 3), np.nan)
        take[np.array(keys) - first] = rig_io.read_body24(obj, binding, frames=keys)
        known = np.isfinite(take).all(-1)
        reply = yield Call(client.post, "/inbetween",
                           {"take": _joints_payload(take, known), "fps": fps, "seed": self.seed or None,
                            "lock_feet": bool(self.lock_feet)},
                           progress=0.3, label=f"Filling {len(take) - len(keys)} frames between {len(keys)} keys")
        filled = np.asarray(reply["joints"], dtype=np.float64)
        solved = yield from _solve_on_rig(client, desc, binding, filled)
        # The solve lands within millimetres of the keyed poses, not on them: the animator's keys stay as they
        # were set (their own values, read from the original action), the frames between agree with them in sign.
        solved = rig_io.keep_key_values(solved, np.array(keys) - first, rig_io.key_values(obj, action, solved, keys))
        new = _keys_into_copy(obj, action, "_inbetween", solved, first, scene)
        return (f"Filled {len(take) - len(keys)} frames between the keys on frames {', '.join(map(str, keys))} "
                f"into action '{new.name}' (keyed {first}..{last}); '{action.name}' is unchanged")


# --- Generate Variations -----------------------------------------------------------------------------------------

class GFPOSE_OT_generate_variations(_EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.generate_variations"
    bl_label = "Generate Variations"
    bl_description = ("Key variations of the current pose on the frames after this one, keeping the selected "
                      "bones' joints in place")

    n_variations: bpy.props.IntProperty(name="Variations", default=4, min=1, max=64)
    diversity: bpy.props.FloatProperty(name="Diversity", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="0: a new draw every time")

    def steps(self, obj, spec, scene):
        client, binding, desc = yield from _connect_and_bind(obj, spec, obj.gfpose.rig)
        write = binding["write"]
        mapped = set(write["bones"]) | {write["root"]}
        fixed = posing.selected_bones(obj) & mapped
        pinned = posing.joints_from_posed_bones(write, fixed)
        around = rig_io.read_body24(obj, binding)[0]
        reply = yield Call(client.post, "/generate",
                           {"n": self.n_variations, "around": around.tolist(), "pinned": pinned or None,
                            "diversity": self.diversity, "seed": self.seed or None},
                           progress=0.3, label=f"Generating {self.n_variations} variations")
        poses = np.asarray(reply["joints"], dtype=np.float64)
        solved = yield Call(client.post, "/pose_for_rig",
                            {"armature": desc, "joints": poses.tolist(), "rig": binding["rig"], "root_scale": 1.0},
                            progress=0.7, label="Solving the rig")
        # Everything answered: key the current pose (where not keyed yet) and the variations after it.
        cur = scene.frame_current
        pbs = obj.pose.bones
        bones = [b for b in dict.fromkeys(list(write["bones"]) + [write["root"]]) if b not in fixed]
        rig_io.apply_properties(obj, solved.get("properties", []))
        saved = {b: posing._save_basis(pbs[b]) for b in mapped}
        per_frame = []
        try:
            for k in range(len(poses)):
                per_frame.append(posing.solved_keys(obj, solved, k, bones, write["root"]))
                for b, s in saved.items():
                    posing._load_basis(pbs[b], s)
        finally:
            for b, s in saved.items():
                posing._load_basis(pbs[b], s)
        bpy.context.view_layer.update()
        # The pinned bones keep their values; every mapped bone gets a key now, so that this frame stays as it is.
        now = {}
        for b in mapped:
            pb = pbs[b]
            mode = pb.rotation_mode
            path = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode,
                                                                                                 "rotation_euler")
            now[(b, path)] = list(getattr(pb, path))
            if b == write["root"] or b in fixed:
                now[(b, "location")] = list(pb.location)
        channels: dict[tuple[str, str], list] = {}
        for keys in per_frame:
            got = {(c["bone"], c["path"]): c["values"][0] for c in keys["channels"]}
            for (b, path), v in now.items():
                if b in fixed:
                    channels.setdefault((b, path), []).append(v)
            for (b, path), v in got.items():
                channels.setdefault((b, path), []).append(v)
        modes = {b: pbs[b].rotation_mode for b in fixed} | per_frame[0]["rotation_modes"]
        variations = {"frames": len(per_frame), "rotation_modes": modes,
                      "properties": solved.get("properties", []),
                      "channels": [{"bone": b, "path": p, "values": v} for (b, p), v in channels.items()]}
        keyed_now = posing.keyed_bones(obj, cur)
        unkeyed_now = [(b, p) for (b, p) in now if b not in keyed_now]
        rig_io.write_keys(obj, variations, frame_start=cur + 1)
        if unkeyed_now:
            current = {"frames": 1, "rotation_modes": {},
                       "channels": [{"bone": b, "path": p, "values": [now[(b, p)]]} for b, p in unkeyed_now]}
            rig_io.write_keys(obj, current, frame_start=cur)
        return (f"Keyed {len(per_frame)} variation(s) on frames {cur + 1}..{cur + len(per_frame)} with rig map "
                f"'{binding['rig']}'" + (f", pinned {', '.join(pinned)}" if pinned else ", nothing pinned"))


# --- rig detection and connection, for the panel ---------------------------------------------------------------

class GFPOSE_OT_detect_rig(_EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.detect_rig"
    bl_label = "Detect Rig Map"
    bl_description = "Ask the engine which rig map fits the active armature (kept for this armature)"
    bl_options = {"REGISTER"}

    def steps(self, obj, spec, scene):
        for key in [k for k in _bindings if k[0] == obj.name_full]:
            del _bindings[key]
        client, binding, _ = yield from _connect_and_bind(obj, spec, obj.gfpose.rig)
        info = yield Call(client.info, progress=0.9, label="Asking the engine")
        set_status(describe_info(info))
        n_read, n_keyed = len(binding["bones"]), len(binding["write"]["bones"])
        return f"rig map '{binding['rig']}' ({n_read} bones read, {n_keyed} keyed)"


classes = (GFPoseObjectSettings, GFPoseSceneSettings, GFPOSE_OT_complete_pose, GFPOSE_OT_cycle_hypothesis,
           GFPOSE_OT_accept_hypothesis, GFPOSE_OT_denoise_action, GFPOSE_OT_fill_inbetweens,
           GFPOSE_OT_generate_variations, GFPOSE_OT_detect_rig)


def register_properties():
    bpy.types.Object.gfpose = bpy.props.PointerProperty(type=GFPoseObjectSettings)
    bpy.types.Scene.gfpose = bpy.props.PointerProperty(type=GFPoseSceneSettings)


def unregister_properties():
    del bpy.types.Scene.gfpose
    del bpy.types.Object.gfpose
    clear_bindings()
