"""The time-dependent score network of GFPose: a residual MLP with time and condition projected into every layer.

It predicts the noise added to a pose; score = -prediction / sigma(t).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ScoreNetConfig:
    pose_dim: int = 69        # 23 joints x 3 (the pelvis is the origin of the canonical frame)
    hidden: int = 768
    blocks: int = 2
    embed: int = 256
    dropout: float = 0.1
    groups: int = 32

    @property
    def cond_dim(self) -> int:
        # residual (pose_dim) + per-coordinate mask (pose_dim) + 2D-condition flag
        return 2 * self.pose_dim + 1

    def to_dict(self):
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t*999, as the paper's code does."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1))
    args = (t.float() * 999.0)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class _Layer(nn.Module):
    def __init__(self, cfg: ScoreNetConfig, d_in: int):
        super().__init__()
        self.linear = nn.Linear(d_in, cfg.hidden)
        self.time_proj = nn.Linear(cfg.embed, cfg.hidden)
        self.cond_proj = nn.Linear(cfg.embed, cfg.hidden)
        self.norm = nn.GroupNorm(cfg.groups, cfg.hidden)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h, temb, cemb):
        return self.drop(self.act(self.norm(self.linear(h) + self.time_proj(temb) + self.cond_proj(cemb))))


class _Block(nn.Module):
    def __init__(self, cfg: ScoreNetConfig):
        super().__init__()
        self.a, self.b = _Layer(cfg, cfg.hidden), _Layer(cfg, cfg.hidden)

    def forward(self, h, temb, cemb):
        return h + self.b(self.a(h, temb, cemb), temb, cemb)


class ScoreNet(nn.Module):
    def __init__(self, cfg: ScoreNetConfig = ScoreNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.time_embed = nn.Sequential(nn.Linear(cfg.embed, cfg.embed), nn.SiLU())
        self.cond_embed = nn.Sequential(nn.Linear(cfg.cond_dim, cfg.embed), nn.SiLU())
        self.pre = nn.Linear(cfg.pose_dim, cfg.hidden)
        self.blocks = nn.ModuleList([_Block(cfg) for _ in range(cfg.blocks)])
        self.out = nn.Linear(cfg.hidden, cfg.pose_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        temb = self.time_embed(timestep_embedding(t, self.cfg.embed))
        cemb = self.cond_embed(cond)
        h = self.pre(x)
        for block in self.blocks:
            h = block(h, temb, cemb)
        return self.out(h)


def condition(x_t: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor, is_2d: torch.Tensor) -> torch.Tensor:
    """The network's condition: residual (noisy pose - observation) zeroed where unknown, the mask, the 2D flag."""
    residual = (x_t - observation) * mask
    return torch.cat([residual, mask, is_2d.reshape(-1, 1).to(x_t.dtype)], dim=-1)
