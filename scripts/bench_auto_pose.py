"""Auto Pose latency: from a moved control to the updated pose on the rig, through the real add-on and HTTP.

    .venv/bin/python scripts/bench_auto_pose.py --out auto_pose.json [--moves 100] [--device cpu]

Under the `bpy` module: the add-on's extension zip is built and installed into a throw-away extension repository
(your own Blender configuration is not touched), a Rigify rig is generated from the human metarig, and the add-on
starts the engine itself (Engine Python = this Python: `gfpose serve` on loopback, the shipped weights). Auto Pose
runs as the modal operator runs it (auto_pose.Session: start, then `tick` every TICK_BUSY seconds while an answer
is awaited, as its timer does). Each move drags one control (hand_ik.L/R, foot_ik.L/R, torso, head in turn) to
where a real pose puts its joints (CMU subject 6, which the shipped weights never saw, retargeted to the rig's
proportions by the engine; generated poses where ../shared/data is absent), and is timed from the moment the control
has its new matrix (and Blender has evaluated the rig to draw it, as its transform does; not counted) to the tick
after which the rig holds the answer to it, evaluated as the next redraw draws it (counted).

JSON to --out: latency_ms {median, p95, n, min, max}, the device, and where the time goes: round_trip_ms (the
request on its worker thread: HTTP, JSON, the engine's completion and rig solve), engine_ms (the same completion
called in this process, no HTTP, no rig solve), tick_send_ms / tick_show_ms (bpy: reading the controls and
sending; setting the answer on the rig and evaluating it), blender_move_eval_ms (Blender drawing the moved control,
before the clock starts), and the slot's counters.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

MODULE = "bl_ext.user_default.gfpose"
CLIP = ROOT.parent / "shared" / "data" / "cmu" / "bvh" / "06_01.bvh.gz"
CONTROLS = ("hand_ik.L", "foot_ik.R", "hand_ik.R", "foot_ik.L", "torso", "head")


def _say(text: str):
    print(text, flush=True)


def install_addon(bpy, folder: Path):
    """The extension zip built from blender_addon/ and installed, enabled, into a throw-away repository."""
    import blender_rigs
    import build_addon
    blender_rigs.fresh(bpy)
    repos = bpy.context.preferences.extensions.repos
    repo = repos[[r.module for r in repos].index("user_default")]
    repo.use_custom_directory = True
    repo.custom_directory = str(folder)
    zip_path = build_addon.build(folder / "dist")
    assert bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    return sys.modules[MODULE]


def real_poses(n: int, use_data: bool) -> tuple[np.ndarray, str]:
    """n body24 poses (n, 24, 3): frames spread over a CMU take, or generated ones without the data."""
    if use_data:
        from gfpose_core.data import load_take
        take = load_take(CLIP).joints
        idx = np.linspace(60, len(take) - 1, n).astype(int)
        return take[idx].astype(np.float64), f"{CLIP.name}, {n} frames"
    from gfpose_core.engine import Engine
    return Engine.load(device="cpu").generate(n, seed=1).astype(np.float64), f"{n} generated poses"


def on_rig(addon, client, obj, poses: np.ndarray) -> np.ndarray:
    """Where the rig's own bones put body24 for each pose (the engine's retarget: the rig's proportions), so that
    every dragged target is one the rig can reach. The armature is described with the map's switches set (Rigify's
    limbs in FK), as the add-on sends it: described in IK, the solve cannot follow the ORG bones."""
    rig_io = addon.rig_io
    bound = client.post("/bind", {"armature": rig_io.describe_armature(obj), "rig": "rigify"})
    desc = addon.engine_op.described_with_switches(obj, bound["properties"], rig_io.describe_armature(obj))
    got = client.post("/pose_for_rig", {"armature": desc, "joints": poses.tolist(), "rig": "rigify"})
    assert not got.get("warnings"), got.get("warnings")
    return np.asarray(got["joints"], np.float64)


def drag(bpy, obj, session, control: str, goal: np.ndarray) -> None:
    """Set the control's matrix so that its joints land on `goal`, as G and R would leave it."""
    from mathutils import Matrix
    live = sys.modules[MODULE + ".live"]
    world = np.array(obj.matrix_world, np.float64)
    m = live.control_to_move(session._world(control), session.local[control], goal)
    obj.pose.bones[control].matrix = Matrix((np.linalg.inv(world) @ m).tolist())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="auto_pose_latency.json")
    ap.add_argument("--moves", type=int, default=102)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-data", action="store_true", help="act as if ../shared/data were absent")
    args = ap.parse_args(argv)
    import blender_rigs
    import bpy

    with tempfile.TemporaryDirectory(prefix="gfpose_bench_autopose_") as tmp:
        addon = install_addon(bpy, Path(tmp))
        auto_pose, rig_io = addon.auto_pose, addon.rig_io
        prefs = bpy.context.preferences.addons[MODULE].preferences
        prefs.engine_python, prefs.engine_device = sys.executable, args.device
        t = time.perf_counter()
        assert bpy.ops.gfpose.test_connection() == {"FINISHED"}, prefs.status
        _say(f"engine: {prefs.status} ({time.perf_counter() - t:.1f} s to start)")
        meta = blender_rigs.metarig(bpy)
        assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
        bpy.data.objects.remove(meta)
        obj = bpy.data.objects["rig"]
        bpy.context.view_layer.objects.active = obj
        client = addon.preferences.client()
        device = addon.preferences.engine_info(client).get("device")
        use_data = CLIP.exists() and not args.no_data
        n_poses = -(-args.moves // len(CONTROLS))
        poses, source = real_poses(n_poses, use_data)
        targets = on_rig(addon, client, obj, poses)
        session = auto_pose.start(obj)
        session.settle()
        index = {n: i for i, n in enumerate(session.joint_names)}
        latency, send_ms, show_ms, move_eval_ms = [], [], [], []
        n_timings = len(session.timings)
        k = 0
        for p in range(n_poses):
            for control in CONTROLS:
                if k == args.moves:
                    break
                goal = targets[p][[index[j] for j in session.controls[control]]]
                drag(bpy, obj, session, control, goal)
                t = time.perf_counter()
                bpy.context.view_layer.update()        # Blender's own redraw of the moved control (not counted)
                move_eval_ms.append((time.perf_counter() - t) * 1000)
                t0 = time.perf_counter()
                done = session.tick()                  # the timer's tick: sees the move, sends it
                send_ms.append((time.perf_counter() - t0) * 1000)
                while not done:
                    time.sleep(auto_pose.TICK_BUSY)
                    t1 = time.perf_counter()
                    done = session.tick()              # ... picks the answer up and sets it on the rig
                    if done:
                        bpy.context.view_layer.update()    # ... and the rig evaluated as the redraw shows it
                        show_ms.append((time.perf_counter() - t1) * 1000)
                latency.append((time.perf_counter() - t0) * 1000)
                k += 1
        round_trip = [t * 1000 for t in session.timings[n_timings:]]
        slot = session.slot
        counters = {"sent": slot.sequence, "superseded": slot.superseded, "dropped": slot.dropped}
        # Where the engine's share goes: the same completion in this process, no HTTP, no rig solve.
        body = session._target()
        session.restore()
        engine_ms = engine_time(body, args.device)
        prefs_status = prefs.status
        addon.preferences.stop_local()

    lat = np.asarray(latency)
    out = {"latency_ms": {"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95)), "n": len(lat),
                          "min": float(lat.min()), "max": float(lat.max())},
           "device": device, "engine": prefs_status, "rig": "rigify (generated from the human metarig)",
           "moves": f"one control at a time, {', '.join(CONTROLS)} in turn, to {source}",
           "tick_interval_ms": auto_pose.TICK_BUSY * 1000,
           "round_trip_ms": _stats(round_trip), "engine_ms": _stats(engine_ms),
           "tick_send_ms": _stats(send_ms), "tick_show_ms": _stats(show_ms),
           "blender_move_eval_ms": _stats(move_eval_ms), "slot": counters,
           "targets_ms": {"median": 50, "p95": 100}}
    Path(args.out).write_text(json.dumps(out, indent=2))
    _say(f"Auto Pose latency over {len(lat)} moves on {device}: median {out['latency_ms']['median']:.1f} ms, "
         f"p95 {out['latency_ms']['p95']:.1f} ms (HTTP round trip median {out['round_trip_ms']['median']:.1f} ms, "
         f"engine completion alone {out['engine_ms']['median']:.1f} ms, bpy send "
         f"{out['tick_send_ms']['median']:.1f} ms + show {out['tick_show_ms']['median']:.1f} ms) -> {args.out}")
    return 0


def engine_time(body: dict, device: str, repeats: int = 30) -> list[float]:
    """Milliseconds of the engine's completion from effectors alone (in this process, no HTTP, no rig solve)."""
    from gfpose_core.engine import Engine
    eng = Engine.load(device=device)
    joints = np.array(body["joints"], dtype=np.float64)
    known = np.array(body["known"], dtype=bool)
    out = []
    for i in range(repeats + 3):
        t = time.perf_counter()
        eng.pose_from_effectors(joints, known, pins=body["pins"] or None, seed=0)
        if i >= 3:
            out.append((time.perf_counter() - t) * 1000)
    return out


def _stats(xs) -> dict:
    xs = list(xs)
    if not xs:
        return {"median": float("nan"), "p95": float("nan"), "n": 0}
    return {"median": float(statistics.median(xs)), "p95": float(np.percentile(xs, 95)), "n": len(xs)}


if __name__ == "__main__":
    sys.exit(main())
