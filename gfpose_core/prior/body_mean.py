"""The posterior mean told the body (issue 16, item 3: proportion invariance): the posterior-mean network's
question (any joints known, the rest's mean), with the effector network's architecture (effector_net.py), which is
also told each bone's length where the known joints say it: measured where both its ends are known, else its
mirror bone's, else nothing (a zero in the body code: the reference body at the pose's scale), as
skeleton.known_bone_lengths estimates them for the engine.

Why: on a body of other proportions the posterior-mean network sees known joints it has to explain with its
training bodies (a long torso as a bent one, short legs as bent knees), and answers the unknown limb accordingly.
Trained on bodies drawn bone pair by bone pair within BODY_RANGE, and told them, it need not.
"""
from __future__ import annotations

import numpy as np
import torch

from gfpose_core.body.skeleton import BONE_MIRROR, BONES
from gfpose_core.prior.effector_net import EffectorMean

KIND = "body_mean"
WEIGHTS_SUBDIR = "body_mean"

# Each bone pair's length factor on a training body (log-uniform): the proportions the bench asks about (torso
# +-20%, limbs +-15%) and a margin; narrower than the effector network's, because here a limb's own lengths are often
# unknown and a wide range would blur where its joints are.
BODY_RANGE = (0.75, 1.35)


def told_bones(known: np.ndarray) -> np.ndarray:
    """(N, 23) bool: the bones whose length the known joints (N, 24) say (both ends known, or the mirror bone's)."""
    both = known[..., BONES[:, 0]] & known[..., BONES[:, 1]]
    return both | both[..., BONE_MIRROR]


class BodyMean(EffectorMean):
    """The trained network(s) of a weights folder's body_mean/ subfolder."""
    KIND = KIND


def trainer_class():
    """BodyMeanTrainer: the effector network's trainer with the posterior mean's hierarchical masks."""
    from gfpose_core.prior.effector_net import trainer_class as effector_trainer
    from gfpose_core.prior.masking import hierarchical_mask
    from gfpose_core.prior.pose_space import MODEL_JOINTS

    class BodyMeanTrainer(effector_trainer()):
        KIND = KIND
        BODY_RANGE = BODY_RANGE

        def draw_mask(self, b: int, gen: torch.Generator) -> torch.Tensor:
            known = hierarchical_mask(b, MODEL_JOINTS, self.cfg.masking, gen)
            return torch.cat([known.any(1, keepdim=True), known], 1)     # the pelvis: the frame's origin

        def told(self, body: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
            return body * torch.from_numpy(told_bones(known.numpy())).float()

        def config_dict(self) -> dict:
            d = super().config_dict()
            d["training"].pop("effector_masks", None)
            return d

    return BodyMeanTrainer
