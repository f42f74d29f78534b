"""Temporal filters over takes (T, 24, 3) that the engine itself uses: gap filling, Butterworth, Savitzky-Golay,
Gaussian smoothing, residual-analysis cutoffs, resampling (the benchmark compares the engine against them too)."""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.signal


def fill_gaps(take) -> np.ndarray:
    """Take (T, 24, 3) with NaN joints filled by linear interpolation over time (held at the ends).

    A joint with any NaN coordinate counts as missing; a joint missing on every frame stays NaN.
    """
    x = np.array(take, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"take must be (T, J, 3), got {x.shape}")
    missing = ~np.isfinite(x).all(-1)                                  # (T, J)
    t = np.arange(len(x))
    for j in np.flatnonzero(missing.any(0)):
        ok = ~missing[:, j]
        if not ok.any():
            x[:, j] = np.nan
            continue
        for c in range(3):
            x[:, j, c] = np.interp(t, t[ok], x[ok, j, c])
    return x


def _like(out: np.ndarray, take) -> np.ndarray:
    dtype = np.asarray(take).dtype
    return out.astype(dtype if np.issubdtype(dtype, np.floating) else np.float64, copy=False)


def butterworth(take, fps: float, cutoff_hz: float, order: int = 2) -> np.ndarray:
    """Zero-phase low-pass Butterworth (filtfilt) over time, after filling NaN gaps."""
    x = fill_gaps(take)
    nyquist = 0.5 * fps
    if len(x) < 2 or cutoff_hz >= nyquist:
        return _like(x, take)
    if cutoff_hz <= 0:
        raise ValueError(f"cutoff_hz must be positive, got {cutoff_hz}")
    b, a = scipy.signal.butter(order, cutoff_hz / nyquist)
    # filtfilt pads 3*max(len(a), len(b)) frames by default and fails on takes shorter than that.
    padlen = min(3 * max(len(a), len(b)), len(x) - 1)
    return _like(scipy.signal.filtfilt(b, a, x, axis=0, padlen=padlen), take)


def residual_cutoff(take, fps: float, grid=None, per_joint: bool = True) -> np.ndarray:
    """Butterworth cutoffs (Hz) by Winter's residual analysis (Biomechanics and Motor Control of Human Movement):
    the RMS residual of filtering at cutoff f falls as f rises and, where only noise is left above f, falls on a
    straight line whose intercept at f = 0 is the noise's RMS; the cutoff is where the residual comes down to
    that level: no lower (motion would go with the noise), no higher (noise would stay).
    take (T, 24, 3) without gaps -> (24,) cutoffs, one per joint (all equal with per_joint=False)."""
    x = np.asarray(take, dtype=np.float64)
    nyquist = 0.5 * fps
    grid = np.arange(1.0, 0.8 * nyquist, 0.5) if grid is None else np.asarray(grid, dtype=np.float64)
    if len(x) < 10 or len(grid) < 4:
        return np.full(x.shape[1], grid[-1] if len(grid) else nyquist)
    resid = np.stack([np.sqrt(((butterworth(x, fps, f) - x) ** 2).mean(axis=(0, 2))) for f in grid])   # (F, 24)
    if not per_joint:
        resid = np.sqrt((resid ** 2).mean(1, keepdims=True)).repeat(x.shape[1], 1)
    tail = grid >= grid[0] + 0.6 * (grid[-1] - grid[0])       # the noise-only end of the curve
    slope, intercept = np.polyfit(grid[tail], resid[tail], 1)
    below = resid <= intercept[None]
    first = np.where(below.any(0), below.argmax(0), len(grid) - 1)
    return grid[first]


def savitzky_golay(take, window: int, polyorder: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing over time (window in frames, made odd and no longer than the take)."""
    x = fill_gaps(take)
    window = min(int(window), len(x))
    if window % 2 == 0:
        window -= 1
    if window <= polyorder:
        return _like(x, take)
    return _like(scipy.signal.savgol_filter(x, window, polyorder, axis=0, mode="interp"), take)


def gaussian_smooth(take, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing over time (sigma in frames; ends extended by repeating the edge frame)."""
    x = fill_gaps(take)
    if sigma_frames <= 0 or len(x) < 2:
        return _like(x, take)
    return _like(scipy.ndimage.gaussian_filter1d(x, sigma_frames, axis=0, mode="nearest"), take)


def resample(joints: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """Positions at another frame rate: every k-th frame for integer ratios, linear interpolation otherwise."""
    ratio = fps / target_fps
    if abs(ratio - round(ratio)) < 1e-6 and round(ratio) >= 1:
        return joints[:: int(round(ratio))]
    n_out = int(np.floor((len(joints) - 1) / ratio)) + 1
    src = np.arange(n_out) * ratio
    lo = np.minimum(np.floor(src).astype(int), len(joints) - 1)
    hi = np.minimum(lo + 1, len(joints) - 1)
    w = (src - lo)[:, None, None]
    return (joints[lo] * (1 - w) + joints[hi] * w).astype(joints.dtype)
