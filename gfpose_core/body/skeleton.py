"""The body24 joint set (the model's skeleton) and canonicalisation of poses.

Canonical frame: pelvis at the origin, facing -Y (Blender's front view), Z up, unit body scale. Everything the
model sees is canonical; `canonicalise` / `restore` move world-space poses in and out, exactly invertibly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOINT_NAMES = (
    "pelvis", "spine", "chest", "neck", "head", "head_end",
    "collar_l", "shoulder_l", "elbow_l", "wrist_l", "hand_end_l",
    "collar_r", "shoulder_r", "elbow_r", "wrist_r", "hand_end_r",
    "hip_l", "knee_l", "ankle_l", "toe_l",
    "hip_r", "knee_r", "ankle_r", "toe_r",
)
PARENTS = np.array([-1, 0, 1, 2, 3, 4, 2, 6, 7, 8, 9, 2, 11, 12, 13, 14, 0, 16, 17, 18, 0, 20, 21, 22])
N_JOINTS = len(JOINT_NAMES)
INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# Mirror partner of every joint (itself for the midline).
MIRROR = np.array([INDEX[n.replace("_l", "_R").replace("_r", "_l").replace("_R", "_r")] for n in JOINT_NAMES])

# Body parts for hierarchical condition masking (paper: each limb, torso+head).
BODY_PARTS = {
    "torso_head": [INDEX[n] for n in ("pelvis", "spine", "chest", "neck", "head", "head_end")],
    "arm_l": [INDEX[n] for n in ("collar_l", "shoulder_l", "elbow_l", "wrist_l", "hand_end_l")],
    "arm_r": [INDEX[n] for n in ("collar_r", "shoulder_r", "elbow_r", "wrist_r", "hand_end_r")],
    "leg_l": [INDEX[n] for n in ("hip_l", "knee_l", "ankle_l", "toe_l")],
    "leg_r": [INDEX[n] for n in ("hip_r", "knee_r", "ankle_r", "toe_r")],
}

# Bones as (child, parent) pairs, the segments whose lengths a rigid body keeps.
BONES = np.array([(j, p) for j, p in enumerate(PARENTS) if p >= 0])

# Left/right pairs whose difference gives the facing direction (the character's left lies on +X when it faces -Y).
_FACING_PAIRS = [(INDEX["hip_l"], INDEX["hip_r"]), (INDEX["shoulder_l"], INDEX["shoulder_r"]),
                 (INDEX["collar_l"], INDEX["collar_r"]), (INDEX["knee_l"], INDEX["knee_r"]),
                 (INDEX["elbow_l"], INDEX["elbow_r"])]


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(..., 24, 3) -> (..., 23) segment lengths; NaN where either end is unknown."""
    return np.linalg.norm(joints[..., BONES[:, 0], :] - joints[..., BONES[:, 1], :], axis=-1)


def mirror(joints: np.ndarray) -> np.ndarray:
    """Left-right mirror image of poses in the canonical frame (X flips)."""
    out = joints[..., MIRROR, :].copy()
    out[..., 0] *= -1.0
    return out


def yaw_matrix(yaw: np.ndarray) -> np.ndarray:
    """(...,) angles -> (..., 3, 3) rotations about +Z."""
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


@dataclass
class Frame:
    """Where a batch of canonical poses sits in the world: joints_world = R(yaw) @ (scale * canon) + root."""
    root: np.ndarray   # (N, 3)
    yaw: np.ndarray    # (N,)
    scale: np.ndarray  # (N,)


def facing_yaw(joints: np.ndarray) -> np.ndarray:
    """Yaw (about +Z) that turns each pose to face -Y, from whichever left/right pairs are known.

    The across vector (left minus right) points to the character's left; in the canonical frame that is +X.
    Poses with no known pair get yaw 0.
    """
    across = np.zeros(joints.shape[:-2] + (2,))
    for l, r in _FACING_PAIRS:
        d = joints[..., l, :2] - joints[..., r, :2]
        across += np.where(np.isfinite(d), d, 0.0)
    return np.where(np.hypot(across[..., 0], across[..., 1]) > 1e-9, np.arctan2(across[..., 1], across[..., 0]), 0.0)


def estimate_scale(joints: np.ndarray, reference_bones: np.ndarray) -> np.ndarray:
    """Body scale relative to the reference skeleton, from whatever segments are known (docs/findings.md, 4)."""
    lengths = bone_lengths(joints)
    known = np.isfinite(lengths)
    ref = np.broadcast_to(reference_bones, lengths.shape)
    num = np.where(known, lengths, 0.0).sum(-1)
    den = np.where(known, ref, 0.0).sum(-1)
    return np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)


