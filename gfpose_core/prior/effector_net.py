"""A network trained for posing from effectors (live posing, issue 20): the body between the pelvis, hands, feet
and head, given those effectors (and any pins) and the character's own bone lengths.

Why a network of its own: the posterior-mean network (posterior_mean.py) answers any mask on the training bodies'
proportions, and a rig's are far from them (Rigify, relative to the CMU reference body: collar-to-shoulder 1.84x,
head 1.57x, thigh 1.46x, shin 1.00x). Given the effectors alone, it cannot know where such a body's shoulders are,
and the projection onto the rig's bones then moves them by centimetres. This one is told the body (each bone's
length over the reference body's at the pose's scale, as a log ratio) and is trained on bodies drawn far wider than
PROPORTION_RANGES (BODY_RANGE: every bone pair on its own), on every shippable set, with the masks Auto Pose sends
(all six effectors, sometimes fewer, sometimes pins). Its answer is a posterior mean, as the posterior-mean
network's is: the squared error on the unknown joints, in the frame the engine finds from the known joints.

Validation (scripts/effector_rig_validation.py, poses on a Rigify body, unknown joints' MPJPE, CMU | Bandai): the
posterior-mean network refined 28.5 | 28.0 mm, this 22.6 | 25.7 (Blender IK 51.5 | 35.1). Told the true body
rather than the reference one, on CMU validation poses on a Rigify-like body: tests/test_effector_net.py.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gfpose_core.body.skeleton import BONE_MIRROR, BONES, INDEX, MIRROR, N_JOINTS, bone_lengths, mirror
from gfpose_core.prior.pose_space import MODEL_JOINTS, POSE_DIM, PoseSpace

KIND = "effector_mean"
WEIGHTS_SUBDIR = "effector_mean"

# Each bone pair's length factor on a training body, log-uniform within BODY_RANGE, times the small per-bone
# jitter: wide enough for the rigs the add-on meets (Rigify's collar-to-shoulder bone is 1.84x the reference
# body's), and the network is told the body, so a wide range does not blur a usual one.
BODY_RANGE = (0.6, 2.0)

EFFECTOR_GROUPS = (("pelvis", "hip_l", "hip_r"), ("head", "head_end"), ("wrist_l", "hand_end_l"),
                   ("wrist_r", "hand_end_r"), ("ankle_l", "toe_l"), ("ankle_r", "toe_r"))


@dataclass
class EffectorMaskConfig:
    p_fewer: float = 0.2      # some effector groups left out (each with p_group_out), at least one kept
    p_group_out: float = 0.3
    p_pins: float = 0.3       # joints between pinned as well (each with p_pin)
    p_pin: float = 0.1

    def to_dict(self):
        return asdict(self)


def effector_training_mask(b: int, cfg: EffectorMaskConfig, gen: torch.Generator) -> torch.Tensor:
    """(b, 24) bool, True = known: the six effector groups, some left out, some joints between pinned."""
    known = torch.zeros(b, N_JOINTS, dtype=torch.bool)
    groups = [[INDEX[j] for j in g] for g in EFFECTOR_GROUPS]
    fewer = torch.rand(b, generator=gen) < cfg.p_fewer
    keep = ~(fewer[:, None] & (torch.rand(b, len(groups), generator=gen) < cfg.p_group_out))
    none = ~keep.any(1)
    keep[none, torch.randint(len(groups), (int(none.sum()),), generator=gen)] = True
    for k, g in enumerate(groups):
        known[:, g] = keep[:, k:k + 1]
    pins = (torch.rand(b, 1, generator=gen) < cfg.p_pins) & (torch.rand(b, N_JOINTS, generator=gen) < cfg.p_pin)
    return known | pins


def body_code(lengths: np.ndarray, reference_bones: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, 23) what the network is told of the body: log of each bone's length over the reference body's at the
    pose's scale (the canonical frame's), 0 for the reference body itself."""
    ratio = np.asarray(lengths, np.float64) / (reference_bones[None] * np.asarray(scale, np.float64)[:, None])
    return np.log(np.clip(ratio, 1e-3, None))


@dataclass
class EffectorNetConfig:
    pose_dim: int = POSE_DIM
    bones: int = len(BONES)
    hidden: int = 1024
    blocks: int = 3

    def to_dict(self):
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h):
        return h + self.net(h)


class EffectorNet(nn.Module):
    """A residual MLP: (known coordinates, their mask, the body code) -> the pose (model units)."""

    def __init__(self, cfg: EffectorNetConfig = EffectorNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.pre = nn.Linear(2 * cfg.pose_dim + cfg.bones, cfg.hidden)
        self.blocks = nn.Sequential(*[_Block(cfg.hidden) for _ in range(cfg.blocks)])
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.pose_dim))

    def forward(self, observation: torch.Tensor, coord_mask: torch.Tensor, body: torch.Tensor) -> torch.Tensor:
        h = self.pre(torch.cat([observation * coord_mask, coord_mask, body], -1))
        return self.out(self.blocks(h))


