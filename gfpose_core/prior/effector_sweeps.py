"""Multi-end FABRIK for effectors.hold_lengths, where Gauss-Newton does not close a pose (a target out of reach, a
proposal far from its lengths): sweeps that bring the chains near their lengths and point them at far targets.

Two implementations of the same sweeps: a depth of the bone tree at a time over a batch (numpy), and one pose in
plain Python floats for the few poses of a live request, where numpy's per-call overhead on (1, k, 3) arrays made
the sweeps most of a request's time (about 5 ms of twelve sweeps per hold on this CPU, against under 1 ms).
tests/test_effectors.py checks that both give the same poses.
"""
from __future__ import annotations

import math

import numpy as np

from gfpose_core.body.skeleton import BONES, CHILDREN, N_JOINTS, PARENTS, two_bone

SMALL = 8      # batches up to this many poses are swept one pose at a time in Python floats

_KIDS = [[int(c) for c in k] for k in CHILDREN]
_ONLY_CHILD = np.array([int(k[0]) if len(k) == 1 else -1 for k in CHILDREN])
_PARENT = [int(p) for p in PARENTS]


def _levels():
    depth = np.zeros(N_JOINTS, int)
    for j in range(1, N_JOINTS):
        depth[j] = depth[PARENTS[j]] + 1
    return [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]


LEVELS = _levels()        # joints by depth in the bone tree, the root's first
# Leaves to root: a depth's joints, their parents, and which parent each joint hangs from (len(level), len(mine)).
_LEVELS_UP = [(lv, np.unique(PARENTS[lv]), (PARENTS[lv][:, None] == np.unique(PARENTS[lv])).astype(np.float64))
              for lv in LEVELS[:0:-1]]


def fabrik(pose, known, lengths, sweeps: int, tolerance: float) -> np.ndarray:
    """`pose` (N, 24, 3) swept towards bones of `lengths` (N, 23) with the `known` (N, 24) joints held: up to
    `sweeps` sweeps up and down (fewer once every known joint's incoming bone from a free parent is within
    `tolerance`), then a sweep down that closes each hinge before a known joint where both its bones reach."""
    below = known_below(known)
    if len(pose) <= SMALL:
        return np.array([_fabrik_one(pose[i], known[i], below[i], lengths[i], sweeps, tolerance)
                         for i in range(len(pose))]).reshape(pose.shape)
    out = pose.copy()
    for _ in range(sweeps):
        if _worst_gap(out, known, lengths) < tolerance:
            break
        back = _sweep_up(out, known, below, lengths)
        out = _sweep_down(out, back, pose, known, below, lengths, close=False)
    return _sweep_down(out, out, pose, known, below, lengths, close=True)


def known_below(known: np.ndarray) -> np.ndarray:
    """(N, 24): joints with a known joint somewhere below them."""
    below = np.zeros(known.shape, bool)
    for level, mine, joins in _LEVELS_UP:
        below[:, mine] = (known[:, level] | below[:, level]) @ joins > 0
    return below


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.sqrt((v * v).sum(-1, keepdims=True)), 1e-12)


def _worst_gap(out, known, lengths) -> float:
    """The largest length error of a bone whose child is known and whose parent is free (where the sweeps leave
    their error; every other bone is exact after a sweep down)."""
    child, parent = BONES[:, 0], BONES[:, 1]
    sel = known[:, child] & ~known[:, parent]
    if not sel.any():
        return 0.0
    err = np.abs(np.linalg.norm(out[:, child] - out[:, parent], axis=-1) - lengths)
    return float(err[sel].max())


def _sweep_up(out, known, below, lengths) -> np.ndarray:
    """Leaves to root, a depth at a time: where each free joint with a known joint below would be, at its bones'
    lengths from its children's new places (the mean over several children)."""
    back = out.copy()
    use = (known | below).astype(np.float64)
    for level, mine, joins in _LEVELS_UP:
        parents = PARENTS[level]
        pull = back[:, level] + unit(out[:, parents] - back[:, level]) * lengths[:, level - 1, None]
        total = np.einsum("nlk,lm->nmk", pull * use[:, level, None], joins)
        count = use[:, level] @ joins
        free = ~known[:, mine] & below[:, mine]
        back[:, mine] = np.where(free[..., None], total / np.maximum(count, 1)[..., None], back[:, mine])
    return back


