"""Benchmark sections: free generation (precision, recall, Frechet distance) and 2D-to-3D lifting."""
from __future__ import annotations

import time

import numpy as np

from gfpose_core.bench.common import (
    CAMERA_CENTRE,
    CAMERA_PX_PER_M,
    DATASETS,
    GENERATION_METRICS,
    BenchData,
    Sizes,
    _log,
    _mm,
    _r,
    _rng,
    _test_poses,
)


def _nn_mpjpe(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over poses of a of the MPJPE (m) to the closest pose of b."""
    best = np.full(len(a), np.inf)
    chunk = max(1, int(2_000_000 // (len(b) * 24)))
    for s in range(0, len(a), chunk):
        d = np.linalg.norm(a[s:s + chunk, None] - b[None], axis=-1).mean(-1)
        best[s:s + chunk] = d.min(1)
    return float(best.mean())


def generation_scores(gen: np.ndarray, real: np.ndarray) -> dict:
    from gfpose_core.bench.metrics import (
        apd,
        frechet_distance,
        precision_recall_coverage,
    )
    prc = precision_recall_coverage(gen, real, k=5)
    n_apd = min(len(gen), 1000)
    return {"precision": _r(prc.precision), "recall": _r(prc.recall), "coverage": _r(prc.coverage),
            "apd_mm": _mm(apd(gen[:n_apd])), "fd_m2": _r(frechet_distance(gen, real), 5),
            "nn_mpjpe_mm": _mm(_nn_mpjpe(gen, real)), "n": int(len(gen))}


def run_generation(engine, data: BenchData, sizes: Sizes) -> dict:
    from gfpose_core.bench.baselines import GaussianCompletion
    from gfpose_core.bench.metrics import apd
    from gfpose_core.prior.pose_space import POSE_DIM
    from gfpose_core.prior.train import prepare_poses
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
    from gfpose_core.body.skeleton import yaw_matrix
    yaw = rng.uniform(0.0, 2 * np.pi, len(canon))
    cam = np.einsum("nij,nkj->nki", yaw_matrix(yaw), canon)
    cam = cam - cam[:, :1]
    u = CAMERA_PX_PER_M * cam[..., 0] + CAMERA_CENTRE[0]
    v = -CAMERA_PX_PER_M * cam[..., 2] + CAMERA_CENTRE[1]
    return np.stack([u, v], -1), cam


def lift_scores(hyps: np.ndarray, gt: np.ndarray) -> dict:
    """Best-of-H: MPJPE after a per-hypothesis least-squares scale (pelvis-centred), PA-MPJPE, raw MPJPE."""
    from gfpose_core.bench.metrics import per_sample_mpjpe, procrustes_align
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
