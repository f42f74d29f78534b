"""Posing from effectors on a Rigify body, validation poses only (CMU subjects 8 and 14, the Bandai validation
clips; never the test subjects or clips): the bench section's machinery (gfpose_core/bench/effectors.py: the poses
retargeted onto the rig by scripts/blender_ik_baseline.py, Blender's IK, nearest neighbour) on the validation split,
scored per part. The numbers behind prior/effectors.py's rig-body settings.

    PYTHONPATH=. .venv/bin/python scripts/effector_rig_validation.py [--n 300] [--cache /tmp/effval]
        [--effector-run RUN_DIR ...] [--refine 0 0.5] [--no-mirror]

Rows: the engine without its effector network (the posterior mean refined), the shipped engine, and each trained
effector network given with --effector-run (several: also their average, as a weights folder of members holds).

The rig pass (bpy, about a minute) is cached in --cache (outside the repository: Bandai poses never leave /tmp).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gfpose_core import Engine
from gfpose_core.bench.baselines import NearestNeighbourCompletion
from gfpose_core.bench.effectors import (PARTS, blender_ik, effector_query, effector_scores, nn_on_effectors)
from gfpose_core.body.skeleton import bone_lengths
from gfpose_core.data import bandai_takes, cmu_takes
from gfpose_core.prior import effector_guess
from gfpose_core.prior.effector_net import EffectorMean
from gfpose_core.prior.train import prepare_poses

COLUMNS = ("mpjpe_mm", "pa_mpjpe_mm", *(f"{p}_mm" for p in PARTS), "elbow_angle_deg", "bone_err_mm")


def validation_poses(n: int) -> dict[str, np.ndarray]:
    sets = {"cmu": cmu_takes(), "bandai": bandai_takes()}
    out = {}
    for k, (ds, t) in enumerate(sets.items()):
        idx = np.flatnonzero(t["split"] == "val")
        rows = np.sort(np.random.default_rng(2000 + k).choice(idx, size=min(n, len(idx)), replace=False))
        out[ds] = t["joints"][rows].astype(np.float64)
    return out


def on_rig(real: dict, cache: Path) -> dict:
    """{ds: {gt, ik, rest}} of the validation poses on the Rigify body (cached by pose count)."""
    cache.mkdir(parents=True, exist_ok=True)
    f = cache / f"rig_val_{len(real['cmu'])}_{len(real['bandai'])}.npz"
    if not f.exists():
        t0 = time.perf_counter()
        got, why = blender_ik(np.concatenate([real["cmu"], real["bandai"]]))
        if got is None:
            raise SystemExit(f"Blender IK: {why}")
        np.savez(f, **got)
        print(f"rig pass {time.perf_counter() - t0:.0f} s", flush=True)
    z = dict(np.load(f))
    n = len(real["cmu"])
    return {ds: {"gt": z["gt"][rows], "ik": z["ik"][rows], "rest": z["rest"]}
            for ds, rows in (("cmu", slice(0, n)), ("bandai", slice(n, None)))}


def row(name: str, s: dict) -> str:
    return f"{name:34s}" + "".join(f"{s[c]:8.1f}" for c in COLUMNS)


def header() -> str:
    return f"{'method':34s}" + "".join(f"{c.replace('_mm', '').replace('_deg', '')[:7]:>8s}" for c in COLUMNS)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="poses per dataset")
    ap.add_argument("--cache", default="/tmp/effval")
    ap.add_argument("--no-rest", action="store_true", help="also the engine without the rig's rest pose")
    ap.add_argument("--effector-run", action="append", default=[], metavar="RUN_DIR",
                    help="also the engine with this trained effector network (a `gfpose train --effectors` run)")
    ap.add_argument("--refine", type=float, nargs="*", default=[0.0],
                    help="with --effector-run: the share of its answer refined by the score model mixed in (each "
                         "in turn)")
    ap.add_argument("--no-mirror", action="store_true", help="with --effector-run: also without the mirror average")
    args = ap.parse_args(argv)
    engine = Engine.load(device="cpu")
    # (row name, effector network or None, share of its answer refined, mirror average)
    candidates = [("posterior mean (no effector network)", None, 0.0, True)]
    if engine.effector_mean is not None:
        candidates.append(("shipped", engine.effector_mean, effector_guess.NET_REFINE_SHARE, True))
    nets = {Path(run).name: EffectorMean.load(run, engine.device, engine.space) for run in args.effector_run}
    if len(nets) > 1:      # the runs as one ensemble, as a weights folder of several holds them
        nets = {"ensemble": EffectorMean([n for m in nets.values() for n in m.nets], engine.device, engine.space),
                **nets}
    for name, net in nets.items():
        candidates += [(f"{name} r{k}", net, k, True) for k in args.refine]
        if args.no_mirror and name != "ensemble":
            candidates += [(f"{name} r{k} no mirror", net, k, False) for k in args.refine]
    rig = on_rig(validation_poses(args.n), Path(args.cache))
    cmu = cmu_takes()
    nn = NearestNeighbourCompletion(prepare_poses(cmu["joints"][cmu["split"] == "train"].astype(np.float64),
                                                  engine.space.reference_bones)[0])
    for ds, r in rig.items():
        gt = r["gt"]
        query, known = effector_query(gt)
        lengths = bone_lengths(gt)
        print(f"\n{ds} validation, {len(gt)} poses on the Rigify body\n" + header())
        print(row("Blender IK", effector_scores(r["ik"], gt)))
        print(row("nearest neighbour", effector_scores(nn_on_effectors(engine, nn, query, known), gt)))
        if args.no_rest:
            t = time.perf_counter()
            pred = engine.pose_from_effectors(query, known, lengths=lengths, seed=1)
            print(row(f"engine, no rest ({1000 * (time.perf_counter() - t) / len(gt):.0f} ms/p)",
                      effector_scores(pred, gt)))
        for name, net, share, mirrored in candidates:
            engine.effector_mean = net
            effector_guess.NET_REFINE_SHARE, EffectorMean.MIRROR_AVERAGE = share, mirrored
            t = time.perf_counter()
            pred = engine.pose_from_effectors(query, known, lengths=lengths, seed=1, rest=r["rest"])
            print(row(f"{name} ({1000 * (time.perf_counter() - t) / len(gt):.0f} ms/p)",
                      effector_scores(pred, gt)), flush=True)


if __name__ == "__main__":
    main()