def canonicalise(joints: np.ndarray, reference_bones: np.ndarray | None = None,
                 mean_pose: np.ndarray | None = None) -> tuple[np.ndarray, Frame]:
    """World poses (N, 24, 3), NaN = unknown -> canonical poses and the Frame that restores them.

    Root: the pelvis where known; otherwise the known joints' centroid matched to the same joints of `mean_pose`.
    Scale: 1 unless `reference_bones` (23 lengths) is given.
    """
    joints = np.asarray(joints, dtype=np.float64)
    yaw = facing_yaw(joints)
    scale = np.ones(joints.shape[0]) if reference_bones is None else estimate_scale(joints, reference_bones)
    root = joints[:, 0, :].copy()
    lost = ~np.isfinite(root).all(-1)
    if lost.any():
        known = np.isfinite(joints[lost]).all(-1)
        centroid = np.nanmean(np.where(known[..., None], joints[lost], np.nan), axis=1)
        if mean_pose is not None:
            # mean pose is canonical: bring its centroid of the same joints into world orientation and scale.
            mp = np.where(known[..., None], mean_pose[None], np.nan)
            offset = np.nanmean(mp, axis=1)
            offset = np.einsum("nij,nj->ni", yaw_matrix(yaw[lost]), offset) * scale[lost, None]
            centroid = centroid - offset
        root[lost] = np.nan_to_num(centroid)
    frame = Frame(root=root, yaw=yaw, scale=scale)
    return to_canonical(joints, frame), frame


def to_canonical(joints: np.ndarray, frame: Frame) -> np.ndarray:
    inv = yaw_matrix(frame.yaw).transpose(0, 2, 1)
    return np.einsum("nij,nkj->nki", inv, joints - frame.root[:, None, :]) / frame.scale[:, None, None]


def restore(canon: np.ndarray, frame: Frame) -> np.ndarray:
    """Inverse of `canonicalise`: canonical (N, ..., 24, 3) back to world space."""
    rot = yaw_matrix(frame.yaw)
    extra = canon.ndim - 3  # hypotheses axis, if any
    shape = (-1,) + (1,) * extra
    rot = rot.reshape(rot.shape[:1] + (1,) * extra + (3, 3))
    out = np.einsum("...ij,...kj->...ki", rot, canon) * frame.scale.reshape(shape)[..., None, None]
    return out + frame.root.reshape((-1,) + (1,) * extra + (3,))[..., None, :]


def bone_directions(joints: np.ndarray) -> np.ndarray:
    """(..., 24, 3) -> (..., 23, 3) unit vectors from each parent to its child (BONES order)."""
    d = joints[..., BONES[:, 0], :] - joints[..., BONES[:, 1], :]
    return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)


def from_bone_directions(directions: np.ndarray, lengths: np.ndarray, root: np.ndarray | None = None) -> np.ndarray:
    """Rebuild joints from bone directions (..., 23, 3) and lengths (..., 23): forward along the chain."""
    out = np.zeros(directions.shape[:-2] + (N_JOINTS, 3))
    if root is not None:
        out[..., 0, :] = root
    vec = directions * np.asarray(lengths)[..., None]
    for b, (child, parent) in enumerate(BONES):  # BONES is in topological order (parents come first)
        out[..., child, :] = out[..., parent, :] + vec[..., b, :]
    return out


