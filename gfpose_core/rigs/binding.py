"""Binding a rig map to an armature: every body24 joint as a weighted sum of points fixed in bones."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gfpose_core.body.rotations import y_up_to_z_up
from gfpose_core.body.skeleton import INDEX, JOINT_NAMES
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.auto_map import auto_rig_map
from gfpose_core.rigs.rig_map import (
    RigMap,
    RigMapError,
    bone_of,
    detect_rig_match,
    load_rig_map,
    match_names,
)

# What the animator can do about an armature nothing maps (kept short: the add-on shows it in a report).
UNMAPPED_HINT = ("In the GFPose panel, open Rig Mapping: pick a map, or pick the bone for each joint and save it "
                 "as a map")


@dataclass
class Binding:
    """A rig map fitted to one armature: body24 joint j = sum_k weights[j, k] * (pose[bones[k]] @ points[k])."""
    rig: RigMap
    armature: Armature
    prefix: str
    bones: np.ndarray       # (K,) armature bone indices
    points: np.ndarray      # (K, 3) points in each bone's local frame (armature units)
    weights: np.ndarray     # (24, K)
    plan: object = field(default=None, repr=False)   # how to write (rigs.plan._Plan), worked out once there

    @property
    def bone_names(self) -> list[str]:
        return [self.armature.bones[i] for i in self.bones]

    def resolve(self, name: str) -> str:
        """A map's bone name as this armature spells it (with its prefix)."""
        return self.prefix + name

    def to_dict(self) -> dict:
        """What the add-on needs to read body24 off the armature by itself (see blender_addon/rig_io.py)."""
        return {"rig": self.rig.name, "prefix": self.prefix, "bones": self.bone_names,
                "points": self.points.tolist(), "weights": self.weights.tolist()}


def _rig_map(rig: RigMap | str | None, armature: Armature):
    if rig is None:
        try:
            m = detect_rig_match(armature.bones, kind="armature")
            return m.rig, m
        except RigMapError:
            pass      # no shipped or user map fits: map the armature automatically
        try:
            rig = auto_rig_map(armature).rig
        except RigMapError as e:
            raise RigMapError(f"{e}. {UNMAPPED_HINT}") from None
        return rig, match_names(rig, armature.bones, armature=True)
    if isinstance(rig, str) and rig.startswith("auto:"):
        try:
            rig = load_rig_map(rig)
        except RigMapError:     # made by another engine process: make it again for this armature
            return _rig_map(None, armature)
    rig = rig if isinstance(rig, RigMap) else load_rig_map(rig)
    return rig, match_names(rig, armature.bones, armature=True)


def bind(armature: Armature, rig: RigMap | str | None = None) -> Binding:
    """Fit a rig map (None: a shipped or user map detected from the bone names, else the automatic mapping) to an
    armature; errors name the missing bones and the
    body24 joints they leave unmapped."""
    rig, match = _rig_map(rig, armature)
    if match.missing:
        raise RigMapError(
            f"{rig.path or rig.name}: armature '{armature.name}' has no bone(s) "
            f"{', '.join(match.prefix + m for m in match.missing)}"
            + (f" (names tried with the prefix '{match.prefix}')" if match.prefix else "")
            + f"; body24 joints unmapped: {', '.join(match.unmapped_joints())}")
    prefix = match.prefix
    columns: dict[tuple, int] = {}
    rows: list[dict[int, float]] = []

    def column(bone: int, point: np.ndarray) -> int:
        key = (bone,) + tuple(np.round(point, 12))
        return columns.setdefault(key, len(columns))

    points: dict[int, tuple[int, np.ndarray]] = {}

    def term(ref: str, weight: float, out: dict[int, float]):
        if ref.startswith("@"):
            for c, w in rows[INDEX[ref[1:]]].items():
                out[c] = out.get(c, 0.0) + weight * w
            return
        b = armature.index[prefix + bone_of(ref)]
        tail = ref != bone_of(ref)
        p = np.array([0.0, armature.lengths[b], 0.0]) if tail else np.zeros(3)
        c = column(b, p)
        points[c] = (b, p)
        out[c] = out.get(c, 0.0) + weight

    for body_name in JOINT_NAMES:
        spec = rig.joints[body_name]
        row: dict[int, float] = {}
        if spec.kind == "joint":
            term(spec.refs[0], 1.0, row)
        elif spec.kind == "lerp":
            term(spec.refs[0], 1.0 - spec.t, row)
            term(spec.refs[1], spec.t, row)
        else:
            b = armature.index[prefix + bone_of(spec.refs[0])]
            # Offsets are metres (BVH maps: file units, which unit_scale turns into metres), in the bone's frame
            # or, for rest_offset and BVH joints (whose frame is the file's axes at rest), the armature's axes.
            v = np.array(spec.offset, dtype=np.float64) * rig.unit_scale
            if rig.kind == "bvh":
                v = y_up_to_z_up(v) if rig.up_axis == "Y" else v
            if rig.kind == "bvh" or spec.kind == "rest_offset":
                v = armature.rest[b, :3, :3].T @ v
            v = v / armature.world_scale
            c = column(b, v)
            points[c] = (b, v)
            row[c] = 1.0
        rows.append(row)
    k = len(columns)
    weights = np.zeros((len(JOINT_NAMES), k))
    for j, row in enumerate(rows):
        for c, w in row.items():
            weights[j, c] = w
    bones = np.array([points[c][0] for c in range(k)], dtype=int)
    local = np.array([points[c][1] for c in range(k)]).reshape(k, 3)
    return Binding(rig=rig, armature=armature, prefix=prefix, bones=bones, points=local, weights=weights)


def _points(binding: Binding, heads: np.ndarray, rots: np.ndarray) -> np.ndarray:
    """Heads (F, K, 3) and rotations (F, K, 3, 3) of the binding's bones -> armature-space body24 (F, 24, 3)."""
    pts = heads + np.einsum("fkij,kj->fki", rots, binding.points)
    return np.einsum("jk,fkc->fjc", binding.weights, pts)


def rest_joints(binding: Binding, world: bool = False) -> np.ndarray:
    """The rig's rest pose as body24 (24, 3), armature space (or world)."""
    rest = binding.armature.rest[binding.bones]
    j = _points(binding, rest[None, :, :3, 3], rest[None, :, :3, :3])[0]
    return binding.armature.to_world(j) if world else j


def joints_from_pose(binding: Binding, matrices: np.ndarray, world: bool = True) -> np.ndarray:
    """The reverse direction: pose-bone matrices (F, B, 4, 4) in armature space (every bone of the armature, in its
    order; Blender's pose_bone.matrix) -> body24 (F, 24, 3), world space unless `world` is False."""
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim == 3:
        m = m[None]
    m = m[:, binding.bones]
    j = _points(binding, m[..., :3, 3], m[..., :3, :3])
    return binding.armature.to_world(j) if world else j
