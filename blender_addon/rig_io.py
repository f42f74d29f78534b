"""Blender side of retargeting: describe an armature, read body24 off it, key poses onto it (bpy + numpy only).

The math lives in the engine (gfpose_core.rigs, reached over HTTP): it fits a rig map to the description this
module sends (`describe_armature`), answers with a binding to read body24 with (`read_body24`) and with keys to
write (`write_keys`). Nothing here imports the engine, so the add-on runs in Blender's own Python.

Bulk access throughout: pose matrices come out with foreach_get, keyframes go in with foreach_set, one F-curve per
channel, through anim_compat (slotted actions on 4.4+, an action's own F-curves on 4.2/4.3).
"""
from __future__ import annotations

import time

import bpy
import numpy as np

from . import anim_compat, keys


# --- checks and description ---------------------------------------------------------------------------------------

def check_armature(obj) -> None:
    """Refuse, with a message, what retargeting cannot work with (no crash later on)."""
    if obj is None or getattr(obj, "type", None) != "ARMATURE":
        raise ValueError(f"'{getattr(obj, 'name', obj)}' is not an armature object")
    m = np.array(obj.matrix_world, dtype=np.float64)
    scale = np.linalg.norm(m[:3, :3], axis=0)
    if scale.min() <= 1e-12:
        raise ValueError(f"armature '{obj.name}' has zero scale")
    if scale.max() - scale.min() > 1e-4 * scale.max():
        raise ValueError(f"armature '{obj.name}' has non-uniform scale {tuple(round(float(s), 4) for s in scale)}: "
                         "apply the scale (Ctrl+A > Scale) first, rotations cannot be retargeted through a "
                         "stretched object")
    if np.linalg.det(m[:3, :3]) < 0:
        raise ValueError(f"armature '{obj.name}' is mirrored (negative scale): apply the scale first")


def _matrices(collection, prop: str) -> np.ndarray:
    """A 4x4 matrix property of every item, (N, 4, 4) row-major (foreach_get hands them over column-major)."""
    buf = np.empty(len(collection) * 16, dtype=np.float32)
    collection.foreach_get(prop, buf)
    return buf.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)


def _constraint(obj, c, evaluated) -> dict:
    # Influence as evaluated: drivers (Rigify's IK/FK and follow switches) decide it.
    d = {"name": c.name, "type": c.type, "influence": float(evaluated.influence),
         "enabled": bool(c.enabled) if hasattr(c, "enabled") else not c.mute}
    target = getattr(c, "target", None)
    d["own_armature"] = target is None or target == obj
    d["subtarget"] = getattr(c, "subtarget", "") or ""
    for key in ("owner_space", "target_space", "mix_mode"):
        if hasattr(c, key):
            d[key] = str(getattr(c, key))
    if c.type == "ARMATURE":
        d["targets"] = [[t.subtarget, float(t.weight)] for t in c.targets if t.target == obj]
    return d


def describe_armature(obj) -> dict:
    """The armature as plain data for the engine (gfpose_core.rigs.armature.Armature.from_dict): bones, parents, rest
    matrices in armature space, lengths, rotation modes and constraints as they stand now (after drivers)."""
    check_armature(obj)
    bones = obj.data.bones
    rest = _matrices(bones, "matrix_local")
    lengths = np.empty(len(bones), dtype=np.float32)
    bones.foreach_get("length", lengths)
    pose = obj.pose.bones
    pose_eval = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).pose.bones
    out = []
    for i, b in enumerate(bones):
        pb = pose[b.name]
        cons_eval = pose_eval[b.name].constraints
        out.append({"name": b.name, "parent": b.parent.name if b.parent else None,
                    "matrix_local": rest[i].tolist(), "length": float(lengths[i]),
                    "rotation_mode": pb.rotation_mode, "use_local_location": bool(b.use_local_location),
                    "use_inherit_rotation": bool(b.use_inherit_rotation),
                    "constraints": [_constraint(obj, c, e) for c, e in zip(pb.constraints, cons_eval)]})
    return {"name": obj.name, "matrix_world": np.array(obj.matrix_world, dtype=np.float64).tolist(), "bones": out}


# --- reading ------------------------------------------------------------------------------------------------------

