"""Single completion with and without the posterior mean told the body (prior/body_mean.py), validation poses only
(CMU subjects 8 and 14, the Bandai validation clips; never the test split): MPJPE and PA-MPJPE per unknown set, and
the proportion test (bench/proportions.py) on CMU validation poses.

    PYTHONPATH=. .venv/bin/python scripts/body_mean_validation.py [--run RUN_DIR] [--n 500] [--refine-from T ...]

Rows: the engine without a body_mean network (its posterior-mean networks where the weights have them, else the
score model's mode alone), and with RUN_DIR's network
(or the shipped one where the weights have it), refined by the score model from each --refine-from time in turn
(default: the engine's REFINE_FROM_T).
"""
from __future__ import annotations

import argparse

import numpy as np

import gfpose_core.engine as engine_module
from gfpose_core import Engine
from gfpose_core.bench.common import COMPLETION_SETTINGS
from gfpose_core.bench.completion import completion_scores, unknown_masks
from gfpose_core.bench.proportions import proportion_test
from gfpose_core.data import bandai_takes, cmu_takes
from gfpose_core.prior.body_mean import BodyMean


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a `gfpose train --body-mean` run (default: the shipped body_mean network)")
    ap.add_argument("--n", type=int, default=500, help="poses per dataset and unknown set")
    ap.add_argument("--refine-from", type=float, nargs="+", default=[engine_module.REFINE_FROM_T],
                    help="diffusion times the told network's answer is refined from (rows for each)")
    args = ap.parse_args(argv)
    engine = Engine.load(device="cpu")
    told = BodyMean.load(args.run, engine.device, engine.space) if args.run else engine.body_mean
    if told is None:
        raise SystemExit("no body_mean network: give --run RUN_DIR")
    default_t = engine_module.REFINE_FROM_T
    rows = {"not told the body": (None, default_t),
            **{f"told the body, t={t:g}": (told, t) for t in args.refine_from}}
    for k, (ds, takes) in enumerate((("cmu", cmu_takes()), ("bandai", bandai_takes()))):
        idx = np.flatnonzero(takes["split"] == "val")
        rng = np.random.default_rng(3000 + k)
        poses = takes["joints"][np.sort(rng.choice(idx, size=min(args.n, len(idx)), replace=False))].astype(float)
        for setting in COMPLETION_SETTINGS:
            unknown = unknown_masks(setting, len(poses), np.random.default_rng(4000 + k))
            query = np.where(unknown[..., None], np.nan, poses)
            line = f"{ds:7s} {setting:11s}"
            for name, (net, t) in rows.items():
                engine.body_mean, engine_module.REFINE_FROM_T = net, t
                s = completion_scores(engine.complete(query, ~unknown, seed=0), poses, unknown)
                line += f"  {name}: {s['mpjpe_mm']:6.1f} / {s['pa_mpjpe_mm']:5.1f}"
            print(line, flush=True)
    cmu = cmu_takes()
    idx = np.flatnonzero(cmu["split"] == "val")
    for name, (net, t) in rows.items():
        engine.body_mean, engine_module.REFINE_FROM_T = net, t
        rng = np.random.default_rng(16)
        poses = cmu["joints"][np.sort(rng.choice(idx, size=600, replace=False))].astype(float)
        r = proportion_test(engine, poses, rng)
        dirs = " ".join(f"{b['median_arm_direction_deg']:.1f}" for b in r["bodies"].values())
        bent = " ".join(f"{b['bent_straight_elbow_share']:.2f}" for b in r["bodies"].values())
        print(f"proportions, {name}: median arm direction per body {dirs}; straight elbows bent: reference "
              f"{r['reference']['bent_straight_elbow_share']:.2f}, per body {bent}", flush=True)


if __name__ == "__main__":
    main()
