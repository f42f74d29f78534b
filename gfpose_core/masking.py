"""Hierarchical condition masking (GFPose): drop the whole condition, body parts and single joints, as a union.

Masks are per joint of the model's 23 (pelvis-relative) joints; True = known.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .skeleton import BODY_PARTS

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
