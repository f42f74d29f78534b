"""Benchmark section: does a pose complete the same on a body with other proportions (issue 16, item 3)?

Each held-out pose is first put on the reference body (the engine's bone lengths, the pose's own bone
directions), then on bodies whose torso, legs or arms are longer or shorter by as much as real characters differ
from CMU's performers. One arm is hidden; the completed arm's bone directions on each changed body are compared
with the answer for the same pose on the reference body. Lengths change, directions do not, so a prior that
understood the pose would answer with the same directions: the angle between them is what proportions cost.

The elbow criterion catches the failure seen on real characters (Complete Pose bending both elbows to about 90
degrees where the real arm hangs nearly straight): among poses whose real elbow is over 140 degrees, the share
completed under 110 degrees.
"""
from __future__ import annotations

import numpy as np

from gfpose_core.bench.metrics import angle_deg
from gfpose_core.body.skeleton import (
    BODY_PARTS,
    BONES,
    INDEX,
    estimate_scale,
    known_bone_lengths,
    with_bone_lengths,
)

# Bones by the joint they end in (BONES holds (child, parent)): a body part's length is the length of these bones.
_ENDS = {
    "torso": ("spine", "chest", "neck"),
    "legs": ("knee_l", "ankle_l", "toe_l", "knee_r", "ankle_r", "toe_r"),
    "arms": ("elbow_l", "wrist_l", "hand_end_l", "elbow_r", "wrist_r", "hand_end_r"),
}
PART_BONES = {part: np.flatnonzero(np.isin(BONES[:, 0], [INDEX[n] for n in ends])) for part, ends in _ENDS.items()}

# The changed bodies: each part alone at both ends of the range the issue names, and two characters' mixes
# (a long-torso short-legged one, a stylised long-limbed one).
BODIES = {
    "torso+20%": {"torso": 1.20}, "torso-20%": {"torso": 0.80},
    "legs+15%": {"legs": 1.15}, "legs-15%": {"legs": 0.85},
    "arms+15%": {"arms": 1.15}, "arms-15%": {"arms": 0.85},
    "torso+20% legs-15%": {"torso": 1.20, "legs": 0.85},
    "torso-20% legs+15% arms+15%": {"torso": 0.80, "legs": 1.15, "arms": 1.15},
}
ELBOW_STRAIGHT_DEG, ELBOW_BENT_DEG = 140.0, 110.0


def body_lengths(reference_bones: np.ndarray, scales: dict) -> np.ndarray:
    """(23,) bone lengths of the reference body with the named parts scaled."""
    unknown = set(scales) - set(PART_BONES)
    if unknown:
        raise ValueError(f"unknown body part(s) {sorted(unknown)} (known: {', '.join(PART_BONES)})")
    lengths = np.array(reference_bones, dtype=np.float64).copy()
    for part, s in scales.items():
        lengths[PART_BONES[part]] *= s
    return lengths


def elbow_angles(joints: np.ndarray, side: np.ndarray) -> np.ndarray:
    """(N,) inner angle at the elbow in degrees (180 = straight) of the arm on `side` ('l' or 'r' per pose)."""
    idx = {s: [INDEX[f"{n}_{s}"] for n in ("shoulder", "elbow", "wrist")] for s in ("l", "r")}
    sh, el, wr = (np.stack([joints[i, idx[s][k]] for i, s in enumerate(side)]) for k in range(3))
    return angle_deg(sh - el, wr - el)


def arm_direction_error(a: np.ndarray, b: np.ndarray, side: np.ndarray) -> np.ndarray:
    """(N,) mean angle in degrees between the bone directions of the hidden arm in two completions."""
    out = np.empty(len(a))
    for s in ("l", "r"):
        rows = side == s
        bones = np.flatnonzero(np.isin(BONES[:, 0], BODY_PARTS[f"arm_{s}"]))
        da = a[rows][:, BONES[bones, 0]] - a[rows][:, BONES[bones, 1]]
        db = b[rows][:, BONES[bones, 0]] - b[rows][:, BONES[bones, 1]]
        out[rows] = angle_deg(da, db).mean(1)
    return out


