"""Pose and motion metrics for the benchmark (pure numpy/scipy, vectorised, body24 poses in metres).

Conventions: poses are (..., 24, 3); a `mask` is (..., 24) bool selecting the joints a metric is computed on
(all joints when None). Errors are pooled over every selected joint of every pose unless a name says otherwise.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.linalg
from scipy.spatial import cKDTree

from gfpose_core.body.skeleton import BONE_OF_CHILD, BONES, INDEX, JOINT_NAMES, MIRROR

FOOT_JOINTS = np.array([INDEX["ankle_l"], INDEX["toe_l"], INDEX["ankle_r"], INDEX["toe_r"]])

# Mirrored limb bones: each left bone (indexed into BONES by its child joint) paired with its right twin.
_LEFT_BONES = np.array([k for k, (c, _) in enumerate(BONES) if JOINT_NAMES[c].endswith("_l")])
_RIGHT_BONES = np.array([BONE_OF_CHILD[int(MIRROR[BONES[k, 0]])] for k in _LEFT_BONES])


def angle_deg(u, v) -> np.ndarray:
    """Degrees between vectors (..., 3)."""
    cos = (u * v).sum(-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def joint_angle_deg(joints, a: str, b: str, c: str) -> np.ndarray:
    """The inner angle at joint b of poses (..., 24, 3), degrees (180 = a straight limb)."""
    at = joints[..., INDEX[b], :]
    return angle_deg(joints[..., INDEX[a], :] - at, joints[..., INDEX[c], :] - at)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _broadcast_mask(mask, shape: tuple) -> np.ndarray:
    """Mask (..., 24) -> `shape`; a per-sample (N, 24) mask also serves hypotheses (N, H, 24)."""
    mask = np.asarray(mask, dtype=bool)
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        # (N, 24) against (N, H, 24): the hypotheses axis sits after the sample axis, not in front of it.
        while mask.ndim < len(shape):
            mask = mask[:, None]
        return np.broadcast_to(mask, shape)


def _joint_errors(pred, gt) -> np.ndarray:
    return np.linalg.norm(_f64(pred) - _f64(gt), axis=-1)


def _masked_mean(err: np.ndarray, mask, axis=None) -> np.ndarray:
    if mask is None:
        return err.mean(axis=axis)
    m = _broadcast_mask(mask, err.shape)
    # np.where, not err * m: unknown joints may be NaN in the inputs and NaN * 0 is NaN.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m, err, 0.0).sum(axis=axis) / m.sum(axis=axis)


def per_sample_mpjpe(pred, gt, mask=None) -> np.ndarray:
    """MPJPE of each pose: (..., 24, 3) -> (...) in metres (NaN for a pose with no selected joint)."""
    return _masked_mean(_joint_errors(pred, gt), mask, axis=-1)


def mpjpe(pred, gt, mask=None) -> float:
    """Mean per-joint position error (m) over the selected joints; pred and gt broadcast (e.g. (N,H) vs (N,1))."""
    return float(_masked_mean(_joint_errors(pred, gt), mask))


def best_of_mpjpe(hyps, gt, mask=None) -> float:
    """Mean over samples of the best hypothesis' MPJPE: hyps (N, H, 24, 3), gt (N, 24, 3), mask (N, 24)."""
    hyps, gt = _f64(hyps), _f64(gt)
    per = per_sample_mpjpe(hyps, gt[:, None], None if mask is None else np.asarray(mask, bool)[:, None])
    return float(np.min(per, axis=1).mean())


