"""Classical baselines the benchmark compares the learned prior against (pure numpy/scipy).

Pose completion: nearest training pose on the known joints, and the conditional mean of a Gaussian fitted to
training poses. Take denoising: the filters of `body.filters`, each tuned on validation takes (`best_cutoff`).
Poses are canonical body24 (N, 24, 3); `known` is (N, 24) bool, and a NaN joint counts as unknown too.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.signal
from scipy.spatial import cKDTree

from gfpose_core.body.filters import butterworth, gaussian_smooth, savitzky_golay

N_JOINTS = 24


def _check_query(joints, known) -> tuple[np.ndarray, np.ndarray]:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"joints must be (N, 24, 3), got {joints.shape}")
    known = np.broadcast_to(np.asarray(known, dtype=bool), joints.shape[:2])
    # NaN marks an unknown joint as well as known=False (docs/design.md contract).
    known = known & np.isfinite(joints).all(-1)
    return joints, known


def _mask_groups(known: np.ndarray):
    """Yield (mask (24,), query indices) for each distinct known mask."""
    masks, inverse = np.unique(known, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(masks) + 1))
    for g, mask in enumerate(masks):
        yield mask, order[bounds[g]:bounds[g + 1]]


def _coords(mask: np.ndarray) -> np.ndarray:
    """Joint mask (24,) -> indices into the flattened 72-vector."""
    return (np.flatnonzero(mask)[:, None] * 3 + np.arange(3)).reshape(-1)


class NearestNeighbourCompletion:
    """Complete a pose with the training pose(s) closest on its known joints, known joints kept exactly."""

    # Groups smaller than this are cheaper by one batched masked distance product than by building a tree.
    TREE_MIN_GROUP = 64
    _TREE_CACHE = 8

    def __init__(self, train_joints):
        train = np.asarray(train_joints, dtype=np.float64)
        if train.ndim != 3 or train.shape[1:] != (N_JOINTS, 3) or len(train) == 0:
            raise ValueError(f"train_joints must be (M, 24, 3) with M > 0, got {train.shape}")
        if not np.isfinite(train).all():
            raise ValueError("train_joints contain NaN or inf")
        self.train = train
        self._flat = train.reshape(len(train), -1)
        # [t^2, t] side by side: one matrix product then gives masked squared distances for mixed masks.
        self._stacked = np.concatenate([self._flat ** 2, self._flat], axis=1)
        self._trees: OrderedDict[bytes, cKDTree] = OrderedDict()

    def _tree(self, mask: np.ndarray) -> cKDTree:
        key = mask.tobytes()
        if key in self._trees:
            self._trees.move_to_end(key)
            return self._trees[key]
        tree = cKDTree(self._flat[:, _coords(mask)])
        self._trees[key] = tree
        if len(self._trees) > self._TREE_CACHE:
            self._trees.popitem(last=False)
        return tree

    def _brute(self, q: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
        """k nearest training rows for queries q (n, 72) under per-query 0/1 coordinate weights w (n, 72)."""
        out = np.empty((len(q), k), dtype=np.int64)
        # Chunks keep the (chunk, M) distance matrix near 32 MB.
        chunk = max(1, int(4_000_000 // len(self._flat)))
        for s in range(0, len(q), chunk):
            qs, ws = q[s:s + chunk], w[s:s + chunk]
            # sum_c w_c (t_c - q_c)^2 = w.t^2 - 2 (w q).t + w.q^2, all rows of the training set at once.
            d = np.concatenate([ws, -2.0 * ws * qs], axis=1) @ self._stacked.T
            d += (ws * qs * qs).sum(1, keepdims=True)
            if k == 1:
                idx = np.argmin(d, axis=1)[:, None]
            elif k < d.shape[1]:
                idx = np.argpartition(d, k - 1, axis=1)[:, :k]
            else:
                idx = np.broadcast_to(np.arange(d.shape[1]), d.shape).copy()
            order = np.argsort(np.take_along_axis(d, idx, 1), axis=1)
            out[s:s + chunk] = np.take_along_axis(idx, order, 1)
        return out

    def neighbours(self, joints, known, k: int = 1) -> np.ndarray:
        """(N, k) indices of the nearest training poses on each query's known joints, nearest first."""
        joints, known = _check_query(joints, known)
        if not 1 <= k <= len(self.train):
            raise ValueError(f"k must be in 1..{len(self.train)}, got {k}")
        if (~known.any(1)).any():
            raise ValueError("a pose has no known joints; nearest-neighbour completion needs at least one")
        idx = np.empty((len(joints), k), dtype=np.int64)
        small = []
        for mask, rows in _mask_groups(known):
            if len(rows) >= self.TREE_MIN_GROUP:
                _, nn = self._tree(mask).query(joints[rows][:, mask].reshape(len(rows), -1), k=k)
                idx[rows] = np.asarray(nn).reshape(len(rows), k)
            else:
                small.append(rows)
        if small:
            rows = np.concatenate(small)
            w = np.repeat(known[rows], 3, axis=1).astype(np.float64)
            q = np.where(w > 0, joints[rows].reshape(len(rows), -1), 0.0)
            idx[rows] = self._brute(q, w, k)
        return idx

    def complete(self, joints, known, k: int = 1) -> np.ndarray:
        """(N, 24, 3) if k == 1 else (N, k, 24, 3): nearest training poses with the known joints pasted in."""
        joints, known_eff = _check_query(joints, known)
        idx = self.neighbours(joints, known_eff, k)
        out = self.train[idx]                                          # (N, k, 24, 3)
        out = np.where(known_eff[:, None, :, None], joints[:, None], out)
        return out[:, 0] if k == 1 else out


