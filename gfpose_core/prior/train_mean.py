"""Training the posterior-mean network (posterior_mean.py) on the score model's data, augmentation and masks."""
from __future__ import annotations

import numpy as np
import torch

from gfpose_core.body.skeleton import canonicalise, to_canonical
from gfpose_core.prior.pose_space import MODEL_JOINTS
from gfpose_core.prior.posterior_mean import KIND, posterior_mean
from gfpose_core.prior.train import Trainer


class PosteriorMeanTrainer(Trainer):
    """Trains `posterior_mean` on the score model's data, augmentation and hierarchical masks (3D only)."""
    KIND = KIND

    def __init__(self, cfg, *args, **kwargs):
        cfg.masking.p_3d = 1.0   # completion conditions on 3D joints; lifting keeps the score model's samplers
        cfg.model.dropout = 0.0  # a regression to the mean: dropout's noise only blurs it
        super().__init__(cfg, *args, **kwargs)
        self.mean_pose = self.space.from_model(np.zeros(self.space.mean.shape))

    def make_batch(self, rel: torch.Tensor, gen: torch.Generator, augment: bool = True):
        x0, cmask, _ = self.clean_batch(rel, gen, augment)
        return self._in_partial_frame(x0, cmask), cmask

    def _in_partial_frame(self, x0: torch.Tensor, cmask: torch.Tensor) -> torch.Tensor:
        """Poses re-expressed in the frame (root, facing, scale) canonicalise finds from their known joints, as the
        engine's is at inference; in the full pose's frame the network would learn to expect facing it never gets."""
        full = self.space.from_model(x0.detach().cpu().double().numpy())
        known = np.ones(full.shape[:2], bool)
        known[:, 1:] = cmask.cpu().numpy().reshape(len(full), MODEL_JOINTS, 3)[..., 0] > 0
        known[:, 0] = known[:, 1:].any(1)
        some = known[:, 0]     # with nothing known there is no frame to find: the pose stays as it is
        _, frame = canonicalise(np.where(known[some, :, None], full[some], np.nan), self.space.reference_bones,
                                self.mean_pose)
        moved = x0.detach().cpu().double().numpy()
        moved[some] = self.space.to_model(to_canonical(full[some], frame))
        return torch.as_tensor(moved, dtype=x0.dtype, device=x0.device)

    def loss(self, model, batch) -> torch.Tensor:
        x0, cmask = batch
        unknown = 1.0 - cmask
        known = x0
        if self.cfg.known_noise > 0 and model.training:
            # A new performer's or rig's known joints are never where a training body's would be: the network
            # learns not to read more into their exact places than they hold.
            known = x0 + torch.randn_like(x0) * (self.cfg.known_noise / self.space.std)
        err = (posterior_mean(model, known * cmask, cmask) - x0) ** 2
        return (err * unknown).sum() / unknown.sum().clamp(min=1.0)
