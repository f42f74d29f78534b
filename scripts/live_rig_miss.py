"""Live posing on real rigs: how far each rig lands the dragged effectors (pelvis, head, hands, feet) from where the
engine's answer has them, and how long one /pose_from_effectors takes, on validation poses only (CMU subject 14,
a fixed draw of Bandai validation clips; never the test split).

    PYTHONPATH=. .venv/bin/python scripts/live_rig_miss.py [--per-clip 5]

Each pose is first put on the rig (so every effector is somewhere the rig can reach), then its effectors are sent
with the armature, through the server app in this process (no HTTP). Rigs: a UE4 mannequin and a Mixamo rig built
from their published bone layouts (tests/test_retarget.py) and armatures built from a CMU and a Bandai BVH file as
Blender's importer builds them. The numbers behind RIG_MISS and RIG_REFINE in gfpose_core/service/live.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from service_app import client  # noqa: E402
from test_retarget import build_armature, bvh_armature  # noqa: E402

from gfpose_core.data import DATA_DIR, _clip_name, bandai_split, load_take  # noqa: E402
from gfpose_core.prior.effectors import effector_mask  # noqa: E402
from gfpose_core.rigs.solve import solve  # noqa: E402

KNOWN = effector_mask()


def _json(a: np.ndarray):
    return json.loads(json.dumps(np.asarray(a).tolist()).replace("NaN", "null"))


def validation_poses(per_clip: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cmu = sorted((DATA_DIR / "cmu" / "bvh").glob("14_*.bvh.gz"))
    bandai = [f for f in sorted((DATA_DIR / "bandai" / "data").glob("*.bvh.gz"))
              if bandai_split(_clip_name(f)) == "val"]
    clips = cmu + [bandai[i] for i in rng.choice(len(bandai), 6, replace=False)]
    poses = [load_take(f).joints for f in clips]
    return np.concatenate([p[rng.choice(len(p), per_clip, replace=False)] for p in poses])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-clip", type=int, default=5)
    args = ap.parse_args()
    poses = validation_poses(args.per_clip)
    rigs = {"ue4_mannequin": build_armature("ue4_mannequin"), "mixamo": build_armature("mixamo"),
            "cmu_mb31": bvh_armature(DATA_DIR / "cmu" / "bvh" / "01_01.bvh.gz", "cmu_mb31"),
            "bandai": bvh_armature(DATA_DIR / "bandai" / "data" / "dataset-2_walk-turn-left_elderly_008.bvh.gz",
                                   "bandai")}
    api = client()
    for name, arm in rigs.items():
        truth = solve(arm, poses, root_scale=1.0).joints
        first = api.post("/pose_from_effectors", json={
            "armature": json.loads(json.dumps(arm.to_dict())),
            "joints": _json(np.where(KNOWN[:, None], truth[0], np.nan)[None])})
        binding_id = first.json()["binding_id"]
        miss, took = [], []
        for pose in truth:
            body = {"binding_id": binding_id, "joints": _json(np.where(KNOWN[:, None], pose, np.nan)[None])}
            start = time.perf_counter()
            r = api.post("/pose_from_effectors", json=body).json()
            took.append(time.perf_counter() - start)
            out, landed = np.array(r["joints"][0]), np.array(r["rig_joints"][0])
            miss.append(np.linalg.norm(landed - out, axis=-1)[KNOWN].max() * 1000)
        miss = np.array(miss)
        print(f"{name:14s} {len(miss)} poses: the rig's worst effector miss mm median {np.median(miss):.2f}, "
              f"p95 {np.percentile(miss, 95):.2f}, max {miss.max():.1f}; "
              f"request ms median {1000 * np.median(took):.1f}")


if __name__ == "__main__":
    main()
