"""The four tasks behind one object, as docs/design.md's API: complete, denoise, generate, lift.

World-space poses go in and come out; the engine canonicalises (root, facing, scale) and restores them itself.
NaN marks an unknown joint. Inputs that cannot be served raise ValueError naming the problem.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from gfpose_core.body.skeleton import (
    bone_lengths,
    INDEX,
    JOINT_NAMES,
    N_JOINTS,
    Frame,
    canonicalise,
    fit_bone_lengths,
    known_bone_lengths,
    restore,
    with_bone_lengths,
)
from gfpose_core.motion.prior import WEIGHTS_SUBDIR, MotionPrior
from gfpose_core.prior.body_mean import WEIGHTS_SUBDIR as BODY_SUBDIR, BodyMean
from gfpose_core.prior.denoise import within_noise
from gfpose_core.prior.effector_guess import effector_pose
from gfpose_core.prior.effector_net import WEIGHTS_SUBDIR as EFFECTOR_SUBDIR, EffectorMean, body_code
from gfpose_core.prior.effectors import effector_known, pin_mask
from gfpose_core.prior.hypotheses import candidates, spread
from gfpose_core.prior.pose_space import POSE_DIM, PoseSpace
from gfpose_core.prior.posterior_mean import WEIGHTS_SUBDIR as MEAN_SUBDIR, PosteriorMean
from gfpose_core.prior.samplers import sample_known
from gfpose_core.prior.score_net import ScoreNet, ScoreNetConfig, condition
from gfpose_core.prior.sde import SubVPSDE
from gfpose_core.threads import threads_for

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MAX_POSES = 200_000          # poses (N x H) per call; more is a mistake or a job for batches
MAX_HYPOTHESES = 1000
MAX_STEPS = 5000
# A single completion is the posterior mean refined by the score model's mode seeking from REFINE_FROM_T: where it
# stands stays (the hedge), its shape becomes the prior's (a mean of arms is no arm). With the earlier networks (not
# told the body) 0.2 was kept: below it the arm lost its shape (PA-MPJPE on the arm, CMU, t 0.3 / 0.2 / 0.1: 49.4 /
# 55.5 / 60.9 mm), and a quarter of the mode was mixed into the legs (docs/history.md).
# With the network told the body (weights/body_mean), validation (`scripts/body_mean_validation.py --refine-from 0.2
# 0.1 0.05`, 500 poses a cell, CMU 8 and 14 and Bandai's validation clips): from t 0.1 MPJPE is lower than from 0.2 in
# 9 of 10 cells (CMU upper body 200.4 -> 202.0 mm the exception) and the shape of the filled-in part (PA-MPJPE on it)
# in every one (CMU arm 38.6 -> 37.2, Bandai arm 36.3 -> 34.4), so the hedge no longer costs the arm its shape;
# 0.05 is no better than 0.1. The mode mixed into the legs (a quarter, chosen for the earlier networks) no longer
# pays: without it CMU one leg 62.2 -> 58.8, both legs 93.6 -> 92.3, Bandai 67.7 -> 70.1, 105.2 -> 106.8 (the same
# on average) for half the network evaluations.
REFINE_FROM_T = 0.1
# Defaults chosen by measured quality per second: the sampler curve of docs/bench/report.md.
DEFAULTS = {
    "complete": ("mode", 10),
    "hypotheses": ("sde_heun", 20),
    "generate": ("sde_heun", 25),
    "denoise": ("mode", 4),
    "lift": ("sde_heun", 20),
    "inbetween": ("tweedie", 1),
    "denoise_motion": ("tweedie", 1),
}


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _poses(a, name: str, dims: int = 3, allow_nan: bool = True) -> np.ndarray:
    """Validate an (N, 24, dims) array (a single (24, dims) pose is taken as N = 1)."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (N_JOINTS, dims):
        raise ValueError(f"{name} must have shape (N, {N_JOINTS}, {dims}), got {tuple(np.shape(a))}")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty")
    if len(arr) > MAX_POSES:
        raise ValueError(f"{name}: {len(arr)} poses is more than the limit of {MAX_POSES} per call")
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains inf")
    if not allow_nan and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _known_mask(arr: np.ndarray, known, name: str = "known") -> np.ndarray:
    finite = np.isfinite(arr).all(-1)
    if known is None:
        return finite
    k = np.asarray(known)
    if k.ndim == 1:
        k = k[None]
    if k.shape != arr.shape[:2]:
        raise ValueError(f"{name} must have shape {arr.shape[:2]}, got {np.shape(known)}")
    if k.dtype != bool:
        if not np.isin(k, (0, 1)).all():
            raise ValueError(f"{name} must be booleans")
        k = k.astype(bool)
    return k & finite


