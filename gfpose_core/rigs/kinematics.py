"""Forward kinematics of a writing plan (rigs.plan) compiled to index arrays, evaluated for all frames at once."""
from __future__ import annotations

import numpy as np

from gfpose_core.body import rotations
from gfpose_core.rigs.binding import _points

_SKEW = np.array([0, 2, 1, 2, 0, 0, 1, 0, 0])
_SKEW_SIGN = np.array([0.0, -1, 1, 1, 0, -1, -1, 1, 0])


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross of (..., 3) vectors, the same arithmetic without its overhead (the sweeps call it often)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


def _skew(v: np.ndarray) -> np.ndarray:
    return (v[..., _SKEW] * _SKEW_SIGN).reshape(v.shape[:-1] + (3, 3))


def axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """body.rotations.axis_angle_matrix, the same arithmetic with less overhead: (..., 3), (...) -> (..., 3, 3)."""
    k = _skew(axis)
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """body.rotations.swing, the same arithmetic with less overhead (opposite vectors are left to it)."""
    a, b = np.broadcast_arrays(a, b)
    c = np.sum(a * b, axis=-1)
    if np.any(c < -1.0 + 1e-9):
        return rotations.swing(a, b)
    k = _skew(cross(a, b))
    return np.eye(3) + k + (k @ k) / np.maximum(1.0 + c, 1e-12)[..., None, None]


class _Level:
    """Bones of one depth in the plan's tree: each depends only on bones of earlier levels."""

    def __init__(self, kin: _Kinematics, idx: np.ndarray, depth: int):
        self.idx, self.par, self.top = idx, kin.par[idx], depth == 0
        self.off, self.rel = kin.offsets[idx], kin.rel[idx]
        self.fixed = np.flatnonzero(~kin.inherit[idx]) if depth else np.zeros(0, dtype=int)
        self.fixed_rot = kin.rest_rot[idx[self.fixed]]
        root = np.flatnonzero(idx == kin.root)
        self.root = int(root[0]) if len(root) else -1


class _Kinematics:
    """The plan's forward kinematics as index arrays, worked out once per binding: numpy evaluates a whole level of
    the bone tree at once for every frame (a Rigify rig's 66 needed bones are 17 levels, 12 without the copies).
    A bone that copies another's pose (a full Copy Transforms) is never evaluated: it reads the slot it copies
    (`src`), through chains of copies."""

    def __init__(self, plan):
        arm, st, order = plan.binding.armature, plan.structure, plan.order
        m = len(order)
        self.src, self.par, depth = np.arange(m), np.full(m, -1), np.zeros(m, dtype=int)
        for i, b in enumerate(order):
            if st.copy_of[b] >= 0:
                self.src[i] = self.src[plan.slot[int(st.copy_of[b])]]
            elif st.parent[b] >= 0:
                self.par[i] = self.src[plan.slot[int(st.parent[b])]]
                depth[i] = depth[self.par[i]] + 1
        self.plan, self.depth, self.real = plan, depth, self.src == np.arange(m)
        self.copies = np.flatnonzero(~self.real)
        self.offsets, self.rel = plan.offsets, plan.rel
        self.inherit = arm.inherit_rotation[np.asarray(order, dtype=int)]
        self.rest_rot = arm.rest[np.asarray(order, dtype=int), :3, :3]
        self.root = plan.slot[plan.root] if self.real[plan.slot[plan.root]] else -1
        self.cols = self.src[[plan.slot[b] for b in plan.binding.bones]]     # the binding's bones, as evaluated
        self.levels = [_Level(self, idx, d) for d in range(int(depth.max(initial=0)) + 1)
                       if len(idx := np.flatnonzero(self.real & (depth == d)))]
        self._carried: dict[tuple, tuple] = {}

    def carried(self, m: int, fixed: np.ndarray, key: bytes) -> tuple[np.ndarray, ...]:
        """What a turn of slot m moves (see `_Posed.turn`), given which slots keep their orientation (`fixed`): the
        slots that turn with it, the fixed ones hanging from those (the front), and all below the front with the
        front slot each shifts with."""
        got = self._carried.get((m, key))
        if got is None:
            kids: dict[int, list[int]] = {}
            for j in np.flatnonzero(self.real & (self.par >= 0)):
                kids.setdefault(int(self.par[j]), []).append(int(j))
            region, front, todo = [], [], list(kids.get(m, []))
            while todo:
                j = todo.pop()
                (front if fixed[j] else region).append(j)
                if not fixed[j]:
                    todo += kids.get(j, [])
            below, owner = [], []
            for k, g in enumerate(front):
                todo = list(kids.get(g, []))
                while todo:
                    j = todo.pop()
                    below.append(j)
                    owner.append(k)
                    todo += kids.get(j, [])
            got = self._carried[(m, key)] = tuple(np.array(x, dtype=int) for x in (region, front, below, owner))
        return got

    def location_axes(self, pre: np.ndarray, rots: np.ndarray) -> np.ndarray:
        """The root bone's location axes (see `_location_axes`) while its level is evaluated."""
        plan = self.plan
        arm, b = plan.binding.armature, plan.root
        if arm.local_location[b]:
            return pre
        p = plan.structure.parent[b]
        if p < 0:
            return np.broadcast_to(np.eye(3), pre.shape)
        return rots[:, self.par[self.root]] @ arm.rest[p, :3, :3].T


