"""The posterior mean of a pose given its known joints, E[x0 | known]: one pass of each network, no sampling.

The score network's denoiser at t = T sees only noise, so its best guess is this posterior mean; but predicting
noise, it would have to resolve x0 through a factor alpha(T) ~ 0.007, and cannot in practice. This network has
the score network's architecture and is asked the question directly: the pose input is the known coordinates
pasted over the prior's mean (zero), as the samplers impute them, t is T, and the loss is squared error on the
unknown coordinates of poses put in the frame that the engine computes from their known joints alone.

Why a single completion wants it: a limb that the rest of the body says little about has a broad posterior. Mode
seeking commits to one likely limb; the mean hedges, and its error against the truth is lower (validation poses,
one limb unknown, MPJPE / nearest neighbour's: CMU arm 0.72 -> 0.60, Bandai arm 0.89 -> 0.72). The engine
(_best_guess) mixes in some of the mode for legs, lets the score model refine the result from a small t (a mean of
arms is no arm) and gives every bone its length along the direction the answer has (skeleton.fit_bone_lengths).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gfpose_core.prior.pose_space import PoseSpace
from gfpose_core.prior.score_net import ScoreNet, ScoreNetConfig, condition

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
    """The trained network(s) of a weights folder's posterior_mean/ subfolder, in the score model's pose space.

    The folder holds one network (config.json + model.safetensors, as training writes a run) or several, one per
    subfolder, whose answers are averaged: networks trained apart make partly independent errors. The shipped two,
    averaged, were nearer the truth than the first alone on every validation cell and than the second alone on all
    but CMU legs (docs/history.md)."""

    def __init__(self, nets: list[ScoreNet], device: torch.device):
        self.nets, self.device = nets, device

    @classmethod
    def load(cls, folder: str | Path, device: torch.device, space: PoseSpace) -> "PosteriorMean":
        return cls(load_members(folder, KIND, lambda model: ScoreNet(ScoreNetConfig(**model)), device, space),
                   device)

    def __call__(self, observation: np.ndarray, coord_mask: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(observation, dtype=torch.float32, device=self.device)
        mask = torch.as_tensor(coord_mask, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            x = torch.stack([posterior_mean(net, obs, mask) for net in self.nets]).mean(0)
        return x.cpu().numpy().astype(np.float64)


def load_members(folder: str | Path, kind: str, make_net, device: torch.device, space: PoseSpace) -> list:
    """The networks of a folder beside a score model: the folder itself (config.json + model.safetensors, as
    training writes a run) or each subfolder holding one; each checked to be of `kind` and trained in `space`.
    make_net(config["model"]) builds one."""
    folder = Path(folder)
    members = [folder] if (folder / "config.json").exists() else sorted(
        p for p in folder.iterdir() if (p / "config.json").exists())
    if not members:
        raise ValueError(f"{folder} holds no {kind} network (config.json + model.safetensors)")
    nets = []
    for m in members:
        config = json.loads((m / "config.json").read_text())
        if config.get("kind") != kind:
            raise ValueError(f"{m} holds a {config.get('kind', 'score')!r} network, not a {kind} network")
        own = PoseSpace.from_dict(config["space"])
        if not (np.allclose(own.mean, space.mean) and np.isclose(own.std, space.std)):
            raise ValueError(f"{m} was trained in another pose space than the score model beside it")
        net = make_net(config["model"])
        net.load_state_dict(load_file(str(m / "model.safetensors")))   # half-precision files load as float32
        nets.append(net.to(device).eval())
    return nets


def ship(run: str | Path, dest: str | Path):
    """Copy a training run's network (a posterior mean, the body-told one or the effector network) into a weights
    folder in half precision: half the size (8.3 MB, not 16.6, for a posterior mean), answers within half a
    millimetre (0.02 mm on average) of the full-precision network's on validation poses."""
    run, dest = Path(run), Path(dest)
    missing = [f for f in ("config.json", "model.safetensors") if not (run / f).exists()]
    if missing:
        raise FileNotFoundError(f"{run} has no {' or '.join(missing)}: not a training run's folder")
    dest.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(run / "model.safetensors")).items()}
    save_file(state, str(dest / "model.safetensors"))
    shutil.copyfile(run / "config.json", dest / "config.json")


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: python -m gfpose_core.prior.posterior_mean RUN_DIR WEIGHTS/posterior_mean/NAME "
                 "(or WEIGHTS/body_mean, WEIGHTS/effector_mean)")
    try:
        ship(sys.argv[1], sys.argv[2])
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
