"""Training the score model by denoising score matching, single process or under torchrun (DDP).

Poses are canonicalised (root, facing, scale removed) and mirrored; batches get small yaw/scale jitter so the
prior tolerates the estimates made from partial poses, and 2D-conditioned samples are seen from a random yaw
(the camera's frame), as lifting needs.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from gfpose_core.body.skeleton import (
    BONE_MIRROR,
    BONES,
    INDEX,
    JOINT_NAMES,
    PARENTS,
    bone_lengths,
    canonicalise,
    mirror,
    with_bone_lengths,
)
from gfpose_core.prior.masking import MaskingConfig, draw_is_2d, hierarchical_mask
from gfpose_core.prior.pose_space import MODEL_JOINTS, PoseSpace, coordinate_mask
from gfpose_core.prior.score_net import ScoreNet, ScoreNetConfig, condition
from gfpose_core.prior.sde import SubVPSDE


@dataclass
class LoopConfig:
    """The training loop's settings, shared by the pose model and the motion model."""
    steps: int = 20000
    batch: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 500
    grad_clip: float = 1.0
    ema: float = 0.999
    val_every: int = 500
    ckpt_every: int = 500
    seed: int = 0
    yaw_jitter_deg: float = 10.0
    scale_jitter: float = 0.05
    max_minutes: float = 0.0  # 0 = no limit


@dataclass
class TrainConfig(LoopConfig):
    bone_jitter: float = 0.06
    proportions: float = 0.0     # 1: bodies of other proportions as real characters have (PROPORTION_RANGES)
    known_noise: float = 0.0     # posterior-mean network only: metres of noise on the known joints it is given
    camera_pitch_deg: float = 15.0
    model: ScoreNetConfig = field(default_factory=ScoreNetConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)


def prepare_poses(joints: np.ndarray, reference_bones: np.ndarray | None = None):
    """World body24 -> canonical poses on the reference body (with mirror copies), and its bone lengths.

    Every pose is rebuilt from its bone directions with one set of bone lengths (left and right averaged), so
    that sources with other proportions (CMU's two BVH conventions) teach the model one body, not two
    (docs/findings.md, 6). Batches then vary the lengths a little so the model still accepts other bodies.
    """
    if reference_bones is None:
        reference_bones = np.median(bone_lengths(joints), axis=0)
        reference_bones = 0.5 * (reference_bones + reference_bones[BONE_MIRROR])
    canon, _ = canonicalise(joints, reference_bones)
    canon = with_bone_lengths(canon, reference_bones)
    return np.concatenate([canon, mirror(canon)]).astype(np.float32), reference_bones


# How far a character's parts differ from the reference body (the child joint names the bone; both sides alike):
# what stylised and game characters have (Mixamo, Unreal mannequins, stylised glTF), within the range asked of the
# proportion bench (torso +-20%, legs and arms +-15%).
PROPORTION_RANGES = {
    "torso": (("spine", "chest", "neck"), 0.20),
    "head": (("head", "head_end"), 0.15),
    "shoulders": (("collar_l", "collar_r", "shoulder_l", "shoulder_r"), 0.15),
    "arms": (("elbow_l", "elbow_r", "wrist_l", "wrist_r", "hand_end_l", "hand_end_r"), 0.15),
    "hips": (("hip_l", "hip_r"), 0.15),
    "legs": (("knee_l", "knee_r", "ankle_l", "ankle_r", "toe_l", "toe_r"), 0.15),
}


def proportion_factors(b: int, gen: torch.Generator, amount: float = 1.0) -> torch.Tensor:
    """(b, bones) length factors: one uniform draw per body part per pose, within PROPORTION_RANGES * amount."""
    factors = torch.ones(b, len(BONES))
    child = list(BONES[:, 0])
    for names, span in PROPORTION_RANGES.values():
        f = 1 + (torch.rand(b, generator=gen) * 2 - 1) * span * amount
        for n in names:
            factors[:, child.index(INDEX[n])] = f
    return factors


