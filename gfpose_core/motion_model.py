"""The spatio-temporal score network: a stack of dilated 1D convolutions over a window of frames.

Each frame is a 72-vector (24 joints); the condition is the per-frame residual to the observation and a per-joint
mask, both zero where unknown, as the per-frame model's condition (model.condition) but over time. Dilations
double per block so a few blocks see the whole window; time is projected into every block (FiLM-style shift).
Like ScoreNet it predicts the added noise, and it takes and returns flat (B, W*72) vectors so that the samplers
(which know nothing of windows) serve both models.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .model import timestep_embedding
from .skeleton import N_JOINTS

FRAME_DIM = N_JOINTS * 3


@dataclass
class MotionNetConfig:
    frames: int = 64
    hidden: int = 256
    blocks: int = 8
    kernel: int = 3
    max_dilation: int = 8      # dilations run 1, 2, 4 .. max_dilation, then repeat
    embed: int = 256
    dropout: float = 0.1
    groups: int = 32

    def to_dict(self):
        return asdict(self)

    def dilations(self) -> list[int]:
        out, d = [], 1
        for _ in range(self.blocks):
            out.append(d)
            d = 1 if d >= self.max_dilation else 2 * d
        return out


class _Block(nn.Module):
    def __init__(self, cfg: MotionNetConfig, dilation: int):
        super().__init__()
        pad = dilation * (cfg.kernel - 1) // 2
        self.norm1 = nn.GroupNorm(cfg.groups, cfg.hidden)
        self.conv1 = nn.Conv1d(cfg.hidden, cfg.hidden, cfg.kernel, padding=pad, dilation=dilation)
        self.time = nn.Linear(cfg.embed, cfg.hidden)
        self.norm2 = nn.GroupNorm(cfg.groups, cfg.hidden)
        self.conv2 = nn.Conv1d(cfg.hidden, cfg.hidden, cfg.kernel, padding=pad, dilation=dilation)
        self.act, self.drop = nn.SiLU(), nn.Dropout(cfg.dropout)

    def forward(self, h, temb):
        y = self.conv1(self.act(self.norm1(h))) + self.time(temb)[:, :, None]
        y = self.conv2(self.drop(self.act(self.norm2(y))))
        return h + y


class MotionScoreNet(nn.Module):
    def __init__(self, cfg: MotionNetConfig = MotionNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.time_embed = nn.Sequential(nn.Linear(cfg.embed, cfg.embed), nn.SiLU(), nn.Linear(cfg.embed, cfg.embed))
        # noisy frame + residual to the observation + per-joint mask
        self.pre = nn.Conv1d(2 * FRAME_DIM + N_JOINTS, cfg.hidden, 1)
        self.blocks = nn.ModuleList([_Block(cfg, d) for d in cfg.dilations()])
        self.norm = nn.GroupNorm(cfg.groups, cfg.hidden)
        self.out = nn.Conv1d(cfg.hidden, FRAME_DIM, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, W*72), t (B,), cond (B, W*96) from motion_condition -> predicted noise (B, W*72)."""
        B = x.shape[0]
        h = torch.cat([x.reshape(B, -1, FRAME_DIM), cond.reshape(B, -1, FRAME_DIM + N_JOINTS)], -1)
        h = self.pre(h.transpose(1, 2))
        temb = self.time_embed(timestep_embedding(t, self.cfg.embed))
        for block in self.blocks:
            h = block(h, temb)
        return self.out(torch.nn.functional.silu(self.norm(h))).transpose(1, 2).reshape(B, -1)


def motion_condition(x_t: torch.Tensor, observation: torch.Tensor, joint_mask: torch.Tensor) -> torch.Tensor:
    """(B, W*72) noisy windows, observations and a (B, W, 24) known mask -> (B, W*96) condition."""
    B = x_t.shape[0]
    m = joint_mask.to(x_t.dtype)
    coord = m.repeat_interleave(3, dim=-1).reshape(B, -1)
    residual = ((x_t - observation) * coord).reshape(B, -1, FRAME_DIM)
    return torch.cat([residual, m.reshape(B, -1, N_JOINTS)], -1).reshape(B, -1)
