"""Hierarchical condition masking (GFPose): drop the whole condition, body parts and single joints, as a union.

Masks are per joint of the model's 23 (pelvis-relative) joints; True = known.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from gfpose_core.body.skeleton import BODY_PARTS

# Model joints are body24 minus the pelvis: body24 index j -> model index j - 1.
_PARTS = [[j - 1 for j in joints if j > 0] for joints in BODY_PARTS.values()]


@dataclass
class MaskingConfig:
    p_drop_all: float = 0.1
    p_drop_part: float = 0.2
    p_drop_joint: float = 0.1
    p_3d: float = 0.5   # paper: 0.1; animators mostly condition on 3D, so this project trains more of it

    def to_dict(self):
        return asdict(self)


def hierarchical_mask(batch: int, n_joints: int, cfg: MaskingConfig, generator=None, device="cpu") -> torch.Tensor:
    """(batch, n_joints) bool, True where the joint stays in the condition."""
    def draw(*shape):
        return torch.rand(shape, generator=generator, device=device)

    drop = draw(batch, n_joints) < cfg.p_drop_joint
    part_drop = draw(batch, len(_PARTS)) < cfg.p_drop_part
    for k, joints in enumerate(_PARTS):
        drop[:, joints] |= part_drop[:, k:k + 1]
    drop |= draw(batch, 1) < cfg.p_drop_all
    return ~drop


def draw_is_2d(batch: int, cfg: MaskingConfig, generator=None, device="cpu") -> torch.Tensor:
    return torch.rand(batch, generator=generator, device=device) >= cfg.p_3d


# -- masks over time, for the motion model ---------------------------------------------------------------------
# Body24 parts (the motion model keeps the pelvis as a joint of its own).
_PARTS24 = list(BODY_PARTS.values())


@dataclass
class MotionMaskingConfig:
    """What an animator or a capture leaves known in a window, each case with its probability (the rest: all
    frames known, with a few joints dropped at random, which is what denoising conditions on)."""
    p_free: float = 0.1         # nothing known: the unconditional prior (denoising starts from it)
    p_keys: float = 0.45        # keyframes: full or partial poses every k frames, or at random frames
    p_dropouts: float = 0.3     # capture gaps: joints, parts or whole frames missing over spans
    p_parts: float = 0.1        # whole body parts unknown over the window (keyed upper body, legs to fill)
    p_partial_keys: float = 0.3  # of keyframe windows: keys with body parts missing
    p_joint: float = 0.03       # single joints dropped anywhere

    def to_dict(self):
        return asdict(self)


def motion_mask(batch: int, frames: int, cfg: MotionMaskingConfig, generator=None) -> torch.Tensor:
    """(batch, frames, 24) bool, True where the joint of that frame is in the condition."""
    def rand(*shape):
        return torch.rand(shape, generator=generator)

    def randint(lo, hi):
        return int(torch.randint(lo, hi, (1,), generator=generator))

    J = sum(len(p) for p in _PARTS24)
    known = torch.ones(batch, frames, J, dtype=torch.bool)
    kind = rand(batch)
    edges = torch.cumsum(torch.tensor([cfg.p_free, cfg.p_keys, cfg.p_dropouts, cfg.p_parts]), 0)
    for b in range(batch):
        k = kind[b]
        if k < edges[0]:
            known[b] = False
        elif k < edges[1]:
            if rand(1) < 0.5:
                spacing = randint(2, frames)
                keys = torch.zeros(frames, dtype=torch.bool)
                keys[randint(0, spacing)::spacing] = True
            else:
                keys = rand(frames) < 1.0 / randint(2, 40)
            if not keys.any():
                keys[randint(0, frames)] = True
            known[b] = keys[:, None]
            if rand(1) < cfg.p_partial_keys:
                for part in _PARTS24:
                    rows = torch.nonzero(keys & (rand(frames) < 0.3)).flatten()
                    known[b, rows[:, None], torch.tensor(part)[None]] = False
        elif k < edges[2]:
            for _ in range(1 + randint(0, 4)):
                length = randint(1, frames // 2 + 1)
                s = randint(0, frames - length + 1)
                r = rand(1)
                if r < 0.2:
                    known[b, s:s + length] = False
                elif r < 0.6:
                    known[b, s:s + length, _PARTS24[randint(0, len(_PARTS24))]] = False
                else:
                    known[b, s:s + length, randint(0, J)] = False
        elif k < edges[3]:
            for part in _PARTS24:
                if rand(1) < 0.4:
                    known[b, :, part] = False
    known &= rand(batch, frames, J) >= cfg.p_joint
    return known