class EffectorMean:
    """The trained network(s) of a weights folder's effector_mean/ subfolder, in the score model's pose space: one
    network (config.json + model.safetensors) or several, one per subfolder, whose answers are averaged.

    Each network's answer is averaged with the mirror image of its answer to the mirrored question
    (MIRROR_AVERAGE): trained on mirrored poses too, it answers one question twice with errors that differ."""
    MIRROR_AVERAGE = True
    KIND = KIND

    def __init__(self, nets: list[EffectorNet], device: torch.device, space: PoseSpace):
        self.nets, self.device, self.space = nets, device, space

    @classmethod
    def load(cls, folder: str | Path, device: torch.device, space: PoseSpace) -> "EffectorMean":
        from gfpose_core.prior.posterior_mean import load_members
        return cls(load_members(folder, cls.KIND, lambda m: EffectorNet(EffectorNetConfig(**m)), device, space),
                   device, space)

    def __call__(self, observation: np.ndarray, coord_mask: np.ndarray, body: np.ndarray) -> np.ndarray:
        """(N, 69) model units: the pose given the known coordinates (N, 69), their mask and the body code (N, 23)."""
        def t(a):
            return torch.as_tensor(np.concatenate(a), dtype=torch.float32, device=self.device)
        n = len(observation)
        questions = [[observation], [coord_mask], [body]]
        if self.MIRROR_AVERAGE:
            questions[0].append(self._mirror(observation))
            questions[1].append(coord_mask.reshape(n, MODEL_JOINTS, 3)[:, MIRROR[1:] - 1].reshape(n, -1))
            questions[2].append(body[:, BONE_MIRROR])
        with torch.inference_mode():
            x = torch.stack([net(*(t(q) for q in questions)) for net in self.nets]).mean(0)
        x = x.cpu().numpy().astype(np.float64)
        return 0.5 * (x[:n] + self._mirror(x[n:])) if self.MIRROR_AVERAGE else x

    def _mirror(self, v: np.ndarray) -> np.ndarray:
        return self.space.to_model(mirror(self.space.from_model(v)))


# -- training ----------------------------------------------------------------------------------------------------

def body_factors(b: int, gen: torch.Generator, jitter: float, span=BODY_RANGE) -> torch.Tensor:
    """(b, 23) bone length factors of training bodies: each bone pair log-uniform in `span`, times a per-bone
    jitter of a few percent (left and right may differ that much)."""
    lo, hi = math.log(span[0]), math.log(span[1])
    pair = torch.exp(lo + torch.rand(b, len(BONES), generator=gen) * (hi - lo))
    pair = pair[:, torch.from_numpy(np.minimum(np.arange(len(BONES)), BONE_MIRROR))]   # one draw per pair
    wobble = 1 + (torch.rand(b, len(BONES), generator=gen) * 2 - 1) * jitter
    return pair * wobble


def trainer_class():
    """EffectorMeanTrainer, built on the posterior-mean trainer (imported late: training only)."""
    from gfpose_core.prior.train import rescaled, rotation_z
    from gfpose_core.prior.train_mean import PosteriorMeanTrainer

    class EffectorMeanTrainer(PosteriorMeanTrainer):
        """Trains EffectorNet: poses of every shippable set on bodies of BODY_RANGE, effector masks, the squared
        error on the unknown joints in the frame the engine finds from the known ones."""
        KIND = KIND
        BODY_RANGE = BODY_RANGE

        def __init__(self, cfg, *args, **kwargs):
            self.net_cfg = EffectorNetConfig(hidden=cfg.model.hidden, blocks=cfg.model.blocks)
            self.mask_cfg = EffectorMaskConfig()
            super().__init__(cfg, *args, **kwargs)

        def _setup_model(self, make_net):
            super()._setup_model(lambda: EffectorNet(self.net_cfg))

        def draw_mask(self, b: int, gen: torch.Generator) -> torch.Tensor:
            """(b, 24) bool, True = known."""
            return effector_training_mask(b, self.mask_cfg, gen)

        def told(self, body: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
            """What the network is told of the body (b, 23) given the known joints: all of it (a character's rig)."""
            return body

        def make_batch(self, rel: torch.Tensor, gen: torch.Generator, augment: bool = True):
            b = rel.shape[0]
            rel = rescaled(rel, body_factors(b, gen, self.cfg.bone_jitter, self.BODY_RANGE))
            if augment:
                yaw = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(self.cfg.yaw_jitter_deg)
                rel = torch.einsum("bij,bkj->bki", rotation_z(yaw), rel)
            x0 = (rel.reshape(b, -1) - self.mean_t) / self.space.std
            known = self.draw_mask(b, gen)
            cmask = known[:, 1:, None].expand(b, MODEL_JOINTS, 3).reshape(b, -1).float()
            x0 = self._in_partial_frame(x0, cmask)
            full = self.space.from_model(x0.double().numpy())
            lengths = bone_lengths(full)
            body = torch.as_tensor(np.log(lengths / self.space.reference_bones), dtype=torch.float32)
            body = self.told(body, known)
            return x0.to(self.device), cmask.to(self.device), body.to(self.device)

        def loss(self, model, batch) -> torch.Tensor:
            x0, cmask, body = batch
            unknown = 1.0 - cmask
            err = (model(x0 * cmask, cmask, body) - x0) ** 2
            return (err * unknown).sum() / unknown.sum().clamp(min=1.0)

        def config_dict(self) -> dict:
            d = super().config_dict()
            d["model"] = self.net_cfg.to_dict()
            d["training"]["effector_masks"] = self.mask_cfg.to_dict()
            d["training"]["body_range"] = list(self.BODY_RANGE)
            return d

    return EffectorMeanTrainer