def _sampling(sampler, steps, default: tuple[str, int]) -> tuple[str, int]:
    """The task's default sampler and step count where the caller named none (0 steps is an error, not a default)."""
    return (default[0] if sampler is None else sampler), (default[1] if steps is None else steps)


def _count(n, name: str, limit: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {n!r}")
    if not 1 <= n <= limit:
        raise ValueError(f"{name} must be between 1 and {limit}, got {n}")
    return int(n)


class Engine:
    def __init__(self, net: ScoreNet, space: PoseSpace, config: dict, device: torch.device, motion=None,
                 posterior_mean=None, effector_mean=None, body_mean=None):
        self.net, self.space, self.config, self.device = net, space, config, device
        self.motion = motion  # MotionPrior for takes, or None where the weights have no motion/ folder
        self.posterior_mean = posterior_mean  # PosteriorMean not told the body, or None (shipped: body_mean only)
        self.effector_mean = effector_mean    # EffectorMean for posing from effectors, or None (posterior mean)
        self.body_mean = body_mean            # BodyMean: the posterior mean told the body, used where present
        self.sde = SubVPSDE(config["sde"]["beta_min"], config["sde"]["beta_max"])
        self.joint_names = list(JOINT_NAMES)
        self.mean_pose = space.from_model(np.zeros(POSE_DIM))

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto") -> "Engine":
        """Weights from a folder holding model.safetensors + config.json (default: the shipped ones); its motion/,
        posterior_mean/, body_mean/ and effector_mean/ (posing from effectors) subfolders' networks where they are."""
        folder = Path(path) if path is not None else WEIGHTS_DIR
        if folder.is_file():
            folder = folder.parent
        cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
        if not (cfg_path.exists() and w_path.exists()):
            raise FileNotFoundError(f"no model.safetensors + config.json in {folder}")
        config = json.loads(cfg_path.read_text())
        dev = _device(device)
        net = ScoreNet(ScoreNetConfig(**config["model"]))
        net.load_state_dict(load_file(str(w_path)))
        net.to(dev).eval()
        motion = None
        if (folder / WEIGHTS_SUBDIR / "config.json").exists():
            motion = MotionPrior.load(folder / WEIGHTS_SUBDIR, dev)
        space = PoseSpace.from_dict(config["space"])
        mean_net = None
        if (folder / MEAN_SUBDIR).is_dir():
            mean_net = PosteriorMean.load(folder / MEAN_SUBDIR, dev, space)
        eff = folder / EFFECTOR_SUBDIR
        effector_net = EffectorMean.load(eff, dev, space) if eff.is_dir() else None
        told = folder / BODY_SUBDIR
        body_net = BodyMean.load(told, dev, space) if told.is_dir() else None
        return cls(net, space, config, dev, motion, mean_net, effector_net, body_net)

    # -- shared machinery ------------------------------------------------------------------------------------
    def _generator(self, seed):
        g = torch.Generator(device=self.device)
        g.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,))))
        return g

    def _run(self, obs: np.ndarray, coord_mask: np.ndarray, is_2d: bool, *, sampler: str, steps: int,
             generator, t_start: float = 1.0, x_start: np.ndarray | None = None, impute: bool = True,
             callback=None) -> np.ndarray:
        """Sample model vectors given observations (B, 69) in model units and their coordinate mask (B, 69)."""
        steps = _count(steps, "steps", MAX_STEPS)
        dev = self.device
        obs_t = torch.as_tensor(np.nan_to_num(obs), dtype=torch.float32, device=dev)
        mask_t = torch.as_tensor(coord_mask, dtype=torch.float32, device=dev)
        flag = torch.full((len(obs),), float(is_2d), device=dev)
        sde, net = self.sde, self.net

        score = sde.score_fn(lambda x, t: net(x, t, condition(x, obs_t, mask_t, flag)))

        x0 = None if x_start is None else torch.as_tensor(x_start, dtype=torch.float32, device=dev)
        with torch.inference_mode(), threads_for(len(obs), dev):
            # 2D observations live in image coordinates, not in the pose space: they condition but are not pasted.
            x = sample_known(score, obs_t, mask_t, sde, sampler=sampler, steps=steps, generator=generator,
                             t_start=t_start, x_start=x0, impute=impute and not is_2d, callback=callback)
        return x.cpu().numpy().astype(np.float64)

    def _canonical(self, joints: np.ndarray) -> tuple[np.ndarray, Frame]:
        return canonicalise(joints, self.space.reference_bones, self.mean_pose)

    @staticmethod
    def _coord_mask(joint_mask: np.ndarray) -> np.ndarray:
        return np.repeat(joint_mask[:, 1:], 3, axis=1)

    # -- tasks -----------------------------------------------------------------------------------------------
    def complete(self, joints, known=None, n_hypotheses: int = 1, seed=None, sampler: str | None = None,
                 steps: int | None = None, callback=None) -> np.ndarray:
        """Fill in the unknown joints of each pose; known joints come back unchanged.

        joints (N, 24, 3) world space, known (N, 24) bool (NaN also marks unknown).
        Returns (N, 24, 3), or (N, H, 24, 3) when n_hypotheses > 1. With no sampler or steps named, the single
        completion (and the first hypothesis) is the best guess of _best_guess; otherwise the named sampler's.
        """
        arr = _poses(joints, "joints")
        H = _count(n_hypotheses, "n_hypotheses", MAX_HYPOTHESES)
        if len(arr) * H > MAX_POSES:
            raise ValueError(f"{len(arr)} poses x {H} hypotheses is more than the limit of {MAX_POSES}")
        known_mask = _known_mask(arr, known)
        out, masked, frame = self._answer(arr, known_mask, H, seed, sampler, steps, callback)
        # The filled-in bones get the pose's own lengths (measured, mirrored, or the reference body's at its scale).
        lengths = known_bone_lengths(masked, self.space.reference_bones * frame.scale[:, None])
        # Every bone is given its length along the direction the answer has (fit_bone_lengths). Keeping a hedged
        # arm's short shoulder-to-wrist span instead (the nearest arm of the right lengths) folded elbows: on
        # validation (CMU 8, 14 and HDM05 mm, one arm hidden) elbow angle error 36 -> 27 and 40 -> 36 degrees, arm
        # MPJPE 143 -> 149 mm (CMU) and 181 -> 175 mm (HDM05).
        out = fit_bone_lengths(out.reshape(-1, N_JOINTS, 3), np.repeat(lengths, H, 0),
                               np.repeat(known_mask, H, 0)).reshape(out.shape)
        out = out[:, 0] if H == 1 else out
        return out[0] if np.ndim(joints) == 2 else out

    def _answer(self, arr, known_mask, H, seed, sampler, steps, callback, guess_steps=None):
        """The network's completion (N, H, 24, 3), known joints pasted, bones not yet at their lengths."""
        empty = np.flatnonzero(~known_mask.any(1))
        if len(empty):
            raise ValueError(f"pose(s) {empty[:10].tolist()} have no known joints: use generate() for free poses")
        masked = np.where(known_mask[..., None], arr, np.nan)
        canon, frame = self._canonical(masked)
        obs = np.nan_to_num(self.space.to_model(canon))
        cmask = self._coord_mask(known_mask)
        gen = self._generator(seed)
        guess = sampler is None and steps is None     # a named sampler or step count asks for the score model
        if H == 1:
            if guess:
                x = self._best_guess(obs, cmask, gen, callback, guess_steps, self._told(masked, frame))
            else:
                sampler, steps = _sampling(sampler, steps, DEFAULTS["complete"])
                x = self._run(obs, cmask, False, sampler=sampler, steps=steps, generator=gen, callback=callback)
        else:
            # the best single guess first, then samples spread over the rest (hypotheses.py)
            first_steps = self._best_guess_steps()
            sampler, steps = _sampling(sampler, steps, DEFAULTS["hypotheses"])
            total = first_steps + steps
            first = self._best_guess(obs, cmask, gen, callback and (lambda i, n: callback(i, total)),
                                     body=self._told(masked, frame))
            M = candidates(H - 1)
            many = self._run(np.repeat(obs, M, 0), np.repeat(cmask, M, 0), False, sampler=sampler, steps=steps,
                             generator=gen, callback=callback and (lambda i, n: callback(first_steps + i, total)))
            x = spread(many.reshape(len(arr), M, -1), 1.0 - cmask, H, first=first)
        out_canon = self.space.from_model(x).reshape(len(arr), H, N_JOINTS, 3)
        out = restore(out_canon, frame)
        out = np.where(known_mask[:, None, :, None], arr[:, None], out)
        return out, masked, frame

    def _best_guess(self, obs: np.ndarray, coord_mask: np.ndarray, generator, callback=None,
                    steps: int | None = None, body=None) -> np.ndarray:
        """One completion per pose (model units): the posterior mean (told the `body` where the weights have the
        network for it) refined from REFINE_FROM_T; the mode where the weights have no posterior-mean network."""
        sampler, steps = DEFAULTS["complete"][0], steps or DEFAULTS["complete"][1]
        told = self.body_mean is not None and body is not None
        if not told and self.posterior_mean is None:
            return self._run(obs, coord_mask, False, sampler=sampler, steps=steps, generator=generator,
                             callback=callback)
        with threads_for(len(obs), self.device):     # one pose on two threads beside Blender stalls (threads.py)
            mean = self.body_mean(obs, coord_mask, body) if told else self.posterior_mean(obs, coord_mask)
        alpha, _ = self.sde.alpha_sigma(REFINE_FROM_T)
        return self._run(obs, coord_mask, False, sampler=sampler, steps=steps, generator=generator,
                         t_start=REFINE_FROM_T, x_start=float(alpha) * mean, callback=callback)

    def _told(self, masked: np.ndarray, frame) -> np.ndarray | None:
        """The body code (prior/body_mean.py) of poses with their unknown joints NaN, where the weights use one."""
        if self.body_mean is None:
            return None
        scale = frame.scale[:, None]
        return body_code(known_bone_lengths(masked, self.space.reference_bones * scale), self.space.reference_bones,
                         frame.scale)

    def _best_guess_steps(self) -> int:
        """Sampler steps of _best_guess (progress callbacks count them): the mode, or the refinement."""
        return DEFAULTS["complete"][1]

    def pose_from_effectors(self, joints, known=None, lengths=None, pins=None, seed=None, callback=None, rest=None):
        """Live posing (prior/effectors.py): the body between the effectors and `pins` (body24 names, held where
        `joints` has them); known joints exact, bones at `lengths` (23,) or (N, 23) where they reach (default: the
        character's `rest` pose's (24, 3), whose chest shape is kept too, else what `joints` measures, else the usual
        estimate). joints (N, 24, 3) or (24, 3), NaN = unknown; same shape back."""
        arr = _poses(joints, "joints")
        out = effector_pose(self, arr, effector_known(arr, known, pins), lengths, rest, seed, callback,
                            REFINE_FROM_T, DEFAULTS["complete"][0])
        return out[0] if np.ndim(joints) == 2 else out

    def denoise(self, take, fps: float = 30.0, strength: float | None = None, sampler: str | None = None,
                steps: int | None = None, temporal: bool | None = None, seed=0, callback=None) -> np.ndarray:
        """A noisy take (T, 24, 3) comes back clean: spikes and dropouts (NaN) repaired, jitter removed.

        temporal: use the motion model over windows of frames (default where the engine has one), or the
        per-frame prior between low-pass filters. strength in [0, 1] sets how far back into the noise the take
        is sent (t = 0.5 * strength); None estimates it from the take's own jitter. Feet planted stay planted.
        """
        arr = self._take(take, fps)
        if strength is not None and not (isinstance(strength, (int, float)) and 0 <= strength <= 1):
            raise ValueError(f"strength must be between 0 and 1, got {strength!r}")
        if not np.isfinite(arr).any():
            raise ValueError("take has no known joints")
        if self._temporal(temporal):
            from gfpose_core.motion.takes import denoise_motion
            sampler, steps = _sampling(sampler, steps, DEFAULTS["denoise_motion"])
            steps = _count(steps, "steps", MAX_STEPS)
            with torch.inference_mode():
                out = denoise_motion(self, arr, float(fps), strength, sampler=sampler, steps=steps,
                                     generator=self._generator(seed), fill_with=DEFAULTS["inbetween"],
                                     callback=callback)
        else:
            from gfpose_core.prior.denoise import denoise_take
            sampler, steps = _sampling(sampler, steps, DEFAULTS["denoise"])
            out = denoise_take(self, arr, float(fps), strength, sampler, steps, callback)
        return within_noise(arr, out) if strength is None else out

    def inbetween(self, take, known=None, fps: float = 30.0, seed=None, sampler: str | None = None,
                  steps: int | None = None, lock_feet: bool = True, callback=None) -> np.ndarray:
        """Fill the frames between keys: take (T, 24, 3) with NaN for every unknown joint (whole frames or
        some joints of a frame), known (T, 24) optional. Known joints come back exactly; filled bones keep the
        take's lengths; a foot resting in one place at two keys stays there between them (lock_feet).
        Known frames may be at most the motion model's window less two frames apart (62 at 30 fps).
        """
        arr = self._take(take, fps)
        known_mask = _known_mask(arr, known)
        if not known_mask.any():
            raise ValueError("take has no known joints: use generate() for free poses")
        self._temporal(True)
        from gfpose_core.motion.takes import held, inbetween_take
        sampler, steps = _sampling(sampler, steps, DEFAULTS["inbetween"])
        steps = _count(steps, "steps", MAX_STEPS)
        with torch.inference_mode():
            out = inbetween_take(self, arr, known_mask, float(fps), sampler=sampler, steps=steps,
                                 generator=self._generator(seed), lock=lock_feet, callback=callback)
        return held(arr, known_mask, out)

    def _take(self, take, fps) -> np.ndarray:
        arr = _poses(take, "take")
        if isinstance(fps, bool) or not (isinstance(fps, (int, float)) and np.isfinite(fps) and 0 < fps <= 1000):
            raise ValueError(f"fps must be a positive number up to 1000, got {fps!r}")
        return arr

    def _temporal(self, temporal: bool | None) -> bool:
        if temporal and self.motion is None:
            raise ValueError("these weights have no motion model (a motion/ folder beside model.safetensors)")
        return self.motion is not None if temporal is None else bool(temporal)

    def generate(self, n: int, seed=None, around=None, pinned=None, diversity: float = 0.5,
                 sampler: str | None = None, steps: int | None = None, callback=None) -> np.ndarray:
        """n plausible poses: free (at the origin, facing -Y, reference size) or variations of `around`.

        pinned: joint names or a (24,) bool mask of joints kept exactly; diversity in [0, 1].
        """
        n = _count(n, "n", MAX_POSES)
        if not (isinstance(diversity, (int, float)) and 0 <= diversity <= 1):
            raise ValueError(f"diversity must be between 0 and 1, got {diversity!r}")
        gen = self._generator(seed)
        sampler, steps = _sampling(sampler, steps, DEFAULTS["generate"])
        if around is None:
            if pinned is not None:
                raise ValueError("pinned joints need a pose to pin them to (around=...)")
            none = np.zeros((n, POSE_DIM))
            x = self._run(none, none, False, sampler=sampler, steps=steps, generator=gen, callback=callback)
            return with_bone_lengths(self.space.from_model(x), self.space.reference_bones)
        base = _poses(around, "around")
        if len(base) != 1:
            raise ValueError(f"around must be one pose (24, 3), got {len(base)}")
        base_known = np.isfinite(base).all(-1)[0]
        if not base_known.any():
            raise ValueError("around has no known joints")
        pin = np.zeros(N_JOINTS, bool)
        if pinned is not None:
            pin = pin_mask(pinned)
            missing = [JOINT_NAMES[j] for j in np.flatnonzero(pin & ~base_known)]
            if missing:
                raise ValueError(f"pinned joint(s) {', '.join(missing)} are unknown (NaN) in around")
        canon, frame = self._canonical(base)
        start = np.nan_to_num(self.space.to_model(canon))
        obs = np.repeat(start, n, 0)
        cmask = np.repeat(self._coord_mask(pin[None]), n, 0)
        # diversity 0 stays at the pose, 1 starts from pure noise (free samples with the pins).
        t0 = float(np.clip(0.05 + 0.95 * diversity, 0.05, 1.0))
        alpha, sigma = (float(v) for v in self.sde.alpha_sigma(t0))
        noise = torch.randn((n, POSE_DIM), generator=gen, device=self.device).cpu().numpy()
        x0 = alpha * obs + sigma * noise
        x = self._run(obs, cmask, False, sampler=sampler, steps=steps, generator=gen, t_start=t0, x_start=x0,
                      callback=callback)
        frames = Frame(np.repeat(frame.root, n, 0), np.repeat(frame.yaw, n), np.repeat(frame.scale, n))
        out = np.where(pin[None, :, None], base, restore(self.space.from_model(x), frames))
        lengths = known_bone_lengths(base, self.space.reference_bones * frame.scale[:, None])
        return fit_bone_lengths(out, np.repeat(lengths, n, 0), np.repeat(pin[None], n, 0))

    def lift(self, keypoints2d, n_hypotheses: int = 1, seed=None, sampler: str | None = None,
             steps: int | None = None, callback=None) -> np.ndarray:
        """2D keypoints (N, 24, 2) in image coordinates (x right, y down, any unit) -> 3D hypotheses.

        Output: metres at the reference body size, in the camera's frame: x right, y away from the camera,
        z up, pelvis at the origin. (N, 24, 3), or (N, H, 24, 3) when n_hypotheses > 1.
        """
        kp = _poses(keypoints2d, "keypoints2d", dims=2)
        H = _count(n_hypotheses, "n_hypotheses", MAX_HYPOTHESES)
        if len(kp) * H > MAX_POSES:
            raise ValueError(f"{len(kp)} poses x {H} hypotheses is more than the limit of {MAX_POSES}")
        known = np.isfinite(kp).all(-1)
        if (known.sum(1) < 2).any():
            raise ValueError("every pose needs at least two known keypoints")
        obs, cmask = self._image_observation(kp, known)
        sampler, steps = _sampling(sampler, steps, DEFAULTS["lift"])
        # Independent samples: spread like complete's (hypotheses.py) they did worse here (best of 10, CMU 72.4 ->
        # 75.8 mm, Bandai 58.3 -> 65.7: with no likeliest answer first, the spread goes to the extremes of depth).
        x = self._run(np.repeat(obs, H, 0), np.repeat(cmask, H, 0), True, sampler=sampler, steps=steps,
                      generator=self._generator(seed), callback=callback)
        out = self.space.from_model(x).reshape(len(kp), H, N_JOINTS, 3)
        out = out[:, 0] if H == 1 else out
        return out[0] if np.ndim(keypoints2d) == 2 else out

    # Projected limbs look shorter than they are; this is the mean ratio for poses seen from random yaws.
    FORESHORTENING = 0.85

    def _image_observation(self, kp: np.ndarray, known: np.ndarray):
        """Image keypoints -> model-space x/z observations (pelvis-centred, unit body size) and coordinate mask."""
        from gfpose_core.body.skeleton import BONES
        uv = np.stack([kp[..., 0], -kp[..., 1]], -1)  # image y runs down; the model's z runs up
        pelvis = np.where(known[:, :1, None], uv[:, :1], np.nanmean(
            np.where(known[:, [INDEX["hip_l"], INDEX["hip_r"]], None], uv[:, [INDEX["hip_l"], INDEX["hip_r"]]],
                     np.nan), axis=1, keepdims=True))
        pelvis = np.where(np.isfinite(pelvis), pelvis, np.nanmean(np.where(known[..., None], uv, np.nan), 1,
                                                                  keepdims=True))
        rel = uv - pelvis
        seg = np.linalg.norm(rel[:, BONES[:, 0]] - rel[:, BONES[:, 1]], axis=-1)
        ok = np.isfinite(seg)
        ref = np.broadcast_to(self.space.reference_bones, seg.shape)
        scale = np.where(ok, seg, 0).sum(1) / np.maximum(np.where(ok, ref, 0).sum(1), 1e-9) / self.FORESHORTENING
        scale = np.where(scale > 0, scale, 1.0)
        rel = rel / scale[:, None, None]
        canon = np.zeros(kp.shape[:2] + (3,))
        canon[..., 0], canon[..., 2] = rel[..., 0], rel[..., 1]
        obs = np.nan_to_num(self.space.to_model(canon))
        jm = known[:, 1:]
        cmask = np.stack([jm, np.zeros_like(jm), jm], -1).reshape(len(kp), -1)
        return obs, cmask
