"""The `gfpose` command line. Bad input ends in one clear line and a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CliError(Exception):
    pass


def _cmd_train(args):
    import numpy as np

    from .data import DATA_DIR, build_takes, cmu_split, cmu_takes
    from .train import TrainConfig, Trainer

    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, max_minutes=args.minutes)
    cfg.model.hidden, cfg.model.embed, cfg.model.blocks = args.hidden, args.embed, args.blocks
    if args.data:
        files = []
        for d in args.data:
            p = Path(d)
            files += sorted(p.rglob("*.bvh*")) if p.is_dir() else [p]
        if not files:
            raise CliError(f"no BVH files in {' '.join(args.data)}")
        if any("bandai" in str(f).lower() for f in files):
            print("warning: Bandai-Namco data is CC BY-NC-ND: weights trained on it must not be shipped",
                  file=sys.stderr)
        takes = build_takes(files, cmu_split, drop_first=False, name="custom")
        note = f"{len(files)} BVH files from {', '.join(args.data)}"
    else:
        takes = cmu_takes(DATA_DIR)
        note = ("CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), BVH clips of ../shared/data/cmu, "
                "training subjects only (test subjects 6, 13, 94 and validation subjects 8, 14 held out), "
                "30 fps, with mirror copies")
    train = takes["joints"][takes["split"] == "train"]
    val = takes["joints"][takes["split"] == "val"]
    if len(val) == 0:
        rng = np.random.default_rng(0)
        pick = rng.random(len(train)) < 0.05
        train, val = train[~pick], train[pick]
    device = args.device
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    trainer = Trainer(cfg, train, val, args.out, data_note=note, device=device)
    if trainer.rank == 0:
        print(f"training {trainer.n_params / 1e6:.2f} M parameters on {len(train)} poses (x2 mirrored), "
              f"validating on {len(val)}; writing {args.out}", flush=True)

    def report(step, total, loss, val_loss):
        print(f"step {step}/{total} loss {loss:.4f} val {val_loss:.4f} "
              f"({trainer.elapsed / 60:.1f} min)", flush=True)

    result = trainer.train(progress=report)
    if trainer.rank == 0:
        print(f"done: best validation loss {result['best_val']:.4f} at step {result['best_step']}; "
              f"weights in {args.out}/model.safetensors", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfpose", description="GFPose engine: a learned 3D human pose prior")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the score model")
    t.add_argument("--data", nargs="*", help="BVH files or folders (default: the CMU set in ../shared/data)")
    t.add_argument("--out", required=True, help="run directory (checkpoints resume from here)")
    t.add_argument("--steps", type=int, default=12000)
    t.add_argument("--batch", type=int, default=512)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--hidden", type=int, default=768)
    t.add_argument("--embed", type=int, default=256)
    t.add_argument("--blocks", type=int, default=2)
    t.add_argument("--minutes", type=float, default=0.0, help="stop after this many minutes (0: no limit)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.set_defaults(func=_cmd_train)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CliError, ValueError, FileNotFoundError, OSError) as e:
        print(f"gfpose {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
