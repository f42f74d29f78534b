"""Benchmark section: completing unknown joints (engine, its mode, nearest neighbour, Gaussian, rest pose)."""
from __future__ import annotations

import time

import numpy as np

from gfpose_core.bench.common import (
    COMPLETION_SETTINGS,
    DATASETS,
    BenchData,
    Sizes,
    _by_group,
    _groups,
    _log,
    _mm,
    _rng,
    _test_rows,
)


def unknown_masks(setting: str, n: int, rng) -> np.ndarray:
    """(n, 24) bool, True where a joint is unknown (hidden from every method)."""
    from gfpose_core.body.skeleton import BODY_PARTS
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
    from gfpose_core.body.skeleton import BONES, bone_lengths
    sel = unknown[:, BONES[:, 0]] | unknown[:, BONES[:, 1]]          # (N, 23)
    lp, lg = bone_lengths(pred), bone_lengths(gt if pred.ndim == gt.ndim else gt[:, None])
    err = np.abs(lp - lg)
    if pred.ndim == 4:
        sel = np.broadcast_to(sel[:, None], err.shape)
    return float(err[sel].mean()) if sel.any() else float("nan")


def completion_scores(pred, gt, unknown) -> dict:
    """MPJPE, PA-MPJPE (fitted and measured on the unknown joints) and bone error; best of H for (N, H, 24, 3)."""
    from gfpose_core.bench.metrics import per_sample_mpjpe, procrustes_align
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
    from gfpose_core.bench.baselines import (
        GaussianCompletion,
        NearestNeighbourCompletion,
    )
    from gfpose_core.body.skeleton import restore
    from gfpose_core.engine import DEFAULTS
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
                from gfpose_core.body.skeleton import Frame
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
