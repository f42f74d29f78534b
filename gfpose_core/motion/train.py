"""Training the motion model: denoising score matching on windows of takes, with masks over time.

The same loop as the per-frame model (train.Trainer: warm-up, clipping, EMA, validation on unseen subjects,
checkpoints, DDP); what differs is the sample: a window of consecutive frames of one clip (or of its mirror image),
put in the frame of one of its poses chosen at random (at inference the anchor is whichever pose is known best),
at the clip's body scale, with a little yaw and scale jitter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from gfpose_core.body.skeleton import (
    BONE_MIRROR,
    bone_lengths,
    estimate_scale,
    facing_yaw,
    mirror,
)
from gfpose_core.motion.network import MotionNetConfig, MotionScoreNet, coordinate_mask
from gfpose_core.motion.windows import FRAME_DIM, MotionSpace
from gfpose_core.prior.masking import MotionMaskingConfig, motion_mask
from gfpose_core.prior.train import LoopConfig, Trainer, rotation_z


@dataclass
class MotionTrainConfig(LoopConfig):
    batch: int = 64
    fps: float = 30.0
    model: MotionNetConfig = field(default_factory=MotionNetConfig)
    masking: MotionMaskingConfig = field(default_factory=MotionMaskingConfig)


class Clips:
    """Clips of one split, end to end (with their mirror images), and every window start inside one clip."""

    def __init__(self, joints: np.ndarray, clip: np.ndarray, frames: int, reference_bones: np.ndarray):
        pieces, starts, offset = [], [], 0
        for c in np.unique(clip):
            j = joints[clip == c].astype(np.float64)
            if len(j) < frames:
                continue
            for version in (j, mirror(j)):
                pieces.append(version)
                starts.append(offset + np.arange(len(version) - frames + 1))
                offset += len(version)
        if not pieces:
            raise ValueError(f"no clip has {frames} frames")
        scales = [np.full(len(p), np.median(estimate_scale(p, reference_bones))) for p in pieces]
        self.joints = torch.from_numpy(np.concatenate(pieces).astype(np.float32))
        self.yaw = torch.from_numpy(facing_yaw(np.concatenate(pieces)).astype(np.float32))
        self.scale = torch.from_numpy(np.concatenate(scales).astype(np.float32))
        self.starts = torch.from_numpy(np.concatenate(starts))


class MotionTrainer(Trainer):
    VAL_CHUNK = 512

    def __init__(self, cfg: MotionTrainConfig, train: dict, val: dict, out_dir, data_note: str = "",
                 device: str = "cpu"):
        """train/val: {"joints": (N, 24, 3) world, "clip": (N,) clip ids} at cfg.fps."""
        self._setup_process(cfg, out_dir, data_note, device)
        W = cfg.model.frames
        ref = np.median(bone_lengths(train["joints"].astype(np.float64)), axis=0)
        ref = 0.5 * (ref + ref[BONE_MIRROR])
        self.train_clips = Clips(train["joints"], train["clip"], W, ref)
        self.val_clips = Clips(val["joints"], val["clip"], W, ref)
        self.train_rel = self.train_clips.starts
        self.val_rel = self.val_clips.starts[::16]   # a window every 16 frames is plenty to validate
        # Statistics of windows seen as in training (random anchors), before normalisation.
        self.space = MotionSpace(W, cfg.fps, ref, np.zeros(FRAME_DIM), 1.0)
        self.mean_t, self.std = torch.zeros(FRAME_DIM), 1.0
        g = torch.Generator().manual_seed(99)
        probe = self._local(self.train_clips, self.train_rel[torch.randint(len(self.train_rel), (4096,),
                                                                              generator=g)], g, True)
        mean = probe.reshape(-1, FRAME_DIM).mean(0)
        std = float((probe.reshape(-1, FRAME_DIM) - mean).std())
        self.space = MotionSpace(W, cfg.fps, ref, mean.double().numpy(), std)
        self.mean_t, self.std = mean.to(self.device), std
        self._setup_model(lambda: MotionScoreNet(cfg.model))

    def _local(self, clips: Clips, starts: torch.Tensor, gen, augment: bool) -> torch.Tensor:
        """Windows (B, W, 24, 3) in the frame of an anchor pose, at unit body scale."""
        cfg, W = self.cfg, self.cfg.model.frames
        b = len(starts)
        idx = starts[:, None] + torch.arange(W)
        win = clips.joints[idx]
        anchor = torch.randint(W, (b,), generator=gen) if augment else torch.full((b,), W // 2)
        at = starts + anchor
        root = clips.joints[at, 0]
        yaw = clips.yaw[at]
        scale = clips.scale[starts]
        if augment:
            yaw = yaw + (torch.rand(b, generator=gen) * 2 - 1) * math.radians(cfg.yaw_jitter_deg)
            scale = scale * (1 + (torch.rand(b, generator=gen) * 2 - 1) * cfg.scale_jitter)
        rot = rotation_z(-yaw)
        return torch.einsum("bij,bfkj->bfki", rot, win - root[:, None, None]) / scale[:, None, None, None]

    def make_batch(self, starts: torch.Tensor, gen: torch.Generator, augment: bool = True):
        clips = self.train_clips if augment else self.val_clips
        b, W = len(starts), self.cfg.model.frames
        local = self._local(clips, starts, gen, augment).reshape(b, W, FRAME_DIM).to(self.device)
        x0 = ((local - self.mean_t) / self.std).reshape(b, -1)
        known = motion_mask(b, W, self.cfg.masking, gen).to(self.device)
        t = (torch.rand(b, generator=gen) * (1 - self.sde.eps) + self.sde.eps).to(self.device)
        z = torch.randn(x0.shape, generator=gen).to(self.device)
        mean, std = self.sde.marginal_prob(x0, t)
        # Known coordinates carry no noise (alpha * x0), as imputation pastes them when sampling, and teach nothing:
        # the loss is on what is unknown.
        unknown = 1 - coordinate_mask(known)
        x_t = mean + unknown * std[:, None] * z
        return x_t, t, self.net.condition(x0, known), x0, unknown

    def loss(self, model, batch) -> torch.Tensor:
        """EDM's loss: the network output against its target (x0 - base - c_skip (y - base)) / c_out."""
        x_t, t, cond, x0, unknown = batch
        net = model.module if hasattr(model, "module") else model
        inp, base, y, c_skip, c_out, _, _ = net.preconditioned(x_t, t, cond)
        F = model(inp, t, cond, raw=True)
        err = ((F - (x0 - base - c_skip * (y - base)) / c_out) ** 2 * unknown).sum(-1)
        return err.sum() / unknown.sum().clamp(min=1)

    def config_dict(self) -> dict:
        d = super().config_dict()
        d["format"] = "gfpose-motion-weights-1"
        d["model"] = self.cfg.model.to_dict()
        d["space"] = self.space.to_dict()
        d["training"]["train_windows"] = int(len(self.train_rel))
        d["training"].pop("train_poses", None)
        return d


def split_clips(takes: dict, split: str) -> dict:
    sel = takes["split"] == split
    return {"joints": takes["joints"][sel], "clip": takes["clip"][sel]}
