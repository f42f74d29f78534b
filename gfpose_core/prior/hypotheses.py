"""Several hypotheses to cycle through: the likeliest first, then ones spread over what the prior allows.

Independent samples of a pose prior bunch around its common poses, so ten of them often show one idea ten times
(an unseen arm hanging down, with small differences) and miss the raised arm the animator meant. Drawing
OVERSAMPLE times more samples and keeping those farthest from the ones already kept (farthest-point selection on
the unknown coordinates) covers the range of plausible answers: each kept one is still a sample of the prior.
Measured (`gfpose bench`, best of 10 on the unknown limb, 200 poses, independent samples -> the likeliest first
and the rest spread from 5x as many): CMU arm 91.4 -> 84.4 mm, CMU leg 74.3 -> 72.0, Bandai arm 115.5 -> 106.0,
Bandai leg 56.1 -> 54.4. Lifting keeps independent samples (see Engine.lift).
"""
from __future__ import annotations

import numpy as np

OVERSAMPLE = 5
MAX_EXTRA = 100   # many hypotheses cover the range by their number already; past this, more samples cost time


def candidates(k: int) -> int:
    """How many samples to draw to keep k hypotheses."""
    return k + min((OVERSAMPLE - 1) * k, MAX_EXTRA)


def spread(candidates: np.ndarray, weight: np.ndarray, k: int, first: np.ndarray | None = None) -> np.ndarray:
    """candidates (N, M, D), weight (N, D) of the coordinates that count (the unknown ones) -> (N, k, D).

    The first hypothesis is `first` (N, D) where given (the likeliest answer), else the first candidate; each next
    one is the candidate farthest from all kept so far."""
    N, M, D = candidates.shape
    pool = candidates if first is None else np.concatenate([first[:, None], candidates], 1)
    k = min(k, pool.shape[1])
    w = np.sqrt(np.asarray(weight, dtype=np.float64))[:, None]
    pts = pool * w
    rows = np.arange(N)
    kept = np.zeros((N, k), int)
    dist = np.linalg.norm(pts - pts[:, :1], axis=-1)
    for i in range(1, k):
        kept[:, i] = dist.argmax(1)
        dist = np.minimum(dist, np.linalg.norm(pts - pts[rows, kept[:, i]][:, None], axis=-1))
    return pool[rows[:, None], kept]