def procrustes_align(pred, gt, mask=None, allow_reflection: bool = False) -> np.ndarray:
    """pred moved onto gt by the similarity (rotation, uniform scale, translation) fitted on the selected joints.

    Batched over leading axes; with `allow_reflection` the orthogonal part may be a reflection (det -1).
    """
    pred, gt = np.broadcast_arrays(_f64(pred), _f64(gt))
    shape = pred.shape
    p, g = pred.reshape(-1, shape[-2], 3), gt.reshape(-1, shape[-2], 3)
    if mask is None:
        w = np.ones(p.shape[:2])
    else:
        w = _broadcast_mask(mask, shape[:-1]).reshape(p.shape[:2]).astype(np.float64)
    # Zero the unselected joints so that NaN there cannot leak into the sums.
    p0 = np.where(w[..., None] > 0, p, 0.0)
    g0 = np.where(w[..., None] > 0, g, 0.0)
    wsum = np.maximum(w.sum(1), 1e-12)[:, None]
    mu_p = (w[..., None] * p0).sum(1) / wsum
    mu_g = (w[..., None] * g0).sum(1) / wsum
    x = (p0 - mu_p[:, None]) * w[..., None]
    y = (g0 - mu_g[:, None]) * w[..., None]
    # Kabsch/Umeyama: the SVD of the cross-covariance gives the best orthogonal map; forcing det +1 (flip the
    # axis of least singular value) gives the best proper rotation instead.
    u, s, vt = np.linalg.svd(np.einsum("nki,nkj->nij", y, x))
    d = np.ones_like(s)
    if not allow_reflection:
        d[:, -1] = np.sign(np.linalg.det(u @ vt))
        d[d == 0] = 1.0
    rot = u @ (d[:, :, None] * vt)
    var_p = (x * x).sum((1, 2))
    scale = (s * d).sum(1) / np.maximum(var_p, 1e-12)
    aligned = scale[:, None, None] * np.einsum("nij,nkj->nki", rot, p - mu_p[:, None]) + mu_g[:, None]
    return aligned.reshape(shape)


def pa_mpjpe(pred, gt, mask=None, allow_reflection: bool = False) -> float:
    """MPJPE (m) after Procrustes alignment fitted on the selected joints, measured on the same joints."""
    aligned = procrustes_align(pred, gt, mask, allow_reflection)
    return mpjpe(aligned, np.broadcast_to(_f64(gt), aligned.shape), mask)


def bone_length_error(pred, gt) -> float:
    """Mean absolute difference (m) of the 23 bone lengths."""
    pred, gt = _f64(pred), _f64(gt)
    return float(np.abs(_bone_lengths(pred) - _bone_lengths(gt)).mean())


def _bone_lengths(j: np.ndarray) -> np.ndarray:
    return np.linalg.norm(j[..., BONES[:, 0], :] - j[..., BONES[:, 1], :], axis=-1)


def left_right_asymmetry(pred) -> float:
    """Mean |left bone length - right bone length| (m) over the mirrored bone pairs."""
    lengths = _bone_lengths(_f64(pred))
    return float(np.abs(lengths[..., _LEFT_BONES] - lengths[..., _RIGHT_BONES]).mean())


def _second_difference(x: np.ndarray, fps: float) -> np.ndarray:
    return (x[..., 2:, :, :] - 2.0 * x[..., 1:-1, :, :] + x[..., :-2, :, :]) * fps * fps


def acceleration_error(pred, gt, fps: float) -> float:
    """Mean norm (m/s^2) of the difference of finite-difference accelerations; takes (..., T, 24, 3)."""
    pred, gt = _f64(pred), _f64(gt)
    if pred.shape[-3] < 3:
        raise ValueError(f"acceleration needs at least 3 frames, got {pred.shape[-3]}")
    diff = _second_difference(pred, fps) - _second_difference(gt, fps)
    return float(np.linalg.norm(diff, axis=-1).mean())


def foot_skate(take, fps: float, height_threshold: float = 0.05, contacts_from=None) -> float:
    """Mean horizontal speed (m/s) of ankles and toes while in ground contact; 0 without contact.

    Ground is the lowest ankle/toe height; a joint is in contact on a frame step when it is within
    `height_threshold` of the ground at both ends of the step (a foot lifting off is not skating). Contacts come
    from `contacts_from` (e.g. the clean take, so that noise cannot hide them) or else from the take itself.
    """
    feet = _f64(take)[:, FOOT_JOINTS, :]                      # (T, 4, 3)
    ref = feet if contacts_from is None else _f64(contacts_from)[:, FOOT_JOINTS, :]
    if len(feet) < 2 or not np.isfinite(ref[..., 2]).any():
        return 0.0
    ground = np.nanmin(ref[..., 2])
    with np.errstate(invalid="ignore"):
        low = ref[..., 2] <= ground + height_threshold    # NaN compares False: unknown is not contact
    contact = low[1:] & low[:-1]
    speed = np.linalg.norm(np.diff(feet[..., :2], axis=0), axis=-1) * fps
    contact &= np.isfinite(speed)
    if not contact.any():
        return 0.0
    return float(speed[contact].mean())


