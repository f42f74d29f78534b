"""Per-frame denoising of takes with the pose prior between two zero-phase low-passes (docs/findings.md, 5: prior and
filter beat either alone). Spikes are found against a running median and, like dropouts, filled over time first.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from gfpose_core.body.filters import butterworth, fill_gaps
from gfpose_core.body.skeleton import N_JOINTS, bone_lengths, fit_bone_lengths, restore

SPIKE_METRES = 0.10      # a joint this far from its running median is a spike, not jitter
SPIKE_SIGMAS = 4.0       # ... nor this many times the jitter: a 3D jitter vector is longer than 3.4 sigma 1% of the time
CUTOFF_HZ = 4.0          # body motion keeps little above this; mocap jitter lives above it
# The prior starts from the noise level a 4 Hz low-pass leaves, a fraction of the raw jitter, and mode-seeking
# overshoots beyond it: measured on a CMU test take (sigma 20/40/100 mm), 0.3 of the raw level beat 0.5-1.0.
NOISE_FRACTION = 0.3


def estimate_jitter(take: np.ndarray) -> float:
    """Per-coordinate noise (metres) from second differences, which smooth motion barely has at mocap rates.

    For white noise of std s the second difference has std s*sqrt(6); the median absolute value resists spikes.
    """
    d2 = take[2:] - 2 * take[1:-1] + take[:-2]
    d2 = d2[np.isfinite(d2)]
    if d2.size == 0:
        return 0.0
    return float(np.median(np.abs(d2)) / 0.6745 / np.sqrt(6.0))


def find_spikes(take: np.ndarray, window: int = 7, jitter: float = 0.0) -> np.ndarray:
    """(T, 24) True where a joint jumps away from its running median (filled NaN-free input): further than
    SPIKE_METRES, and than SPIKE_SIGMAS times the take's own jitter (per coordinate), so that a very noisy take's
    jitter is not taken for spikes."""
    med = median_filter(take, size=(window, 1, 1), mode="nearest")
    return np.linalg.norm(take - med, axis=-1) > max(SPIKE_METRES, SPIKE_SIGMAS * jitter)


def denoise_take(engine, take: np.ndarray, fps: float, strength, sampler: str, steps: int, callback=None):
    dropped = ~np.isfinite(take).all(-1)
    filled = fill_gaps(np.where(dropped[..., None], np.nan, take))
    spikes = find_spikes(filled) if len(take) >= 3 else np.zeros(dropped.shape, bool)
    repaired = fill_gaps(np.where(spikes[..., None], np.nan, filled))
    smooth = len(take) >= 10 and (strength is None or strength > 0)
    if smooth:
        repaired = butterworth(repaired, fps, CUTOFF_HZ)
    never = ~np.isfinite(repaired).all(-1)
    if never.any() and not never.all():
        # A joint the take never shows has no frames around it to repair it from: the prior places it.
        repaired = engine.complete(repaired, ~never, seed=0)
    canon, frame = engine._canonical(repaired)
    obs = engine.space.to_model(canon)
    if strength is None:
        noise = NOISE_FRACTION * estimate_jitter(filled) / (np.median(frame.scale) * engine.space.std)
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
    if smooth:
        out = butterworth(out, fps, CUTOFF_HZ)
    return out


CLEAN_RADIUS = 2.5    # times a clean take's own jitter: how far auto-strength denoising may move a measured joint
# On a noisy take (jitter over CLEAN_JITTER), as far as its noise reaches: jitter of sigma per coordinate puts a
# joint further than 5 sigma from where it was once in 65,000 (the 3-D norm is chi-distributed), so a denoised joint
# further off than that is restyled, not cleaned. At 2.5 sigma a tenth of the joints on every frame were pulled back
# onto their noisy samples, which put the noise back: validation takes (40 mm jitter + spikes + dropouts, 6 each,
# /tmp script over bench.takes' corruption) mean acceleration 14.2 / 12.5 m/s² against the clean takes' 6.5 / 1.3
# (CMU / Bandai), MPJPE 21.1 / 17.3 mm; at 4 sigma 4.6 / 1.4, 19.8 / 15.8; at 5 sigma 4.4 / 1.2, 19.8 / 15.7
# (unclamped: the same to 0.1).
NOISE_REACH = 5.0
# The jitter a clean take at mocap rates shows anyway (its motion's own second differences, measured 0.85 mm on a
# clean CMU take at 30 fps): not noise, so not room to move a joint in.
MOTION_JITTER = 0.0009
CLEAN_JITTER = 0.003  # metres: a take with less jitter is clean (its own bone lengths are the body's)


def within_noise(take: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out` with every measured joint (finite, not a spike) kept within CLEAN_RADIUS (a noisy take: NOISE_REACH)
    times the take's jitter of where the take has it: denoising removes noise, it does not restyle motion, so a
    clean take (jitter about a millimetre, most of it the motion's own) comes back as it was, while a noisy take's
    joints may move as far as its noise reaches."""
    finite = np.isfinite(take).all(-1)
    if len(take) < 3 or not finite.any():
        return out
    filled = fill_gaps(np.where(finite[..., None], take, np.nan))
    jitter = estimate_jitter(filled)
    measured = finite & ~find_spikes(filled, jitter=jitter)
    delta = out - np.where(measured[..., None], take, out)
    size = np.linalg.norm(delta, axis=-1, keepdims=True)
    radius = (CLEAN_RADIUS if jitter < CLEAN_JITTER else NOISE_REACH) * max(jitter - MOTION_JITTER, 0.0)
    shrink = np.where(size > radius, radius / np.maximum(size, 1e-12), 1.0)
    if (shrink >= 1.0).all():
        return out
    kept = np.where(measured[..., None], take + delta * shrink, out)
    if jitter < CLEAN_JITTER:
        return kept     # near a clean take's joints, its bones keep the take's own lengths
    # On a noisy take, joints held back one by one would give the bones the noise's lengths again: the body is put
    # back on the answer's (debiased) lengths.
    lengths = np.broadcast_to(np.median(bone_lengths(out), 0), (len(out), N_JOINTS - 1))
    return fit_bone_lengths(kept, lengths, np.zeros(kept.shape[:2], bool))
