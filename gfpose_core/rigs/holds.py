"""What a rig's bones hold whatever the pose, found by posing them (numpy only): joints one bone carries at fixed
distances, joints a map reads on the line between two others, and the offsets the bones an animator keeps hold.
Live posing (service/live.py) builds its bodies on these, so that the rig can take them.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from gfpose_core.body.skeleton import BONES
from gfpose_core.rigs.binding import Binding, joints_from_pose
from gfpose_core.rigs.kinematics import _Posed, axis_angle
from gfpose_core.rigs.plan import _plan
from gfpose_core.rigs.solve import kept_rotations


def rig_geometry(binding, samples: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """What the rig's bones hold in every pose, whatever the map's points are, found by posing every bone at random:

    - (P, 2) body24 joint pairs, other than bones, whose distance never changes: joints carried by one bone (a
      chest's neck and collars, a pelvis's hips and lower back);
    - (L, 4) joints that always lie on the line between two others, at one fraction of the way (rows j, a, b, t as
      floats): a map's joint read between two others (a BVH rig's spine and chest a third and two thirds of the way
      from its pelvis to its neck, however its back bones bend), which no solve can put off that line."""
    arm = binding.armature
    rng = np.random.default_rng(seed)
    order = _parents_first(arm.parents)
    poses = [arm.rest]
    for _ in range(samples):
        turn = Rotation.random(len(arm.bones), random_state=rng).as_matrix()
        m = np.empty_like(arm.rest)
        for b in order:
            basis = np.eye(4)
            basis[:3, :3] = turn[b]
            p = arm.parents[b]
            parent = np.eye(4) if p < 0 else m[p] @ np.linalg.inv(arm.rest[p])
            m[b] = parent @ arm.rest[b] @ basis
        poses.append(m)
    joints = joints_from_pose(binding, np.stack(poses), world=False)          # (S, 24, 3)
    d = np.linalg.norm(joints[:, :, None] - joints[:, None], axis=-1)           # (S, 24, 24)
    tol = 1e-6 * max(float(d.max()), 1e-9)
    keep = (np.ptp(d, axis=0) < tol) & (d[0] > 1e-6)
    bones = {tuple(sorted(b)) for b in BONES.tolist()}
    pairs = np.array([(i, j) for i in range(24) for j in range(i + 1, 24) if keep[i, j] and (i, j) not in bones],
                     dtype=int).reshape(-1, 2)
    # j = a + t (b - a) on every sample: t by least squares over the samples, then how far any sample is off it.
    ab = joints[:, None, :] - joints[:, :, None]                               # (S, a, b, 3): b - a
    span = np.einsum("sabk,sabk->ab", ab, ab)
    lines = []
    for j in range(24):
        aj = joints[:, j][:, None, None] - joints[:, :, None]                    # (S, a, 1, 3): j - a
        t = np.einsum("sabk,sabk->ab", np.broadcast_to(aj, ab.shape), ab) / np.maximum(span, 1e-300)
        off = np.linalg.norm(aj - t[None, ..., None] * ab, axis=-1).max(0)
        on = (off < tol) & (t > 1e-3) & (t < 1 - 1e-3) & (d.min(0) > 1e-6)
        lines += [(j, a, b, t[a, b]) for a, b in zip(*np.nonzero(on)) if a < b and j not in (a, b)]
    return pairs, np.array(lines, dtype=np.float64).reshape(-1, 4)


def _parents_first(parents: np.ndarray) -> list[int]:
    depth = np.zeros(len(parents), int)
    for b in range(len(parents)):
        p = parents[b]
        while p >= 0:
            depth[b] += 1
            p = parents[p]
    return list(np.argsort(depth, kind="stable"))


def held_by_kept(binding: Binding, keep) -> np.ndarray:
    """(24, 24) bool: joint pairs (j, k) the bones `keep` (names) hold at one offset from each other, j - k the same
    whatever the solve does while those bones stay as they are: joints the kept bones carry with nothing the map keys
    in between (Rigify's lower spine and hips on its kept torso, with the map's hips and lower spine FK keyed at
    rest; a BVH rig's neck under its kept head bones). Found by turning every other keyed bone and seeing which
    offsets stay, so it holds whatever the rig's map points and constraints are."""
    plan = _plan(binding)
    arm = binding.armature
    kept = {arm.index[b] for b in keep if b in arm.index}
    given = {int(b): arm.rest[b, :3, :3][None] for b in [*plan.keyed.tolist(), *kept]}
    posed = _Posed(plan, given, 1)
    before = posed.joints()[0]
    for b, turn in zip(plan.keyed.tolist(), _random_turns(len(plan.keyed))):
        if b not in kept and b in posed.col:
            posed.turn(int(b), turn[None])
    posed.update()
    after = posed.joints()[0]
    offsets = lambda j: j[:, None] - j[None]         # noqa: E731
    moved = np.linalg.norm(offsets(after) - offsets(before), axis=-1)
    return moved < 1e-9 * max(1.0, float(np.abs(before).max()))


def kept_pose(binding: Binding, current: dict, f: int) -> np.ndarray:
    """(F, 24, 3) world: body24 on the rig with the bones `current` keeps as they are and every other keyed bone at
    rest. Its offsets between the joint pairs `held_by_kept` finds are the ones any solve under those bones gives."""
    plan = _plan(binding)
    arm = binding.armature
    given = {int(b): np.repeat(arm.rest[b, :3, :3][None], f, 0) for b in plan.keyed}
    for b, (rot, mask) in kept_rotations(arm, current, f).items():
        given[b] = np.where(mask[:, None, None], rot, given.get(b, rot))
    return arm.to_world(_Posed(plan, given, f).joints())


def _random_turns(n: int, seed: int = 7) -> np.ndarray:
    """n rotations of about a radian about random axes (fixed seed: the same answer every call)."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    return axis_angle(axes / np.linalg.norm(axes, axis=-1, keepdims=True), rng.uniform(0.5, 1.5, n))