def apd(samples) -> float | np.ndarray:
    """Average pairwise distance: mean over pairs i<j of the mean per-joint distance (m).

    samples (..., N, 24, 3) -> (...) (a float for a single set of N poses).
    """
    x = _f64(samples)
    n = x.shape[-3]
    if n < 2:
        raise ValueError(f"APD needs at least 2 samples, got {n}")
    lead = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:])
    total = np.zeros(x.shape[0])
    # Row blocks bound memory at ~4M joint distances, so thousands of samples do not build an N*N*24 array.
    block = max(1, int(4_000_000 // (x.shape[0] * n * x.shape[-2])))
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        # Only columns from i0 on can hold pairs i < j for these rows.
        d = np.linalg.norm(x[:, i0:i1, None] - x[:, None, i0:], axis=-1).mean(-1)  # (B, b, N - i0)
        upper = np.arange(i0, n)[None, :] > np.arange(i0, i1)[:, None]
        total += np.where(upper, d, 0.0).sum((1, 2))
    out = (total / (n * (n - 1) / 2)).reshape(lead)
    return float(out) if out.ndim == 0 else out


class PRC(NamedTuple):
    precision: float
    recall: float
    coverage: float


def _flat(poses) -> np.ndarray:
    x = _f64(poses)
    return x.reshape(len(x), -1)


def _knn_radii(tree: cKDTree, points: np.ndarray, k: int) -> np.ndarray:
    # k + 1 because each point is its own nearest neighbour.
    d, _ = tree.query(points, k=k + 1)
    return d[:, -1]


def _inside_any_ball(tree: cKDTree, centres: np.ndarray, radii: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """For each query, whether some centre j has |query - centre_j| <= radii[j] (exact)."""
    kk = min(32, len(centres))
    d, idx = tree.query(queries, k=kk)
    d, idx = d.reshape(len(queries), kk), idx.reshape(len(queries), kk)
    inside = (d <= radii[idx]).any(1)
    # A farther centre can only contain the query if the query is within the largest radius of the kk-th
    # neighbour's distance; those rare cases are settled by brute force.
    todo = np.flatnonzero(~inside & (d[:, -1] <= radii.max()))
    for s in range(0, len(todo), 256):
        q = queries[todo[s:s + 256]]
        dist = np.sqrt(np.maximum(((q[:, None, :] - centres[None]) ** 2).sum(-1), 0.0))
        inside[todo[s:s + 256]] = (dist <= radii[None]).any(1)
    return inside


def precision_recall_coverage(generated, real, k: int = 5) -> PRC:
    """k-NN manifold precision/recall (Kynkäänniemi et al. 2019) and coverage (Naeem et al. 2020).

    precision: share of generated poses inside some real pose's k-NN ball; recall: share of real poses inside
    some generated pose's k-NN ball; coverage: share of real poses whose k-NN ball holds a generated pose.
    Poses are compared as flattened 72-vectors.
    """
    g, r = _flat(generated), _flat(real)
    if len(g) < 2 or len(r) < 2:
        raise ValueError("precision/recall need at least 2 generated and 2 real poses")
    kr, kg = min(k, len(r) - 1), min(k, len(g) - 1)
    tree_r, tree_g = cKDTree(r), cKDTree(g)
    rad_r = _knn_radii(tree_r, r, kr)
    rad_g = _knn_radii(tree_g, g, kg)
    precision = _inside_any_ball(tree_r, r, rad_r, g).mean()
    recall = _inside_any_ball(tree_g, g, rad_g, r).mean()
    nearest_gen, _ = tree_g.query(r, k=1)
    coverage = (nearest_gen <= rad_r).mean()
    return PRC(float(precision), float(recall), float(coverage))


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to two sets of poses (flattened), in m^2."""
    a, b = _flat(a), _flat(b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        # Canonical poses pin the pelvis at the origin, so covariances are singular by construction;
        # sqrtm still returns the right root there and its warning would only be noise.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            eps = 1e-9 * np.eye(len(cov_a))
            covmean = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    # Rounding can push a true zero slightly negative.
    return float(max(fd, 0.0))