def read_pose_matrices(obj, frames=None) -> np.ndarray:
    """Evaluated pose-bone matrices (armature space, constraints and drivers applied) of every bone, in the order
    of obj.data.bones: (F, B, 4, 4). frames None = the current frame; the scene's frame is restored after."""
    check_armature(obj)
    scene = bpy.context.scene
    order = [obj.pose.bones.find(b.name) for b in obj.data.bones]
    if frames is None:
        bpy.context.view_layer.update()
        return _matrices(obj.pose.bones, "matrix")[order][None]
    frames = list(frames)
    keep = (scene.frame_current, scene.frame_subframe)
    out = np.empty((len(frames), len(order), 4, 4))
    try:
        for k, f in enumerate(frames):
            scene.frame_set(int(f))
            out[k] = _matrices(obj.pose.bones, "matrix")[order]
    finally:
        scene.frame_set(keep[0], subframe=keep[1])
    return out


def read_body24(obj, binding: dict, frames=None) -> np.ndarray:
    """body24 joints (F, 24, 3) in world space from a binding (the engine's `bind_for_rig`): every joint is a
    weighted sum of points fixed in bones. frames None = the current (evaluated) pose."""
    pose = obj.pose.bones
    missing = [b for b in binding["bones"] if b not in pose]
    if missing:
        raise ValueError(f"armature '{obj.name}' has no bone(s) {', '.join(missing)} named by the binding")
    cols = [pose.find(b) for b in binding["bones"]]
    points = np.asarray(binding["points"], dtype=np.float64).reshape(-1, 3)
    weights = np.asarray(binding["weights"], dtype=np.float64)
    scene = bpy.context.scene
    frame_list = [None] if frames is None else list(frames)
    out = np.empty((len(frame_list), weights.shape[0], 3))
    keep = (scene.frame_current, scene.frame_subframe)
    try:
        for k, f in enumerate(frame_list):
            if f is None:
                bpy.context.view_layer.update()
            else:
                scene.frame_set(int(f))
            m = _matrices(pose, "matrix")[cols]
            pts = m[:, :3, 3] + np.einsum("kij,kj->ki", m[:, :3, :3], points)
            world = np.array(obj.matrix_world, dtype=np.float64)   # the object may be animated too
            out[k] = (weights @ pts) @ world[:3, :3].T + world[:3, 3]
    finally:
        if frames is not None:
            scene.frame_set(keep[0], subframe=keep[1])
    return out


# --- writing ------------------------------------------------------------------------------------------------------

def apply_properties(obj, properties) -> list[str]:
    """Set the rig's custom properties a map asks for before keying (e.g. Rigify's IK_FK = 1: limbs to FK), then
    let drivers run so that a fresh `describe_armature` sees their effect. Returns what could not be set."""
    skipped = []
    for p in properties:
        pb = obj.pose.bones.get(p["bone"])
        if pb is None or p["name"] not in pb.keys():
            skipped.append(f"{p['bone']}[\"{p['name']}\"]")
            continue
        pb[p["name"]] = type(pb[p["name"]])(p["value"]) if isinstance(pb[p["name"]], (int, float)) else p["value"]
    obj.update_tag()  # a changed ID property does not tag the rig by itself; drivers must run again
    bpy.context.view_layer.update()
    return skipped


def _set_keys(fc, frames: np.ndarray, values: np.ndarray, interpolation: int | None = None,
              clear_between: bool = False) -> None:
    """Key one F-curve at `frames`, changing only the keys it writes (keys.set_keys)."""
    keys.set_keys(fc, frames, values, interpolation, clear_between=clear_between)