class _Posed:
    """Forward kinematics of some frames with given rotations for some bones (`_fk`), kept up to date as those
    turn (`turn`): heads (F, M, 3) and orientations (F, M, 3, 3) in the plan's order (copies filled by `full`)."""

    def __init__(self, plan, given: dict[int, np.ndarray], n_frames: int, local: bool = False,
                 root_location: np.ndarray | None = None):
        kin = plan.kin = plan.kin or _Kinematics(plan)
        self.kin, self.local, self.root_location = kin, local, root_location
        self.bones = [b for b in given if b in plan.slot and kin.real[plan.slot[b]]]
        self.col = {b: i for i, b in enumerate(self.bones)}
        self.rot = np.stack([given[b] for b in self.bones], 1) if self.bones else np.zeros((n_frames, 0, 3, 3))
        self.pre = np.zeros_like(self.rot)
        self.given = np.full(len(plan.order), -1)
        self.given[[plan.slot[b] for b in self.bones]] = np.arange(len(self.bones))
        m = len(plan.order)
        self.heads, self.rots = np.zeros((n_frames, m, 3)), np.zeros((n_frames, m, 3, 3))
        self._picks = [(s, self.given[lv.idx][s]) for lv in kin.levels
                       for s in [np.flatnonzero(self.given[lv.idx] >= 0)]]
        self._fixed = (self.given >= 0) | ~kin.inherit
        self._key = self._fixed.tobytes()
        self.update()

    def update(self) -> None:
        """Every bone from its parent, level by level (and `pre` for the given ones)."""
        f, heads, rots = self.heads.shape[0], self.heads, self.rots
        for lv, (sel, cols) in zip(self.kin.levels, self._picks):
            if lv.top:
                h, pr = np.repeat(lv.off[None], f, 0), np.repeat(lv.rel[None], f, 0)
            else:
                rp = rots[:, lv.par]
                h = heads[:, lv.par] + np.einsum("fnij,nj->fni", rp, lv.off)
                pr = rp @ lv.rel
                if len(lv.fixed):
                    pr[:, lv.fixed] = lv.fixed_rot
            if self.root_location is not None and lv.root >= 0:
                axes = self.kin.location_axes(pr[:, lv.root], rots)
                h[:, lv.root] += np.einsum("fij,fj->fi", axes, self.root_location)
            heads[:, lv.idx] = h
            if len(sel):
                self.pre[:, cols] = pr[:, sel]
                pr[:, sel] = pr[:, sel] @ self.rot[:, cols] if self.local else self.rot[:, cols]
            rots[:, lv.idx] = pr

    def turn(self, bone: int, turn: np.ndarray) -> None:
        """A given bone turned by `turn` (F, 3, 3) in armature space (not with `local`), and what moves with it moved
        as forward kinematics would move it, without evaluating it again: the bones it carries turn about its head;
        given bones (and ones that do not inherit rotation) below keep their orientation and, with all they carry,
        shift. The heads and orientations agree with `update` to rounding; `pre` is left as it was."""
        c, m = self.col[bone], self.kin.plan.slot[bone]
        self.rot[:, c] = turn @ self.rot[:, c]
        self.rots[:, m] = self.rot[:, c]
        region, front, below, owner = self.kin.carried(m, self._fixed, self._key)
        hm = self.heads[:, m, None]
        if len(region):
            self.heads[:, region] = hm + np.einsum("fij,fnj->fni", turn, self.heads[:, region] - hm)
            self.rots[:, region] = turn[:, None] @ self.rots[:, region]
        if len(front):
            old = self.heads[:, front]
            new = hm + np.einsum("fij,fnj->fni", turn, old - hm)
            self.heads[:, front] = new
            if len(below):
                self.heads[:, below] += (new - old)[:, owner]

    def full(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.kin.copies
        self.heads[:, c], self.rots[:, c] = self.heads[:, self.kin.src[c]], self.rots[:, self.kin.src[c]]
        return self.heads, self.rots

    def joints(self) -> np.ndarray:
        """Body24 (F, 24, 3) as the bones stand now (armature space)."""
        cols = self.kin.cols
        return _points(self.kin.plan.binding, self.heads[:, cols], self.rots[:, cols])