def with_bone_lengths(joints: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The same pose (bone directions, root) on a body with other bone lengths."""
    return from_bone_directions(bone_directions(joints), lengths, joints[..., 0, :])


CHILDREN = [np.flatnonzero(PARENTS == j) for j in range(N_JOINTS)]      # each joint's children
BONE_OF_CHILD = {int(c): b for b, c in enumerate(BONES[:, 0])}          # child joint -> its bone's index
BONE_MIRROR = np.array([list(BONES[:, 0]).index(MIRROR[c]) for c in BONES[:, 0]])


def known_bone_lengths(joints: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(N, 24, 3) with NaN -> (N, 23) lengths: measured where both ends are known, else the mirror bone's,
    else `fallback` (N, 23) (e.g. the reference body at the pose's scale)."""
    measured = bone_lengths(joints)
    out = np.where(np.isfinite(measured), measured, measured[..., BONE_MIRROR])
    return np.where(np.isfinite(out), out, fallback)


def take_bone_lengths(take: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(23,) one length per bone for a whole take: the median of what its frames measure, else the mirror
    bone's, else `fallback`."""
    lengths = bone_lengths(take)
    seen = np.isfinite(lengths).any(0)
    measured = np.full(lengths.shape[1], np.nan)
    measured[seen] = np.nanmedian(lengths[:, seen], axis=0)
    measured = np.where(np.isfinite(measured), measured, measured[BONE_MIRROR])
    return np.where(np.isfinite(measured), measured, fallback)


def settle_bone_lengths(joints: np.ndarray, lengths: np.ndarray, iterations: int = 10,
                        fixed: np.ndarray | None = None) -> np.ndarray:
    """Poses (..., 24, 3) moved the least way to bones of `lengths` (23,) or (..., 23): each bone's length error is
    split evenly between its two ends, bone after bone, repeated (position-based dynamics' distance constraints), so
    no chain is pushed along from the root. `fixed` (..., 24) joints do not move: their bones' errors go wholly to
    the other end. For estimates whose error is spread over their joints, such as denoised takes; fit_bone_lengths
    keeps bone directions instead."""
    out = np.array(joints, dtype=np.float64, copy=True)
    lengths = np.asarray(lengths, dtype=np.float64)
    free = np.ones(out.shape[:-1]) if fixed is None else (~np.asarray(fixed, bool)).astype(np.float64)
    for _ in range(iterations):
        for b, (child, parent) in enumerate(BONES):
            d = out[..., child, :] - out[..., parent, :]
            n = np.linalg.norm(d, axis=-1, keepdims=True)
            total = free[..., child] + free[..., parent]
            share = np.divide(free[..., child], total, out=np.zeros_like(total), where=total > 0)[..., None]
            step = (n - lengths[..., b, None]) * d / np.maximum(n, 1e-9)
            out[..., child, :] -= share * step
            out[..., parent, :] += np.where(total[..., None] > 0, 1 - share, 0) * step
    return out


def fit_bone_lengths(proposal: np.ndarray, lengths: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Move the free joints of `proposal` (N, 24, 3) so their bones get `lengths` (N, 23); `fixed` (N, 24) stay.

    A free joint with nothing fixed below it keeps its direction from its (already placed) parent. A free joint
    between a placed parent and a fixed only child is put on the circle both bones allow, nearest the proposal
    (elbows and knees between known shoulders and wrists). Learned priors let bone lengths drift; rigs cannot.
    """
    out = proposal.copy()
    fixed_below = np.zeros(fixed.shape, bool)
    for j in range(N_JOINTS - 1, -1, -1):
        for c in CHILDREN[j]:
            fixed_below[:, j] |= fixed[:, c] | fixed_below[:, c]
    for j in range(1, N_JOINTS):
        p, b = PARENTS[j], BONE_OF_CHILD[j]
        free = ~fixed[:, j]
        direction = proposal[:, j] - proposal[:, p]
        direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-12)
        chain = free & ~fixed_below[:, j]
        out[chain, j] = out[chain, p] + direction[chain] * lengths[chain, b, None]
        kids = CHILDREN[j]
        if len(kids) == 1:
            c = kids[0]
            hinge = free & fixed[:, c]
            if hinge.any():
                out[hinge, j] = two_bone(out[hinge, p], out[hinge, c], lengths[hinge, b],
                                          lengths[hinge, BONE_OF_CHILD[c]], proposal[hinge, j])
    return out


def two_bone(start, end, l1, l2, hint):
    """The point at l1 from start and l2 from end nearest `hint` (on the start-end line when out of reach)."""
    axis = end - start
    d = np.maximum(np.linalg.norm(axis, axis=-1), 1e-12)
    u = axis / d[:, None]
    a = np.clip((l1 ** 2 - l2 ** 2 + d ** 2) / (2 * d), -l1, l1)
    h = np.sqrt(np.maximum(l1 ** 2 - a ** 2, 0.0))
    side = hint - start
    side = side - np.sum(side * u, -1, keepdims=True) * u
    # A hint on the line (a straight limb) gives no side to bend to: the one of least turn about the line's normal.
    flat = np.linalg.norm(side, axis=-1) < 1e-9
    if flat.any():
        side[flat] = np.cross(u[flat], np.where(np.abs(u[flat, 2:3]) < 0.9, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]))
    side /= np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-12)
    return start + u * a[:, None] + side * h[:, None]