def write_keys(obj, pose: dict, frame_start: int = 1, action=None, interpolation: str | None = None):
    """Key a pose or a take (the engine's `pose_for_rig` / RigPose.to_dict) onto the armature, in bulk.

    action: an Action or its name to write into (created if needed), None = the object's current action or a new
    one. Only the written keys change: a key already on a written frame takes the new value (keeping its handle
    types, interpolation, easing and key type), other frames get new keys with `interpolation` (None: the user's
    Preferences > Animation default) and the user's default handle type, and every other key stays bit for bit. The rig's
    custom properties the map asks for (IK/FK switches) are set and keyed as constants over the range. Returns the
    action."""
    check_armature(obj)
    channels = pose["channels"]
    n_frames = int(pose.get("frames") or len(channels[0]["values"]))
    frames = (frame_start + np.arange(n_frames)).astype(np.float32)
    missing = sorted({c["bone"] for c in channels if c["bone"] not in obj.pose.bones})
    if missing:
        raise ValueError(f"armature '{obj.name}' has no bone(s) {', '.join(missing)} to key")
    for bone, mode in pose.get("rotation_modes", {}).items():
        pb = obj.pose.bones[bone]
        if pb.rotation_mode != mode:
            pb.rotation_mode = mode  # keys are only seen through the bone's own rotation mode
    props = pose.get("properties", [])
    apply_properties(obj, props)

    if isinstance(action, str):
        action = bpy.data.actions.get(action) or bpy.data.actions.new(action)
    ad = obj.animation_data or obj.animation_data_create()
    if action is None:
        action = ad.action or bpy.data.actions.new(f"{obj.name} gfpose")
    bag = anim_compat.ensure_channelbag(obj, action)
    code = None if interpolation is None else keys.interpolation_code(interpolation)
    for ch in channels:
        values = np.asarray(ch["values"], dtype=np.float64).reshape(n_frames, -1)
        bone = ch["bone"]
        path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{ch["path"]}'
        for i in range(values.shape[1]):
            fc = anim_compat.fcurve(bag, path, i, bone)
            _set_keys(fc, frames, values[:, i], code)
    ends = frames[[0, -1]] if n_frames > 1 else frames[:1]
    for p in props:
        pb = obj.pose.bones.get(p["bone"])
        if pb is None or p["name"] not in pb.keys():
            continue
        path = f'pose.bones["{bpy.utils.escape_identifier(p["bone"])}"]["{bpy.utils.escape_identifier(p["name"])}"]'
        fc = anim_compat.fcurve(bag, path, 0, p["bone"])
        _set_keys(fc, ends, np.full(len(ends), float(p["value"])), keys.interpolation_code("CONSTANT"),
                  clear_between=True)
    return action


# --- keeping the animator's keys --------------------------------------------------------------------------------------

def _agree_between_keys(values: np.ndarray, rows: np.ndarray, orig: np.ndarray, have: np.ndarray,
                        quaternion: bool) -> None:
    """In place: make the solved values (F, k) of one rotation channel agree with the animator's keys `orig`
    (len(rows), k) (NaN-free where `have`) between the keys; the key rows themselves are set by the caller.

    Each key says how the solve must be written to match it: a quaternion negated or not (its dot product with the
    solved one), an Euler angle moved by whole turns or not. A run of frames between two keys that say the same
    gets it; two that differ need a change somewhere between them (the filled rotations, followed continuously
    from one key, come round to the other key's -q, or a turn on), and it goes to the step from frame to frame that
    it disturbs least: for a quaternion the step whose rotation is nearest a half turn (dot product nearest 0 or
    below), for an Euler angle the step that the turn shortens most."""
    at = values[rows]
    if quaternion:
        dot = np.where(have, orig * at, 0.0).sum(-1)             # over the components the animator keyed
        fix = np.where(dot < 0, -1.0, 1.0)[:, None] * np.ones(values.shape[1])
        key = np.where(have, orig * fix, at)                     # each key written as the solve writes it
    else:
        fix = 2 * np.pi * np.where(have, np.round((orig - at) / (2 * np.pi)), 0.0)
        key = np.where(have, orig - fix, at)
    apply = (lambda x, f: x * f) if quaternion else (lambda x, f: x + f)
    out = values.copy()
    out[:rows[0]] = apply(values[:rows[0]], fix[0])
    out[rows[-1] + 1:] = apply(values[rows[-1] + 1:], fix[-1])
    for k, (a, b) in enumerate(zip(rows[:-1], rows[1:])):
        if b - a < 2:
            continue
        v = values[a:b + 1].copy()
        v[0], v[-1] = key[k], key[k + 1]
        inner = np.arange(1, b - a)[:, None]                     # frames a+1..b-1 as offsets from a
        if quaternion:
            links = np.sum(v[1:] * v[:-1], -1)                   # b - a steps; step j: offset j to j + 1
            j = np.full(v.shape[1], np.argmin(links) if np.any(fix[k] != fix[k + 1]) else b - a)
        else:
            steps = np.abs(np.diff(v, axis=0) + (fix[k + 1] - fix[k]))
            j = np.where(fix[k] != fix[k + 1], np.argmin(steps, axis=0), b - a)
        out[a + 1:b] = np.where(inner <= j, apply(values[a + 1:b], fix[k]), apply(values[a + 1:b], fix[k + 1]))
    values[:] = out


