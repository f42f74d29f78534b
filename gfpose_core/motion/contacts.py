"""Foot contacts: find where a foot is planted and keep it planted (foot locking), as animators clean takes.

A foot joint (ankle or toe) is in contact where it is near the ground and nearly still; during a contact it is
held at one place (its mean over the contact, eased in and out over a few frames) and the knee is re-solved so
the leg keeps its bone lengths. Learned priors and filters both leave feet sliding a little; locking removes it.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_closing, binary_opening, label

from gfpose_core.body.skeleton import (
    BONE_MIRROR,
    BONES,
    INDEX,
    N_JOINTS,
    fit_bone_lengths,
    take_bone_lengths,
)

FOOT_JOINTS = [INDEX[n] for n in ("ankle_l", "toe_l", "ankle_r", "toe_r")]
HEIGHT_M = 0.05        # above the ground (the take's lowest foot height), as metrics.foot_skate counts contact
SPEED_M_S = 0.4        # horizontal speed a planted foot does not reach (noise included)
MIN_FRAMES = 3
EASE_FRAMES = 3


def ground_height(take: np.ndarray) -> float:
    feet = take[:, FOOT_JOINTS, 2]
    feet = feet[np.isfinite(feet)]
    return float(np.percentile(feet, 1)) if feet.size else 0.0


def find_contacts(take: np.ndarray, fps: float, ground: float | None = None) -> np.ndarray:
    """(T, 4) bool: ankle_l, toe_l, ankle_r, toe_r planted on each frame."""
    feet = take[:, FOOT_JOINTS]
    ground = ground_height(take) if ground is None else ground
    low = feet[..., 2] <= ground + HEIGHT_M
    v = np.zeros(feet.shape[:2])
    if len(take) > 2:
        # central differences: robust to one noisy frame, a planted foot's speed is near zero both sides
        v[1:-1] = np.linalg.norm(feet[2:, :, :2] - feet[:-2, :, :2], axis=-1) * fps / 2
        v[0], v[-1] = v[1], v[-2]
    contact = low & (v < SPEED_M_S)
    out = np.zeros_like(contact)
    for k in range(contact.shape[1]):
        c = binary_closing(contact[:, k], np.ones(3, bool)) & low[:, k]
        out[:, k] = binary_opening(c, np.ones(MIN_FRAMES, bool))
    return out


def lock_feet(take: np.ndarray, contacts: np.ndarray, fixed: np.ndarray | None = None,
              lengths: np.ndarray | None = None) -> np.ndarray:
    """Hold each contact's foot joint at its mean horizontal place; re-solve knees (and hips' children) so the
    legs keep `lengths` (T, 23) (default: as measured). `fixed` (T, 24): joints that must not move (keys)."""
    out = take.copy()
    T = len(take)
    fixed = np.zeros((T, N_JOINTS), bool) if fixed is None else fixed
    moved = np.zeros((T, N_JOINTS), bool)
    for k, j in enumerate(FOOT_JOINTS):
        spans, n = label(contacts[:, k])
        for s in range(1, n + 1):
            frames = np.flatnonzero(spans == s)
            a, b = frames[0], frames[-1]
            held = fixed[frames, j]
            target = take[frames[held], j, :2].mean(0) if held.any() else take[frames, j, :2].mean(0)
            lo, hi = max(0, a - EASE_FRAMES), min(T - 1, b + EASE_FRAMES)
            idx = np.arange(lo, hi + 1)
            # full weight inside the contact, a smooth ramp over the frames around it
            w = np.ones(len(idx))
            before, after = idx < a, idx > b
            w[before] = 0.5 - 0.5 * np.cos(np.pi * (idx[before] - lo + 1) / (a - lo + 1))
            w[after] = 0.5 - 0.5 * np.cos(np.pi * (hi + 1 - idx[after]) / (hi - b + 1))
            free = ~fixed[idx, j]
            out[idx[free], j, :2] = (1 - w[free, None]) * out[idx[free], j, :2] + w[free, None] * target
            moved[idx[free], j] = True
    if not moved.any():
        return out
    if lengths is None:
        lengths = np.repeat(take_bone_lengths(take, np.full(len(BONE_MIRROR), np.nan))[None], T, 0)
    # keep everything but the knees (and the toes/ankles not moved) where they are; knees find their circle
    keep = np.ones((T, N_JOINTS), bool)
    bone_of = {c: b for b, c in enumerate(BONES[:, 0])}
    for side in ("l", "r"):
        hip, knee, ankle, toe = (INDEX[f"{n}_{side}"] for n in ("hip", "knee", "ankle", "toe"))
        # a planted ankle frees the knee (two-bone solve); a planted toe under a free ankle frees the ankle, which
        # then sits where shin and foot both reach; under a planted ankle the toe keeps its direction, not its place
        by_ankle = moved[:, ankle]
        keep[by_ankle, knee] = fixed[by_ankle, knee]
        by_toe = moved[:, toe] & ~moved[:, ankle]
        keep[by_toe, ankle] = fixed[by_toe, ankle]
        keep[by_ankle, toe] = fixed[by_ankle, toe]   # with the ankle planted too, the foot's length wins
        # a planted ankle out of the leg's reach is pulled back within it, so no bone stretches
        reach = lengths[:, bone_of[knee]] + lengths[:, bone_of[ankle]]
        leg = out[:, ankle] - out[:, hip]
        dist = np.linalg.norm(leg, axis=-1)
        far = moved[:, ankle] & ~fixed[:, ankle] & (dist > reach)
        out[far, ankle] = out[far, hip] + leg[far] * (reach[far] / dist[far])[:, None]
        # a moved ankle drags its toe along unless the toe is held on its own
        drag = moved[:, ankle] & ~moved[:, toe] & ~fixed[:, toe]
        out[drag, toe] += out[drag, ankle] - take[drag, ankle]
    return fit_bone_lengths(out, lengths, keep)
