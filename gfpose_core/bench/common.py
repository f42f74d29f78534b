"""The benchmark's settings, seeds, test data and small helpers shared by its sections."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gfpose_core.bench.sections import SECTIONS  # noqa: F401  (re-exported for the sections' users)

SCHEMA = "gfpose-bench/1"
SEED = 20240607

DATASETS = ("cmu", "bandai")
DATASET_LABEL = {"cmu": "CMU test subjects (6, 13, 94)", "bandai": "Bandai test clips"}
SHORT = {"cmu": "CMU", "bandai": "Bandai"}

COMPLETION_SETTINGS = ("one_arm", "one_leg", "both_legs", "upper_body", "random3")
COMPLETION_LABEL = {"one_arm": "one arm", "one_leg": "one leg", "both_legs": "both legs",
                    "upper_body": "upper body", "random3": "3 random joints"}
COMPLETION_METHODS = ("engine", "engine_mode", "engine_best10", "nn", "nn_best10", "gaussian", "gaussian_best10",
                      "rest_pose")
METHOD_LABEL = {
    "engine": "engine", "engine_mode": "engine, score model's mode (10 steps)",
    "engine_best10": "engine (best of 10)", "nn": "nearest neighbour",
    "nn_best10": "nearest neighbour (best of 10)", "gaussian": "Gaussian", "gaussian_best10": "Gaussian (best of 10)",
    "rest_pose": "rest pose", "blender_ik": "Blender IK", "clean": "clean take", "input": "noisy input", "butterworth": "Butterworth",
    "savgol": "Savitzky-Golay", "gaussian_smooth": "Gaussian smoothing", "paper_per_frame": "paper sampler per frame",
    "engine_per_frame": "per-frame engine (prior between low-passes)",
    "train_poses": "training poses", "noise": "noise", "test_poses": "test poses",
}
DENOISE_CONDITIONS = ("jitter20", "jitter40", "jitter100", "spikes", "dropouts")
DENOISE_LABEL = {"jitter20": "jitter 20 mm", "jitter40": "jitter 40 mm", "jitter100": "jitter 100 mm",
                 "spikes": "jitter 20 mm + spikes", "dropouts": "jitter 20 mm + dropouts"}
DENOISE_METHODS = ("clean", "input", "engine", "engine_per_frame", "butterworth", "savgol", "gaussian_smooth",
                   "paper_per_frame")
DENOISE_METRICS = ("mpjpe_mm", "accel_err_m_s2", "bone_err_mm", "foot_skate_mm_s")
GENERATION_METHODS = ("engine", "train_poses", "gaussian", "noise", "test_poses")
GENERATION_METRICS = ("precision", "recall", "coverage", "apd_mm", "fd_m2", "nn_mpjpe_mm")
LIFT_HYPOTHESES = (1, 10, 200)
SPEED_TASKS = ("complete_1", "complete_1_h10", "complete_batch", "denoise_take", "generate_batch", "lift_1_h10",
               "lift_1_hmany", "complete_1_http")

# Filter parameters searched on the validation split (per dataset and noise condition).
BUTTER_CUTOFFS_HZ = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
SAVGOL_WINDOWS = (5, 7, 9, 11, 15, 21, 31, 41)
GAUSS_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)

SPIKE_RATE, SPIKE_M = 0.01, 0.20
DROPOUT_MIN, DROPOUT_MAX = 5, 30
CAMERA_PX_PER_M, CAMERA_CENTRE = 400.0, (640.0, 360.0)


@dataclass
class Sizes:
    """How much of each task a run does (poses are drawn with fixed seeds)."""
    name: str = "full"
    n_complete: int = 2000        # poses per dataset per unknown set, single hypothesis
    n_best_of: int = 200          # of those, poses that also get 10 hypotheses
    n_takes: int = 4              # denoising test takes per dataset (per-frame section)
    n_take_tests: int = 24        # test takes per dataset for the motion model's section (issue 8)
    take_frames: int = 120
    n_val_takes: int = 8          # validation takes for tuning the filters
    n_generate: int = 2000
    n_real: int = 2000            # held-out real poses per dataset for the generation metrics
    n_lift: int = 300             # poses per dataset, 10 hypotheses (best of 1 and 10)
    n_lift200: int = 25           # poses per dataset, 200 hypotheses
    n_curve: int = 200            # poses for the quality-versus-steps curve (1000-step EM included)
    em_curve: tuple = (1000, 500, 200, 100, 50, 20, 10)
    em_point_draws: int = 8       # EM draws averaged into its point estimate (compared with complete()'s one answer)
    mode_curve: tuple = (4, 10, 20, 50)
    sde_heun_curve: tuple = (10, 20, 50)
    denoise_timing_frames: int = 10000   # frames of the take timed by "denoise_take"
    speed_batch: int = 1000               # poses of "complete_batch"
    speed_generate: int = 100             # poses of "generate_batch"
    speed_hypotheses: int = 200           # hypotheses of "lift_1_hmany"
    latency_repeats: int = 10
    bvh_timing: bool = True
    n_effectors: int = 500                # held-out poses per dataset posed from effectors (issue 20)
    effector_subprocesses: bool = True    # run Blender IK and the Auto Pose latency benchmark (bpy subprocesses)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(name="quick", n_complete=300, n_best_of=40, n_takes=2, n_take_tests=4, take_frames=90,
                   n_val_takes=4, n_generate=500, n_real=500, n_lift=60, n_lift200=8, n_curve=50,
                   em_curve=(1000, 200, 100, 50, 20, 10), mode_curve=(4, 10, 20), sde_heun_curve=(10, 20),
                   latency_repeats=5, n_effectors=30)

    @classmethod
    def tiny(cls) -> "Sizes":
        """For the smoke test: every code path, seconds of work."""
        return cls(name="tiny", n_complete=20, n_best_of=4, n_takes=1, n_take_tests=1, take_frames=30,
                   n_val_takes=1, n_generate=30, n_real=30, n_lift=6, n_lift200=1, n_curve=4, em_curve=(40, 10),
                   em_point_draws=2,
                   mode_curve=(4, 10), sde_heun_curve=(4,), denoise_timing_frames=200, latency_repeats=2,
                   speed_batch=50, speed_generate=10, speed_hypotheses=20,
                   bvh_timing=False, n_effectors=6, effector_subprocesses=False)


# ------------------------------------------------------------------------------------------------- helpers

def _log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _rng(*parts) -> np.random.Generator:
    """A generator seeded by the run seed and a section name, so sections do not share draws."""
    import zlib
    return np.random.default_rng([SEED] + [zlib.crc32(str(p).encode()) for p in parts])


def _mm(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v) * 1000.0, 3)


def _r(v, nd=4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


class _threads:
    """Run a block with `n` torch intra-op threads (CPU only), then restore the previous setting.

    The quality sections and the sampler curve run single-threaded: their numbers do not depend on threads, and on
    a shared 2-core machine a second thread fighting other processes stalls every small operation (measured: 10 to
    20 times slower at batch 40). Task timings run with torch's default threads, as a user's engine does.
    """
    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        import torch
        self.prev = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch
        torch.set_num_threads(self.prev)


def _timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


class _Stopwatch:
    def __init__(self):
        self.t0 = time.perf_counter()
        self.sections: dict[str, float] = {}

    def section(self, name):
        sw = self

        class _S:
            def __enter__(self):
                self.t = time.perf_counter()
                _log(f"{name} ...")

            def __exit__(self, *exc):
                sw.sections[name] = round(time.perf_counter() - self.t, 2)
                _log(f"{name} done in {sw.sections[name]:.1f} s")
        return _S()


# ------------------------------------------------------------------------------------------------- data

@dataclass
class BenchData:
    train_canon: np.ndarray                 # training poses, canonical on the reference body (with mirrors)
    sets: dict = field(default_factory=dict)  # dataset -> takes dict (joints, clip, split, names)


def load_data(engine, data_dir=None) -> BenchData:
    """The test sets (CMU's BVH clips, Bandai) and, for the baselines that look poses up (nearest neighbour, the
    Gaussian, real poses against generated ones), the training split of every shippable set the default weights are
    trained on (data.training_takes: CMU's BVH and ASF/AMC clips and HDM05), so that a lookup knows what the engine
    saw."""
    from gfpose_core.data import DATA_DIR, bandai_takes, cmu_takes, training_takes
    from gfpose_core.prior.train import prepare_poses
    data_dir = Path(data_dir) if data_dir is not None else DATA_DIR
    cmu = cmu_takes(data_dir)
    bandai = bandai_takes(data_dir)
    takes, _ = training_takes(data_dir)
    train = takes["joints"][takes["split"] == "train"].astype(np.float64)
    canon, _ = prepare_poses(train, engine.space.reference_bones)
    return BenchData(train_canon=canon.astype(np.float64), sets={"cmu": cmu, "bandai": bandai})


def _test_rows(takes: dict, n: int, rng) -> np.ndarray:
    idx = np.flatnonzero(takes["split"] == "test")
    return np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))


def _test_poses(takes: dict, n: int, rng) -> np.ndarray:
    return takes["joints"][_test_rows(takes, n, rng)].astype(np.float64)


GROUP_LABEL = {"cmu": "subject", "bandai": "motion"}


def _groups(ds: str, takes: dict, rows: np.ndarray) -> np.ndarray:
    """Each row's CMU subject ("94_acl04" -> "94") or Bandai motion ("dataset-2_walk_active_001" -> "walk")."""
    return np.array([str(takes["names"][c]).split("_")[0 if ds == "cmu" else 1] for c in takes["clip"][rows]])


def _by_group(pred, nn_pred, gt, unknown, groups) -> dict:
    """MPJPE of the engine and of nearest neighbour per group of test poses: where a gap comes from."""
    from gfpose_core.bench.metrics import per_sample_mpjpe
    e = per_sample_mpjpe(pred[:, None], gt[:, None], unknown[:, None])[:, 0]
    b = per_sample_mpjpe(nn_pred[:, None], gt[:, None], unknown[:, None])[:, 0]
    return {str(g): {"n": int((groups == g).sum()), "engine_mm": _mm(e[groups == g].mean()),
                     "nn_mm": _mm(b[groups == g].mean())} for g in np.unique(groups)}


def _pick_takes(takes: dict, split: str, n: int, length: int, rng) -> list[np.ndarray]:
    """n contiguous windows of `length` frames from distinct clips of a split (repeats clips if too few)."""
    clips = np.unique(takes["clip"][takes["split"] == split])
    lengths = {c: int((takes["clip"] == c).sum()) for c in clips}
    ok = [c for c in clips if lengths[c] >= length]
    if not ok:
        raise ValueError(f"no {split} clip has {length} frames")
    chosen = rng.choice(ok, size=n, replace=len(ok) < n)
    out = []
    for c in chosen:
        frames = np.flatnonzero(takes["clip"] == c)
        s = int(rng.integers(0, lengths[c] - length + 1))
        out.append(takes["joints"][frames[s:s + length]].astype(np.float64))
    return out
