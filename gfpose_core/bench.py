"""`gfpose bench`: the engine against classical baselines on held-out data, as issue #7 asks.

Writes OUT/report.md (tables, plots, pass/fail targets, plain sentences wherever the engine loses) and
OUT/results.json (fields stable across runs: see `SCHEMA`). Every baseline is computed in the same run on the
same inputs as the engine. Test data: the CMU test subjects of the project's split and the Bandai test clips of
../shared/data (evaluation only). Nothing derived from Bandai is written except aggregate numbers.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import bench_takes

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
    "rest_pose": "rest pose", "clean": "clean take", "input": "noisy input", "butterworth": "Butterworth",
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
TARGETS = ("completion_one_limb", "completion_best_of_10", "denoise_jitter", "generation_vs_noise",
           "sampler_speed_quality", "latency_complete_1", "denoise_10000_frames", "bvh_read_all", "http_overhead",
           *bench_takes.TARGETS)

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
    mode_curve: tuple = (4, 10, 20, 50)
    sde_heun_curve: tuple = (10, 20, 50)
    denoise_timing_frames: int = 10000   # frames of the take timed by "denoise_take"
    speed_batch: int = 1000               # poses of "complete_batch"
    speed_generate: int = 100             # poses of "generate_batch"
    speed_hypotheses: int = 200           # hypotheses of "lift_1_hmany"
    latency_repeats: int = 10
    bvh_timing: bool = True

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(name="quick", n_complete=300, n_best_of=40, n_takes=2, n_take_tests=4, take_frames=90,
                   n_val_takes=4, n_generate=500, n_real=500, n_lift=60, n_lift200=8, n_curve=50,
                   em_curve=(1000, 200, 100, 50, 20, 10), mode_curve=(4, 10, 20), sde_heun_curve=(10, 20),
                   latency_repeats=5)

    @classmethod
    def tiny(cls) -> "Sizes":
        """For the smoke test: every code path, seconds of work."""
        return cls(name="tiny", n_complete=20, n_best_of=4, n_takes=1, n_take_tests=1, take_frames=30,
                   n_val_takes=1, n_generate=30, n_real=30, n_lift=6, n_lift200=1, n_curve=4, em_curve=(40, 10),
                   mode_curve=(4, 10), sde_heun_curve=(4,), denoise_timing_frames=200, latency_repeats=2,
                   speed_batch=50, speed_generate=10, speed_hypotheses=20,
                   bvh_timing=False)


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
    from .data import DATA_DIR, bandai_takes, cmu_takes
    from .train import prepare_poses
    data_dir = Path(data_dir) if data_dir is not None else DATA_DIR
    cmu = cmu_takes(data_dir)
    bandai = bandai_takes(data_dir)
    train = cmu["joints"][cmu["split"] == "train"].astype(np.float64)
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
    from .metrics import per_sample_mpjpe
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


# ------------------------------------------------------------------------------------------------- completion

def unknown_masks(setting: str, n: int, rng) -> np.ndarray:
    """(n, 24) bool, True where a joint is unknown (hidden from every method)."""
    from .skeleton import BODY_PARTS
    m = np.zeros((n, 24), bool)
    if setting in ("one_arm", "one_leg"):
        part = "arm" if setting == "one_arm" else "leg"
        left = rng.random(n) < 0.5
        m[np.ix_(left, BODY_PARTS[f"{part}_l"])] = True
        m[np.ix_(~left, BODY_PARTS[f"{part}_r"])] = True
    elif setting == "both_legs":
        m[:, BODY_PARTS["leg_l"] + BODY_PARTS["leg_r"]] = True
    elif setting == "upper_body":
        m[:, [j for j in BODY_PARTS["torso_head"] if j != 0] + BODY_PARTS["arm_l"] + BODY_PARTS["arm_r"]] = True
    elif setting == "random3":
        for i in range(n):
            m[i, rng.choice(24, 3, replace=False)] = True
    else:
        raise ValueError(f"unknown completion setting {setting!r}")
    return m


def _bone_err_on(pred, gt, unknown) -> float:
    """Mean |bone length error| (m) over bones with an unknown end (bones between known joints are exact)."""
    from .skeleton import BONES, bone_lengths
    sel = unknown[:, BONES[:, 0]] | unknown[:, BONES[:, 1]]          # (N, 23)
    lp, lg = bone_lengths(pred), bone_lengths(gt if pred.ndim == gt.ndim else gt[:, None])
    err = np.abs(lp - lg)
    if pred.ndim == 4:
        sel = np.broadcast_to(sel[:, None], err.shape)
    return float(err[sel].mean()) if sel.any() else float("nan")


def completion_scores(pred, gt, unknown) -> dict:
    """MPJPE, PA-MPJPE (fitted and measured on the unknown joints) and bone error; best of H for (N, H, 24, 3)."""
    from .metrics import per_sample_mpjpe, procrustes_align
    if pred.ndim == 3:
        pred_h = pred[:, None]
    else:
        pred_h = pred
    mask = unknown[:, None]
    err = per_sample_mpjpe(pred_h, gt[:, None], mask)                      # (N, H)
    aligned = procrustes_align(pred_h, np.broadcast_to(gt[:, None], pred_h.shape), mask)
    pa = per_sample_mpjpe(aligned, gt[:, None], mask)
    return {"mpjpe_mm": _mm(err.min(1).mean()), "pa_mpjpe_mm": _mm(pa.min(1).mean()),
            "bone_err_mm": _mm(_bone_err_on(pred_h, gt, unknown)), "n": int(len(gt)),
            "hypotheses": int(pred_h.shape[1])}


def run_completion(engine, data: BenchData, sizes: Sizes) -> dict:
    from .baselines import GaussianCompletion, NearestNeighbourCompletion
    from .engine import DEFAULTS
    from .skeleton import restore
    nn = NearestNeighbourCompletion(data.train_canon)
    gauss = GaussianCompletion(data.train_canon)
    out = {}
    for ds in DATASETS:
        rows = _test_rows(data.sets[ds], sizes.n_complete, _rng("completion", ds))
        gt_all = data.sets[ds]["joints"][rows].astype(np.float64)
        groups = _groups(ds, data.sets[ds], rows)
        out[ds] = {}
        for setting in COMPLETION_SETTINGS:
            t0 = time.perf_counter()
            rng = _rng("completion", ds, setting)
            unknown = unknown_masks(setting, len(gt_all), rng)
            known = ~unknown
            query = np.where(known[..., None], gt_all, np.nan)               # nothing unknown reaches a method
            nb = min(sizes.n_best_of, len(gt_all))
            res = {}
            # Engine: world space in, world space out.
            pred = engine.complete(query, known, seed=1)
            res["engine"] = completion_scores(pred, gt_all, unknown)
            # the score model alone, as complete() answers without the posterior-mean network
            sampler, steps = DEFAULTS["complete"]
            res["engine_mode"] = completion_scores(engine.complete(query, known, seed=1, sampler=sampler, steps=steps),
                                                   gt_all, unknown)
            hyps = engine.complete(query[:nb], known[:nb], n_hypotheses=10, seed=2)
            res["engine_best10"] = completion_scores(hyps, gt_all[:nb], unknown[:nb])
            # Baselines in the engine's canonical frame, mapped back to world with the same frame.
            canon, frame = engine._canonical(query)

            def world(c, rows=slice(None)):
                from .skeleton import Frame
                fr = Frame(frame.root[rows], frame.yaw[rows], frame.scale[rows])
                w = restore(c, fr)
                q = query[rows] if c.ndim == 3 else query[rows][:, None]
                k = known[rows][..., None] if c.ndim == 3 else known[rows][:, None, :, None]
                return np.where(k, q, w)

            nn_pred = world(nn.complete(canon, known))
            res["nn"] = completion_scores(nn_pred, gt_all, unknown)
            if setting in ("one_arm", "one_leg"):
                res["by_group"] = _by_group(pred, nn_pred, gt_all, unknown, groups)
            res["nn_best10"] = completion_scores(world(nn.complete(canon[:nb], known[:nb], k=10), slice(0, nb)),
                                                 gt_all[:nb], unknown[:nb])
            res["gaussian"] = completion_scores(world(gauss.complete(canon, known)), gt_all, unknown)
            samples = gauss.sample_conditional(canon[:nb], known[:nb], 10, rng=_rng("gauss-samples", ds, setting))
            res["gaussian_best10"] = completion_scores(world(samples, slice(0, nb)), gt_all[:nb], unknown[:nb])
            rest = np.broadcast_to(engine.mean_pose, canon.shape).copy()
            res["rest_pose"] = completion_scores(world(rest), gt_all, unknown)
            out[ds][setting] = res
            _log(f"  completion {ds} {setting}: engine {res['engine']['mpjpe_mm']:.1f} mm, "
                 f"nn {res['nn']['mpjpe_mm']:.1f} mm ({time.perf_counter() - t0:.1f} s)")
    return out


# ------------------------------------------------------------------------------------------------- denoising

def corrupt(take: np.ndarray, condition: str, rng) -> np.ndarray:
    """A noisy copy of a clean take: Gaussian jitter per coordinate, spikes, dropouts (NaN)."""
    known = ("jitter20", "jitter40", "jitter100", "spikes", "dropouts", "jitter40_spikes_dropouts")
    if condition not in known:
        raise ValueError(f"unknown denoising condition {condition!r}")
    sigma = {"jitter20": 0.02, "jitter100": 0.10}.get(condition, 0.04 if "jitter40" in condition else 0.02)
    noisy = take + rng.normal(0.0, sigma, take.shape)
    T, J = take.shape[:2]
    if "spikes" in condition:
        hit = rng.random((T, J)) < SPIKE_RATE
        d = rng.normal(size=(T, J, 3))
        d *= SPIKE_M / np.linalg.norm(d, axis=-1, keepdims=True)
        noisy = noisy + np.where(hit[..., None], d, 0.0)
    if "dropouts" in condition:
        events = max(1, int(math.ceil(T / 20)))
        for _ in range(events):
            j = int(rng.integers(0, J))
            length = int(rng.integers(DROPOUT_MIN, DROPOUT_MAX + 1))
            s = int(rng.integers(0, max(1, T - length)))
            noisy[s:s + length, j] = np.nan
    return noisy


def paper_per_frame_denoise(engine, take: np.ndarray, fps: float = 30.0, seed: int = 0) -> np.ndarray:
    """The paper's denoising, frame by frame: each pose canonicalised on its own, sent to the t whose noise matches
    the take's estimated jitter (as the engine chooses it), and brought back by Euler-Maruyama at the paper's step
    density (1,000 steps per unit time), unconditioned. No spike detection, no temporal filter; gaps are linearly
    interpolated first, as for the filters.
    """
    from .baselines import fill_gaps
    from .denoise import estimate_jitter
    from .skeleton import restore
    filled = fill_gaps(take)
    canon, frame = engine._canonical(filled)
    obs = engine.space.to_model(canon)
    noise = estimate_jitter(filled) / (np.median(frame.scale) * engine.space.std)
    t0 = engine.sde.t_for_noise_ratio(max(noise, 1e-3))
    steps = max(1, int(round(1000 * t0)))
    alpha = float(engine.sde.alpha_sigma(t0)[0])
    zeros = np.zeros_like(obs)
    x = engine._run(zeros, zeros, False, sampler="em", steps=steps, generator=engine._generator(seed),
                    t_start=t0, x_start=alpha * obs, impute=False)
    return restore(engine.space.from_model(x), frame)


def denoise_scores(pred: np.ndarray, clean: np.ndarray, fps: float) -> dict:
    from .metrics import acceleration_error, bone_length_error, foot_skate, mpjpe
    return {"mpjpe_mm": float(mpjpe(pred, clean)), "accel_err_m_s2": float(acceleration_error(pred, clean, fps)),
            "bone_err_mm": float(bone_length_error(pred, clean)),
            "foot_skate_mm_s": foot_skate(pred, fps, contacts_from=clean)}


def run_denoising(engine, data: BenchData, sizes: Sizes, fps: float = 30.0) -> tuple[dict, dict]:
    from .baselines import best_cutoff, butterworth, fill_gaps, gaussian_smooth, savitzky_golay
    out, params = {}, {}
    for ds in DATASETS:
        takes = data.sets[ds]
        test = _pick_takes(takes, "test", sizes.n_takes, sizes.take_frames, _rng("denoise-test", ds))
        val = _pick_takes(takes, "val", sizes.n_val_takes, sizes.take_frames, _rng("denoise-val", ds))
        out[ds], params[ds] = {}, {}
        for cond in DENOISE_CONDITIONS:
            t0 = time.perf_counter()
            rng_v = _rng("denoise-val-noise", ds, cond)
            noisy_val = [corrupt(v, cond, rng_v) for v in val]
            cut, _ = best_cutoff(val, noisy_val, fps, BUTTER_CUTOFFS_HZ, "butterworth")
            win, _ = best_cutoff(val, noisy_val, fps, SAVGOL_WINDOWS, "savgol", polyorder=2)
            sig, _ = best_cutoff(val, noisy_val, fps, GAUSS_SIGMAS, "gaussian")
            params[ds][cond] = {"butterworth_cutoff_hz": cut, "savgol_window": int(win),
                                "gaussian_sigma_frames": sig}
            methods = {
                "clean": lambda x, c: c,
                "input": lambda x, c: fill_gaps(x),
                "engine": lambda x, c: engine.denoise(x, fps=fps),
                "engine_per_frame": lambda x, c: engine.denoise(x, fps=fps, temporal=False),
                "butterworth": lambda x, c: butterworth(x, fps, cut),
                "savgol": lambda x, c: savitzky_golay(x, win, 2),
                "gaussian_smooth": lambda x, c: gaussian_smooth(x, sig),
                "paper_per_frame": lambda x, c: paper_per_frame_denoise(engine, x, fps),
            }
            rng_t = _rng("denoise-test-noise", ds, cond)
            noisy = [corrupt(c, cond, rng_t) for c in test]
            per = {m: [] for m in methods}
            secs = {m: 0.0 for m in methods}
            for clean, x in zip(test, noisy):
                for m, fn in methods.items():
                    pred, dt = _timed(fn, x, clean)
                    secs[m] += dt
                    per[m].append(denoise_scores(pred, clean, fps))
            res = {}
            for m in methods:
                agg = {k: float(np.nanmean([p[k] for p in per[m]])) for k in DENOISE_METRICS}
                res[m] = {"mpjpe_mm": _mm(agg["mpjpe_mm"]), "accel_err_m_s2": _r(agg["accel_err_m_s2"], 3),
                          "bone_err_mm": _mm(agg["bone_err_mm"]), "foot_skate_mm_s": _mm(agg["foot_skate_mm_s"]),
                          "seconds": _r(secs[m], 3), "frames": int(sum(len(c) for c in test))}
            out[ds][cond] = res
            _log(f"  denoise {ds} {cond}: input {res['input']['mpjpe_mm']:.1f} engine {res['engine']['mpjpe_mm']:.1f} "
                 f"butterworth {res['butterworth']['mpjpe_mm']:.1f} per-frame {res['paper_per_frame']['mpjpe_mm']:.1f}"
                 f" mm ({time.perf_counter() - t0:.1f} s)")
    return out, params


# ------------------------------------------------------------------------------------------------- generation

def _nn_mpjpe(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over poses of a of the MPJPE (m) to the closest pose of b."""
    best = np.full(len(a), np.inf)
    chunk = max(1, int(2_000_000 // (len(b) * 24)))
    for s in range(0, len(a), chunk):
        d = np.linalg.norm(a[s:s + chunk, None] - b[None], axis=-1).mean(-1)
        best[s:s + chunk] = d.min(1)
    return float(best.mean())


def generation_scores(gen: np.ndarray, real: np.ndarray) -> dict:
    from .metrics import apd, frechet_distance, precision_recall_coverage
    prc = precision_recall_coverage(gen, real, k=5)
    n_apd = min(len(gen), 1000)
    return {"precision": _r(prc.precision), "recall": _r(prc.recall), "coverage": _r(prc.coverage),
            "apd_mm": _mm(apd(gen[:n_apd])), "fd_m2": _r(frechet_distance(gen, real), 5),
            "nn_mpjpe_mm": _mm(_nn_mpjpe(gen, real)), "n": int(len(gen))}


def run_generation(engine, data: BenchData, sizes: Sizes) -> dict:
    from .baselines import GaussianCompletion
    from .metrics import apd
    from .pose_space import POSE_DIM
    from .train import prepare_poses
    n = sizes.n_generate
    rng = _rng("generation")
    samples = {
        "engine": engine.generate(n, seed=3),
        "train_poses": data.train_canon[rng.choice(len(data.train_canon), n, replace=False)],
        "gaussian": GaussianCompletion(data.train_canon).sample(n, rng=_rng("generation-gauss")),
        "noise": engine.space.from_model(_rng("generation-noise").standard_normal((n, POSE_DIM))),
    }
    out = {}
    for ds in DATASETS:
        world = _test_poses(data.sets[ds], sizes.n_real, _rng("generation-real", ds))
        real, _ = prepare_poses(world, engine.space.reference_bones)
        real = real[:len(world)].astype(np.float64)                     # drop the mirror copies
        out[ds] = {m: generation_scores(s, real) for m, s in samples.items()}
        # The held-out poses' own spread, for reading the APD column.
        out[ds]["test_poses"] = {k: None for k in GENERATION_METRICS} | {"apd_mm": _mm(apd(real[:1000])),
                                                                         "n": int(len(real))}
        _log(f"  generation {ds}: engine FD {out[ds]['engine']['fd_m2']} noise FD {out[ds]['noise']['fd_m2']}")
    return out


# ------------------------------------------------------------------------------------------------- lifting

def project_random_yaw(canon: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic camera at a random yaw: (image keypoints (N,24,2) in pixels, x right y down;
    ground truth (N,24,3) in the camera frame: x right, y away from the camera, z up, pelvis at the origin)."""
    from .skeleton import yaw_matrix
    yaw = rng.uniform(0.0, 2 * np.pi, len(canon))
    cam = np.einsum("nij,nkj->nki", yaw_matrix(yaw), canon)
    cam = cam - cam[:, :1]
    u = CAMERA_PX_PER_M * cam[..., 0] + CAMERA_CENTRE[0]
    v = -CAMERA_PX_PER_M * cam[..., 2] + CAMERA_CENTRE[1]
    return np.stack([u, v], -1), cam


def lift_scores(hyps: np.ndarray, gt: np.ndarray) -> dict:
    """Best-of-H: MPJPE after a per-hypothesis least-squares scale (pelvis-centred), PA-MPJPE, raw MPJPE."""
    from .metrics import per_sample_mpjpe, procrustes_align
    p = hyps - hyps[..., :1, :]
    g = (gt - gt[:, :1])[:, None]
    s = (p * g).sum((-1, -2)) / np.maximum((p * p).sum((-1, -2)), 1e-12)
    n_err = per_sample_mpjpe(p * s[..., None, None], g)
    raw = per_sample_mpjpe(p, g)
    pa = per_sample_mpjpe(procrustes_align(p, np.broadcast_to(g, p.shape)), g)
    return {"mpjpe_mm": _mm(n_err.min(1).mean()), "pa_mpjpe_mm": _mm(pa.min(1).mean()),
            "raw_mpjpe_mm": _mm(raw.min(1).mean()), "n": int(len(gt))}


def run_lifting(engine, data: BenchData, sizes: Sizes) -> dict:
    out = {}
    for ds in DATASETS:
        t0 = time.perf_counter()
        world = _test_poses(data.sets[ds], max(sizes.n_lift, sizes.n_lift200), _rng("lift", ds))
        canon, _ = engine._canonical(world)
        kp, gt = project_random_yaw(canon, _rng("lift-camera", ds))
        res = {}
        h10 = engine.lift(kp[:sizes.n_lift], n_hypotheses=10, seed=4)
        res["best_of_1"] = lift_scores(h10[:, :1], gt[:sizes.n_lift])
        res["best_of_10"] = lift_scores(h10, gt[:sizes.n_lift])
        h200 = engine.lift(kp[:sizes.n_lift200], n_hypotheses=200, seed=5)
        res["best_of_200"] = lift_scores(h200, gt[:sizes.n_lift200])
        # Same poses as best-of-200, for a like-for-like column.
        res["best_of_10_on_200_subset"] = lift_scores(h200[:, :10], gt[:sizes.n_lift200])
        out[ds] = res
        _log(f"  lifting {ds}: best of 1/10/200 {res['best_of_1']['mpjpe_mm']:.1f} / "
             f"{res['best_of_10']['mpjpe_mm']:.1f} / {res['best_of_200']['mpjpe_mm']:.1f} mm "
             f"({time.perf_counter() - t0:.1f} s)")
    return out


# ------------------------------------------------------------------------------------------------- speed

def count_flops(net) -> int:
    """FLOPs of one network evaluation for one sample: 2 * in * out for every Linear layer actually called."""
    import torch
    total = [0]
    hooks = [m.register_forward_hook(lambda mod, i, o: total.__setitem__(0, total[0] + 2 * mod.in_features
                                                                         * mod.out_features))
             for m in net.modules() if isinstance(m, torch.nn.Linear)]
    try:
        p = next(net.parameters())
        d = net.cfg.pose_dim
        with torch.inference_mode():
            net(torch.zeros(1, d, device=p.device), torch.full((1,), 0.5, device=p.device),
                torch.zeros(1, net.cfg.cond_dim, device=p.device))
    finally:
        for h in hooks:
            h.remove()
    return int(total[0])


def machine_gflops(device) -> float:
    """Measured fp32 matmul rate (GFLOP/s) of a 2048 x 2048 product on the device (best of three trials, so that
    a moment of contention from other processes does not set the floor)."""
    import torch
    n = 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = 0.0
    for _ in range(3):
        sync()
        reps, t = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - t < 0.3:
            a @ b
            reps += 1
        sync()
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


EVALS_PER_STEP = {"em": 1, "mode": 1, "heun": 2, "sde_heun": 2, "tweedie": 1}


def _evals(sampler: str, steps: int) -> int:
    return EVALS_PER_STEP[sampler] * steps


def _best_guess_evals(engine) -> int:
    """Network evaluations of one default completion: the sampler's steps, and the posterior-mean networks' passes."""
    from .engine import DEFAULTS
    steps = engine._best_guess_steps()
    return EVALS_PER_STEP[DEFAULTS["complete"][0]] * steps + (0 if engine.posterior_mean is None
                                                               else len(engine.posterior_mean.nets))


def _latency(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls; with more than one, a first untimed call warms up (allocations, imports)."""
    if repeats > 1:
        fn()
    times = []
    for _ in range(repeats):
        _, dt = _timed(fn)
        times.append(dt)
    return float(np.median(times))


def _http_latency(engine, joints: np.ndarray, known: np.ndarray, repeats: int) -> float:
    """Median seconds of one /complete request to a real server on loopback (JSON both ways)."""
    import httpx

    from .server import ServerThread
    body = {"joints": np.where(known[..., None], joints, np.nan).tolist(), "seed": 0}
    body["joints"] = [[[None if v != v else v for v in j] for j in pose] for pose in body["joints"]]
    with ServerThread(engine) as url, httpx.Client(base_url=url, timeout=60) as client:
        return _latency(lambda: client.post("/complete", json=body).raise_for_status(), repeats)


def time_tasks(engine, data: BenchData, sizes: Sizes) -> dict:
    """Seconds per task call on this engine's device (median of repeats for the short ones)."""
    from .engine import DEFAULTS
    cmu = data.sets["cmu"]
    poses = _test_poses(cmu, sizes.speed_batch, _rng("speed"))
    unknown = unknown_masks("one_leg", len(poses), _rng("speed-mask"))
    query = np.where(unknown[..., None], np.nan, poses)
    clean = _pick_takes(cmu, "test", 1, min(300, sizes.denoise_timing_frames), _rng("speed-take"))[0]
    reps = int(math.ceil(sizes.denoise_timing_frames / len(clean)))
    long = np.concatenate([clean if k % 2 == 0 else clean[::-1] for k in range(reps)])[:sizes.denoise_timing_frames]
    long = long + _rng("speed-noise").normal(0, 0.02, long.shape)
    canon, _ = engine._canonical(poses[:1])
    kp, _ = project_random_yaw(canon, _rng("speed-camera"))
    r = sizes.latency_repeats
    t = {
        "complete_1": _latency(lambda: engine.complete(query[:1], ~unknown[:1], seed=0), max(2, r)),
        "complete_1_h10": _latency(lambda: engine.complete(query[:1], ~unknown[:1], n_hypotheses=10, seed=0), r),
        "complete_batch": _latency(lambda: engine.complete(query, ~unknown, seed=0), 1),
        "denoise_take": _latency(lambda: engine.denoise(long, fps=30.0, temporal=False), 1),  # one-off
        "generate_batch": _latency(lambda: engine.generate(sizes.speed_generate, seed=0), max(1, r // 3)),
        "lift_1_h10": _latency(lambda: engine.lift(kp, n_hypotheses=10, seed=0), r),
        "lift_1_hmany": _latency(lambda: engine.lift(kp, n_hypotheses=sizes.speed_hypotheses, seed=0),
                                 max(1, r // 3)),
        "complete_1_http": _http_latency(engine, query[:1], ~unknown[:1], max(5, r)),
    }
    single = _best_guess_evals(engine)
    n_eval = {
        "complete_1": single,
        "complete_1_h10": 10 * _evals(*DEFAULTS["hypotheses"]),
        "complete_batch": len(poses) * single,
        # the default denoising sampler runs its full step count from the estimated t0, once per frame
        "denoise_take": len(long) * _evals(*DEFAULTS["denoise"]),
        "generate_batch": sizes.speed_generate * _evals(*DEFAULTS["generate"]),
        "lift_1_h10": 10 * _evals(*DEFAULTS["lift"]),
        "lift_1_hmany": sizes.speed_hypotheses * _evals(*DEFAULTS["lift"]),
        "complete_1_http": single,
    }
    what = {"complete_1": "complete 1 keyframe (one leg unknown)",
            "complete_1_h10": "complete 1 keyframe, 10 hypotheses",
            "complete_batch": f"complete {len(poses)} keyframes in one call",
            "denoise_take": f"denoise one take of {len(long)} frames (20 mm jitter), per-frame engine",
            "generate_batch": f"generate {sizes.speed_generate} free poses",
            "lift_1_h10": "lift 1 pose, 10 hypotheses",
            "lift_1_hmany": f"lift 1 pose, {sizes.speed_hypotheses} hypotheses",
            "complete_1_http": "complete 1 keyframe through `gfpose serve` (HTTP on loopback, one request at a time)"}
    return {"seconds": {k: _r(v, 5) for k, v in t.items()}, "sample_evals": n_eval, "tasks": what,
            "denoise_frames": int(len(long))}


def bvh_read_all(data_dir=None) -> dict:
    """Cold read + conversion of every BVH clip (no cache): gfpose_core.data.load_take on each file."""
    from .data import DATA_DIR, load_take
    d = Path(data_dir) if data_dir is not None else DATA_DIR
    files = sorted((d / "cmu" / "bvh").glob("*.bvh*")) + sorted((d / "bandai" / "data").glob("*.bvh*"))
    t = time.perf_counter()
    frames = 0
    for f in files:
        frames += len(load_take(f).joints)
    return {"seconds": _r(time.perf_counter() - t, 3), "files": len(files), "frames": int(frames)}


def quality_curve(engine, data: BenchData, sizes: Sizes) -> list[dict]:
    """Completion MPJPE on the unknown joints (CMU test, the five unknown sets in turn) against sampler steps."""
    from .metrics import mpjpe
    gt = _test_poses(data.sets["cmu"], sizes.n_curve, _rng("curve"))
    rng = _rng("curve-masks")
    unknown = np.concatenate([unknown_masks(COMPLETION_SETTINGS[i % 5], 1, rng) for i in range(len(gt))])
    query = np.where(unknown[..., None], np.nan, gt)
    runs = [("em", s) for s in sizes.em_curve] + [("mode", s) for s in sizes.mode_curve] + \
           [("sde_heun", s) for s in sizes.sde_heun_curve]
    from .engine import DEFAULTS
    if tuple(DEFAULTS["complete"]) not in runs:
        runs.append(tuple(DEFAULTS["complete"]))
    out = []
    engine.complete(query[:2], ~unknown[:2], seed=0, sampler="em", steps=2)     # warm-up
    for sampler, steps in runs:
        pred, dt = _timed(engine.complete, query, ~unknown, seed=6, sampler=sampler, steps=steps)
        out.append({"sampler": sampler, "steps": int(steps), "mpjpe_mm": _mm(mpjpe(pred, gt, unknown)),
                    "seconds_per_pose": _r(dt / len(gt), 7), "evals_per_pose": _evals(sampler, steps),
                    "default": (sampler, steps) == tuple(DEFAULTS["complete"])})
    if engine.posterior_mean is not None:
        # not a sampler: what complete() returns when no sampler is named (the mode, the posterior mean, a refinement)
        pred, dt = _timed(engine.complete, query, ~unknown, seed=6)
        out.append({"sampler": "posterior_mean", "steps": DEFAULTS["complete"][1],
                    "mpjpe_mm": _mm(mpjpe(pred, gt, unknown)), "seconds_per_pose": _r(dt / len(gt), 7),
                    "evals_per_pose": _best_guess_evals(engine), "default": False})
    return out


def equal_quality(curve: list[dict]) -> dict:
    """Time of 1,000-step-paper-sampler quality vs the default: the EM time needed to match the default's MPJPE."""
    default = next(c for c in curve if c["default"])
    em = sorted((c for c in curve if c["sampler"] == "em"), key=lambda c: c["steps"])
    em_max = em[-1]
    res = {"default_sampler": default["sampler"], "default_steps": default["steps"],
           "default_mpjpe_mm": default["mpjpe_mm"], "default_s_per_pose": default["seconds_per_pose"],
           "em_max_steps": em_max["steps"], "em_max_mpjpe_mm": em_max["mpjpe_mm"],
           "em_max_s_per_pose": em_max["seconds_per_pose"],
           "quality_ratio_default_vs_em_max": _r(default["mpjpe_mm"] / em_max["mpjpe_mm"], 4),
           "speedup_vs_em_max": _r(em_max["seconds_per_pose"] / default["seconds_per_pose"], 2)}
    # Fewest EM steps reaching the default's quality, interpolated in log(steps) between curve points.
    match = None
    ok = [c for c in em if c["mpjpe_mm"] <= default["mpjpe_mm"]]
    if ok:
        first = min(ok, key=lambda c: c["steps"])
        below = [c for c in em if c["steps"] < first["steps"]]
        if below:
            prev = max(below, key=lambda c: c["steps"])
            q0, q1 = prev["mpjpe_mm"], first["mpjpe_mm"]
            w = (q0 - default["mpjpe_mm"]) / (q0 - q1) if q0 != q1 else 1.0
            ls = math.log(prev["steps"]) + w * (math.log(first["steps"]) - math.log(prev["steps"]))
            lt = math.log(prev["seconds_per_pose"]) + w * (math.log(first["seconds_per_pose"])
                                                           - math.log(prev["seconds_per_pose"]))
            match = {"steps": math.exp(ls), "seconds_per_pose": math.exp(lt)}
        else:
            match = {"steps": first["steps"], "seconds_per_pose": first["seconds_per_pose"]}
    if match:
        res.update({"em_steps_at_default_quality": _r(match["steps"], 1), "em_reaches_default_quality": True,
                    "speedup_at_equal_quality": _r(match["seconds_per_pose"] / default["seconds_per_pose"], 2)})
    else:
        res.update({"em_steps_at_default_quality": None, "em_reaches_default_quality": False,
                    # EM never gets as good: the ratio is at least the one against its largest step count.
                    "speedup_at_equal_quality": res["speedup_vs_em_max"]})
    return res


def run_speed(engine, data: BenchData, sizes: Sizes, weights, data_dir=None) -> dict:
    import torch

    from .engine import DEFAULTS, Engine
    cpu = engine if engine.device.type == "cpu" else Engine.load(weights, device="cpu")
    flops = count_flops(cpu.net)
    res = {"flops_per_eval": flops, "evals_per_step": dict(EVALS_PER_STEP),
           "parameters": int(sum(p.numel() for p in cpu.net.parameters())),
           "defaults": {k: list(v) for k, v in DEFAULTS.items()},
           "cpu": {"threads": torch.get_num_threads(), "gflops": _r(machine_gflops(torch.device("cpu")), 2)},
           "gpu": None}
    _log("  timing tasks on the CPU")
    res["cpu"].update(time_tasks(cpu, data, sizes))
    res["cpu"]["floor_seconds"] = {k: (_r(v * flops / (res["cpu"]["gflops"] * 1e9), 6) if v else None)
                                   for k, v in res["cpu"]["sample_evals"].items()}
    if torch.cuda.is_available():
        _log("  timing tasks on the GPU")
        gpu = engine if engine.device.type == "cuda" else Engine.load(weights, device="cuda")
        g = {"name": torch.cuda.get_device_name(0), "gflops": _r(machine_gflops(gpu.device), 1)}
        g.update(time_tasks(gpu, data, sizes))
        g["floor_seconds"] = {k: (_r(v * flops / (g["gflops"] * 1e9), 7) if v else None)
                              for k, v in g["sample_evals"].items()}
        res["gpu"] = g
    _log("  sampler quality versus steps (CPU, one thread)")
    with _threads(1):
        res["curve"] = quality_curve(cpu, data, sizes)
    res["curve_threads"] = 1
    res["equal_quality"] = equal_quality(res["curve"])
    eq = res["equal_quality"]
    res["floor_default_complete_s_per_pose"] = _r(_evals(eq["default_sampler"], eq["default_steps"]) * flops
                                                  / (res["cpu"]["gflops"] * 1e9), 7)
    res["floor_em1000_s_per_pose"] = _r(1000 * flops / (res["cpu"]["gflops"] * 1e9), 7)
    if sizes.bvh_timing:
        _log("  reading every BVH clip cold")
        res["bvh_read_all"] = bvh_read_all(data_dir)
    else:
        res["bvh_read_all"] = {"seconds": None, "files": 0, "frames": 0}
    return res


# ------------------------------------------------------------------------------------------------- targets

def evaluate_targets(results: dict) -> dict:
    t = {}
    comp, den, gen, spd = (results.get(k) for k in ("completion", "denoising", "generation", "speed"))

    def entry(desc, value, threshold, ok, details=None):
        return {"description": desc, "value": value, "threshold": threshold,
                "pass": None if ok is None else bool(ok), "details": details or {}}

    if comp:
        r1 = {f"{ds}/{s}": _r(comp[ds][s]["engine"]["mpjpe_mm"] / comp[ds][s]["nn"]["mpjpe_mm"], 3)
              for ds in comp for s in ("one_arm", "one_leg")}
        worst = max(r1.values())
        t["completion_one_limb"] = entry(
            "completion with one limb unknown (one arm, one leg; CMU and Bandai): engine MPJPE / nearest-neighbour "
            "MPJPE, worst case", worst, 0.75, worst <= 0.75, r1)
        r10 = {f"{ds}/{s}": _r(comp[ds][s]["engine_best10"]["mpjpe_mm"] / comp[ds][s]["nn_best10"]["mpjpe_mm"], 3)
               for ds in comp for s in ("one_arm", "one_leg")}
        worst10 = max(r10.values())
        t["completion_best_of_10"] = entry(
            "best-of-10 completion well below nearest neighbour's best of 10 neighbours (one limb unknown): "
            "ratio, worst case (well below = at most 0.85)", worst10, 0.85, worst10 <= 0.85, r10)
    if den:
        ratios = {f"{ds}/{c}": _r(den[ds][c]["engine"]["mpjpe_mm"] / den[ds][c]["input"]["mpjpe_mm"], 3)
                  for ds in den for c in ("jitter20", "jitter40")}
        worst = max(ratios.values())
        t["denoise_jitter"] = entry("denoising 20 and 40 mm jitter lowers MPJPE below the noisy input: "
                                    "engine / input, worst case", worst, 1.0, worst < 1.0, ratios)
    if gen:
        ok = all(gen[ds]["engine"]["nn_mpjpe_mm"] < gen[ds]["noise"]["nn_mpjpe_mm"]
                 and gen[ds]["engine"]["fd_m2"] < gen[ds]["noise"]["fd_m2"] for ds in gen)
        det = {f"{ds}/{k}": _r(gen[ds]["engine"][k] / gen[ds]["noise"][k], 3) for ds in gen
               for k in ("nn_mpjpe_mm", "fd_m2")}
        ratio = max(v for k, v in det.items() if k.endswith("nn_mpjpe_mm"))
        t["generation_vs_noise"] = entry("generated poses closer to held-out real poses than noise (distance to the "
                                         "nearest real pose and Frechet distance both lower): engine / noise "
                                         "nearest-pose distance, worst case", ratio, 1.0, ok, det)
    if spd:
        eq = spd["equal_quality"]
        q, s = eq["quality_ratio_default_vs_em_max"], eq["speedup_vs_em_max"]
        t["sampler_speed_quality"] = entry(
            f"default completion sampler ({eq['default_sampler']}, {eq['default_steps']} steps) within 5% of "
            f"{eq['em_max_steps']}-step Euler-Maruyama quality (MPJPE ratio <= 1.05) with >= 50x less time",
            {"quality_ratio": q, "speedup": s}, {"quality_ratio": 1.05, "speedup": 50},
            (q <= 1.05 and s >= 50) if eq["em_max_steps"] >= 1000 else None)
        c1 = spd["cpu"]["seconds"]["complete_1"]
        t["latency_complete_1"] = entry("one-keyframe completion (default sampler, CPU), ms", _r(c1 * 1000, 2),
                                        100, c1 < 0.1)
        d = spd["cpu"]["seconds"]["denoise_take"]
        full = spd["cpu"]["denoise_frames"] >= 10000
        t["denoise_10000_frames"] = entry(f"denoising {spd['cpu']['denoise_frames']} frames (CPU), s", d, 10,
                                          (d < 10) if full else None)
        h = spd["cpu"]["seconds"].get("complete_1_http")
        if h is not None:
            over = (h - c1) * 1000
            t["http_overhead"] = entry("HTTP hop of one-keyframe completion through the server, over a direct Engine "
                                       "call, ms", _r(over, 2), 20, over < 20,
                                       {"requests_per_s": _r(1 / h, 1), "http_ms": _r(h * 1000, 2)})
        b = spd["bvh_read_all"]["seconds"]
        t["bvh_read_all"] = entry(f"read + convert every BVH clip cold ({spd['bvh_read_all']['files']} files), s",
                                  b, 30, None if b is None else b < 30)
    t.update(bench_takes.targets(results.get("takes"), entry))
    for k in TARGETS:
        t.setdefault(k, entry("not run", None, None, None))
    return t


# ------------------------------------------------------------------------------------------------- sentences

def compare(results: dict) -> tuple[list[dict], int, int]:
    """Every head-to-head comparison of the engine with a baseline: (losses as records, wins, total)."""
    losses, wins, total = [], 0, 0

    def check(section, ds, setting, mine, base, metric, a, b, lower_better=True):
        nonlocal wins, total
        if a is None or b is None:
            return
        total += 1
        if (a > b) if lower_better else (a < b):
            losses.append({"section": section, "dataset": ds, "setting": setting, "engine": mine, "baseline": base,
                           "metric": metric, "engine_value": a, "baseline_value": b})
        else:
            wins += 1

    comp = results.get("completion") or {}
    for ds in comp:
        for s in comp[ds]:
            r = comp[ds][s]
            for mine, bases in (("engine", ("nn", "gaussian", "rest_pose")),
                                ("engine_best10", ("nn_best10", "gaussian_best10"))):
                for b in bases:
                    for met in ("mpjpe_mm", "pa_mpjpe_mm", "bone_err_mm"):
                        check("completion", ds, s, mine, b, met, r[mine][met], r[b][met])
    den = results.get("denoising") or {}
    for ds in den:
        for c in den[ds]:
            r = den[ds][c]
            for b in ("input", "butterworth", "savgol", "gaussian_smooth", "paper_per_frame"):
                for met in DENOISE_METRICS:
                    check("denoising", ds, c, "engine", b, met, r["engine"][met], r[b][met])
    gen = results.get("generation") or {}
    for ds in gen:
        for b in ("gaussian", "noise"):
            for met, lower in (("precision", False), ("recall", False), ("coverage", False), ("fd_m2", True),
                               ("nn_mpjpe_mm", True)):
                check("generation", ds, "free samples", "engine", b, met, gen[ds]["engine"][met], gen[ds][b][met],
                      lower)
    bench_takes.comparisons(results.get("takes"), check)
    return losses, wins, total


METRIC_TEXT = {"mpjpe_mm": ("MPJPE", "mm"), "pa_mpjpe_mm": ("PA-MPJPE", "mm"),
               "bone_err_mm": ("bone-length error", "mm"),
               "accel_err_m_s2": ("acceleration error", "m/s²"), "foot_skate_mm_s": ("foot skate", "mm/s"),
               "precision": ("precision", ""), "recall": ("recall", ""), "coverage": ("coverage", ""),
               "fd_m2": ("Fréchet distance", "m²"), "nn_mpjpe_mm": ("distance to the nearest real pose", "mm")}


def loss_sentences(losses: list[dict]) -> list[str]:
    """One plain sentence per (dataset, setting, engine variant, baseline), naming every metric lost."""
    groups: dict[tuple, list[dict]] = {}
    for x in losses:
        groups.setdefault((x["section"], x["dataset"], x["setting"], x["engine"], x["baseline"]), []).append(x)
    out = []
    for (section, ds, setting, mine, base), items in groups.items():
        label = {"completion": COMPLETION_LABEL, "denoising": DENOISE_LABEL}.get(section, {}).get(setting, setting)
        who = {"engine_best10": "Engine (best of 10)"}.get(mine, {"generation": "Engine generation",
                                                                  "takes": "The motion model"}.get(section, "Engine"))
        parts = []
        for x in items:
            name, unit = METRIC_TEXT[x["metric"]]
            a, b = x["engine_value"], x["baseline_value"]
            num = (f"{a:.1f} {unit} vs {b:.1f} {unit}" if unit and unit != "m²"
                   else f"{a:.4g}{' ' + unit if unit else ''} vs {b:.4g}{' ' + unit if unit else ''}")
            parts.append(f"{name} {num}")
        base_label = (METHOD_LABEL.get(base) or bench_takes.METHOD_LABEL[base]).replace(" (best of 10)", "")
        if mine == "engine_best10":
            base_label += " (best of 10)"
        out.append(f"{who} loses to {base_label} on {label.replace('_', ' ')} ({SHORT[ds]}): "
                   + "; ".join(parts) + ".")
    return out


def _ceiling_sentences(results: dict) -> list[str]:
    out = []
    for ds, g in (results.get("generation") or {}).items():
        e, c = g["engine"], g["train_poses"]
        out.append(f"{SHORT[ds]}: engine FD {e['fd_m2']:.4g} m² vs training-pose ceiling {c['fd_m2']:.4g} m²; "
                   f"recall {e['recall']:.3f} vs {c['recall']:.3f}; coverage {e['coverage']:.3f} vs "
                   f"{c['coverage']:.3f}.")
    return out


# ------------------------------------------------------------------------------------------------- report

def _fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}".rstrip("0").rstrip(".") if nd >= 3 else f"{v:.{nd}f}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def make_plots(results: dict, out: Path) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    plots = {}
    spd = results.get("speed")
    if spd:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for sampler, style in (("em", "o-"), ("mode", "s-"), ("sde_heun", "^-")):
            pts = sorted((c for c in spd["curve"] if c["sampler"] == sampler), key=lambda c: c["steps"])
            if not pts:
                continue
            axes[0].plot([c["steps"] for c in pts], [c["mpjpe_mm"] for c in pts], style, label=sampler)
            axes[1].plot([c["seconds_per_pose"] * 1000 for c in pts], [c["mpjpe_mm"] for c in pts], style,
                         label=sampler)
        d = next(c for c in spd["curve"] if c["default"])
        axes[0].plot([d["steps"]], [d["mpjpe_mm"]], "k*", ms=14, label="default sampler")
        axes[1].plot([d["seconds_per_pose"] * 1000], [d["mpjpe_mm"]], "k*", ms=14, label="default sampler")
        pm = next((c for c in spd["curve"] if c["sampler"] == "posterior_mean"), None)
        if pm:
            axes[0].plot([pm["steps"]], [pm["mpjpe_mm"]], "rD", ms=9, label="single completion (posterior mean)")
            axes[1].plot([pm["seconds_per_pose"] * 1000], [pm["mpjpe_mm"]], "rD", ms=9,
                         label="single completion (posterior mean)")
        for ax, xl in ((axes[0], "sampler steps"), (axes[1], "CPU time per pose, one thread (ms)")):
            ax.set_xscale("log")
            ax.set_xlabel(xl)
            ax.set_ylabel("completion MPJPE on unknown joints (mm)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        fig.suptitle("Sampler quality versus steps (CMU test, completion)")
        fig.tight_layout()
        fig.savefig(out / "sampler_curve.png", dpi=110)
        plt.close(fig)
        plots["sampler_curve"] = "sampler_curve.png"

        fig, ax = plt.subplots(figsize=(9, 4))
        names = list(SPEED_TASKS)
        x = np.arange(len(names))
        cpu = [spd["cpu"]["seconds"][n] * 1000 for n in names]
        ax.bar(x - 0.2 if spd["gpu"] else x, cpu, 0.4, label="CPU")
        if spd["gpu"]:
            ax.bar(x + 0.2, [spd["gpu"]["seconds"][n] * 1000 for n in names], 0.4, label="GPU")
        floor = [(spd["cpu"]["floor_seconds"][n] or 0) * 1000 for n in names]
        ax.scatter(x - 0.2 if spd["gpu"] else x, floor, marker="_", s=400, c="k", label="CPU FLOP floor", zorder=3)
        ax.set_xticks(x, names, rotation=20)
        ax.set_yscale("log")
        ax.set_ylabel("time per call (ms)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend()
        ax.set_title("Time per task")
        fig.tight_layout()
        fig.savefig(out / "task_times.png", dpi=110)
        plt.close(fig)
        plots["task_times"] = "task_times.png"
    den = results.get("denoising")
    if den:
        fig, axes = plt.subplots(1, len(den), figsize=(5.5 * len(den), 4), squeeze=False)
        sig = [20, 40, 100]
        for ax, ds in zip(axes[0], den):
            for m in DENOISE_METHODS[1:]:
                ax.plot(sig, [den[ds][f"jitter{s}"][m]["mpjpe_mm"] for s in sig], "o-", label=METHOD_LABEL[m])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(sig, [str(s) for s in sig])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(ScalarFormatter())
            ax.set_xlabel("jitter sigma (mm)")
            ax.set_ylabel("MPJPE to the clean take (mm)")
            ax.set_title(DATASET_LABEL[ds])
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "denoise_sigma.png", dpi=110)
        plt.close(fig)
        plots["denoise_sigma"] = "denoise_sigma.png"
    comp = results.get("completion")
    if comp:
        fig, axes = plt.subplots(1, len(comp), figsize=(6 * len(comp), 4), squeeze=False)
        meths = ("engine", "nn", "gaussian", "rest_pose", "engine_best10", "nn_best10")
        for ax, ds in zip(axes[0], comp):
            x = np.arange(len(COMPLETION_SETTINGS))
            w = 0.8 / len(meths)
            for k, m in enumerate(meths):
                ax.bar(x + (k - len(meths) / 2 + 0.5) * w, [comp[ds][s][m]["mpjpe_mm"] for s in COMPLETION_SETTINGS],
                       w, label=METHOD_LABEL[m])
            ax.set_xticks(x, [COMPLETION_LABEL[s] for s in COMPLETION_SETTINGS], rotation=15)
            ax.set_ylabel("MPJPE on unknown joints (mm)")
            ax.set_title(DATASET_LABEL[ds])
            ax.grid(True, axis="y", alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(meths), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        fig.savefig(out / "completion.png", dpi=110)
        plt.close(fig)
        plots["completion"] = "completion.png"
    return plots


PROTOCOL = """\
- **Test data**: the CMU test subjects of the project's split (subjects 6, 13, 94) and the Bandai clips of the
  test split (a fixed four fifths of `../shared/data/bandai`, by a hash of the clip name), both read as body24 at
  30 fps through `gfpose_core.data`. Neither is used for training or model selection; the CMU validation
  subjects (8, 14) and the Bandai validation clips are used only to tune the filter baselines' parameters.
  Bandai data is read at run time; only aggregate numbers leave the run.
- **Sampling**: test poses, takes, masks, noise and cameras are drawn with fixed seeds (seed {seed}), so two runs of
  the same mode see the same inputs. Sizes of this run: {sizes}.
- **Completion**: the unknown joints are hidden (NaN, known = False) from every method. Unknown sets: one arm
  (collar to hand end, random side), one leg (hip to toe, random side), both legs, upper body (everything above the
  pelvis), 3 random joints. Scores are in world metres on the unknown joints: MPJPE; PA-MPJPE with the similarity
  fitted and measured on the unknown joints (nearly degenerate for 3 random joints); bone-length error over bones
  with an unknown end. Best of 10 = per pose the hypothesis with the lowest error (PA separately); bone error of a
  best-of-10 row is the mean over all 10 hypotheses. Baselines work in the engine's canonical frame (its
  root/facing/scale estimate from the known joints and its reference bones): training poses = the CMU training
  subjects canonicalised on the reference body with mirror copies; *nearest neighbour* = the training pose closest on
  the known joints (best of 10 = the 10 nearest); *Gaussian* = conditional mean of a Gaussian fitted to the
  training poses (best of 10 = 10 conditional samples); *rest pose* = the engine's mean pose. Outputs are restored
  to world space with the same frame and the known joints pasted, so every method is scored on the same inputs.
- **Denoising**: clean test takes of {take_frames} frames; noise per coordinate: Gaussian jitter of 20, 40 or 100 mm;
  *spikes*: 20 mm jitter plus, on {spike_pct}% of frames of every joint, a jump of 20 cm in a random direction;
  *dropouts*: 20 mm jitter plus one dropout per 20 frames (a random joint missing, NaN, for 5-30 frames). Metrics
  against the clean take: MPJPE, acceleration error, bone-length error; foot skate = mean horizontal speed of the
  output's ankles and toes on the frames where the clean take has them in ground contact (the clean take's own
  value is the floor). *input* = the noisy take with gaps
  linearly interpolated. Filters (Butterworth order 2 zero-phase, Savitzky-Golay order 2, Gaussian) take the
  parameter with the lowest MPJPE on validation takes with the same noise (per dataset and condition), after
  the same gap filling. *Paper sampler per frame* = every frame canonicalised alone, sent to the engine's
  estimated noise time t0 and brought back by Euler-Maruyama at 1,000 steps per unit time, unconditioned, no
  temporal filter or spike handling.
- **Generation**: {n_generate} free samples from the engine (default sampler), against held-out test poses
  canonicalised and rebuilt on the reference body. Precision / recall / coverage by k-nearest-neighbour balls
  (k = 5) on flattened body24 poses; APD; Fréchet distance of Gaussians fitted to flattened body24 poses (m²);
  mean MPJPE from each generated pose to its nearest real pose. Baselines: training poses (a ceiling), samples
  of the Gaussian, and *noise* (the SDE's prior, N(0, I) in model units, mapped to poses).
- **Lifting**: canonical test poses seen by an orthographic camera at a random yaw (no pitch), projected to
  pixels (x right, y down, {px} px/m, arbitrary centre) and given to `Engine.lift`; ground truth in the camera frame
  (x right, y depth, z up, pelvis at the origin, unit body size). MPJPE after a least-squares scale per hypothesis
  (pelvis-centred), PA-MPJPE, and raw MPJPE; best of H = per pose the best of the first H hypotheses.
- **Speed**: wall time per call on this machine (median of repeats; the CPU run uses torch's default threads),
  on the GPU as well when there is one. The quality sections above run with one torch thread on the CPU (their
  numbers do not depend on it; a second thread competing with other processes stalls small operations).
  Quality versus steps: single-hypothesis completion on CMU test poses (the five unknown sets in turn), the same
  poses and seed for every sampler setting, timed with one CPU thread. Equal-quality ratio: CPU time of
  Euler-Maruyama at the step count (interpolated on the curve) that reaches the default sampler's MPJPE, divided
  by the default's time; when Euler-Maruyama never gets there, the ratio against its largest step count is given.
  FLOPs count 2 x in x out per sample for every Linear layer of one network evaluation; floor = FLOPs x network
  evaluations / measured fp32 matmul rate (2048 x 2048, best of three trials)."""


def write_report(results: dict, out: Path, plots: dict) -> str:
    meta = results["meta"]
    L = []
    L.append("# GFPose engine benchmark\n")
    L.append(f"Run: {meta['date']} · mode **{meta['mode']}** · {meta['elapsed_s']:.0f} s · "
             f"weights `{meta['weights']}` "
             f"(training steps run: {meta['weights_steps_run']}, best step {meta['weights_best_step']}, "
             f"{meta['weights_parameters']} parameters) · device {meta['device']} · {meta['machine']} · "
             f"load average at start / end: {meta['load_start']} / {meta['load_end']} · repository "
             f"{meta['git_commit']}\n")
    busy = meta["load_start"] is not None and meta["load_start"] > 0.5 * (os.cpu_count() or 1)
    if busy:
        L.append(f"**Note**: the machine was busy when this run started (load average {meta['load_start']} on "
                 f"{os.cpu_count()} cores): timings are slower than on an idle machine.\n")
    if meta.get("errors"):
        L.append("**Sections that failed**: " + "; ".join(f"{k}: {v}" for k, v in meta["errors"].items()) + "\n")
    L.append("## Protocol\n")
    L.append(results["protocol"]["text"] + "\n")

    L.append("## Targets\n")
    rows = []
    for k in TARGETS:
        t = results["targets"][k]
        state = "–" if t["pass"] is None else ("**pass**" if t["pass"] else "**FAIL**")
        rows.append([k, t["description"], _fmt(t["value"], 3) if not isinstance(t["value"], dict) else
                     ", ".join(f"{a} {_fmt(b, 3)}" for a, b in t["value"].items()),
                     _fmt(t["threshold"], 3) if not isinstance(t["threshold"], dict) else
                     ", ".join(f"{a} {b}" for a, b in t["threshold"].items()), state])
    L.append(_table(["target", "what", "value", "threshold", "result"], rows) + "\n")
    det = [f"- {k}: " + ", ".join(f"{a} {_fmt(b, 3)}" for a, b in results["targets"][k]["details"].items())
           for k in TARGETS if results["targets"][k]["details"]]
    if det:
        L.append("Per case (ratios):\n")
        L.extend(det)
        L.append("")

    cmp_ = results["comparisons"]
    L.append("## Where the engine loses\n")
    L.append(f"Each metric of each setting against each baseline is one comparison (lower error, or higher "
             f"precision / recall / coverage, wins). The engine wins {cmp_['engine_wins']} of {cmp_['total']} and "
             f"loses {len(cmp_['losses'])}.\n")
    for section in ("completion", "denoising", "generation"):
        sents = loss_sentences([x for x in cmp_["losses"] if x["section"] == section])
        if results.get(section) is None:
            continue
        L.append(f"**{section.capitalize()}**" + ("" if sents else ": the engine loses no comparison.") + "\n")
        L.extend(f"- {x}" for x in sents)
        if sents:
            L.append("")
    L.append("")

    comp = results.get("completion")
    L.append("## 1. Completion\n")
    if comp:
        if "completion" in plots:
            L.append(f"![completion]({plots['completion']})\n")
        for ds in comp:
            L.append(f"### {DATASET_LABEL[ds]}\n")
            rows = []
            for s in COMPLETION_SETTINGS:
                for m in COMPLETION_METHODS:
                    r = comp[ds][s][m]
                    rows.append([COMPLETION_LABEL[s], METHOD_LABEL[m], r["n"], _fmt(r["mpjpe_mm"]),
                                 _fmt(r["pa_mpjpe_mm"]), _fmt(r["bone_err_mm"])])
            L.append(_table(["unknown", "method", "poses", "MPJPE (mm)", "PA-MPJPE (mm)", "bone error (mm)"], rows)
                     + "\n")
            split = [(s, g, r) for s in ("one_arm", "one_leg") for g, r in comp[ds][s].get("by_group", {}).items()]
            if split:
                L.append(f"One limb unknown, by test {GROUP_LABEL[ds]} (the same poses as above):\n")
                L.append(_table(["unknown", GROUP_LABEL[ds], "poses", "engine MPJPE (mm)", "nearest neighbour (mm)",
                                 "engine / NN"],
                                [[COMPLETION_LABEL[s], g, r["n"], _fmt(r["engine_mm"]), _fmt(r["nn_mm"]),
                                  _fmt(r["engine_mm"] / r["nn_mm"], 3)] for s, g, r in split]) + "\n")
    else:
        L.append("not run\n")

    den = results.get("denoising")
    L.append("## 2. Denoising of takes\n")
    if den:
        if "denoise_sigma" in plots:
            L.append(f"![denoising]({plots['denoise_sigma']})\n")
        for ds in den:
            L.append(f"### {DATASET_LABEL[ds]}\n")
            rows = []
            for c in DENOISE_CONDITIONS:
                p = results["denoising_params"][ds][c]
                for m in DENOISE_METHODS:
                    r = den[ds][c][m]
                    extra = {"butterworth": f"cutoff {p['butterworth_cutoff_hz']} Hz",
                             "savgol": f"window {p['savgol_window']}",
                             "gaussian_smooth": f"sigma {p['gaussian_sigma_frames']} frames"}.get(m, "")
                    rows.append([DENOISE_LABEL[c], METHOD_LABEL[m], extra, _fmt(r["mpjpe_mm"]),
                                 _fmt(r["accel_err_m_s2"], 2), _fmt(r["bone_err_mm"]), _fmt(r["foot_skate_mm_s"]),
                                 _fmt(r["seconds"], 2)])
            L.append(_table(["noise", "method", "parameter (validation)", "MPJPE (mm)", "accel error (m/s²)",
                             "bone error (mm)", "foot skate (mm/s)", "time (s)"], rows) + "\n")
    else:
        L.append("not run\n")

    gen = results.get("generation")
    L.append("## 3. Generation\n")
    if gen:
        for ds in gen:
            L.append(f"### against {DATASET_LABEL[ds]}\n")
            rows = [[METHOD_LABEL[m], gen[ds][m].get("n"), _fmt(gen[ds][m]["precision"], 3),
                     _fmt(gen[ds][m]["recall"], 3), _fmt(gen[ds][m]["coverage"], 3), _fmt(gen[ds][m]["apd_mm"]),
                     _fmt(gen[ds][m]["fd_m2"], 4), _fmt(gen[ds][m]["nn_mpjpe_mm"])] for m in GENERATION_METHODS]
            L.append(_table(["samples", "n", "precision", "recall", "coverage", "APD (mm)", "Fréchet (m²)",
                             "to nearest real (mm)"], rows) + "\n")
        L.append("Against the ceiling (training poses):\n")
        L.extend(f"- {s}" for s in _ceiling_sentences(results))
        L.append("")
    else:
        L.append("not run\n")

    lift = results.get("lifting")
    L.append("## 4. Lifting\n")
    if lift:
        rows = []
        for ds in lift:
            for h in ("best_of_1", "best_of_10", "best_of_200", "best_of_10_on_200_subset"):
                r = lift[ds][h]
                rows.append([DATASET_LABEL[ds], h.replace("_", " "), r["n"], _fmt(r["mpjpe_mm"]),
                             _fmt(r["pa_mpjpe_mm"]), _fmt(r["raw_mpjpe_mm"])])
        L.append(_table(["data", "hypotheses", "poses", "MPJPE, scale-normalised (mm)", "PA-MPJPE (mm)",
                         "raw MPJPE (mm)"], rows) + "\n")
        L.append("For orientation only (different data and joints): the paper reports Human3.6M best of 1 / 10 / 200 "
                 "about 51.9 / 45.1 / 35.6 mm.\n")
    else:
        L.append("not run\n")

    spd = results.get("speed")
    L.append("## 5. Speed\n")
    if spd:
        if "task_times" in plots:
            L.append(f"![task times]({plots['task_times']})\n")
        cpu, gpu = spd["cpu"], spd["gpu"]
        L.append(f"Network: {spd['parameters']} parameters, {spd['flops_per_eval'] / 1e6:.2f} MFLOP per evaluation "
                 f"per pose (network evaluations per step: "
                 + ", ".join(f"{k} {v}" for k, v in spd["evals_per_step"].items())
                 + f"). CPU: {cpu['threads']} torch threads, measured {cpu['gflops']:.1f} GFLOP/s (fp32 matmul)"
                 + (f"; GPU: {gpu['name']}, {gpu['gflops']:.0f} GFLOP/s" if gpu else "; no GPU on this machine")
                 + ".\n")
        rows = []
        for n in SPEED_TASKS:
            rows.append([n, cpu["sample_evals"][n], _fmt(cpu["seconds"][n] * 1000, 2),
                         _fmt((cpu["floor_seconds"][n] or 0) * 1000, 3),
                         _fmt(cpu["seconds"][n] / cpu["floor_seconds"][n], 1) if cpu["floor_seconds"][n] else "–",
                         _fmt(gpu["seconds"][n] * 1000, 2) if gpu else "–"])
        L.append(_table(["task", "network evals (poses x evals)", "CPU ms", "CPU FLOP floor ms", "CPU / floor",
                         "GPU ms"], rows) + "\n")
        L.append("Tasks: " + "; ".join(f"`{k}` = {v}" for k, v in cpu["tasks"].items()) + ".\n")
        b = spd["bvh_read_all"]
        if b["seconds"] is not None:
            L.append(f"Reading and converting every BVH clip cold (`load_take` on each of {b['files']} files, "
                     f"{b['frames']} frames): {b['seconds']:.1f} s.\n")
        if "sampler_curve" in plots:
            L.append(f"![sampler curve]({plots['sampler_curve']})\n")
        rows = [[c["sampler"] + (" (default)" if c["default"] else ""), c["steps"], c["evals_per_pose"],
                 _fmt(c["mpjpe_mm"]), _fmt(c["seconds_per_pose"] * 1000, 3)] for c in spd["curve"]]
        L.append(_table(["sampler", "steps", "network evals", "MPJPE (mm)", "CPU ms per pose (one thread)"], rows)
                 + "\n")
        eq = spd["equal_quality"]
        if eq["em_reaches_default_quality"]:
            L.append(f"Euler-Maruyama reaches the default sampler's quality ({eq['default_mpjpe_mm']:.1f} mm) at about "
                     f"{eq['em_steps_at_default_quality']:.0f} steps: at equal quality the default sampler is "
                     f"{eq['speedup_at_equal_quality']:.1f}x faster.")
        else:
            L.append(f"Euler-Maruyama never reaches the default sampler's quality ({eq['default_mpjpe_mm']:.1f} mm; "
                     f"{eq['em_max_steps']} steps give {eq['em_max_mpjpe_mm']:.1f} mm): the default is at least "
                     f"{eq['speedup_at_equal_quality']:.1f}x faster at equal quality.")
        L[-1] += (f" Against {eq['em_max_steps']}-step EM: quality ratio {eq['quality_ratio_default_vs_em_max']:.3f} "
                  f"(default / EM MPJPE), speed-up {eq['speedup_vs_em_max']:.1f}x. FLOP floor per pose: default "
                  f"{spd['floor_default_complete_s_per_pose'] * 1000:.3f} ms, 1,000-step EM "
                  f"{spd['floor_em1000_s_per_pose'] * 1000:.2f} ms.\n")
    else:
        L.append("not run\n")
    L.extend(bench_takes.report(results.get("takes"), _fmt, _table))
    L.append("## Section times\n")
    L.append(_table(["section", "seconds"], [[k, v] for k, v in meta["section_seconds"].items()]) + "\n")
    text = "\n".join(L)
    (out / "report.md").write_text(text)
    return text


# ------------------------------------------------------------------------------------------------- driver

def _git_commit() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                           capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
        return (r.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


SECTIONS = ("completion", "denoising", "generation", "lifting", "speed", "takes")


def run_bench(engine, out_dir, sizes: Sizes, weights=None, data_dir=None, sections=SECTIONS) -> dict:
    """Run the benchmark sections and write report.md, results.json and the plots to out_dir."""
    import torch
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sw = _Stopwatch()
    load_start = _r(os.getloadavg()[0], 2)
    with sw.section("data"):
        data = load_data(engine, data_dir)
    results: dict = {k: None for k in ("completion", "denoising", "denoising_params", "generation", "lifting",
                                       "speed", "takes")}
    errors = {}
    steps = {"completion": lambda: results.__setitem__("completion", run_completion(engine, data, sizes)),
             "denoising": lambda: results.update(zip(("denoising", "denoising_params"),
                                                     run_denoising(engine, data, sizes))),
             "generation": lambda: results.__setitem__("generation", run_generation(engine, data, sizes)),
             "lifting": lambda: results.__setitem__("lifting", run_lifting(engine, data, sizes)),
             "speed": lambda: results.__setitem__("speed", run_speed(engine, data, sizes, weights, data_dir)),
             "takes": lambda: results.__setitem__("takes", bench_takes.run_takes(engine, data, sizes))}
    for name in SECTIONS:
        if name not in sections:
            continue
        timed = name in ("speed", "takes")
        with sw.section(name), _threads(1 if not timed and engine.device.type == "cpu" else None):
            try:
                steps[name]()
            except (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError) as e:
                errors[name] = f"{type(e).__name__}: {e}"
                _log(f"{name} failed: {errors[name]}")
    cfg = engine.config.get("training", {})
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": sizes.name, "sizes": asdict(sizes), "seed": SEED,
        "weights": str(weights) if weights is not None else "shipped (gfpose_core/weights)",
        "weights_steps_run": cfg.get("steps_run"), "weights_best_step": cfg.get("best_step"),
        "weights_parameters": cfg.get("parameters"),
        "device": str(engine.device), "torch": torch.__version__, "python": platform.python_version(),
        "torch_threads_default": torch.get_num_threads(), "torch_threads_quality_sections": 1,
        "machine": f"{platform.machine()} {os.cpu_count()} cores" + (
            f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
        "git_commit": _git_commit(), "load_start": load_start, "load_end": _r(os.getloadavg()[0], 2),
        "elapsed_s": round(time.perf_counter() - sw.t0, 1), "section_seconds": sw.sections, "errors": errors,
    }
    results = {"schema": SCHEMA, "meta": meta,
               "protocol": {"text": PROTOCOL.format(
                   seed=SEED, take_frames=sizes.take_frames, spike_pct=round(SPIKE_RATE * 100, 2),
                   n_generate=sizes.n_generate, px=CAMERA_PX_PER_M,
                   sizes=", ".join(f"{k} {v}" for k, v in asdict(sizes).items() if k != "name")),
                   "datasets": {ds: DATASET_LABEL[ds] for ds in DATASETS},
                   "completion_settings": list(COMPLETION_SETTINGS), "denoise_conditions": list(DENOISE_CONDITIONS),
                   "units": "mm for *_mm, m/s² for accel_err_m_s2, mm/s for foot_skate_mm_s, m² for fd_m2, "
                            "seconds elsewhere"},
               **results}
    results["targets"] = evaluate_targets(results)
    losses, wins, total = compare(results)
    results["comparisons"] = {"engine_wins": wins, "total": total, "losses": losses,
                              "sentences": loss_sentences(losses)}
    plots = make_plots(results, out)
    results["plots"] = plots
    results["meta"]["elapsed_s"] = round(time.perf_counter() - sw.t0, 1)
    write_report(results, out, plots)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    return results


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ------------------------------------------------------------------------------------------------- command line

def add_parser(subparsers):
    p = subparsers.add_parser("bench", help="benchmark the engine against baselines on held-out data",
                              description="Writes DIR/report.md (tables, plots, pass/fail targets) and "
                                          "DIR/results.json.")
    p.add_argument("--out", default="bench_out", help="report folder (default: bench_out)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 3 minutes on a 2-core CPU)")
    p.add_argument("--weights", default=None, help="folder with model.safetensors + config.json "
                                                   "(default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="run only these sections (default: all)")
    p.set_defaults(func=run)
    return p


def run(args):
    from .data import DATA_DIR
    from .engine import Engine
    if not DATA_DIR.is_dir():
        raise FileNotFoundError(f"benchmark data folder {DATA_DIR} not found")
    engine = Engine.load(args.weights, device=args.device)
    sizes = Sizes.quick() if args.quick else Sizes()
    results = run_bench(engine, args.out, sizes, weights=args.weights, sections=args.sections)
    t = results["targets"]
    passed = sum(1 for v in t.values() if v["pass"])
    failed = sum(1 for v in t.values() if v["pass"] is False)
    print(f"bench ({sizes.name}) done in {results['meta']['elapsed_s']:.0f} s: targets {passed} passed, {failed} "
          f"failed; engine loses {len(results['comparisons']['losses'])} of "
          f"{results['comparisons']['total']} comparisons; report in {Path(args.out) / 'report.md'}")
    return results
