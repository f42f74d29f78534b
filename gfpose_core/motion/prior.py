"""The motion prior: the spatio-temporal score model, loaded, and sampled over windows of a take.

Windows go in as world-space joints (NaN = unknown) with a known mask and the frame of reference each is seen in
(motion_space.anchor_frame); they come out in world space. Everything about takes (which windows, blending,
frame rates, contacts) lives in takes.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from gfpose_core.body.skeleton import Frame
from gfpose_core.motion.network import MotionNetConfig, MotionScoreNet, coordinate_mask
from gfpose_core.motion.windows import FRAME_DIM, MotionSpace
from gfpose_core.prior.samplers import sample_known
from gfpose_core.prior.sde import SubVPSDE
from gfpose_core.threads import threads_for

WEIGHTS_SUBDIR = "motion"
SMALL_WINDOWS = 4   # windows sampled on one CPU thread (see threads.threads_for)


class MotionPrior:
    def __init__(self, net: MotionScoreNet, space: MotionSpace, config: dict, device: torch.device):
        self.net, self.space, self.config, self.device = net, space, config, device
        self.sde = SubVPSDE(config["sde"]["beta_min"], config["sde"]["beta_max"])
        mean = space.mean.reshape(-1, 3)
        self.mean_pose = mean - mean[0]   # a plausible pose around the pelvis, for anchors without a pelvis

    @property
    def frames(self) -> int:
        return self.space.frames

    @classmethod
    def load(cls, folder: str | Path, device: torch.device) -> "MotionPrior":
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("format") != "gfpose-motion-weights-1":
            raise ValueError(f"{folder} does not hold motion-model weights")
        # weights from before the interpolated condition existed were trained on keys alone, for the window itself
        net = MotionScoreNet(MotionNetConfig(**{"condition": "keys", "residual": False, **config["model"]}))
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        net.to(device).eval()
        return cls(net, MotionSpace.from_dict(config["space"]), config, device)

    def sample(self, windows: np.ndarray, known: np.ndarray, frame: Frame, *, sampler: str, steps: int,
               generator, t_start: float = 1.0, from_observation: bool = False, start_noise: bool = False,
               batch: int = 256,
               callback=None) -> np.ndarray:
        """(B, W, 24, 3) world windows, (B, W, 24) known -> (B, W, 24, 3) world windows sampled by the prior.

        Known joints condition the score and are imputed (returned exactly). from_observation starts at t_start
        from the windows themselves scaled by alpha(t_start) (SDEdit: the observation's own noise is the noise)
        instead of from the prior; unknown joints there must be filled beforehand.
        """
        B, W = windows.shape[:2]
        if W != self.frames:
            raise ValueError(f"windows must have {self.frames} frames, got {W}")
        obs = np.nan_to_num(self.space.to_model(np.where(known[..., None], windows, np.nan), frame))
        start = self.space.to_model(windows, frame) if from_observation else None
        out = np.empty((B, W * FRAME_DIM))
        done, total = 0, (B + batch - 1) // batch * steps
        for s in range(0, B, batch):
            sl = slice(s, min(s + batch, B))
            obs_t = torch.as_tensor(obs[sl], dtype=torch.float32, device=self.device)
            known_t = torch.as_tensor(known[sl], device=self.device)
            cmask = coordinate_mask(known_t)
            cond = self.net.condition(obs_t, known_t)
            sde, net = self.sde, self.net

            score = sde.score_fn(lambda x, t, cond=cond: net(x, t, cond))

            x0 = None
            if start is not None:
                alpha, sigma = (float(v) for v in sde.alpha_sigma(t_start))
                x0 = alpha * torch.as_tensor(np.nan_to_num(start[sl]), dtype=torch.float32, device=self.device)
                if start_noise:   # a guess is not noisy the way the SDE's noise is: add that noise
                    x0 = x0 + sigma * torch.randn(x0.shape, generator=generator, device=self.device)

            def progress(i, n, base=done):
                callback and callback(base + i, total)

            with torch.inference_mode(), threads_for(len(obs_t), self.device, small=SMALL_WINDOWS):
                x = sample_known(score, obs_t, cmask, sde, sampler=sampler, steps=steps, generator=generator,
                                 t_start=t_start, x_start=x0, paste_noise=False, callback=progress)
            out[sl] = x.cpu().numpy()
            done += steps
        return self.space.from_model(out, frame)