def _sweep_down(out, back, proposal, known, below, lengths, close: bool) -> np.ndarray:
    """Root to leaves, a depth at a time: each free joint at its bone's length from its (placed) parent, towards
    where the sweep up put it; a free joint with nothing known below keeps the proposal's direction. With `close`, a
    free joint whose only child is known is put where both its bones reach (nearest its current place), on the line
    when out of reach."""
    new = out.copy()
    new[:, 0] = np.where(known[:, :1], out[:, 0], back[:, 0])
    for level in LEVELS[1:]:
        p, m = PARENTS[level], lengths[:, level - 1, None]      # bone b joins joint b + 1 to its parent
        target = np.where(below[:, level, None], back[:, level], new[:, p] + (proposal[:, level] - proposal[:, p]))
        placed = new[:, p] + unit(target - new[:, p]) * m
        new[:, level] = np.where(known[:, level, None], out[:, level], placed)
        kid = _ONLY_CHILD[level]
        if close and (kid >= 0).any():
            rows, at = np.nonzero(~known[:, level] & known[:, np.maximum(kid, 0)] & (kid >= 0))
            if len(rows):
                j, c = level[at], kid[at]
                new[rows, j] = two_bone(new[rows, PARENTS[j]], out[rows, c], lengths[rows, j - 1],
                                        lengths[rows, c - 1], out[rows, j])
    return new


# --- one pose in Python floats: the same sweeps, joint by joint (a parent's index is below its children's) ---------

def _fabrik_one(pose, known, below, lengths, sweeps: int, tolerance: float) -> np.ndarray:
    first = pose.tolist()
    k, b, m = known.tolist(), below.tolist(), lengths.tolist()
    out = first
    ends = [(c, _PARENT[c]) for c in range(1, N_JOINTS) if k[c] and not k[_PARENT[c]]]
    for _ in range(sweeps):
        if max((abs(math.dist(out[c], out[p]) - m[c - 1]) for c, p in ends), default=0.0) < tolerance:
            break
        out = _down_one(out, _up_one(out, k, b, m), first, k, b, m)
    last = np.array(_down_one(out, out, first, k, b, m))
    # Each hinge from its parent's final place: nothing else hangs on a hinge (its only child is known), nor is its
    # parent one (a hinge's only child is known), as in _sweep_down.
    hinges = [j for j in range(1, N_JOINTS) if not k[j] and _ONLY_CHILD[j] >= 0 and k[_ONLY_CHILD[j]]]
    if hinges:
        j = np.array(hinges)
        c, ahead = _ONLY_CHILD[j], np.asarray(out)
        last[j] = two_bone(last[PARENTS[j]], ahead[c], lengths[j - 1], lengths[c - 1], ahead[j])
    return last


def _up_one(out, k, b, m):
    back = [q[:] for q in out]
    for j in range(N_JOINTS - 1, -1, -1):
        if k[j] or not b[j]:
            continue
        ox, oy, oz = out[j]
        tx = ty = tz = 0.0
        n = 0
        for c in _KIDS[j]:
            if not (k[c] or b[c]):
                continue
            bx, by, bz = back[c]
            dx, dy, dz = ox - bx, oy - by, oz - bz
            norm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
            s = m[c - 1]
            tx, ty, tz, n = tx + (bx + dx / norm * s), ty + (by + dy / norm * s), tz + (bz + dz / norm * s), n + 1
        if n:
            back[j] = [tx / n, ty / n, tz / n]
    return back


def _down_one(out, back, first, k, b, m):
    new = [q[:] for q in out]
    new[0] = out[0][:] if k[0] else back[0][:]
    for j in range(1, N_JOINTS):
        if k[j]:
            continue
        p = _PARENT[j]
        px, py, pz = new[p]
        if b[j]:
            tx, ty, tz = back[j]
        else:
            tx, ty, tz = (px + (first[j][0] - first[p][0]), py + (first[j][1] - first[p][1]),
                          pz + (first[j][2] - first[p][2]))
        dx, dy, dz = tx - px, ty - py, tz - pz
        norm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
        s = m[j - 1]
        new[j] = [px + dx / norm * s, py + dy / norm * s, pz + dz / norm * s]
    return new