def rescaled(rel: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Pelvis-relative poses (b, 23, 3) with each bone's length times `factors` (b, 23), its direction kept."""
    b = rel.shape[0]
    full = torch.cat([torch.zeros(b, 1, 3), rel], 1)
    vec = (full[:, torch.from_numpy(BONES[:, 0])] - full[:, torch.from_numpy(BONES[:, 1])]) * factors[..., None]
    out = [torch.zeros(b, 3)] * len(PARENTS)
    for k, (c, p) in enumerate(BONES):
        out[c] = out[p] + vec[:, k]
    return torch.stack(out[1:], 1)


def rotation_z(angle: torch.Tensor) -> torch.Tensor:
    c, s, z, o = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


def rotation_x(angle: torch.Tensor) -> torch.Tensor:
    c, s, z, o = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([torch.stack([o, z, z], -1), torch.stack([z, c, -s], -1), torch.stack([z, s, c], -1)], -2)


class Trainer:
    VAL_CHUNK = 4096
    KIND = "score"   # what the network predicts, written in the config (the engine checks it)
    def __init__(self, cfg: TrainConfig, train_joints: np.ndarray, val_joints: np.ndarray, out_dir: str | Path,
                 data_note: str = "", device: str = "cpu", space: PoseSpace | None = None):
        """space: train in this pose space (reference body, mean, scale) rather than the data's own, so that the
        network fits beside weights already trained in it (a posterior-mean network beside a shipped score model)."""
        self._setup_process(cfg, out_dir, data_note, device)
        canon, ref = prepare_poses(train_joints, None if space is None else space.reference_bones)
        rel = canon[:, 1:] - canon[:, :1]
        if space is None:
            mean = rel.reshape(len(rel), -1).mean(0)
            std = float((rel.reshape(len(rel), -1) - mean).std())
            space = PoseSpace(ref, mean, std)
        self.space = space
        mean = np.asarray(space.mean, dtype=np.float32)
        self.train_rel = torch.from_numpy(rel)
        val_canon, _ = prepare_poses(val_joints, ref)
        self.val_rel = torch.from_numpy(val_canon[:, 1:] - val_canon[:, :1])
        self.mean_t = torch.from_numpy(mean).float().to(self.device)
        self._setup_model(lambda: ScoreNet(cfg.model))

    def _setup_process(self, cfg, out_dir, data_note: str, device: str):
        """Ranks, device and random streams (shared with the motion model's trainer)."""
        self.cfg, self.out, self.data_note = cfg, Path(out_dir), data_note
        self.datasets: list[dict] = []   # set by the caller: each set's name, licence and size (training_takes)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if device.startswith("cuda") and self.distributed:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed + self.rank)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + self.rank)
        self.sde = SubVPSDE()

    def _setup_model(self, make_net):
        """Network, its EMA copy, DDP wrapper and optimiser."""
        cfg = self.cfg
        self.net = make_net().to(self.device)
        self.ema = make_net().to(self.device)
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False)
        self.model = self.net
        if self.distributed:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.best_val, self.best_step, self.elapsed = 0, math.inf, -1, 0.0
        self.history: list[dict] = []
        self.n_params = sum(p.numel() for p in self.net.parameters())

    # -- batches ---------------------------------------------------------------------------------------------
    def _indices(self, n_local: int) -> torch.Tensor:
        # Each rank draws from its own interleaved shard (a distributed sampler without epochs).
        shard = torch.arange(self.rank, len(self.train_rel), self.world)
        return shard[torch.randint(len(shard), (n_local,), generator=self.gen)]

    def make_batch(self, rel: torch.Tensor, gen: torch.Generator, augment: bool = True):
        """Noisy poses, their times, conditions and the noise to predict."""
        x0, cmask, is_2d = self.clean_batch(rel, gen, augment)
        b = len(x0)
        t = (torch.rand(b, generator=gen) * (1 - self.sde.eps) + self.sde.eps).to(self.device)
        z = torch.randn(x0.shape, generator=gen).to(self.device)
        mean, std = self.sde.marginal_prob(x0, t)
        x_t = mean + std[:, None] * z
        cond = condition(x_t, x0, cmask, is_2d.to(self.device))
        return x_t, t, cond, z

    def clean_batch(self, rel: torch.Tensor, gen: torch.Generator, augment: bool = True):
        """Augmented poses in model units (B, 69), their coordinate masks (B, 69) and 2D flags (B,)."""
        cfg = self.cfg
        b = rel.shape[0]
        is_2d = draw_is_2d(b, cfg.masking, gen)
        if augment:
            yaw = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(cfg.yaw_jitter_deg)
            yaw = torch.where(is_2d, torch.rand(b, generator=gen) * 2 * math.pi, yaw)
            pitch = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(cfg.camera_pitch_deg) * is_2d
            rot = rotation_x(pitch) @ rotation_z(yaw)
            scale = 1 + (torch.rand(b, 1, 1, generator=gen) * 2 - 1) * cfg.scale_jitter
            rel = torch.einsum("bij,bkj->bki", rot, self._rebone(rel, gen)) * scale
        else:
            yaw = torch.where(is_2d, torch.rand(b, generator=gen) * 2 * math.pi, torch.zeros(b))
            rel = torch.einsum("bij,bkj->bki", rotation_z(yaw), rel)
        x0 = (rel.reshape(b, -1).to(self.device) - self.mean_t) / self.space.std
        joint_mask = hierarchical_mask(b, MODEL_JOINTS, cfg.masking, gen)
        cmask = coordinate_mask(joint_mask, is_2d).float().to(self.device)
        return x0, cmask, is_2d

    def _rebone(self, rel: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Vary each bone's length (the same on both sides) by a few percent, keeping its direction."""
        b = rel.shape[0]
        jitter = 1 + (torch.rand(b, len(BONES), generator=gen) * 2 - 1) * self.cfg.bone_jitter
        jitter = 0.5 * (jitter + jitter[:, torch.from_numpy(BONE_MIRROR)])
        if self.cfg.proportions > 0:
            jitter = jitter * proportion_factors(b, gen, self.cfg.proportions)
        return rescaled(rel, jitter)

    def loss(self, model, batch) -> torch.Tensor:
        x_t, t, cond, z = batch
        return ((model(x_t, t, cond) - z) ** 2).sum(-1).mean() / z.shape[-1]

    # -- loop ------------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    @torch.no_grad()
    def validate(self) -> float:
        self.ema.eval()
        gen = torch.Generator().manual_seed(1234)
        total, n = 0.0, 0
        for start in range(0, len(self.val_rel), self.VAL_CHUNK):
            batch = self.make_batch(self.val_rel[start:start + self.VAL_CHUNK], gen, augment=False)
            total += float(self.loss(self.ema, batch)) * len(batch[0])
            n += len(batch[0])
        return total / max(n, 1)

    def train(self, progress=None) -> dict:
        cfg = self.cfg
        self.resume()
        local_batch = cfg.batch // self.world
        start = time.time() - self.elapsed
        self.net.train()
        while self.step < cfg.steps:
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(self.step)
            batch = self.make_batch(self.train_rel[self._indices(local_batch)], self.gen)
            loss = self.loss(self.model, batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            self.opt.step()
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.net.parameters()):
                    pe.mul_(cfg.ema).add_(p.detach(), alpha=1 - cfg.ema)
            self.step += 1
            self.elapsed = time.time() - start
            out_of_time = cfg.max_minutes > 0 and self.elapsed > cfg.max_minutes * 60
            if self.rank == 0 and (self.step % cfg.val_every == 0 or self.step == cfg.steps or out_of_time):
                val = self.validate()
                self.history.append({"step": self.step, "train_loss": float(loss.detach()), "val_loss": val,
                                     "minutes": self.elapsed / 60})
                if val < self.best_val:
                    self.best_val, self.best_step = val, self.step
                    self.save_weights()
                if progress:
                    progress(self.step, cfg.steps, float(loss.detach()), val)
            if self.rank == 0 and (self.step % cfg.ckpt_every == 0 or self.step == cfg.steps or out_of_time):
                self.save_checkpoint()
            if out_of_time:
                break
        if self.distributed:
            dist.barrier()
        return {"step": self.step, "best_step": self.best_step, "best_val": self.best_val,
                "minutes": self.elapsed / 60}

    # -- files -----------------------------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            "format": "gfpose-weights-1",
            "kind": self.KIND,
            "skeleton": {"name": "body24", "joints": list(JOINT_NAMES)},
            "model": self.cfg.model.to_dict(),
            "sde": {"kind": "subvp", "beta_min": self.sde.beta_0, "beta_max": self.sde.beta_1},
            "space": self.space.to_dict(),
            "training": {
                "data": self.data_note, "datasets": self.datasets, "train_poses": int(len(self.train_rel)),
                "config": {k: v for k, v in asdict(self.cfg).items() if k not in ("model",)},
                "best_step": self.best_step, "best_val_loss": self.best_val, "steps_run": self.step,
                "minutes": round(self.elapsed / 60, 2), "parameters": self.n_params,
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {self.device.type}, world {self.world}",
                "history": self.history,
            },
        }

    def save_weights(self):
        self.out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.ema.state_dict().items()}
        save_file(state, str(self.out / "model.safetensors"))
        (self.out / "config.json").write_text(json.dumps(self.config_dict(), indent=1))

    def save_checkpoint(self):
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save({"net": self.net.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                    "step": self.step, "best_val": self.best_val, "best_step": self.best_step,
                    "elapsed": self.elapsed, "history": self.history, "gen": self.gen.get_state()}, tmp)
        os.replace(tmp, self.out / "checkpoint.pt")
        (self.out / "config.json").exists() or self.save_weights()
        cfg_path = self.out / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["training"].update({k: v for k, v in self.config_dict()["training"].items()
                                if k in ("steps_run", "minutes", "history")})
        cfg_path.write_text(json.dumps(cfg, indent=1))

    def warm_start(self, weights: str | Path, fresh_output: bool = False):
        """Start from trained weights (a folder with model.safetensors) unless a checkpoint here resumes.
        fresh_output: zero the last layer, as a new network starts (its output means something new)."""
        if (self.out / "checkpoint.pt").exists():
            return
        state = load_file(str(Path(weights) / "model.safetensors"))
        if fresh_output:
            state = {k: torch.zeros_like(v) if k.startswith("out.") else v for k, v in state.items()}
        self.net.load_state_dict(state)
        self.ema.load_state_dict(state)
        self.data_note += f"; started from the weights in {weights}"

    def resume(self):
        ck = self.out / "checkpoint.pt"
        if not ck.exists():
            return
        state = torch.load(ck, map_location=self.device, weights_only=False)
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.best_val, self.best_step = state["step"], state["best_val"], state["best_step"]
        self.elapsed, self.history = state["elapsed"], state["history"]
        self.gen.set_state(state["gen"])
