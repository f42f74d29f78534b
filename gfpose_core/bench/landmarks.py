"""Recompute rigs/landmarks.py's TRAINING table from the training split: `python -m gfpose_core.bench.landmarks`.

It lives here rather than in rigs/ because it reads the data (a layer above the rigs); the numbers it prints are
pasted into gfpose_core/rigs/landmarks.py, which the shipped maps' test and the automatic mapping use.
"""
from __future__ import annotations

import argparse

from gfpose_core.data import DATA_DIR, training_takes
from gfpose_core.rigs.landmarks import measure, table_text


def training_landmarks(data_dir=DATA_DIR, share_alike: bool = True):
    """The spread of every landmark fraction over the training split's frames (never validation or test)."""
    takes, _ = training_takes(data_dir, share_alike=share_alike)
    train = takes["split"] == "train"
    return measure(takes["joints"][train]), int(train.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gfpose_core.bench.landmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--no-share-alike", action="store_true", help="leave HDM05 out, as the weights without it do")
    args = ap.parse_args(argv)
    stats, n = training_landmarks(share_alike=not args.no_share_alike)
    print(f"{n} training frames")
    print(table_text(stats))
    print("\nTRAINING = {")
    for k, s in stats.items():
        print(f'    "{k}": Spread({s.median:.4f}, {s.p5:.4f}, {s.p25:.4f}, {s.p75:.4f}, {s.p95:.4f}),')
    print("}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
