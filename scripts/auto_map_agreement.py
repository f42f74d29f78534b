"""How far the automatic rig mapping sits from the shipped maps: the test skeletons of tests/test_auto_map.py
(rest pose) and real BVH takes from ../shared/data (mean over the take). Centimetres.

    PYTHONPATH=. python scripts/auto_map_agreement.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_auto_map import ARMATURES, SHIPPED  # noqa: E402

from gfpose_core.body.skeleton import INDEX, JOINT_NAMES  # noqa: E402
from gfpose_core.data import load_take  # noqa: E402
from gfpose_core.formats.bvh import read_bvh  # noqa: E402
from gfpose_core.rigs.auto_map import auto_bvh_map, auto_rig_map  # noqa: E402
from gfpose_core.rigs.binding import bind, rest_joints  # noqa: E402

SPINE = [INDEX["spine"], INDEX["chest"]]
CLIPS = ["cmu/bvh/01_01.bvh.gz", "cmu/bvh/10_04.bvh.gz", "cmu/bvh/16_01.bvh.gz",
         "bandai/data/dataset-2_walk-turn-left_elderly_008.bvh.gz"]


def row(label: str, d: np.ndarray, confidence: float) -> str:
    others = np.delete(d, SPINE)
    worst = JOINT_NAMES[int(np.argmax(d))]
    return (f"{label:24s} conf {confidence:.2f}  others max {others.max() * 100:5.1f}  spine {d[SPINE[0]] * 100:5.1f}"
            f"  chest {d[SPINE[1]] * 100:5.1f}  (largest: {worst})")


def main() -> None:
    for case in sorted(SHIPPED):
        arm = ARMATURES[case]()
        auto = auto_rig_map(arm)
        a = rest_joints(bind(arm, auto.rig), world=True)
        s = rest_joints(bind(arm, SHIPPED[case]), world=True)
        print(row(f"{case} vs {SHIPPED[case]}", np.linalg.norm(a - s, axis=-1), auto.confidence))
    data = ROOT.parent / "shared" / "data"
    for rel in CLIPS:
        if not (data / rel).exists():
            continue
        auto = auto_bvh_map(read_bvh(data / rel))
        a = load_take(data / rel, rig=auto.rig).joints
        s = load_take(data / rel).joints
        print(row(Path(rel).name.split(".")[0][:24], np.linalg.norm(a - s, axis=-1).mean(0), auto.confidence))


if __name__ == "__main__":
    main()