class GaussianCompletion:
    """A Gaussian over flattened poses: conditional mean for completion, samples for generation."""

    def __init__(self, train_joints, ridge: float = 1e-6):
        x = np.asarray(train_joints, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != (N_JOINTS, 3) or len(x) < 2:
            raise ValueError(f"train_joints must be (M, 24, 3) with M >= 2, got {x.shape}")
        x = x.reshape(len(x), -1)
        self.mean = x.mean(0)
        # Ridge (m^2): canonical poses pin the pelvis, so the sample covariance is singular without it.
        self.cov = np.cov(x, rowvar=False) + ridge * np.eye(x.shape[1])
        self._chol = np.linalg.cholesky(self.cov)
        self._precision = scipy.linalg.cho_solve((self._chol, True), np.eye(len(self.mean)))

    def _conditional(self, mask: np.ndarray):
        """Gain G (|K|, |U|) and conditional covariance of the unknown coordinates given the known ones."""
        k, u = _coords(mask), _coords(~mask)
        cov_kk = self.cov[np.ix_(k, k)]
        cov_ku = self.cov[np.ix_(k, u)]
        gain = scipy.linalg.cho_solve(scipy.linalg.cho_factor(cov_kk), cov_ku)
        cond_cov = self.cov[np.ix_(u, u)] - cov_ku.T @ gain
        return k, u, gain, cond_cov

    def complete(self, joints, known) -> np.ndarray:
        """(N, 24, 3): E[unknown | known] under the Gaussian, known joints unchanged (the mean if none known)."""
        joints, known = _check_query(joints, known)
        flat = joints.reshape(len(joints), -1)
        masks, inverse = np.unique(known, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        kn = np.repeat(masks, 3, axis=1).astype(np.float64)            # (G, 72) 1 on known coordinates
        un = 1.0 - kn
        dev = np.where(np.repeat(known, 3, axis=1), flat - self.mean, 0.0)
        out = np.empty_like(flat)
        # E[x_U | x_K] = mu_U - P_UU^-1 P_UK (x_K - mu_K) with P the precision. Padding P_UU with identity on the
        # known coordinates gives every distinct mask a same-sized 72x72 system, solved in one batched call
        # instead of one factorisation per mask (random masks are nearly all distinct).
        p = self._precision
        eye = np.eye(len(self.mean))
        for g0 in range(0, len(masks), 256):
            g1 = min(len(masks), g0 + 256)
            u, kk = un[g0:g1], kn[g0:g1]
            a = p * u[:, :, None] * u[:, None, :] + eye * kk[:, None, :]
            b = -(p * u[:, :, None] * kk[:, None, :])                   # -P_UK, zero elsewhere
            gain = np.linalg.solve(a, b)                                # (g, 72, 72): dev_K -> x_U - mu_U
            rows = np.flatnonzero((inverse >= g0) & (inverse < g1))
            for r0 in range(0, len(rows), 512):   # bounds the gathered (rows, 72, 72) gains to ~20 MB
                r = rows[r0:r0 + 512]
                out[r] = np.einsum("nij,nj->ni", gain[inverse[r] - g0], dev[r])
        out = np.where(np.repeat(known, 3, axis=1), flat, self.mean + out)
        return out.reshape(joints.shape)

    def sample_conditional(self, joints, known, n: int, rng=None) -> np.ndarray:
        """(N, n, 24, 3) draws of the unknown joints from the conditional Gaussian, known joints unchanged."""
        rng = np.random.default_rng(rng)
        joints, known = _check_query(joints, known)
        mean = self.complete(joints, known).reshape(len(joints), -1)
        out = np.repeat(mean[:, None], n, axis=1)
        for mask, rows in _mask_groups(known):
            if mask.all():
                continue
            if mask.any():
                _, u, _, cond_cov = self._conditional(mask)
            else:
                u, cond_cov = np.arange(len(self.mean)), self.cov
            chol = np.linalg.cholesky(cond_cov + 1e-12 * np.eye(len(u)))
            z = rng.standard_normal((len(rows), n, len(u)))
            out[rows[:, None, None], np.arange(n)[None, :, None], u[None, None, :]] += z @ chol.T
        return out.reshape(len(joints), n, N_JOINTS, 3)

    def sample(self, n: int, rng=None) -> np.ndarray:
        """(n, 24, 3) draws from the full Gaussian; rng is a Generator or a seed."""
        rng = np.random.default_rng(rng)
        z = rng.standard_normal((n, len(self.mean)))
        return (self.mean + z @ self._chol.T).reshape(n, N_JOINTS, 3)


# ---------------------------------------------------------------- tuning the filters (body.filters) on validation takes


def best_cutoff(clean_takes, noisy_takes, fps, candidates, method: str = "butterworth", **kwargs):
    """Filter parameter among `candidates` with the lowest MPJPE of filtered noisy takes vs clean ones.

    method: "butterworth" (cutoff Hz), "savgol" (window frames) or "gaussian" (sigma frames); extra keyword
    arguments go to the filter (order, polyorder). fps is one number or one per take.
    Returns (best parameter, {parameter: MPJPE in m}).
    """
    clean_takes, noisy_takes = list(clean_takes), list(noisy_takes)
    if len(clean_takes) != len(noisy_takes) or not clean_takes:
        raise ValueError("need the same, non-zero number of clean and noisy takes")
    fps_list = list(np.broadcast_to(np.asarray(fps, dtype=np.float64), (len(clean_takes),)))
    filters = {
        "butterworth": lambda x, f, p: butterworth(x, f, p, **kwargs),
        "savgol": lambda x, f, p: savitzky_golay(x, int(p), **kwargs),
        "gaussian": lambda x, f, p: gaussian_smooth(x, p, **kwargs),
    }
    if method not in filters:
        raise ValueError(f"method must be one of {sorted(filters)}, got {method!r}")
    scores = {}
    for p in candidates:
        err_sum, count = 0.0, 0
        for clean, noisy, f in zip(clean_takes, noisy_takes, fps_list):
            clean = np.asarray(clean, dtype=np.float64)
            err = np.linalg.norm(filters[method](noisy, f, p) - clean, axis=-1)
            ok = np.isfinite(err)    # frames/joints unknown in the reference are not scored
            err_sum += err[ok].sum()
            count += ok.sum()
        scores[p] = err_sum / max(count, 1)
    best = min(scores, key=scores.get)
    return best, scores
