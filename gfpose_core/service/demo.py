"""The main job: the engine with the shipped weights on a real take (the engine-only demo; the README's first command runs the add-on demo).

Completes a pose whose left arm is hidden, cleans a take with mocap-like noise, and makes variations of a pose,
printing what it measured and drawing before/after pictures into demo_out/.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gfpose_core.body.filters import butterworth
    from gfpose_core.body.skeleton import BODY_PARTS, INDEX
    from gfpose_core.data import DATA_DIR, load_take
    from gfpose_core.engine import Engine
    from gfpose_core.service.figures import draw_pose, save_figure

    p = argparse.ArgumentParser(prog="gfpose-demo")
    p.add_argument("--clip", default=str(DATA_DIR / "cmu" / "bvh" / "06_01.bvh.gz"),
                   help="a BVH take (default: a CMU test subject the model never saw)")
    p.add_argument("--out", default="demo_out")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(exist_ok=True)

    t = time.perf_counter()
    engine = Engine.load()
    info = engine.config["training"]
    print(f"engine: {info['parameters'] / 1e6:.1f} M parameters on {engine.device}, trained on: {info['data']}"
          f" ({time.perf_counter() - t:.2f} s to load)")

    clip = Path(args.clip)
    if clip.exists():
        take = load_take(clip)
        step = max(1, int(round(take.fps / 30)))
        frames = take.joints[1::step].astype(np.float64)
        fps = take.fps / step
        print(f"take: {take.name}, {len(frames)} frames at {fps:.0f} fps")
    else:
        print(f"{clip} not found: using poses the model generates")
        frames, fps = engine.generate(120, seed=0), 30.0

    # 1. Complete: the animator posed everything but the left arm.
    pose = frames[len(frames) // 2]
    known = np.ones(24, bool)
    known[BODY_PARTS["arm_l"]] = False
    t = time.perf_counter()
    done = engine.complete(pose[None], known[None], seed=0)[0]
    ms = (time.perf_counter() - t) * 1000
    hyps = engine.complete(pose[None], known[None], n_hypotheses=5, seed=0)[0]
    err = np.linalg.norm(done - pose, axis=-1)[~known].mean() * 1000
    print(f"complete: left arm filled in {ms:.0f} ms, {err:.0f} mm from the real arm; known joints unchanged: "
          f"{np.array_equal(done[known], pose[known])}")

    # 2. Denoise: 40 mm jitter, a few 20 cm spikes and a dropout.
    rng = np.random.default_rng(0)
    clean = frames[: min(len(frames), 300)]
    noisy = clean + rng.normal(0, 0.04, clean.shape)
    spikes = rng.random(clean.shape[:2]) < 0.01
    noisy[spikes] += rng.normal(0, 0.2 / np.sqrt(3), (spikes.sum(), 3))
    noisy[50:65, INDEX["wrist_r"]] = np.nan
    t = time.perf_counter()
    cleaned = engine.denoise(noisy, fps=fps)
    secs = time.perf_counter() - t
    mm = lambda a: np.nanmean(np.linalg.norm(a - clean, axis=-1)) * 1000
    print(f"denoise: {len(clean)} frames in {secs:.2f} s; error to the clean take {mm(noisy):.0f} mm noisy -> "
          f"{mm(cleaned):.0f} mm cleaned (a 6 Hz Butterworth alone: {mm(butterworth(noisy, fps, 6.0)):.0f} mm)")

    # 3. Variations with the feet and pelvis pinned.
    var = engine.generate(4, seed=0, around=pose, pinned=["pelvis", "ankle_l", "ankle_r", "toe_l", "toe_r"],
                          diversity=0.5)
    print(f"generate: 4 variations, mean joint displacement {np.linalg.norm(var - pose, axis=-1).mean() * 1000:.0f}"
          " mm, pinned joints exact")

    fig, axes = plt.subplots(1, 4, figsize=(14, 4.5))
    draw_pose(axes[0], pose, colour="0.6", label="real")
    draw_pose(axes[0], done, highlight=~known)
    axes[0].set_title("complete: left arm")
    for h in hyps:
        draw_pose(axes[1], h, alpha=0.5)
    axes[1].set_title("5 hypotheses")
    k = len(clean) // 3
    draw_pose(axes[2], np.nan_to_num(noisy[k]), colour="0.6")
    draw_pose(axes[2], cleaned[k])
    axes[2].set_title("denoise (grey: noisy)")
    for v in var:
        draw_pose(axes[3], v, alpha=0.5)
    axes[3].set_title("variations")
    save_figure(fig, out / "demo.png")
    print(f"pictures: {out / 'demo.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
