"""Completion from effectors on CMU validation poses (subjects 8 and 14; never the test subjects): the unknown joints'
MPJPE, PA-MPJPE and elbow angle error of the engine's answer, of nearest-neighbour retrieval on the effectors and of
the rest pose put on them, each held at the true bone lengths (the numbers behind prior/effectors.py's settings).

    PYTHONPATH=. .venv/bin/python scripts/effector_validation.py [poses, default 1500]
"""
from __future__ import annotations

import sys
import time

import numpy as np

from gfpose_core import Engine
from gfpose_core.bench.baselines import NearestNeighbourCompletion
from gfpose_core.bench.metrics import joint_angle_deg, per_sample_mpjpe, procrustes_align
from gfpose_core.body.skeleton import bone_lengths, restore
from gfpose_core.data import cmu_takes
from gfpose_core.prior.effector_guess import EFFECTOR_STEPS
from gfpose_core.prior.effectors import effector_mask, hold_lengths
from gfpose_core.prior.train import prepare_poses

ELBOWS = [("shoulder_l", "elbow_l", "wrist_l"), ("shoulder_r", "elbow_r", "wrist_r")]


def main(n: int = 1500):
    engine = Engine.load(device="cpu")
    cmu = cmu_takes()
    rows = np.sort(np.random.default_rng(20).choice(np.flatnonzero(cmu["split"] == "val"), n, replace=False))
    truth = cmu["joints"][rows].astype(np.float64)
    known = np.broadcast_to(effector_mask(), truth.shape[:2]).copy()
    unknown = ~known
    query = np.where(known[..., None], truth, np.nan)
    lengths = bone_lengths(truth)

    def score(name, pred, seconds):
        err = per_sample_mpjpe(pred[:, None], truth[:, None], unknown[:, None])[:, 0].mean()
        pa = per_sample_mpjpe(procrustes_align(pred, truth, unknown)[:, None], truth[:, None], unknown[:, None])
        elbow = np.mean([np.abs(joint_angle_deg(pred, *t) - joint_angle_deg(truth, *t)).mean() for t in ELBOWS])
        print(f"{name:44s} MPJPE {1000 * err:5.1f} mm  PA {1000 * pa.mean():5.1f} mm  elbow {elbow:4.1f} deg  "
              f"{1000 * seconds / n:4.1f} ms/pose", flush=True)

    def held(pred):
        return hold_lengths(pred, known, lengths).joints

    train = cmu["joints"][cmu["split"] == "train"][::2].astype(np.float64)
    nn = NearestNeighbourCompletion(prepare_poses(train, engine.space.reference_bones)[0].astype(np.float64))
    canon, frame = engine._canonical(query)
    t = time.perf_counter()
    near = np.where(known[..., None], truth, restore(nn.complete(canon, known), frame))
    score("nearest neighbour, held", held(near), time.perf_counter() - t)
    rest = restore(np.broadcast_to(engine.mean_pose, canon.shape).copy(), frame)
    score("rest pose on the effectors, held", held(np.where(known[..., None], truth, rest)), 0.0)
    t = time.perf_counter()
    out = engine.pose_from_effectors(query, lengths=lengths, seed=1)
    score(f"engine (posterior mean refined, {EFFECTOR_STEPS} steps)", out, time.perf_counter() - t)
    t = time.perf_counter()
    out = engine.pose_from_effectors(query, lengths=lengths, seed=1, rest=truth)
    score("engine, the body's chest shape known (rest=)", out, time.perf_counter() - t)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500)
