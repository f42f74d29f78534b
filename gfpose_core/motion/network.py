"""The spatio-temporal score network: a stack of dilated 1D convolutions over a window of frames.

Each frame is a 72-vector (24 joints); the condition is the clean observation and a per-joint mask, both zero
where unknown, projected into every block as time is (the per-frame model feeds the residual noisy - observed
instead; over time the clean keys themselves are what the frames between them are built from, and a first
motion model trained on the residual learned to use it only weakly). Dilations double per block so a few
blocks see the whole window.
Like ScoreNet it answers with the added noise, and it takes and returns flat (B, W*72) vectors so that the
samplers (which know nothing of windows) serve both models. Inside, it is preconditioned as Karras et al. (EDM,
2022) write it: the network F predicts the clean window through
    y = x_t / alpha,  s = sigma / alpha,  x0 = y / (s^2 + 1) + s / sqrt(s^2 + 1) * F(y / sqrt(s^2 + 1), t)
and is trained on a unit-variance target at every noise level. Plain noise prediction (the per-frame model's)
spends almost nothing on high noise levels, where only the keys say where the frames between them go: a first
motion model trained that way ignored its keys (frames between keys every 10 frames 300 mm off at t = 0.5,
linear interpolation 40 mm).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from gfpose_core.body.skeleton import N_JOINTS
from gfpose_core.prior.score_net import timestep_embedding
from gfpose_core.prior.sde import SubVPSDE

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
    parameterisation: str = "edm"   # see the module's docstring (data std 1: windows are normalised)
    # "interpolated": each known joint interpolated linearly over the frames between its keys (held before the
    # first and after the last), so every frame carries a guess the network corrects; "keys": zero between keys.
    condition: str = "interpolated"
    # The network predicts the window's difference from the interpolated keys (the condition's poses) rather than
    # the window itself, so that it starts as good as interpolation and only has to learn what interpolation
    # misses (False: weights from before this existed).
    residual: bool = True

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
        self.cond = nn.Conv1d(FRAME_DIM + N_JOINTS, cfg.hidden, 1)
        self.norm2 = nn.GroupNorm(cfg.groups, cfg.hidden)
        self.conv2 = nn.Conv1d(cfg.hidden, cfg.hidden, cfg.kernel, padding=pad, dilation=dilation)
        self.act, self.drop = nn.SiLU(), nn.Dropout(cfg.dropout)

    def forward(self, h, temb, cond):
        y = self.conv1(self.act(self.norm1(h))) + self.time(temb)[:, :, None] + self.cond(cond)
        y = self.conv2(self.drop(self.act(self.norm2(y))))
        return h + y


class MotionScoreNet(nn.Module):
    def __init__(self, cfg: MotionNetConfig = MotionNetConfig(), sde: SubVPSDE | None = None):
        super().__init__()
        self.cfg, self.sde = cfg, sde or SubVPSDE()
        self.time_embed = nn.Sequential(nn.Linear(cfg.embed, cfg.embed), nn.SiLU(), nn.Linear(cfg.embed, cfg.embed))
        # noisy frame + residual to the observation + per-joint mask
        self.pre = nn.Conv1d(2 * FRAME_DIM + N_JOINTS, cfg.hidden, 1)
        self.blocks = nn.ModuleList([_Block(cfg, d) for d in cfg.dilations()])
        self.norm = nn.GroupNorm(cfg.groups, cfg.hidden)
        self.out = nn.Conv1d(cfg.hidden, FRAME_DIM, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def condition(self, observation: torch.Tensor, joint_mask: torch.Tensor) -> torch.Tensor:
        return motion_condition(observation, joint_mask, self.cfg.condition)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """x (B, W*72), t (B,), cond (B, W*96) from self.condition -> predicted noise (B, W*72).
        raw: x is already the network's scaled input and F itself comes back (training, through DDP)."""
        if raw:
            return self.body(x, t, cond)
        x0, _, alpha, sigma = self.denoise(x, t, cond)
        return (x - alpha * x0) / sigma

    def scalings(self, x: torch.Tensor, t: torch.Tensor):
        """alpha, sigma (B, 1) of the sub-VP SDE at t; y = x / alpha; EDM's c_in, c_skip, c_out for data std 1."""
        alpha, sigma = (v.to(x.dtype).reshape(-1, 1) for v in self.sde.alpha_sigma(t))
        s2 = (sigma / alpha) ** 2
        return alpha, sigma, x / alpha, torch.rsqrt(s2 + 1), 1 / (s2 + 1), (sigma / alpha) * torch.rsqrt(s2 + 1)

    def base(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, W*96) condition -> (B, W*72) the window the network predicts a difference from (zero if none)."""
        if not self.cfg.residual:
            return torch.zeros(cond.shape[0], cond.shape[1] // (FRAME_DIM + N_JOINTS) * FRAME_DIM,
                               dtype=cond.dtype, device=cond.device)
        B = cond.shape[0]
        return cond.reshape(B, -1, FRAME_DIM + N_JOINTS)[..., :FRAME_DIM].reshape(B, -1)

    def preconditioned(self, x, t, cond):
        """-> the network's input, the base, and EDM's c_skip, c_out, alpha, sigma: the clean estimate is
        base + c_skip * (y - base) + c_out * F(input)."""
        alpha, sigma, y, c_in, c_skip, c_out = self.scalings(x, t)
        base = self.base(cond)
        return c_in * (y - base), base, y, c_skip, c_out, alpha, sigma

    def denoise(self, x, t, cond):
        """-> (clean window estimate, the raw network output F, alpha, sigma)."""
        inp, base, y, c_skip, c_out, alpha, sigma = self.preconditioned(x, t, cond)
        F = self.body(inp, t, cond)
        return base + c_skip * (y - base) + c_out * F, F, alpha, sigma

    def body(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        c = cond.reshape(B, -1, FRAME_DIM + N_JOINTS)
        h = self.pre(torch.cat([x.reshape(B, -1, FRAME_DIM), c], -1).transpose(1, 2))
        c = c.transpose(1, 2)
        temb = self.time_embed(timestep_embedding(t, self.cfg.embed))
        for block in self.blocks:
            h = block(h, temb, c)
        return self.out(torch.nn.functional.silu(self.norm(h))).transpose(1, 2).reshape(B, -1)


def coordinate_mask(joint_mask: torch.Tensor) -> torch.Tensor:
    """(B, W, 24) known joints -> (B, W*72) known coordinates (0/1, the dtype of a float tensor)."""
    return joint_mask.float().repeat_interleave(3, dim=-1).reshape(joint_mask.shape[0], -1)


def motion_condition(observation: torch.Tensor, joint_mask: torch.Tensor, kind: str = "interpolated") -> torch.Tensor:
    """(B, W*72) clean observations and a (B, W, 24) known mask -> (B, W*96) condition: the known joints (kind
    "keys": zero where unknown; "interpolated": linear between a joint's known frames, held at the ends, zero only
    for a joint known nowhere in the window) and the mask."""
    B = observation.shape[0]
    m = joint_mask.to(observation.dtype)
    obs = observation.reshape(B, -1, N_JOINTS, 3)
    if kind == "interpolated":
        known = interpolate_known(obs, joint_mask)
    elif kind == "keys":
        known = obs * m[..., None]
    else:
        raise ValueError(f"unknown motion condition '{kind}'")
    return torch.cat([known.reshape(B, -1, FRAME_DIM), m], -1).reshape(B, -1)


def interpolate_known(obs: torch.Tensor, joint_mask: torch.Tensor) -> torch.Tensor:
    """(B, W, J, 3) values valid where (B, W, J) is True -> every frame linearly interpolated per joint between
    the nearest known frames before and after it (held past the first and last; zero for a joint never known)."""
    B, W, J, _ = obs.shape
    idx = torch.arange(W, device=obs.device)[None, :, None].expand(B, W, J)
    prev = torch.cummax(torch.where(joint_mask, idx, -1), 1).values
    nxt = (W - 1) - torch.cummax(torch.where(joint_mask.flip(1), idx, -1), 1).values.flip(1)   # W: none after
    has_prev, has_next = prev >= 0, nxt <= W - 1
    p, n = prev.clamp(0, W - 1), nxt.clamp(0, W - 1)
    p = torch.where(has_prev, p, n)
    n = torch.where(has_next, n, p)
    vp = torch.gather(obs, 1, p[..., None].expand(B, W, J, 3))
    vn = torch.gather(obs, 1, n[..., None].expand(B, W, J, 3))
    span = (n - p).clamp(min=1).to(obs.dtype)
    w = ((idx - p).to(obs.dtype) / span).clamp(0, 1)[..., None]
    out = vp + w * (vn - vp)
    return out * joint_mask.any(1, keepdim=True)[..., None].to(obs.dtype)