def to_reference_body(joints: np.ndarray, known: np.ndarray, reference_bones: np.ndarray) -> np.ndarray:
    """The known joints moved onto the reference body at the pose's own scale, every known bone's direction
    kept; a known joint under an unknown one moves with its nearest known ancestor. Unknown joints stay NaN."""
    masked = np.where(known[..., None], joints, np.nan)
    lengths = np.asarray(reference_bones)[None] * estimate_scale(masked, reference_bones)[:, None]
    out = masked.copy()
    shift = np.zeros_like(joints)       # how far each joint's nearest known ancestor has moved
    for b, (c, p) in enumerate(BONES):
        both = known[:, c] & known[:, p]
        d = joints[:, c] - joints[:, p]
        unit = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
        shift[:, c] = np.where(both[:, None], out[:, p] + unit * lengths[:, b, None] - joints[:, c], shift[:, p])
        out[:, c] = np.where(known[:, c, None], joints[:, c] + shift[:, c], np.nan)
    return out


def carry_back(answer: np.ndarray, joints: np.ndarray, known: np.ndarray, reference_bones: np.ndarray) -> np.ndarray:
    """An answer on the reference body back on the input's body: known joints exactly as given, each unknown
    joint at its parent plus the answer's bone direction times the input's length for that bone (measured,
    else the mirror bone's, else the reference body's at the input's scale)."""
    masked = np.where(known[..., None], joints, np.nan)
    fallback = np.asarray(reference_bones)[None] * estimate_scale(masked, reference_bones)[:, None]
    lengths = known_bone_lengths(masked, fallback)
    out = np.where(known[..., None], joints, answer)
    for b, (c, p) in enumerate(BONES):
        d = answer[:, c] - answer[:, p]
        unit = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
        out[:, c] = np.where(known[:, c, None], joints[:, c], out[:, p] + unit * lengths[:, b, None])
    return out


def complete_on_reference_body(engine, joints, known, **kw):
    """The candidate fix of item 3: complete on the reference body, carry the answer back to the input's."""
    ref = engine.space.reference_bones
    answer = engine.complete(to_reference_body(joints, known, ref), known, **kw)
    return carry_back(answer, joints, known, ref)


def proportion_test(engine, poses: np.ndarray, rng, bodies: dict = BODIES, complete=None) -> dict:
    """Complete one hidden arm of each pose on the reference body and on each changed body; compare."""
    ref_bones = engine.space.reference_bones
    side = np.where(rng.random(len(poses)) < 0.5, "l", "r")
    known = np.ones((len(poses), 24), bool)
    for s in ("l", "r"):
        known[np.ix_(side == s, BODY_PARTS[f"arm_{s}"])] = False
    ref_pose = with_bone_lengths(poses, ref_bones)
    complete = complete or (lambda j, k, **kw: engine.complete(j, k, **kw))
    ref_answer = complete(ref_pose, known, seed=0)
    real_elbow = elbow_angles(ref_pose, side)
    straight = real_elbow > ELBOW_STRAIGHT_DEG

    def elbow_share(answer):
        bent = elbow_angles(answer, side) < ELBOW_BENT_DEG
        return float(bent[straight].mean()) if straight.any() else float("nan")

    out = {"n": int(len(poses)), "straight_elbows": int(straight.sum()),
           "reference": {"bent_straight_elbow_share": elbow_share(ref_answer)}, "bodies": {}}
    for name, scales in bodies.items():
        changed = with_bone_lengths(poses, body_lengths(ref_bones, scales))
        answer = complete(changed, known, seed=0)
        err = arm_direction_error(answer, ref_answer, side)
        out["bodies"][name] = {"median_arm_direction_deg": round(float(np.median(err)), 2),
                               "p90_arm_direction_deg": round(float(np.percentile(err, 90)), 2),
                               "bent_straight_elbow_share": round(elbow_share(answer), 4)}
    worst = max(out["bodies"].values(), key=lambda r: r["median_arm_direction_deg"])
    out["worst_median_arm_direction_deg"] = worst["median_arm_direction_deg"]
    out["worst_bent_straight_elbow_share"] = max(
        [r["bent_straight_elbow_share"] for r in out["bodies"].values()] + [out["reference"]["bent_straight_elbow_share"]])
    return out


def run_proportions(engine, data, sizes, split: str = "test") -> dict:
    """The section on the bench's held-out CMU poses (`split` 'val' for decisions: never tune on test)."""
    cmu = data.sets["cmu"]
    rng = np.random.default_rng(16)
    idx = np.flatnonzero(cmu["split"] == split)
    rows = np.sort(rng.choice(idx, size=min(sizes.n_best_of, len(idx)), replace=False))
    return {"cmu": proportion_test(engine, cmu["joints"][rows].astype(np.float64), rng), "split": split}
