"""The rig solve's speed (what /pose_for_rig and /pose_from_effectors spend posing a rig), this CPU.

    .venv/bin/python scripts/bench_rig_solve.py [--out rig_solve.json] [--desc rigify_desc.json] [--repeats 20]

Rigs: a Rigify rig generated from Blender's human metarig (706 bones; under the bpy module, described as the add-on
sends it, the map's switches set, and kept in --desc for the next run; without bpy the Rigify-like rig of
tests/test_solve_fast.py), and the Mixamo and UE4 mannequin armatures of tests/test_retarget.py. Poses: a CMU take
from ../shared/data, or generated ones. Per rig, milliseconds (min and median of --repeats): bind_for_rig and
pose_for_rig from the description (a binding made each time), then solve with the binding kept (the server's
binding_id) for one pose, for 40 frames, and for one Auto Pose edit (torso and head kept as the animator turned
them, as auto_pose sends `current`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from gfpose_core.body.rotations import axis_angle_matrix, quaternion_to_matrix  # noqa: E402
from gfpose_core.rigs.armature import Armature  # noqa: E402
from gfpose_core.rigs.binding import bind  # noqa: E402
from gfpose_core.rigs.plan import _fk, _plan  # noqa: E402
from gfpose_core.rigs.solve import bind_for_rig, pose_for_rig, solve  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "cmu" / "bvh" / "01_01.bvh.gz"


def rigify_description(path: Path) -> tuple[dict, str]:
    if path.exists():
        return json.loads(path.read_text()), f"Rigify (from {path})"
    try:
        import bpy
    except ImportError:
        from test_solve_fast import rigify_like
        return rigify_like().to_dict(), "Rigify-like (tests/test_solve_fast.py; bpy is not installed)"
    import tempfile

    import blender_rigs
    from blender_addon import rig_io
    with tempfile.TemporaryDirectory() as tmp:
        obj = blender_rigs.open_rigify(bpy, blender_rigs.make_rigify_blend(bpy, Path(tmp) / "rigify.blend"))
        rig_io.apply_properties(obj, bind_for_rig(rig_io.describe_armature(obj), "rigify")["properties"])
        desc = rig_io.describe_armature(obj)
    path.write_text(json.dumps(desc))
    return desc, "Rigify generated from the human metarig"


def poses() -> tuple[np.ndarray, str]:
    if CLIP.exists():
        from gfpose_core.data import load_take
        return load_take(CLIP).joints[1::8][:40].astype(np.float64), f"{CLIP.name}, every 8th frame"
    from test_retarget import random_poses
    return random_poses(40, seed=1, max_angle=0.8), "generated poses"


def timed(fn, repeats: int) -> dict:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return {"min": round(min(ts), 2), "median": round(float(np.median(ts)), 2)}


def edit_request(arm: Armature, binding, joints: np.ndarray) -> dict:
    """Auto Pose's `current`: the rig posed at one pose, its torso turned by the animator and kept, head kept."""
    first = solve(arm, joints, binding=binding)
    plan = _plan(binding)
    local = {arm.index[b]: quaternion_to_matrix(q) for b, q in zip(first.bones, np.moveaxis(first.quaternions, 1, 0))}
    _, rots, _ = _fk(plan, local, len(joints), local=True, root_location=first.location)
    keep = [b for b in (plan.binding.resolve("torso"), plan.binding.resolve("head")) if b in arm.index] or \
        [first.bones[0]]
    rotations = {b: rots[:, plan.slot[arm.index[b]]] for b in keep}
    rotations[keep[0]] = axis_angle_matrix(np.array([0.0, 0.0, 1.0]), np.array(0.2)) @ rotations[keep[0]]
    return {"joints": first.joints, "rotations": rotations, "keep": keep}


def bench_rig(name: str, desc: dict, rig: str, takes: np.ndarray, repeats: int) -> dict:
    arm = Armature.from_dict(desc)
    binding = bind(arm, rig)
    one, moved = takes[:1], takes[:1] + np.random.default_rng(0).normal(0, 0.02, takes[:1].shape)
    current = edit_request(arm, binding, one)
    out = {"rig": name, "bones": len(arm.bones), "bones_posed": len(_plan(binding).order),
           "bind_for_rig_ms": timed(lambda: bind_for_rig(desc, rig), max(3, repeats // 4)),
           "pose_for_rig_from_description_1_pose_ms": timed(lambda: pose_for_rig(desc, one, rig), max(3, repeats // 4)),
           "solve_1_pose_ms": timed(lambda: solve(arm, one, binding=binding), repeats),
           "solve_40_frames_ms": timed(lambda: solve(arm, takes, binding=binding), max(3, repeats // 2)),
           "solve_auto_pose_edit_ms": timed(lambda: solve(arm, moved, binding=binding, root_scale=1.0,
                                                          current=current), repeats)}
    print(f"{name}: {len(arm.bones)} bones ({out['bones_posed']} posed); ms min/median: solve 1 pose "
          f"{out['solve_1_pose_ms']['min']}/{out['solve_1_pose_ms']['median']}, 40 frames "
          f"{out['solve_40_frames_ms']['min']}/{out['solve_40_frames_ms']['median']}, Auto Pose edit "
          f"{out['solve_auto_pose_edit_ms']['min']}/{out['solve_auto_pose_edit_ms']['median']}; from the "
          f"description 1 pose {out['pose_for_rig_from_description_1_pose_ms']['median']}, bind_for_rig "
          f"{out['bind_for_rig_ms']['median']}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="rig_solve.json")
    ap.add_argument("--desc", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "gfpose_rigify_desc.json"))
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    from test_retarget import build_armature
    takes, source = poses()
    desc, rigify = rigify_description(Path(args.desc))
    results = [bench_rig(rigify, desc, "rigify", takes, args.repeats)]
    for family in ("mixamo", "ue4_mannequin"):
        results.append(bench_rig(family, build_armature(family, seed=0).to_dict(), family, takes, args.repeats))
    Path(args.out).write_text(json.dumps({"poses": source, "rigs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
