"""Completion from effectors (live posing): the animator places the pelvis, hands, feet and head, the body between
follows. The groups of body24 joints an effector carries, and the projection that puts the network's answer on the
rig's bone lengths while holding every known joint where it was put (numpy, and scipy's LAPACK for the
projection's small solves: the server reads the groups, the engine calls the projection).

Speed (issue 20, Auto Pose): a live request holds a pose up to four times (on_body twice, then on the rig and its
refining pass), and dragged targets are often a little out of reach (on Rigify the head by millimetres: the rig's
spine is longer bent than at rest), which used to cost every hold 50 Gauss-Newton steps before the sweeps, and
each of those steps an LU solve that, on two cores beside Blender, waited on BLAS threads. Now poses certainly out of
reach skip Newton, Newton gives up on a pose that stalls (STALL), solves by Cholesky, and the sweeps of a live
request's one pose run in Python floats (effector_sweeps.py): the same poses to 1e-12 m, a hold 12 -> 1.3 ms on
Auto Pose's bench requests (in-process, this CPU).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gfpose_core.body.skeleton import BONE_OF_CHILD, BONES, INDEX, JOINT_NAMES, N_JOINTS, PARENTS, two_bone
from gfpose_core.prior.effector_sweeps import fabrik, unit

# An effector is a position plus, where body24 carries it, an orientation: the hip line is the pelvis's, the hand
# bone the hand's, the foot bone the foot's, the head bone the head's.
EFFECTORS: dict[str, tuple[str, ...]] = {
    "pelvis": ("pelvis", "hip_l", "hip_r"),
    "head": ("head", "head_end"),
    "hand_l": ("wrist_l", "hand_end_l"),
    "hand_r": ("wrist_r", "hand_end_r"),
    "foot_l": ("ankle_l", "toe_l"),
    "foot_r": ("ankle_r", "toe_r"),
}
EFFECTOR_JOINTS: tuple[str, ...] = tuple(j for group in EFFECTORS.values() for j in group)

# The network's answer for effectors is prior/effector_guess.py's (posterior mean refined, no mode pass). Measured
# on CMU validation poses on their own bodies (subjects 8 and 14, 1,500 poses, pelvis + head + hands + feet known,
# the true bone lengths; scripts/effector_validation.py), the unknown joints' MPJPE / PA-MPJPE mm and elbow angle
# error deg, before it (a mode pass mixed in): mode share 0: 31.6 / 28.7 / 9.9; 0.5: 32.4 / 30.2 / 7.6; the mode
# alone: 34.0 / 32.0 / 7.6. Nearest neighbour on the effectors, held: 45.5 / 38.6 / 10.7; the rest pose placed on
# them, held: 54.4 / 50.0 / 24.2. (Knee angles are exact: hip, ankle and both leg bones are known.) With the
# character's chest shape held too (rest=, as the server does with a rig's), share 0.5: 25.7 / 25.0 / 7.5. On a
# rig's body (Rigify, the poses retargeted onto it) the mode's share cost more than it gave: effector_guess.py.
# As shipped (effector_guess.py, on_body): 27.8 / 25.0 / 7.0, with rest= 22.5 / 21.3 / 6.9.

# FABRIK sweeps (effector_sweeps.py), only where Newton does not close a pose (a target out of reach, or a proposal
# far from its lengths): they bring the chains near their lengths and point them at far targets; Newton then closes
# the rest.
SWEEPS = 12
NEWTON_STEPS = 50        # Gauss-Newton steps: most poses converge in a handful; a nearly straight neck in tens
# A pose whose largest gap is not below STALL[1] of what it was STALL[2] steps before, from step STALL[0] on, has a
# target out of reach: given up on there (it used to run all NEWTON_STEPS). Poses that close do it far faster: on the
# validation sets' holds (7,600 poses, on Rigify's body and their own) and Auto Pose's bench requests, from step 6
# on the gap was at most 0.5 of the one 4 steps before (largest 0.44), so none of them is cut.
STALL = (10, 0.5, 4)
TOLERANCE = 1e-9          # metres: every known joint's incoming bone within this, the sweeps stop
REACH_TOLERANCE = 1e-6    # metres: a bone into a known joint further off than this is reported as out of reach

# On a rig the neck's base and both collars ride on one chest bone: beyond their bones from the chest joint, these
# distances keep that shape (the collars 6 cm apart on a mannequin, not the 5 mm a free completion may give them,
# which put the rig's shoulders, and so its hands, up to 10 cm off the effectors).
CHEST_PAIRS = np.array([(INDEX["neck"], INDEX["collar_l"]), (INDEX["neck"], INDEX["collar_r"]),
                        (INDEX["collar_l"], INDEX["collar_r"])])


def _paths():
    """Between every two joints, the bones (24, 24, 23) and the joints strictly inside (24, 24, 24) of the path
    joining them."""
    up = [[j] for j in range(N_JOINTS)]                   # each joint's ancestors, itself first
    for j in range(1, N_JOINTS):
        up[j] = [j] + up[PARENTS[j]]
    bones = np.zeros((N_JOINTS, N_JOINTS, len(BONES)))
    inner = np.zeros((N_JOINTS, N_JOINTS, N_JOINTS))
    for i in range(N_JOINTS):
        for j in range(N_JOINTS):
            meet = next(a for a in up[i] if a in up[j])
            legs = up[i][:up[i].index(meet)] + up[j][:up[j].index(meet)]    # the joints below the meeting one
            bones[i, j, [BONE_OF_CHILD[c] for c in legs]] = 1
            inner[i, j, [a for a in legs + [meet] if a not in (i, j)]] = 1
    return bones, inner


_PATH_BONES, _PATH_INNER = _paths()
_PATH_HAS_INNER = _PATH_INNER.any(-1)


def effector_mask(groups=None, pins=None) -> np.ndarray:
    """(24,) bool: the joints of the named effector groups (default: all of them) and the pinned joints."""
    names = list(EFFECTORS) if groups is None else list(groups)
    bad = [g for g in names if g not in EFFECTORS]
    if bad:
        raise ValueError(f"unknown effector group(s) {', '.join(map(str, bad))}; the groups are "
                         f"{', '.join(EFFECTORS)}")
    mask = np.zeros(N_JOINTS, bool)
    for g in names:
        mask[[INDEX[j] for j in EFFECTORS[g]]] = True
    return mask | pin_mask(pins)


def pin_mask(pins) -> np.ndarray:
    """(24,) bool of pinned joints: body24 names, or a (24,) bool mask; None = none."""
    if pins is None:
        return np.zeros(N_JOINTS, bool)
    if isinstance(pins, str):
        pins = [pins]
    if isinstance(pins, (list, tuple)) and all(isinstance(p, str) for p in pins):
        bad = [p for p in pins if p not in INDEX]
        if bad:
            raise ValueError(f"unknown joint name(s) {', '.join(bad)} (body24 names: GET /info joints)")
        mask = np.zeros(N_JOINTS, bool)
        mask[[INDEX[p] for p in pins]] = True
        return mask
    mask = np.asarray(pins)
    if mask.shape != (N_JOINTS,):
        raise ValueError(f"pins must be joint names or a ({N_JOINTS},) bool mask")
    return mask.astype(bool)


def effector_known(joints: np.ndarray, known=None, pins=None) -> np.ndarray:
    """(N, 24) known mask of an effector completion of `joints` (N, 24, 3): `known` (default: every effector) and
    the pins. A joint marked known without a position is a ValueError naming it (an effector missing)."""
    pinned = pin_mask(pins)
    if known is None:
        mask = np.broadcast_to(effector_mask(), joints.shape[:2]) | pinned
    else:
        k = np.asarray(known)
        if k.ndim == 1:
            k = np.broadcast_to(k, joints.shape[:2])
        if k.shape != joints.shape[:2]:
            raise ValueError(f"known must have shape {joints.shape[:2]}, got {np.shape(known)}")
        if k.dtype != bool and not np.isin(k, (0, 1)).all():
            raise ValueError("known must be booleans")
        mask = k.astype(bool) | pinned
    absent = mask & ~np.isfinite(joints).all(-1)
    if absent.any():
        names = [JOINT_NAMES[j] for j in np.flatnonzero(absent.any(0))]
        what = "pinned joint(s)" if pinned[absent.any(0)].all() else "effector(s)"
        poses = np.flatnonzero(absent.any(1))[:10].tolist()
        raise ValueError(f"{what} {', '.join(names)} missing (no position) in pose(s) {poses}")
    empty = np.flatnonzero(~mask.any(1))
    if len(empty):
        raise ValueError(f"pose(s) {empty[:10].tolist()} have no known joints: place at least one effector")
    return np.array(mask)


def effector_body(lengths, rest, fallback: np.ndarray):
    """The bone lengths (N, 23) an effector completion holds, and the rest pose whose chest shape it keeps (or
    None): `lengths` (23,) or (N, 23), else the character's `rest` pose's (24, 3) or (N, 24, 3), else `fallback`."""
    if rest is None:
        return effector_lengths(lengths, fallback), None
    try:
        rest = np.asarray(rest, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("rest must be a pose of numbers (24, 3)") from None
    if rest.shape not in ((N_JOINTS, 3), fallback.shape[:1] + (N_JOINTS, 3)) or not np.isfinite(rest).all():
        raise ValueError(f"rest must be one pose (24, 3) or one per pose, every joint known, got {rest.shape}")
    own = np.broadcast_to(np.linalg.norm(rest[..., BONES[:, 0], :] - rest[..., BONES[:, 1], :], axis=-1),
                          fallback.shape)
    if not ((own > 0).all() and (chest_shape(rest) > 0).all()):
        raise ValueError("rest has joints on top of each other (a bone or the chest of no length)")
    return effector_lengths(lengths, own), rest


def effector_lengths(lengths, fallback: np.ndarray) -> np.ndarray:
    """(N, 23) bone lengths (bones 1..23, child order of PARENTS): `lengths` (23,) or (N, 23), else `fallback`."""
    if lengths is None:
        return fallback
    try:
        arr = np.asarray(lengths, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("lengths must be numbers, one per bone (23)") from None
    if arr.shape not in ((len(BONES),), fallback.shape):
        raise ValueError(f"lengths must have shape ({len(BONES)},) or {fallback.shape}, got {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError("lengths must be finite and positive (metres)")
    return np.broadcast_to(arr, fallback.shape).copy()


class Held(NamedTuple):
    joints: np.ndarray        # (N, 24, 3) known joints exactly as given, bones at their lengths where reachable
    out_of_reach: np.ndarray  # (N, 24) bool: known joints the chain towards them could not reach at its lengths


def hold_lengths(pose: np.ndarray, known: np.ndarray, lengths: np.ndarray, rest=None, rigid=None) -> Held:
    """`pose` (N, 24, 3) with every known joint (N, 24) exactly where it is and every bone at `lengths` (N, 23) or
    (23,), starting from `pose` so that the answer stays near it. `rest` (24, 3) or (N, 24, 3), optional: the
    character's rest pose, whose distances between the joint pairs `rigid` (P, 2) are kept too (default: the
    chest's, CHEST_PAIRS: neck and collars where a rig's chest bone carries them).

    Gauss-Newton on the lengths, each step the least move of the free joints; where that does not close (a target
    out of reach, a straight limb that cannot bend to first order), multi-end FABRIK first (each free joint pulled to
    its bones' lengths from the joints below it, then from its parent), which points a chain straight at a target
    out of reach. Such a target's own incoming bone is left longer than asked, and reported.
    """
    pose = np.asarray(pose, np.float64)
    known = np.asarray(known, bool)
    if pose.ndim == 2:
        held = hold_lengths(pose[None], known.reshape(1, -1), np.asarray(lengths).reshape(1, -1),
                            None if rest is None else np.asarray(rest).reshape(1, N_JOINTS, 3), rigid)
        return Held(held.joints[0], held.out_of_reach[0])
    n = len(pose)
    lengths = np.broadcast_to(np.asarray(lengths, np.float64), (n, len(BONES)))
    if not np.isfinite(pose).all():
        raise ValueError("the pose to hold has unknown (NaN) or infinite joints")
    if not (np.isfinite(lengths).all() and (lengths > 0).all()):
        raise ValueError("bone lengths must be finite and positive")
    pairs, spans, start = BONES, lengths, pose
    if rest is not None:
        rest = np.broadcast_to(np.asarray(rest, np.float64), pose.shape)
        rigid = CHEST_PAIRS if rigid is None else np.asarray(rigid, int).reshape(-1, 2)
        pairs = np.concatenate([BONES, rigid])
        spans = np.concatenate([lengths, np.linalg.norm(rest[:, rigid[:, 0]] - rest[:, rigid[:, 1]], axis=-1)], 1)
        start = _chest_like(pose, known, rest)
    # Poses with two known joints further apart than the bones between them reach go straight to the sweeps.
    out, closed = _newton_within_reach(start, known, pairs, spans, lengths)
    if not closed.all():
        open_ = np.flatnonzero(~closed)
        near = fabrik(pose[open_], known[open_], lengths[open_], SWEEPS, TOLERANCE)
        # The bone into the target furthest out of reach is left long and every other bone closed (a hand out of
        # reach does not keep the head's chain open, as FABRIK's compromise at the chest does); failing that, the
        # bones into every target FABRIK missed.
        k, m, sp = known[open_], lengths[open_], spans[open_]
        missed = np.zeros(sp.shape, bool)
        missed[:, :len(BONES)] = out_of_reach(near, k, m)[:, BONES[:, 0]]
        gap = np.where(missed, np.abs(np.linalg.norm(near[:, pairs[:, 0]] - near[:, pairs[:, 1]], axis=-1) - sp), 0)
        worst = missed & (gap == gap.max(1, keepdims=True))
        again, closed = _newton_within_reach(near, k, pairs, sp, m, skip=worst)
        rest = np.flatnonzero(~closed)
        if len(rest):
            again[rest], closed[rest] = _newton(near[rest], k[rest], pairs, sp[rest], skip=missed[rest])
        out[open_] = _aim(np.where(closed[:, None, None], again, near), k, m, missed[:, :len(BONES)])
    out = np.where(known[..., None], pose, out)
    return Held(out, out_of_reach(out, known, lengths))


# The arms below the shoulders, parents first: carried by direction (on_body).
_ARMS = np.array([INDEX[n] for n in ("elbow_l", "wrist_l", "hand_end_l", "elbow_r", "wrist_r", "hand_end_r")])


def on_body(answer: np.ndarray, known: np.ndarray, lengths: np.ndarray, rest=None) -> Held:
    """The network's `answer` (N, 24, 3) put on the character's body: held (hold_lengths), then each free joint of
    an arm below the shoulder put back at its bone's length along the direction that bone has in the answer, from
    where the holding left its parent, and held again.

    Why: a character's body keeps a pose's bone directions, not its joints' places (a pose retargeted onto a Rigify
    rig has every bone but the chest's collars and the pelvis's hips pointing as in the mocap, to the digit), and
    the network answers on its training bodies' proportions: on a rig the collar-to-shoulder bone is near twice
    theirs (17 vs 9 cm on Rigify), so holding moves the shoulder by centimetres, and the elbow held where the
    answer had it points the upper arm elsewhere. Validation poses on a Rigify body (scripts/effector_rig_
    validation.py, 300 each, rest= given), unknown joints' MPJPE mm / elbows mm / elbow angle error deg, CMU |
    Bandai: held only 32.8 / 74.3 / 12.8 | 31.5 / 72.2 / 9.1; the arms carried 28.5 / 52.9 / 9.7 | 28.0 / 51.1 /
    10.6 (Blender IK 51.5 / 129.4 / 23.2 | 35.1 / 81.1 / 9.2). Carried, then only the arms closed (the shoulders
    kept where the first holding put them): 30.5 / 61.7 / 12.8 | 27.6 / 50.9 / 9.1. On the rig's former collar
    reading (before the collar root was read on the chest bone), the shoulders carried too: CMU better (32.5 vs
    35.8), Bandai worse (39.7 vs 32.8: its mocap puts the shoulders behind the collars, the training data in
    front), so they stay held. The legs are not carried: the knee's place is set by the known hip and ankle, and
    the training bodies' thigh is far shorter against the shin than a rig's (0.8 vs 1.2), so the answer's thigh
    direction does not fit a rig's leg (knees 16 mm held, 32 carried, CMU).
    """
    first = hold_lengths(answer, known, lengths, rest)
    lengths = np.broadcast_to(np.asarray(lengths, np.float64), answer.shape[:1] + (len(BONES),))
    out = first.joints.copy()
    for j in _ARMS:
        p, b = PARENTS[j], BONE_OF_CHILD[int(j)]
        way = unit(answer[:, j] - answer[:, p])
        out[:, j] = np.where(known[:, j, None], out[:, j], out[:, p] + way * lengths[:, b, None])
    return hold_lengths(out, known, lengths, rest)


_CHEST = np.array([INDEX[n] for n in ("chest", "neck", "collar_l", "collar_r")])
# Points that say how the chest is turned: its own, and the shoulders (far apart, a steady left-right axis where a
# free completion puts the collars nearly together).
_CHEST_AIM = np.array([INDEX[n] for n in ("chest", "neck", "collar_l", "collar_r", "shoulder_l", "shoulder_r")])


def _chest_like(pose, known, rest) -> np.ndarray:
    """`pose` with its free neck and collars where the rest pose's chest, turned as the pose's is (Kabsch on
    _CHEST_AIM about the chest joint), puts them: a start on the right side of every chest distance (distances
    alone also allow the chest's mirror image)."""
    c = INDEX["chest"]
    a = rest[:, _CHEST_AIM] - rest[:, c:c + 1]
    b = pose[:, _CHEST_AIM] - pose[:, c:c + 1]
    u, _, vt = np.linalg.svd(np.einsum("npi,npj->nij", b, a))
    flip = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= flip[:, None]
    turn = u @ vt                                                   # rest -> pose, a proper rotation
    placed = pose[:, c:c + 1] + np.einsum("nij,npj->npi", turn, rest[:, _CHEST] - rest[:, c:c + 1])
    out = pose.copy()
    out[:, _CHEST] = np.where(known[:, _CHEST, None], pose[:, _CHEST], placed)
    return out


def chest_shape(rest: np.ndarray) -> np.ndarray:
    """(..., 3) the distances of CHEST_PAIRS in a rest pose (..., 24, 3)."""
    rest = np.asarray(rest, np.float64)
    return np.linalg.norm(rest[..., CHEST_PAIRS[:, 0], :] - rest[..., CHEST_PAIRS[:, 1], :], axis=-1)


def _newton(pose, known, pairs, spans, iterations: int = NEWTON_STEPS, skip=None):
    """Gauss-Newton on the squared distance errors of joint `pairs` (P, 2) from `spans` (N, P), each step the
    smallest move of the free joints that zeroes the errors to first order (so the answer stays near `pose`);
    pairs in `skip` (N, P) are left as they come. A pose stops once closed, or once it stalls (STALL). Returns the
    poses and which converged."""
    n, p = len(pose), len(pairs)
    child, parent = pairs[:, 0], pairs[:, 1]
    active = ~(known[:, child] & known[:, parent])                          # (N, P) pairs with a free end
    if skip is not None:
        active &= ~skip
    # The Jacobian of pair b's squared distance is 2 d_b on its child, -2 d_b on its parent (free ends only):
    # ends (N, P, 24) those signs, so J J^T = 4 (d_b . d_c) (ends ends^T)_bc, the step 2 ends^T (d lambda).
    ends = np.zeros((n, p, N_JOINTS))
    rows = np.arange(p)
    ends[:, rows, child] = ~known[:, child]
    ends[:, rows, parent] -= ~known[:, parent]
    ends *= active[..., None]
    shared = np.einsum("nbj,ncj->nbc", ends, ends)
    out, closed = pose.copy(), np.zeros(n, bool)
    todo, x, sp, gaps = np.arange(n), out.copy(), spans, []          # x: the poses still worked on
    damp = np.eye(p)
    for k in range(iterations + 1):
        d = x[:, child] - x[:, parent]                                     # (M, P, 3)
        sq = np.einsum("nbk,nbk->nb", d, d)
        gap = np.where(active, np.abs(np.sqrt(sq) - sp), 0.0).max(1)
        ok = gap < TOLERANCE
        # quadratic or fast linear convergence halves the gap every few steps; a target out of reach does not
        go = ~ok & np.isfinite(gap)
        if k >= STALL[0]:
            go &= gap <= STALL[1] * gaps[k - STALL[2]]
        gaps.append(gap)
        closed[todo[ok]] = True
        if k == iterations or not go.all():
            out[todo] = x
            if k == iterations or not go.any():
                break
            todo, x, d, sq, sp, active, ends, shared = (a[go] for a in (todo, x, d, sq, sp, active, ends, shared))
            gaps = [g[go] for g in gaps]
        r = np.where(active, sq - sp ** 2, 0.0)
        jj = 4 * np.einsum("nbk,nck->nbc", d, d) * shared
        # damped: a rigid group of more than four joints gives more distances than it has freedoms
        jj += (1e-10 * jj.trace(axis1=1, axis2=2) + 1e-15)[:, None, None] * damp
        x = x - 2 * np.einsum("nbj,nbk->njk", ends, d * _spd_solve(jj, r)[..., None])
    return out, closed & np.isfinite(out).all((1, 2))


def _newton_within_reach(pose, known, pairs, spans, lengths, skip=None):
    """_newton on the poses whose known joints are each within reach of the others by the bones between them (the
    bones of `skip` (N, P) reaching any distance); the others come back as they are, not closed."""
    reach = np.where(skip[:, :len(BONES)], 1e9, lengths) if skip is not None else lengths
    try_ = ~_beyond_reach(pose, known, reach)
    if try_.all():
        return _newton(pose, known, pairs, spans, skip=skip)
    out, closed = pose.copy(), np.zeros(len(pose), bool)
    if try_.any():
        out[try_], closed[try_] = _newton(pose[try_], known[try_], pairs, spans[try_],
                                          skip=None if skip is None else skip[try_])
    return out, closed


def _beyond_reach(pose, known, lengths) -> np.ndarray:
    """(N,) bool: two known joints, joined by a path through free joints only, further apart than its bones reach
    (no holding can close such a pose)."""
    reach = (lengths @ _PATH_BONES.reshape(-1, len(BONES)).T).reshape(-1, N_JOINTS, N_JOINTS)
    blocked = (known @ _PATH_INNER.reshape(-1, N_JOINTS).T).reshape(-1, N_JOINTS, N_JOINTS) > 0   # a known one inside
    apart = np.sqrt(((pose[:, :, None] - pose[:, None]) ** 2).sum(-1))
    pair = known[:, :, None] & known[:, None] & ~blocked & _PATH_HAS_INNER
    return (pair & (apart > reach + N_JOINTS * TOLERANCE)).any((1, 2))


def _spd_solve(a, b):
    """a (N, P, P) symmetric positive definite, b (N, P): a^-1 b. LAPACK's Cholesky one matrix at a time: for these
    small systems np.linalg.solve's LU hands work to BLAS threads, which beside Blender on two cores stall each
    solve by up to milliseconds."""
    from scipy.linalg import lapack
    out = np.empty_like(b)
    for i in range(len(a)):
        _, x, info = lapack.dposv(a[i], b[i])
        out[i] = x if info == 0 else np.linalg.solve(a[i], b[i])
    return out


def _aim(out, known, lengths, missed) -> np.ndarray:
    """The hinge before each target of `missed` (N, 23, by bone) put where both its bones reach it, or on the line
    straight at it (the limb pointing at a target out of reach)."""
    for b in np.flatnonzero(missed.any(0)):
        c, j = BONES[b]
        pp = PARENTS[j]
        rows = np.flatnonzero(missed[:, b] & ~known[:, j]) if pp >= 0 else []
        if len(rows):
            out[rows, j] = two_bone(out[rows, pp], out[rows, c], lengths[rows, BONE_OF_CHILD[int(j)]], lengths[rows, b],
                                     out[rows, j])
    return out


def out_of_reach(joints, known, lengths) -> np.ndarray:
    """(N, 24): known joints whose incoming bone from a free parent is off its length (the chain could not reach)."""
    out, known = np.asarray(joints, np.float64), np.asarray(known, bool)
    lengths = np.broadcast_to(lengths, out.shape[:-2] + (len(BONES),))
    child, parent = BONES[:, 0], BONES[:, 1]
    err = np.abs(np.linalg.norm(out[:, child] - out[:, parent], axis=-1) - lengths)
    missed = np.zeros(known.shape, bool)
    missed[:, child] = known[:, child] & ~known[:, parent] & (err > REACH_TOLERANCE)
    return missed
