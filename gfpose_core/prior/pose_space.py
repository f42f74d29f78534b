"""The model's coordinates: canonical body24 poses (pelvis at the origin) as normalised 69-vectors.

One global standard deviation for every coordinate (docs/findings.md, 4: it generalises across skeletons far better than
a per-coordinate one), a per-coordinate mean, and the reference bone lengths that define unit body scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gfpose_core.body.skeleton import N_JOINTS

MODEL_JOINTS = N_JOINTS - 1
POSE_DIM = MODEL_JOINTS * 3


@dataclass
class PoseSpace:
    reference_bones: np.ndarray  # (23,) metres
    mean: np.ndarray             # (69,)
    std: float

    def to_model(self, canon: np.ndarray) -> np.ndarray:
        """(N, 24, 3) canonical -> (N, 69); NaN stays NaN."""
        return (canon[:, 1:].reshape(len(canon), POSE_DIM) - self.mean) / self.std

    def from_model(self, v: np.ndarray) -> np.ndarray:
        """(..., 69) -> (..., 24, 3) canonical with the pelvis at the origin."""
        rel = (v * self.std + self.mean).reshape(v.shape[:-1] + (MODEL_JOINTS, 3))
        return np.concatenate([np.zeros(v.shape[:-1] + (1, 3)), rel], axis=-2)

    def to_dict(self) -> dict:
        return {"reference_bones": self.reference_bones.tolist(), "mean": self.mean.tolist(), "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> "PoseSpace":
        return cls(np.array(d["reference_bones"]), np.array(d["mean"]), float(d["std"]))


def coordinate_mask(joint_mask, is_2d):
    """(N, 23) joint mask -> (N, 69) coordinate mask; a 2D condition knows x and z (image plane), not depth y."""
    m = joint_mask.unsqueeze(-1).expand(*joint_mask.shape, 3).clone()
    m[..., 1] &= ~is_2d.unsqueeze(-1)
    return m.reshape(joint_mask.shape[0], -1)
