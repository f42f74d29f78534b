"""Per-frame denoising of takes with the pose prior, then a zero-phase low-pass (FINDINGS 5: prior + filter
beats either alone). Spikes are found against a running median and, like dropouts, filled over time first.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from .baselines import butterworth, fill_gaps
from .skeleton import Frame, restore

SPIKE_METRES = 0.10      # a joint this far from its running median is a spike, not jitter
CUTOFF_HZ = 6.0          # human motion keeps little above this; mocap jitter lives above it


def estimate_jitter(take: np.ndarray) -> float:
    """Per-coordinate noise (metres) from second differences, which smooth motion barely has at mocap rates.

    For white noise of std s the second difference has std s*sqrt(6); the median absolute value resists spikes.
    """
    d2 = take[2:] - 2 * take[1:-1] + take[:-2]
    d2 = d2[np.isfinite(d2)]
    if d2.size == 0:
        return 0.0
    return float(np.median(np.abs(d2)) / 0.6745 / np.sqrt(6.0))


def find_spikes(take: np.ndarray, window: int = 7) -> np.ndarray:
    """(T, 24) True where a joint jumps away from its running median (filled NaN-free input)."""
    med = median_filter(take, size=(window, 1, 1), mode="nearest")
    return np.linalg.norm(take - med, axis=-1) > SPIKE_METRES


def denoise_take(engine, take: np.ndarray, fps: float, strength, sampler: str, steps: int, callback=None):
    dropped = ~np.isfinite(take).all(-1)
    filled = fill_gaps(np.where(dropped[..., None], np.nan, take))
    spikes = find_spikes(filled) if len(take) >= 3 else np.zeros(dropped.shape, bool)
    repaired = fill_gaps(np.where(spikes[..., None], np.nan, filled))
    canon, frame = engine._canonical(repaired)
    # Root path and facing carry jitter too: smooth them rather than trust each frame's estimate.
    if len(take) >= 10:
        frame = Frame(butterworth(frame.root[:, None, :], fps, CUTOFF_HZ)[:, 0],
                      np.unwrap(frame.yaw), frame.scale)
        frame.yaw = butterworth(frame.yaw[:, None, None].repeat(3, -1), fps, CUTOFF_HZ)[:, 0, 0]
        frame.scale = np.full_like(frame.scale, np.median(frame.scale))
        canon = _recanonicalise(repaired, frame)
    obs = engine.space.to_model(canon)
    if strength is None:
        noise = estimate_jitter(repaired) / (np.median(frame.scale) * engine.space.std)
        t0 = engine.sde.t_for_noise_ratio(max(noise, 1e-3))
    else:
        t0 = 0.5 * strength
    if t0 > 2e-3:
        alpha = float(engine.sde.alpha_sigma(t0)[0])
        zeros = np.zeros_like(obs)
        x = engine._run(zeros, zeros, False, sampler=sampler, steps=steps, generator=engine._generator(0),
                        t_start=t0, x_start=alpha * obs, impute=False, callback=callback)
        canon = engine.space.from_model(x)
    out = restore(canon, frame)
    if len(take) >= 10 and (strength is None or strength > 0):
        out = butterworth(out, fps, CUTOFF_HZ)
    return out


def _recanonicalise(joints, frame):
    from .skeleton import to_canonical
    return to_canonical(joints, frame)
