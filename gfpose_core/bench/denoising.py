"""Benchmark section: denoising corrupted takes against tuned classical filters."""
from __future__ import annotations

import math
import time

import numpy as np

from gfpose_core.bench.common import (
    BUTTER_CUTOFFS_HZ,
    DATASETS,
    DENOISE_CONDITIONS,
    DENOISE_METRICS,
    DROPOUT_MAX,
    DROPOUT_MIN,
    GAUSS_SIGMAS,
    SAVGOL_WINDOWS,
    SPIKE_M,
    SPIKE_RATE,
    BenchData,
    Sizes,
    _log,
    _mm,
    _pick_takes,
    _r,
    _rng,
    _timed,
)


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
    from gfpose_core.body.filters import fill_gaps
    from gfpose_core.body.skeleton import restore
    from gfpose_core.prior.denoise import estimate_jitter
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
    from gfpose_core.bench.metrics import (
        acceleration_error,
        bone_length_error,
        foot_skate,
        mpjpe,
    )
    return {"mpjpe_mm": float(mpjpe(pred, clean)), "accel_err_m_s2": float(acceleration_error(pred, clean, fps)),
            "bone_err_mm": float(bone_length_error(pred, clean)),
            "foot_skate_mm_s": foot_skate(pred, fps, contacts_from=clean)}


def run_denoising(engine, data: BenchData, sizes: Sizes, fps: float = 30.0) -> tuple[dict, dict]:
    from gfpose_core.bench.baselines import best_cutoff
    from gfpose_core.body.filters import (
        butterworth,
        fill_gaps,
        gaussian_smooth,
        savitzky_golay,
    )
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
