"""Complete Pose: the animator poses some bones of a keyframe, the engine fills in the rest; several hypotheses can
be cycled and one accepted."""
from __future__ import annotations

import json

import bpy
import numpy as np

from . import plan, posing, rig_io
from .engine_op import EngineOperator, connect_and_bind, solve_on_rig
from .jobs import Call


class GFPOSE_OT_complete_pose(EngineOperator, bpy.types.Operator):
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
    move_root: bpy.props.BoolProperty(
        name="Move Root", default=False,
        description="Let the completion move and turn the root bone when you did not pose it (off: an unposed root "
                    "stays where it is and counts as posed)")

    def steps(self, obj, spec, scene):
        bound = yield from connect_and_bind(obj, spec, obj.gfpose.rig)
        binding, write, sk = bound.binding, bound.write, bound.skeleton
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
                posed = plan.with_root(write, selected if selected is not None else posing.keyed_bones(obj, f),
                                       self.move_root)
                kn = plan.known_joints(sk, write, posed)
                bones = plan.bones_to_key(sk, write, posed, kn)
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
                                 "joints are the ones your bones fix from the root down, so pose the root too (or "
                                 "turn Move Root off)")
            mapped = ", ".join(sorted(write["bones"])[:8])
            raise ValueError(f"nothing to complete: no frame has some but not all of the mapped bones {what} "
                             f"(mapped bones include {mapped} ...)")
        h = self.n_hypotheses
        reply = yield Call(bound.client.post, "/complete",
                           {"joints": plan.joints_payload(np.array(joints), known), "n_hypotheses": h,
                            "seed": self.seed or None}, progress=0.35, label="Completing")
        done = np.asarray(reply["joints"], dtype=np.float64).reshape(len(entries) * h, len(sk.names), 3)
        solved = yield from solve_on_rig(bound, done, current=_current(obj, scene, entries, joints, write, h,
                                                                      self.frames == "RANGE"))
        # Everything answered: now the scene changes (one undo step).
        rig_io.apply_properties(obj, solved.get("properties", []))
        stored, keyed = [], 0
        try:
            for i, (f, posed, bones) in enumerate(entries):
                if self.frames == "RANGE":
                    scene.frame_set(f)
                now = posing.channel_values(obj, bones, solved.get("rotation_modes", {}))
                per_h = [plan.keys_of_pose(solved, i * h + k, bones, write["root"], now) for k in range(h)]
                rig_io.write_keys(obj, per_h[0], frame_start=f)
                if f == cur:
                    posing.set_pose_values(obj, per_h[0])
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


def _current(obj, scene, entries, joints, write, h: int, move: bool) -> dict:
    """The pose the rig has on the completed frames, for the engine to edit (one row per hypothesis): the posed
    bones and every mapped bone with a rotation of its own on every frame keep their twist; a bone at rest has none
    to keep, and the engine solves it afresh (its twist from the body's own landmarks). The posed bones, and the
    bones above the mapped ones that the map does not key but that are posed off rest, stay exactly as they are
    (`keep`), so the engine solves the other bones under the rig's real parents and its keys are keyed as they are."""
    cur = scene.frame_current
    mapped = set(write["bones"])
    above = posing.ancestors(obj, mapped) - mapped
    own, keep = None, {}
    try:
        for i, (f, posed, _) in enumerate(entries):
            if move:
                scene.frame_set(f)
            mine = {b for b in mapped if b in posed or posing.has_twist(obj, b)}
            own = mine if own is None else own & mine
            for b in set(posed) | {b for b in above if posing.has_twist(obj, b)}:
                keep.setdefault(b, [False] * len(entries))[i] = True
    finally:
        if move:
            scene.frame_set(cur)
    bones = sorted(own | set(keep))
    got = posing.current_pose(obj, np.array(joints), bones, frames=[f for f, _, _ in entries] if move else None)
    rows = np.repeat(np.arange(len(entries)), h)
    mats = {b: np.asarray(v)[rows].tolist() for b, v in got["rotations"].items()}
    return {"joints": np.asarray(got["joints"])[rows].tolist(), "rotations": mats,
            "keep": {b: [bool(flags[r]) for r in rows] for b, flags in keep.items()}}


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


classes = (GFPOSE_OT_complete_pose, GFPOSE_OT_cycle_hypothesis, GFPOSE_OT_accept_hypothesis)
