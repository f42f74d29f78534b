"""The motion model's coordinates: windows of body24 frames in one frame of reference, as normalised vectors.

A window is placed in the frame of one of its poses (the anchor: its pelvis at the origin, facing -Y) and scaled
by the take's body size, so the model sees the movement itself (travel, turns, feet planted) and not where in the
room or how tall. All 24 joints of every frame are kept, the pelvis included: its travel is part of the motion.
One global standard deviation, a per-coordinate mean (as pose_space, docs/findings.md, 4).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gfpose_core.body.skeleton import (
    N_JOINTS,
    Frame,
    canonicalise,
    estimate_scale,
    restore,
    to_canonical,
)

FRAME_DIM = N_JOINTS * 3


@dataclass
class MotionSpace:
    frames: int                  # window length the model was trained on
    fps: float                   # frame rate of its training windows
    reference_bones: np.ndarray  # (23,) metres: unit body scale
    mean: np.ndarray             # (72,)
    std: float

    @property
    def dim(self) -> int:
        return self.frames * FRAME_DIM

    def to_model(self, window: np.ndarray, frame: Frame) -> np.ndarray:
        """(B, W, 24, 3) world joints and one Frame entry per window -> (B, W*72); NaN stays NaN."""
        B, W = window.shape[:2]
        local = to_canonical(window.reshape(B, W * N_JOINTS, 3), frame)
        return ((local.reshape(B, W, FRAME_DIM) - self.mean) / self.std).reshape(B, W * FRAME_DIM)

    def from_model(self, v: np.ndarray, frame: Frame) -> np.ndarray:
        """(B, W*72) -> (B, W, 24, 3) world joints."""
        B = v.shape[0]
        local = v.reshape(B, -1, FRAME_DIM) * self.std + self.mean
        W = local.shape[1]
        return restore(local.reshape(B, W * N_JOINTS, 3), frame).reshape(B, W, N_JOINTS, 3)

    def to_dict(self) -> dict:
        return {"frames": self.frames, "fps": self.fps, "reference_bones": self.reference_bones.tolist(),
                "mean": self.mean.tolist(), "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> "MotionSpace":
        return cls(int(d["frames"]), float(d["fps"]), np.array(d["reference_bones"]), np.array(d["mean"]),
                   float(d["std"]))


def take_scale(take: np.ndarray, reference_bones: np.ndarray) -> float:
    """One body size for a whole take (median over frames of what its known segments say)."""
    lengths_known = np.isfinite(take).all(-1).sum(-1) >= 2
    if not lengths_known.any():
        return 1.0
    s = estimate_scale(take[lengths_known], reference_bones)
    s = s[np.isfinite(s) & (s > 0)]
    return float(np.median(s)) if len(s) else 1.0


def anchor_frame(window: np.ndarray, scale: float, mean_pose: np.ndarray | None = None) -> Frame:
    """The frame of reference of one window (W, 24, 3), NaN = unknown: its most complete pose nearest the middle
    gives the origin (pelvis) and the facing; `scale` is the take's body size."""
    known = np.isfinite(window).all(-1).sum(-1)
    if known.max() == 0:
        raise ValueError("window has no known joints")
    middle = (len(window) - 1) / 2
    order = np.lexsort((np.abs(np.arange(len(window)) - middle), -known))
    anchor = window[order[0]][None]
    _, f = canonicalise(anchor, None, mean_pose)
    return Frame(root=f.root, yaw=f.yaw, scale=np.array([scale]))


def stack_frames(frames: list[Frame]) -> Frame:
    return Frame(np.concatenate([f.root for f in frames]), np.concatenate([f.yaw for f in frames]),
                 np.concatenate([f.scale for f in frames]))