def keep_key_values(pose: dict, rows, originals: dict) -> dict:
    """A copy of `pose` (write_keys' format) whose channels hold the animator's own values on the key rows, with
    the rows between written to agree with them (numpy only, no bpy).

    rows: the frames of the take (0-based rows of the channels' values) that are the animator's keys, increasing.
    originals: {(bone, path): (len(rows), k) values of the original action's F-curves there, NaN for an index
    without an F-curve}; a channel not in it is left as solved. On the key rows the solved values give way to the
    originals. Rotations between keys keep what they are but not always how they are written: a solved quaternion
    is negated where the animator's key is the solve's -q (one rotation, but Blender interpolates the components,
    so a sign change between neighbouring keys spins the bone), an Euler angle moved by the whole turns (2 pi)
    between the animator's key and the solve's, run by run from one key to the next (frames before the first key
    go with the first, after the last with the last); see _agree_between_keys for two keys that disagree."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(rows) and np.any(np.diff(rows) <= 0):
        raise ValueError(f"key rows must increase: {rows.tolist()}")
    channels = pose["channels"]
    n_frames = int(pose.get("frames") or len(channels[0]["values"]))
    if len(rows) and (rows[0] < 0 or rows[-1] >= n_frames):
        raise ValueError(f"key rows {rows.tolist()} outside the take's {n_frames} frames")
    out = []
    for ch in channels:
        values = np.array(ch["values"], dtype=np.float64).reshape(n_frames, -1)    # a copy
        orig = originals.get((ch["bone"], ch["path"]))
        if orig is not None and len(rows):
            orig = np.asarray(orig, dtype=np.float64).reshape(len(rows), values.shape[1])
            have = np.isfinite(orig)
            path = ch["path"]
            if have.any() and path.endswith(("rotation_quaternion", "rotation_euler")):
                _agree_between_keys(values, rows, orig, have, path.endswith("rotation_quaternion"))
            values[rows] = np.where(have, orig, values[rows])
        out.append({**ch, "values": values})
    return {**pose, "channels": out}


def key_values(obj, action, pose: dict, frames) -> dict:
    """What `keep_key_values` keeps: the values at `frames` (scene frames) of the F-curves in `action` (through
    the object's slot) for each channel of `pose`, evaluated as Blender does; NaN for an index without an F-curve,
    channels without any left out."""
    bag = anim_compat.channelbag_of(obj, action)
    out = {}
    if bag is None:
        return out
    frames = [float(f) for f in frames]
    n_frames = int(pose.get("frames") or len(pose["channels"][0]["values"]))
    for ch in pose["channels"]:
        k = np.asarray(ch["values"]).reshape(n_frames, -1).shape[1]
        path = f'pose.bones["{bpy.utils.escape_identifier(ch["bone"])}"].{ch["path"]}'
        got = np.full((len(frames), k), np.nan)
        for i in range(k):
            fc = bag.fcurves.find(path, index=i)
            if fc is not None:
                got[:, i] = [fc.evaluate(f) for f in frames]
        if np.isfinite(got).any():
            out[ch["bone"], ch["path"]] = got
    return out


def benchmark_write_keys(n_bones: int = 60, n_frames: int = 1000, repeats: int = 3) -> dict:
    """Seconds to key n_bones quaternion rotations (+ a root location) for n_frames frames with `write_keys`, on a
    throw-away armature in the current file: best of `repeats`, into a fresh action and into a filled one."""
    arm = bpy.data.armatures.new("gfpose_bench")
    obj = bpy.data.objects.new("gfpose_bench", arm)
    bpy.context.scene.collection.objects.link(obj)
    view_layer = bpy.context.view_layer
    active = view_layer.objects.active
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    names = []
    for i in range(n_bones):
        b = arm.edit_bones.new(f"bone{i:03d}")
        b.head, b.tail = (0.0, 0.0, 0.1 * i), (0.0, 0.0, 0.1 * i + 0.1)
        b.parent = arm.edit_bones[names[-1]] if names else None
        names.append(b.name)
    bpy.ops.object.mode_set(mode="OBJECT")
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n_frames, n_bones, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    pose = {"frames": n_frames, "channels": [{"bone": n, "path": "rotation_quaternion", "values": q[:, i]}
                                             for i, n in enumerate(names)]
            + [{"bone": names[0], "path": "location", "values": rng.normal(size=(n_frames, 3))}]}
    fresh, refill = [], []
    try:
        for _ in range(repeats):
            act = bpy.data.actions.new("gfpose_bench")
            t0 = time.perf_counter()
            write_keys(obj, pose, action=act)
            fresh.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            write_keys(obj, pose, action=act)
            refill.append(time.perf_counter() - t0)
            obj.animation_data.action = None
            bpy.data.actions.remove(act)
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.armatures.remove(arm)
        view_layer.objects.active = active
    n_keys = n_bones * 4 * n_frames + 3 * n_frames
    return {"bones": n_bones, "frames": n_frames, "keys": n_keys, "fresh_s": min(fresh), "replace_s": min(refill),
            "keys_per_s": n_keys / min(fresh)}
