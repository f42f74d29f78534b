"""What the operators read and write on the armature beyond rig_io: which bones the animator keyed or selected, and
keys for the other bones that land exactly where the engine's solve put them, under the animator's own bones
(which joints that makes known is decided in plan.py, without Blender).

bpy + numpy + the standard library only (the engine is reached over HTTP by the operators).
"""
from __future__ import annotations

import bpy
import numpy as np

from . import anim_compat, rig_io
from .plan import bone_of_path

_TRANSFORM_PATHS = ("rotation_quaternion", "rotation_euler", "rotation_axis_angle", "location", "scale")


# --- what the animator posed --------------------------------------------------------------------------------------

def channelbag(obj):
    """F-curves of the action slot that animates the object, or None."""
    return anim_compat.channelbag(obj)


def keyframe_frames(fc) -> np.ndarray:
    co = np.empty(len(fc.keyframe_points) * 2, dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co[0::2]


def keyed_bones(obj, frame: float | None = None) -> set[str]:
    """Bones with a transform key at `frame` (None: at any frame) in the object's active action."""
    bag = channelbag(obj)
    out: set[str] = set()
    if bag is None:
        return out
    for fc in bag.fcurves:
        hit = bone_of_path(fc.data_path)
        if hit is None or hit[1] not in _TRANSFORM_PATHS or hit[0] in out:
            continue
        frames = keyframe_frames(fc)
        if len(frames) and (frame is None or np.any(np.abs(frames - frame) < 0.5)):
            out.add(hit[0])
    return out


def key_frames(obj, start: float, end: float) -> list[int]:
    """Frames (whole numbers) between start and end where any bone of the object has a transform key."""
    bag = channelbag(obj)
    found: set[int] = set()
    if bag is not None:
        for fc in bag.fcurves:
            hit = bone_of_path(fc.data_path)
            if hit is None or hit[1] not in _TRANSFORM_PATHS:
                continue
            f = keyframe_frames(fc)
            found.update(int(round(x)) for x in f[(f >= start - 0.5) & (f <= end + 0.5)])
    return sorted(found)


def selected_key_frames(obj, bones=None) -> list[int]:
    """Whole frames holding a selected keyframe (its control point) on a transform channel of `bones` (None: any
    bone) in the object's active action: the keys the animator picked in the Dope Sheet or Graph Editor."""
    bag = channelbag(obj)
    found: set[int] = set()
    if bag is None:
        return []
    for fc in bag.fcurves:
        hit = bone_of_path(fc.data_path)
        if hit is None or hit[1] not in _TRANSFORM_PATHS or (bones is not None and hit[0] not in bones):
            continue
        picked = np.zeros(len(fc.keyframe_points), dtype=bool)
        fc.keyframe_points.foreach_get("select_control_point", picked)
        found.update(int(round(x)) for x in keyframe_frames(fc)[picked])
    return sorted(found)


def selected_bones(obj) -> set[str]:
    out = set()
    for pb in obj.pose.bones:
        if anim_compat.is_selected(pb):
            out.add(pb.name)
    return out


def set_selected(obj, names) -> None:
    names = set(names)
    for pb in obj.pose.bones:
        anim_compat.set_selected(pb, pb.name in names)


# --- the pose the rig has now, for the engine to edit ---------------------------------------------------------------

def current_pose(obj, joints: np.ndarray, bones, frames=None) -> dict:
    """/pose_for_rig's `current`: the body24 joints read off the rig (F, 24, 3) and the armature-space orientation
    (F, 3, 3) of each of `bones` as evaluated at `frames` (None: now), scale taken out."""
    names = [b.name for b in obj.data.bones]
    cols = [names.index(b) for b in bones]
    mats = rig_io.read_pose_matrices(obj, frames)[:, cols, :3, :3]
    mats = mats / np.maximum(np.linalg.norm(mats, axis=-2, keepdims=True), 1e-12)
    return {"joints": np.asarray(joints, dtype=np.float64).tolist(),
            "rotations": {b: mats[:, i].tolist() for i, b in enumerate(bones)}}


def has_twist(obj, bone: str) -> bool:
    """Whether a bone's rotation is other than its rest (a pose of its own, with a twist to keep)."""
    pb = obj.pose.bones[bone]
    return pb.matrix_basis.to_quaternion().angle > 1e-4


# --- the engine's keys, keyed as they come -----------------------------------------------------------------------

def _rotation_path(mode: str) -> str:
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode, "rotation_euler")


def basis_values(pb) -> tuple:
    """A pose bone's own transform as it stands: (rotation mode, quaternion, Euler, axis-angle, location, scale)."""
    return (pb.rotation_mode, tuple(pb.rotation_quaternion), tuple(pb.rotation_euler),
            tuple(pb.rotation_axis_angle), tuple(pb.location), tuple(pb.scale))


def ancestors(obj, bones) -> set[str]:
    """Every bone above any of `bones` in the armature's hierarchy (the bones themselves included)."""
    out = set()
    for name in bones:
        bone = obj.data.bones.get(name)
        while bone is not None and bone.name not in out:
            out.add(bone.name)
            bone = bone.parent
    return out


def channel_values(obj, bones, modes: dict) -> dict[tuple[str, str], list[float]]:
    """{(bone, path): values} the bones hold now, for the rotation path of the mode they will be keyed in
    (`modes`, the engine's; else their own) and location."""
    out = {}
    for b in bones:
        pb = obj.pose.bones[b]
        path = _rotation_path(modes.get(b, pb.rotation_mode))
        out[(b, path)] = list(getattr(pb, path))
        out[(b, "location")] = list(pb.location)
    return out


def set_pose_values(obj, pose: dict, k: int = 0) -> None:
    """Show frame k of a write_keys pose dict on the armature now (the keys hold it on later frame changes)."""
    pbs = obj.pose.bones
    for bone, mode in pose.get("rotation_modes", {}).items():
        if pbs[bone].rotation_mode != mode:
            pbs[bone].rotation_mode = mode
    for c in pose["channels"]:
        setattr(pbs[c["bone"]], c["path"], c["values"][k])
    bpy.context.view_layer.update()


# --- snapshots (tests, undo-safety checks) ----------------------------------------------------------------------------

def fcurve_snapshot(obj, action=None) -> dict:
    """Every F-curve of the object's action slot (or of `action`'s slot for the object): keyframe co, handles and
    interpolation as exact float32/int arrays, by (data path, index)."""
    bag = channelbag(obj) if action is None else anim_compat.channelbag_of(obj, action)
    out = {}
    if bag is None:
        return out
    for fc in bag.fcurves:
        n = len(fc.keyframe_points)
        arrays = []
        for prop, width, dtype in (("co", 2, np.float32), ("handle_left", 2, np.float32),
                                   ("handle_right", 2, np.float32), ("interpolation", 1, np.int32)):
            a = np.empty(n * width, dtype=dtype)
            fc.keyframe_points.foreach_get(prop, a)
            arrays.append(a)
        out[(fc.data_path, fc.array_index)] = arrays
    return out
