"""The posterior mean of a pose given its known joints, E[x0 | known]: one network pass, no sampling.

The score network's denoiser at t = T sees only noise, so its best guess is this posterior mean; but predicting
noise, it would have to resolve x0 through a factor alpha(T) ~ 0.007, and cannot in practice. This network has
the score network's architecture and is asked the question directly: the pose input is the known coordinates
pasted over the prior's mean (zero), as the samplers impute them, t is T, and the loss is squared error on the
unknown coordinates of poses put in the frame that the engine computes from their known joints alone.

Why a single completion wants it: a limb that the rest of the body says little about has a broad posterior. Mode
seeking commits to one likely limb; the mean hedges, and its error against the truth is lower (validation poses,
one limb unknown, MPJPE / nearest neighbour's: CMU arm 0.72 -> 0.60, Bandai arm 0.89 -> 0.72). The engine
(_best_guess) mixes in some of the mode for legs, lets the score model refine the result from a small t (a mean of
arms is no arm) and fits bone lengths afterwards (skeleton.settle_hedged_arms).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from .model import ScoreNet, ScoreNetConfig, condition
from .pose_space import PoseSpace

WEIGHTS_SUBDIR = "posterior_mean"
KIND = "posterior_mean"


def posterior_mean(net: ScoreNet, observation: torch.Tensor, coord_mask: torch.Tensor) -> torch.Tensor:
    """(B, 69) model units: the mean pose given the known coordinates (3D observations only)."""
    b = len(observation)
    x = observation * coord_mask
    is_2d = torch.zeros(b, device=observation.device)
    t = torch.ones(b, device=observation.device)
    return net(x, t, condition(x, observation, coord_mask, is_2d))


class PosteriorMean:
    """The trained network of a weights folder's posterior_mean/ subfolder, in the score model's pose space."""

    def __init__(self, net: ScoreNet, device: torch.device):
        self.net, self.device = net, device

    @classmethod
    def load(cls, folder: str | Path, device: torch.device, space: PoseSpace) -> "PosteriorMean":
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("kind") != KIND:
            raise ValueError(f"{folder} holds a {config.get('kind', 'score')!r} network, not a posterior mean")
        own = PoseSpace.from_dict(config["space"])
        if not (np.allclose(own.mean, space.mean) and np.isclose(own.std, space.std)):
            raise ValueError(f"{folder} was trained in another pose space than the score model beside it")
        net = ScoreNet(ScoreNetConfig(**config["model"]))
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(net.to(device).eval(), device)

    def __call__(self, observation: np.ndarray, coord_mask: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(observation, dtype=torch.float32, device=self.device)
        mask = torch.as_tensor(coord_mask, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            x = posterior_mean(self.net, obs, mask)
        return x.cpu().numpy().astype(np.float64)
