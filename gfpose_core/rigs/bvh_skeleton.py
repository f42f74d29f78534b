"""Putting changed body24 poses back on the BVH skeleton they came from (same joints, channels, frame count).

Each BVH joint follows the change of the body24 joint nearest to it; then, joint by joint from the root, the
smallest rotation change aims the joint's bones at where their children should now be (one child: a swing from
the joint's original local rotation, keeping its twist; several spread children: the best-fitting rotation).
Bone lengths stay the skeleton's own; unmapped joints (fingers) keep their local rotations.
"""
from __future__ import annotations

import numpy as np

from gfpose_core.body.rotations import matrix_to_euler, swing
from gfpose_core.formats.bvh import BvhClip
from gfpose_core.rigs.rig_map import RigMap

_SPREAD = 0.2  # children offsets whose directions differ this much (sin of the angle) pin a full rotation


def _z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def _fit_rotation(offsets: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rotations (F, 3, 3) taking local offsets (K, 3) closest to target vectors (F, K, 3) (Kabsch)."""
    h = np.einsum("ki,fkj->fij", offsets, targets)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("fji,fkj->fik", vt, u)))
    fix = np.ones(u.shape[:-1])
    fix[:, -1] = d
    return np.einsum("fji,fj,fkj->fik", vt, fix, u)


def _spread(offsets: np.ndarray) -> bool:
    if len(offsets) < 2:
        return False
    unit = offsets / np.linalg.norm(offsets, axis=-1, keepdims=True)
    return np.linalg.norm(np.cross(unit[:, None], unit[None]), axis=-1).max() > _SPREAD


def apply_body24(clip: BvhClip, rig_map: RigMap, before: np.ndarray, after: np.ndarray) -> BvhClip:
    """A copy of `clip` whose motion moves its body24 joints from `before` to `after` (both (F, 24, 3), metres)."""
    sk = clip.skeleton
    pos, rot = clip.forward_kinematics()
    n_frames, n_joints = pos.shape[:2]
    delta = _z_up_to_y_up(after - before) / rig_map.unit_scale if rig_map.up_axis == "Y" else \
        (after - before) / rig_map.unit_scale
    src_b24 = _z_up_to_y_up(before) / rig_map.unit_scale if rig_map.up_axis == "Y" else before / rig_map.unit_scale
    nearest = np.argmin(np.linalg.norm(pos.mean(0)[:, None] - src_b24.mean(0)[None], axis=-1), axis=1)
    target = pos + delta[:, nearest]

    children: dict[int, list[int]] = {j: [] for j in range(n_joints)}
    for j, p in enumerate(sk.parents):
        if p >= 0 and np.linalg.norm(sk.offsets[j]) > 1e-9:
            children[p].append(j)

    motion = clip.motion.copy()
    new_pos = np.zeros_like(pos)
    new_rot = np.zeros_like(rot)
    col = 0
    for j in range(n_joints):
        chans = sk.channels[j]
        p = sk.parents[j]
        local_orig = np.einsum("fji,fjk->fik", rot[:, p], rot[:, j]) if p >= 0 else rot[:, j]
        if p < 0:
            new_pos[:, j] = target[:, j]
            base = local_orig
        else:
            offset = _child_offset(sk, pos, rot, j)
            new_pos[:, j] = new_pos[:, p] + np.einsum("fij,fj->fi", new_rot[:, p], offset)
            base = np.einsum("fij,fjk->fik", new_rot[:, p], local_orig)
        kids = children[j]
        if kids:
            offs = np.stack([_child_offset(sk, pos, rot, c) for c in kids], axis=1)  # (F, K, 3) local
            aims = target[:, kids] - new_pos[:, j:j + 1]
            if _spread(offs.mean(0)):
                new_rot[:, j] = _fit_rotation(offs.mean(0), aims)
            else:
                now = np.einsum("fij,fj->fi", base, offs[:, 0])
                now /= np.linalg.norm(now, axis=-1, keepdims=True)
                want = aims[:, 0] / np.maximum(np.linalg.norm(aims[:, 0], axis=-1, keepdims=True), 1e-12)
                new_rot[:, j] = swing(now, want) @ base
        else:
            new_rot[:, j] = base
        local = np.einsum("fji,fjk->fik", new_rot[:, p], new_rot[:, j]) if p >= 0 else new_rot[:, j]
        order = "".join(c[0] for c in chans if c.endswith("rotation"))
        rcols = [col + k for k, c in enumerate(chans) if c.endswith("rotation")]
        if len(order) == 3:  # fewer rotation channels cannot hold an arbitrary rotation: keep them as they were
            motion[:, rcols] = _closest_euler(matrix_to_euler(local, order), clip.motion[:, rcols])
        if p < 0:
            for k, c in enumerate(chans):
                if c.endswith("position"):
                    motion[:, col + k] = new_pos[:, j, "XYZ".index(c[0])]
        col += len(chans)
    return BvhClip(sk, motion, clip.frame_time, clip.name)


def _wrap_near(angles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return reference + (angles - reference + 180.0) % 360.0 - 180.0


def _closest_euler(euler: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Of the two Euler triples of each rotation, the one nearest the original channel values (curves stay put)."""
    other = euler + np.array([180.0, 0.0, 180.0])
    other[:, 1] = 180.0 - euler[:, 1]
    a, b = _wrap_near(euler, reference), _wrap_near(other, reference)
    pick_b = np.abs(b - reference).sum(-1) < np.abs(a - reference).sum(-1)
    return np.where(pick_b[:, None], b, a)


def _child_offset(sk, pos, rot, c: int) -> np.ndarray:
    """The child's offset in its parent's frame, per frame (position channels may animate it)."""
    p = sk.parents[c]
    if any(ch.endswith("position") for ch in sk.channels[c]):
        return np.einsum("fji,fj->fi", rot[:, p], pos[:, c] - pos[:, p])
    return np.broadcast_to(sk.offsets[c], (pos.shape[0], 3))
