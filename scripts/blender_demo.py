"""The main demo: the GFPose add-on in real Blender (the `bpy` module), end to end, headless.

    .venv/bin/python scripts/blender_demo.py [--out demo_out]      (scripts/demo runs this)

It builds a scene with a Rigify rig generated from Blender's human metarig, keys its legs and spine from a real
CMU pose (../shared/data; a hand-made pose where the data is absent) and leaves arms, neck and head at rest;
builds the extension zip and installs it into a throw-away extension repository under the out folder (your own
Blender configuration is not touched); sets the add-on's Engine Python to this Python, so the add-on starts the
engine (`gfpose serve`, shipped weights) itself; then runs the four operators as a script would:

- Complete Pose on the posed keyframe (and three hypotheses cycled), with a timing of one Complete Pose from
  execute to keys with the engine warm (the benchmark, `benchmark_complete`);
- Denoise Action on a noisy take keyed on an armature imported from a CMU BVH file (a take made from generated
  poses where the data is absent), into a new action beside the original;
- Generate Variations of the completed pose with legs and hips pinned, keyed on the frames after it;
- Fill In-betweens on three keys 30 frames apart (1, 31, 61) of a real CMU take keyed on the same BVH armature
  (three generated poses on the Rigify rig where the data is absent), the keys selected as in the Dope Sheet, into
  a new action; with the real take, the filled frames are measured against it beside the rig's own linear
  interpolation of the same keys (printed, not judged: the motion model's weights may be mid-training).

- a Mixamo-style character (Mixamo's bone names, hierarchy and a roll of its own on every bone) beside the rig:
  Denoise Action of a noisy take and Fill In-betweens of a hold (one pose keyed on 1, 31, 61), scripts/demo_character.py;
- Auto Pose on a second Rigify rig (limbs in IK, as generated): its torso and IK hand and foot controls dragged to
  where two real CMU poses (generated ones without the data) put the pelvis, hands and feet, the body following
  live; the same controls in Blender's IK alone beside it; the last pose keyed with Enter.

It writes into the out folder: gfpose_demo.blend, complete_before.png / complete_after.png, hypotheses.png,
variations.png (Workbench renders of the rig's deform bones), denoise.png (a joint's path before/after),
inbetween.png (a joint's path: keys, linear, filled), character.png (the Rigify rig, the character's denoised take
and its hold) and character_paths.png, autopose_vs_ik.png (per pose: the real pose on the rig,
Blender's IK, Auto Pose) and blender_demo.json (the numbers it prints).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests", ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

MODULE = "bl_ext.user_default.gfpose"
DATA = ROOT.parent / "shared" / "data"
CLIP_POSE = DATA / "cmu" / "bvh" / "06_01.bvh.gz"      # a CMU subject the shipped weights never saw
POSE_FRAME = 200
FILL_START = 240                                        # Fill In-betweens: 61 frames at 30 fps from here
LEGS_SPINE = ["torso", "spine_fk.002", "spine_fk.003", "thigh_fk.L", "shin_fk.L", "foot_fk.L", "thigh_fk.R",
              "shin_fk.R", "foot_fk.R"]
REST_KEYED = ["root", "hips", "chest", "spine_fk", "spine_fk.001"]
PINNED = ["torso", "thigh_fk.L", "shin_fk.L", "foot_fk.L", "thigh_fk.R", "shin_fk.R", "foot_fk.R"]
COMPLETED = [("collar_l", "shoulder_l"), ("shoulder_l", "elbow_l"), ("elbow_l", "wrist_l"),
             ("collar_r", "shoulder_r"), ("shoulder_r", "elbow_r"), ("elbow_r", "wrist_r"),
             ("neck", "head"), ("head", "head_end")]
BLUE, ORANGE, GREY = (0.2, 0.45, 0.9, 1), (0.95, 0.5, 0.15, 1), (0.6, 0.6, 0.6, 1)


def _say(text: str):
    print(text, flush=True)


def _direction_error(a, b, index) -> float:
    """Mean degrees between the completed segments' directions in two poses (24, 3)."""
    out = []
    for p, c in COMPLETED:
        d1, d2 = a[index[c]] - a[index[p]], b[index[c]] - b[index[p]]
        out.append(np.degrees(np.arccos(np.clip(d1 @ d2 / np.linalg.norm(d1) / np.linalg.norm(d2), -1, 1))))
    return float(np.mean(out))


def _plot_joint(path, joint: str, index: dict, label: str, x, series, marks=None):
    """One joint's x, y, z over frames, a panel each: series [(take or None, colour, width, legend)];
    marks (frame indices, take, legend) as dots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    j = index[joint]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharex=True)
    for c, (a, axis) in enumerate(zip(axes, "xyz")):
        for take, colour, width, legend in series:
            if take is not None:
                a.plot(x, take[:, j, c], color=colour, lw=width, label=legend)
        if marks is not None:
            a.plot(x[marks[0]], marks[1][marks[0], j, c], "ko", ms=4, label=marks[2])
        a.set_title(f"{label} {axis} (m)")
        a.set_xlabel("frame")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jitter_mm(take) -> float:
    t = np.asarray(take)
    return float(np.linalg.norm(t[2:] - 2 * t[1:-1] + t[:-2], axis=-1).mean() * 1000)


def benchmark_complete(bpy, addon, obj, posed_bones, repeats: int = 5) -> dict:
    """Milliseconds of one Complete Pose on `obj` with the engine warm, the posed bones given by selection so that
    every run does the same work (one warm-up run first):

    - execute_ms: bpy.ops.gfpose.complete_pose() as scripts call it (execute: read the rig, engine calls, keys);
    - modal_ms: the same steps as the panel's button runs them (invoke -> modal): engine calls on a thread, the
      main thread picking each answer up on a 20 ms timer tick (emulated here by polling every 20 ms)."""
    addon.posing.set_selected(obj, posed_bones)
    bpy.context.view_layer.objects.active = obj
    op_cls = addon.operators.GFPOSE_OT_complete_pose
    settings = SimpleNamespace(frames="CURRENT", known_from="SELECTED", frame_start=1, frame_end=1, n_hypotheses=1,
                               seed=0, move_root=False)
    spec = addon.preferences.engine_spec()
    execute, modal = [], []
    for i in range(repeats + 1):
        t = time.perf_counter()
        assert bpy.ops.gfpose.complete_pose(known_from="SELECTED") == {"FINISHED"}
        dt = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        job = addon.jobs.Job(op_cls.steps(settings, obj, spec, bpy.context.scene))
        done = job.start()
        while not done:
            time.sleep(0.02)
            done = job.poll()
        assert job.error is None, job.error
        if i:
            execute.append(dt)
            modal.append((time.perf_counter() - t) * 1000)
    return {"runs": repeats, "bones": len(obj.pose.bones),
            "execute_ms": {"median": statistics.median(execute), "min": min(execute), "max": max(execute)},
            "modal_ms": {"median": statistics.median(modal), "min": min(modal), "max": max(modal)}}


# Auto Pose: the real poses the controls are dragged to (CMU subject 6, unseen by the weights): a step, a bend down.
AUTO_POSES = (("06_01.bvh.gz", 150), ("06_13.bvh.gz", 2861))
AUTO_CONTROLS = ("torso", "hand_ik.L", "hand_ik.R", "foot_ik.L", "foot_ik.R")   # what Blender's IK is given too
BLACK = (0.15, 0.15, 0.15, 1)


def auto_pose_step(bpy, addon, client, out: Path, use_data: bool) -> dict:
    """Auto Pose on a fresh Rigify rig (limbs in IK, as Rigify makes it): for each real pose (retargeted to the rig's
    proportions by the engine), the torso control turned and moved as that pose has it, the IK hand and foot
    controls dragged to where it puts the hands and feet, once with Blender's IK alone (the limbs in IK, the rest of the body as it was) and once
    in Auto Pose (the body completed by the engine, live, one request per drag); Enter keys the last one. Renders
    autopose_vs_ik.png: per pose, the real pose on this rig (black), Blender's IK (blue), Auto Pose (orange)."""
    import blender_rigs
    from mathutils import Matrix

    from gfpose_core.body.skeleton import INDEX, JOINT_NAMES
    auto_pose, live, posing, rig_io = addon.auto_pose, addon.live, addon.posing, addon.rig_io
    before = set(bpy.data.objects)
    meta = blender_rigs.metarig(bpy)
    assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
    bpy.data.objects.remove(meta)
    (rig,) = [o for o in bpy.data.objects if o not in before and o.type == "ARMATURE"]
    rig.location.x = -1.5
    bpy.context.view_layer.objects.active = rig
    desc = rig_io.describe_armature(rig)
    bound = client.post("/bind", {"armature": desc})
    binding = {k: bound[k] for k in ("rig", "prefix", "bones", "points", "weights")}
    if use_data:
        from gfpose_core.data import load_take
        real = np.stack([load_take(CLIP_POSE.parent / clip).joints[f] for clip, f in AUTO_POSES]).astype(np.float64)
        source = ", ".join(f"{clip} frame {f}" for clip, f in AUTO_POSES)
    else:
        real = np.asarray(client.post("/generate", {"n": len(AUTO_POSES), "seed": 5})["joints"])
        source = "generated poses (no ../shared/data here)"
    real[..., :2] += np.array(rig.matrix_world)[:2, 3] - real[:, :1, :2]     # stand where the rig stands
    saved = {pb.name: posing.basis_values(pb) for pb in rig.pose.bones}
    props = [(p["bone"], p["name"], rig.pose.bones[p["bone"]][p["name"]]) for p in bound["properties"]]
    start = rig_io.read_body24(rig, binding)[0]
    world = np.array(rig.matrix_world)
    groups = live.effector_groups(addon.preferences.engine_info(client))
    joints_of = {c: list(groups[live.RIGIFY_CONTROLS[c]]) for c in AUTO_CONTROLS}
    local = {c: live.offsets(world @ np.array(rig.pose.bones[c].matrix), start[[INDEX[j] for j in joints_of[c]]])
             for c in AUTO_CONTROLS}

    def put_back():
        for name, values in saved.items():
            posing.set_basis(rig.pose.bones[name], values)
        for bone, name, value in props:
            rig.pose.bones[bone][name] = value
        rig.update_tag()
        bpy.context.view_layer.update()

    def drag(goal_pose, torso):
        """Each control to where the pose puts its joints, as G and R would leave it; the torso as the real pose has
        it (where and how its pelvis leans, which the hip joints alone do not say), as the bench gives Blender IK."""
        for c in AUTO_CONTROLS:
            now = world @ np.array(rig.pose.bones[c].matrix)
            m = torso if c == "torso" else live.control_to_move(now, local[c],
                                                               goal_pose[[INDEX[j] for j in joints_of[c]]])
            rig.pose.bones[c].matrix = Matrix((np.linalg.inv(world) @ m).tolist())
            bpy.context.view_layer.update()
            yield c

    deform = blender_rigs.rigify_bones(rig)
    columns, res = [], {"poses": source, "ik_mm": [], "auto_pose_mm": [], "effector_mm": []}
    unknown = [INDEX[n] for n in JOINT_NAMES if not any(n in joints_of[c] for c in AUTO_CONTROLS)]
    auto_pose.set_pins(rig, AUTO_CONTROLS)     # the head free: the same effectors as Blender's IK gets
    for k, pose in enumerate(real):
        # The real pose on this rig (its proportions): the engine's retarget set on the FK controls (the limbs
        # switched as the map says), where body24 lands is the truth the controls are dragged to.
        rig_io.apply_properties(rig, bound["properties"])
        fk = client.post("/pose_for_rig", {"armature": rig_io.describe_armature(rig), "joints": [pose.tolist()],
                                           "rig": "rigify"})
        truth = np.asarray(fk["joints"][0])
        posing.set_pose_values(rig, fk)
        bpy.context.view_layer.update()
        torso = world @ np.array(rig.pose.bones["torso"].matrix)
        cell = [(blender_rigs.stick_figure(bpy, rig_io, rig, deform, f"real{k}"), BLACK)]
        put_back()
        # Blender's IK alone: the same controls, the limbs in IK, the spine, neck and head as they were.
        for _ in drag(truth, torso):
            pass
        ik = rig_io.read_body24(rig, binding)[0]
        cell.append((blender_rigs.stick_figure(bpy, rig_io, rig, deform, f"ik{k}"), BLUE))
        put_back()
        # Auto Pose: the mode started on the rig as it was, each control dragged in turn, the body following.
        session = auto_pose.start(rig)
        for _ in drag(truth, torso):
            session.tick()
        session.settle()
        done = rig_io.read_body24(rig, binding)[0]
        cell.append((blender_rigs.stick_figure(bpy, rig_io, rig, deform, f"auto{k}"), ORANGE))
        columns += [[], cell] if columns else [cell]      # an empty column keeps the poses apart
        res["ik_mm"].append(float(np.linalg.norm(ik[unknown] - truth[unknown], axis=-1).mean() * 1000))
        res["auto_pose_mm"].append(float(np.linalg.norm(done[unknown] - truth[unknown], axis=-1).mean() * 1000))
        eff = [INDEX[j] for c in AUTO_CONTROLS for j in joints_of[c]]
        res["effector_mm"].append(float(np.linalg.norm(done[eff] - truth[eff], axis=-1).max() * 1000))
        res.setdefault("answers_ms", []).extend(t * 1000 for t in session.timings)
        if k < len(real) - 1:
            session.restore()                       # Esc: the rig exactly as it was
            assert all(posing.basis_values(pb) == saved[pb.name] for pb in rig.pose.bones)
        else:
            assert bpy.ops.gfpose.auto_pose_key("EXEC_DEFAULT", True) == {"FINISHED"}     # Enter
            res["keyed_bones"] = len({c["bone"] for c in session.shown["channels"]} | set(AUTO_CONTROLS))
    blender_rigs.render_figures(bpy, columns, out / "autopose_vs_ik.png")
    res["answer_ms_median"] = float(np.median(res.pop("answers_ms")))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="demo_out", help="folder for the .blend, renders and numbers")
    ap.add_argument("--device", default="auto", help="engine device: auto, cpu, cuda")
    ap.add_argument("--no-data", action="store_true", help="act as if ../shared/data were absent")
    args = ap.parse_args(argv)
    use_data = CLIP_POSE.exists() and not args.no_data
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    numbers: dict = {}

    import blender_rigs
    import bpy

    import build_addon

    # --- the add-on, installed from its zip into a throw-away repository -------------------------------------
    blender_rigs.fresh(bpy)
    repos = bpy.context.preferences.extensions.repos
    repo = repos[[r.module for r in repos].index("user_default")]
    repo.use_custom_directory = True
    repo.custom_directory = str(out / "extensions")
    zip_path = build_addon.build(ROOT / "dist")
    assert bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    addon = sys.modules[MODULE]
    rig_io, posing = addon.rig_io, addon.posing
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_python = sys.executable
    prefs.engine_device = args.device
    _say(f"installed {zip_path.name} into {out / 'extensions'} and enabled it ({MODULE})")
    t = time.perf_counter()
    assert bpy.ops.gfpose.test_connection() == {"FINISHED"}
    numbers["engine_start_s"] = time.perf_counter() - t
    _say(f"engine started by the add-on from {sys.executable}: {prefs.status} "
         f"({numbers['engine_start_s']:.1f} s)")

    # --- a Rigify rig, legs and spine posed ---------------------------------------------------------------
    t = time.perf_counter()
    meta = blender_rigs.metarig(bpy)
    assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
    bpy.data.objects.remove(meta)
    rig = bpy.data.objects["rig"]
    bpy.context.view_layer.objects.active = rig
    scene = bpy.context.scene
    scene.frame_set(1)
    _say(f"generated a Rigify rig from the human metarig: {len(rig.pose.bones)} bones "
         f"({time.perf_counter() - t:.1f} s)")
    client = addon.preferences.client()
    bound = client.post("/bind", {"armature": rig_io.describe_armature(rig)})
    binding = {k: bound[k] for k in ("rig", "prefix", "bones", "points", "weights")}
    rig_io.apply_properties(rig, bound["properties"])
    from gfpose_core.body.skeleton import INDEX
    real = None
    if use_data:
        from gfpose_core.data import load_take
        real = load_take(CLIP_POSE).joints[POSE_FRAME].astype(np.float64)
        pose = client.post("/pose_for_rig", {"armature": rig_io.describe_armature(rig), "joints": [real.tolist()],
                                             "rig": "rigify", "root_scale": 1.0})
        keep = set(LEGS_SPINE + REST_KEYED)
        pose["channels"] = [c for c in pose["channels"] if c["bone"] in keep]
        pose["rotation_modes"] = {b: m for b, m in pose["rotation_modes"].items() if b in keep}
        rig_io.write_keys(rig, pose, frame_start=1, action="posed")
        source = f"{CLIP_POSE.name} frame {POSE_FRAME}"
    else:   # no mocap data here: a hand-made step, keyed on the FK controls
        from mathutils import Euler
        turns = {"thigh_fk.L": (-0.6, 0, 0), "shin_fk.L": (0.9, 0, 0), "foot_fk.L": (-0.3, 0, 0),
                 "thigh_fk.R": (0.35, 0, 0), "shin_fk.R": (0.2, 0, 0), "spine_fk.002": (0.15, 0, 0.1),
                 "spine_fk.003": (0.1, 0, 0.1), "torso": (0, 0, 0.2)}
        for b in LEGS_SPINE:
            pb = rig.pose.bones[b]
            pb.rotation_mode = "QUATERNION"
            pb.rotation_quaternion = Euler(turns.get(b, (0, 0, 0))).to_quaternion()
            pb.keyframe_insert("rotation_quaternion", frame=1)
            if b == "torso":
                pb.location = (0, 0, -0.06)
                pb.keyframe_insert("location", frame=1)
        source = "a hand-made step (no ../shared/data here)"
    scene.frame_set(1)
    posed_keys = posing.fcurve_snapshot(rig)
    rest_pose = rig_io.read_body24(rig, binding)[0]
    _say(f"keyed legs and spine ({len(LEGS_SPINE)} FK controls) from {source}; arms, neck and head at rest")
    deform = blender_rigs.rigify_bones(rig)
    blender_rigs.render_figures(bpy, [[(blender_rigs.stick_figure(bpy, rig_io, rig, deform, "before"), GREY)]],
                                out / "complete_before.png")

    # --- Complete Pose ----------------------------------------------------------------------------------------
    t = time.perf_counter()
    assert bpy.ops.gfpose.complete_pose() == {"FINISHED"}
    numbers["complete_first_ms"] = (time.perf_counter() - t) * 1000
    done = rig_io.read_body24(rig, binding)[0]
    after_keys = posing.fcurve_snapshot(rig)
    unchanged = all(all(np.array_equal(x, y) for x, y in zip(posed_keys[k], after_keys[k])) for k in posed_keys)
    new_bones = sorted({hit[0] for hit in (posing.bone_of_path(k[0]) for k in set(after_keys) - set(posed_keys))
                        if hit is not None})
    numbers["complete"] = {"posed_keys_unchanged": unchanged, "keyed_bones": new_bones}
    line = (f"Complete Pose: keyed {len(new_bones)} bones ({', '.join(new_bones)}); the {len(posed_keys)} posed "
            f"F-curves are {'bit for bit unchanged' if unchanged else 'CHANGED'} "
            f"({numbers['complete_first_ms']:.0f} ms, first run: binding included)")
    if real is not None:
        e_rest, e_done = _direction_error(rest_pose, real, INDEX), _direction_error(done, real, INDEX)
        numbers["complete"].update({"arms_head_deg_rest": e_rest, "arms_head_deg_completed": e_done})
        line += (f"\n  arm and head segments vs the real pose: {e_rest:.1f} deg at rest -> {e_done:.1f} deg "
                 "completed (mean angle between directions)")
    _say(line)
    blender_rigs.render_figures(
        bpy, [[(blender_rigs.stick_figure(bpy, rig_io, rig, deform, "after"), ORANGE)]], out / "complete_after.png")

    bench = benchmark_complete(bpy, addon, rig, LEGS_SPINE)
    numbers["benchmark_complete"] = bench
    ex, mo = bench["execute_ms"], bench["modal_ms"]
    _say(f"benchmark, one Complete Pose on the Rigify rig ({bench['bones']} bones), engine warm, {bench['runs']} "
         f"runs: execute to keys median {ex['median']:.0f} ms (min {ex['min']:.0f}, max {ex['max']:.0f}); as the "
         f"button runs it (threaded, 20 ms timer) median {mo['median']:.0f} ms (min {mo['min']:.0f}, "
         f"max {mo['max']:.0f})")

    # Hypotheses: three completions, cycled, the first accepted.
    assert bpy.ops.gfpose.complete_pose(known_from="SELECTED", n_hypotheses=3, seed=7) == {"FINISHED"}
    figures = []
    for k in range(3):
        figures.append([(blender_rigs.stick_figure(bpy, rig_io, rig, deform, f"hyp{k}"), ORANGE)])
        assert bpy.ops.gfpose.cycle_hypothesis() == {"FINISHED"}
    assert rig.gfpose.hypothesis == 0
    assert bpy.ops.gfpose.accept_hypothesis() == {"FINISHED"}
    blender_rigs.render_figures(bpy, figures, out / "hypotheses.png")
    _say("three hypotheses cycled with Cycle Hypothesis (hypotheses.png), the first accepted")

    # --- Generate Variations -----------------------------------------------------------------------------------
    posing.set_selected(rig, PINNED)
    now = rig_io.read_body24(rig, binding)[0]
    assert bpy.ops.gfpose.generate_variations(n_variations=4, diversity=0.6, seed=3) == {"FINISHED"}
    var = rig_io.read_body24(rig, binding, frames=range(1, 6))
    pinned_idx = [INDEX[j] for j in ("pelvis", "hip_l", "knee_l", "ankle_l", "hip_r", "knee_r", "ankle_r")]
    free_idx = [INDEX[j] for j in ("elbow_l", "wrist_l", "elbow_r", "wrist_r", "head_end")]
    numbers["generate"] = {
        "variations": 4, "pinned_max_mm": float(np.abs(var[1:, pinned_idx] - now[pinned_idx]).max() * 1000),
        "free_joints_spread_mm": float(np.linalg.norm(var[1:, free_idx] - var[1:, free_idx].mean(0), axis=-1)
                                       .mean() * 1000)}
    _say(f"Generate Variations: 4 variations keyed on frames 2..5, legs and hips pinned (moved at most "
         f"{numbers['generate']['pinned_max_mm']:.2f} mm), arms and head vary by "
         f"{numbers['generate']['free_joints_spread_mm']:.0f} mm on average")
    cols = []
    for f in range(1, 6):
        scene.frame_set(f)
        cols.append([(blender_rigs.stick_figure(bpy, rig_io, rig, deform, f"var{f}"), GREY if f == 1 else ORANGE)])
    scene.frame_set(1)
    blender_rigs.render_figures(bpy, cols, out / "variations.png")

    # --- Denoise Action on a BVH armature -------------------------------------------------------------------
    scene.render.fps = 30
    if use_data:
        import tempfile

        from gfpose_core.data import load_take
        with tempfile.TemporaryDirectory() as tmp:
            cmu = blender_rigs.import_bvh(bpy, CLIP_POSE, "cmu_mb31", Path(tmp), frames=2)
        cmu.location.x = 1.5
        clean = load_take(CLIP_POSE).joints[100:100 + 4 * 90:4].astype(np.float64) + [1.5, 0, 0]  # 30 fps, 3 s
        what = f"{CLIP_POSE.name}, 90 frames at 30 fps, on the armature Blender's BVH importer made from it"
    else:
        cmu = rig
        keys = np.array(client.post("/generate", {"n": 4, "around": now.tolist(), "diversity": 0.4,
                                                  "seed": 1})["joints"])
        s = np.linspace(0, 3, 90)
        i0 = np.minimum(s.astype(int), 2)
        w = (s - i0)[:, None, None]
        w = w * w * (3 - 2 * w)
        clean = keys[i0] * (1 - w) + keys[i0 + 1] * w
        what = "90 frames blended between generated poses, on the Rigify rig"
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, 0.012, clean.shape)
    spikes = rng.choice(len(noisy), 4, replace=False)
    noisy[spikes, rng.integers(0, 24, 4)] += rng.normal(0, 0.08, (4, 3))
    bound_cmu = client.post("/bind", {"armature": rig_io.describe_armature(cmu)})
    rig_io.apply_properties(cmu, bound_cmu["properties"])
    take = client.post("/pose_for_rig", {"armature": rig_io.describe_armature(cmu), "joints": noisy.tolist(),
                                         "rig": bound_cmu["rig"], "root_scale": 1.0})
    original = rig_io.write_keys(cmu, take, frame_start=1, action="take_noisy")
    bpy.context.view_layer.objects.active = cmu
    binding_cmu = {k: bound_cmu[k] for k in ("rig", "prefix", "bones", "points", "weights")}
    frames = range(1, len(noisy) + 1)
    read_noisy = rig_io.read_body24(cmu, binding_cmu, frames=frames)
    kept = posing.fcurve_snapshot(cmu, original)
    t = time.perf_counter()
    assert bpy.ops.gfpose.denoise_action() == {"FINISHED"}
    numbers["denoise_ms"] = (time.perf_counter() - t) * 1000
    read_clean = rig_io.read_body24(cmu, binding_cmu, frames=frames)
    still = posing.fcurve_snapshot(cmu, original)
    untouched = set(kept) == set(still) and all(all(np.array_equal(x, y) for x, y in zip(kept[k], still[k]))
                                                for k in kept)
    numbers["denoise"] = {"take": what, "new_action": cmu.animation_data.action.name,
                          "original_unchanged": untouched, "jitter_mm_noisy": _jitter_mm(read_noisy),
                          "jitter_mm_denoised": _jitter_mm(read_clean)}
    line = (f"Denoise Action on {what}: new action '{cmu.animation_data.action.name}', "
            f"'{original.name}' {'unchanged' if untouched else 'CHANGED'}; jitter "
            f"{_jitter_mm(read_noisy):.1f} -> {_jitter_mm(read_clean):.1f} mm/frame^2 "
            f"({numbers['denoise_ms']:.0f} ms)")
    ref = None
    if cmu is not rig:     # the same body as the take: positions compare to the clean motion directly
        ref = np.asarray(client.post("/pose_for_rig", {"armature": rig_io.describe_armature(cmu),
                                                        "joints": clean.tolist(), "rig": bound_cmu["rig"],
                                                        "root_scale": 1.0})["joints"])
        e_noisy = float(np.linalg.norm(read_noisy - ref, axis=-1).mean() * 1000)
        e_clean = float(np.linalg.norm(read_clean - ref, axis=-1).mean() * 1000)
        numbers["denoise"].update({"error_mm_noisy": e_noisy, "error_mm_denoised": e_clean})
        line += f"\n  mean joint error to the clean capture: {e_noisy:.1f} mm noisy -> {e_clean:.1f} mm denoised"
    _say(line)
    _plot_joint(out / "denoise.png", "wrist_r", INDEX, "right wrist", np.arange(len(read_noisy)),
                [(read_noisy, "#bbbbbb", 1.5, "noisy take (original action)"),
                 (ref, "#3070e0", 1, "clean capture"),
                 (read_clean, "#f08020", 1.5, "denoised (new action)")])

    # --- Fill In-betweens: three keys of a real take, 30 frames apart -----------------------------------------
    t_fill = time.perf_counter()
    key_frames = [1, 31, 61]
    if use_data:
        from gfpose_core.data import load_take
        walk = load_take(CLIP_POSE).joints[FILL_START:FILL_START + 4 * 61:4].astype(np.float64) + [1.5, 0, 0]
        keyed = walk[np.array(key_frames) - 1]
        what = f"{CLIP_POSE.name} ({len(walk)} frames at 30 fps), keyed on frames 1, 31, 61 of the BVH armature"
    else:
        walk = None
        keyed = np.array(client.post("/generate", {"n": 3, "around": now.tolist(), "diversity": 0.3,
                                                   "seed": 2})["joints"])
        what = "three generated poses keyed on frames 1, 31, 61 of the Rigify rig"
    # The keys as an animator would have them: the take solved on this rig (sign-continuous rotations), keyed on
    # the three frames only, into an action of their own, every key selected.
    solved = client.post("/pose_for_rig", {"armature": rig_io.describe_armature(cmu),
                                           "joints": (walk if walk is not None else keyed).tolist(),
                                           "rig": bound_cmu["rig"], "root_scale": 1.0})
    rows = np.array(key_frames) - 1 if walk is not None else np.arange(3)
    keys_action = None
    for f, r in zip(key_frames, rows):
        one = dict(solved, frames=1, channels=[dict(c, values=[c["values"][r]]) for c in solved["channels"]])
        keys_action = rig_io.write_keys(cmu, one, frame_start=f, action=keys_action or "keys")
    bpy.context.view_layer.objects.active = cmu
    for fc in posing.channelbag(cmu).fcurves:
        fc.keyframe_points.foreach_set("select_control_point", np.ones(len(fc.keyframe_points), bool))
    fill_frames = range(key_frames[0], key_frames[-1] + 1)
    read_linear = rig_io.read_body24(cmu, binding_cmu, frames=fill_frames)     # the keys, linear between them
    kept = posing.fcurve_snapshot(cmu, keys_action)
    t = time.perf_counter()
    assert bpy.ops.gfpose.fill_inbetweens(seed=7) == {"FINISHED"}
    numbers["fill_ms"] = (time.perf_counter() - t) * 1000
    read_filled = rig_io.read_body24(cmu, binding_cmu, frames=fill_frames)
    still = posing.fcurve_snapshot(cmu, keys_action)
    untouched = set(kept) == set(still) and all(all(np.array_equal(x, y) for x, y in zip(kept[k], still[k]))
                                                for k in kept)
    at_keys = np.array(key_frames) - key_frames[0]
    between = np.setdiff1d(np.arange(len(fill_frames)), at_keys)
    numbers["fill"] = {"take": what, "keys": key_frames, "frames_filled": int(len(between)),
                       "new_action": cmu.animation_data.action.name, "original_unchanged": untouched,
                       "keys_moved_mm": float(np.linalg.norm(read_filled[at_keys] - read_linear[at_keys],
                                                             axis=-1).max() * 1000),
                       "jitter_mm_filled": _jitter_mm(read_filled)}
    line = (f"Fill In-betweens on {what}: filled {len(between)} frames in "
            f"{numbers['fill_ms']:.0f} ms into new action '{cmu.animation_data.action.name}', "
            f"'{keys_action.name}' {'unchanged' if untouched else 'CHANGED'}; the keyed poses moved by at most "
            f"{numbers['fill']['keys_moved_mm']:.3f} mm")
    ref_fill = None
    if walk is not None:   # the real take in this rig's proportions (the solve of every frame, as keyed above)
        ref_fill = np.asarray(solved["joints"])
        lerp = np.stack([np.interp(np.arange(len(fill_frames)), at_keys, ref_fill[at_keys][:, j, c])
                         for j in range(24) for c in range(3)], -1).reshape(len(fill_frames), 24, 3)
        err = {name: float(np.linalg.norm(read[between] - ref_fill[between], axis=-1).mean() * 1000)
               for name, read in (("filled", read_filled), ("rig_linear_keys", read_linear),
                                  ("joint_lerp", lerp))}
        numbers["fill"].update({f"error_mm_{k}": v for k, v in err.items()})
        line += (f"\n  mean joint error of the {len(between)} filled frames to the real take: "
                 f"{err['filled']:.1f} mm filled vs {err['rig_linear_keys']:.1f} mm for the rig's linear "
                 f"interpolation of the same keys ({err['joint_lerp']:.1f} mm joint positions lerped); jitter "
                 f"{_jitter_mm(read_filled):.1f} mm/frame^2 filled, {_jitter_mm(ref_fill):.1f} real")
    _say(line)
    x = np.asarray(fill_frames)
    _plot_joint(out / "inbetween.png", "ankle_r", INDEX, "right ankle", x,
                [(ref_fill, "#3070e0", 1, "real take"), (read_linear, "#bbbbbb", 1.5, "keys, linear"),
                 (read_filled, "#f08020", 1.5, "filled (new action)")],
                marks=(at_keys, read_filled, "keys"))
    numbers["fill"]["step_s"] = time.perf_counter() - t_fill     # keying, the operator, measuring, the plot

    # --- A Mixamo-style character: a denoised take and a filled hold, next to the Rigify rig ----------------
    from demo_character import mixamo_character
    char_take = (clean - [1.5, 0.0, 0.0]) if use_data else clean      # the clean take above, on the origin
    numbers["character"] = mixamo_character(bpy, addon, client, rig, out, char_take[:60], _plot_joint, _say)

    # --- Auto Pose: drag the hand and foot controls, the body follows --------------------------------------
    t = time.perf_counter()
    ap = numbers["auto_pose"] = auto_pose_step(bpy, addon, client, out, use_data)
    ap["step_s"] = time.perf_counter() - t
    _say(f"Auto Pose on a second Rigify rig, torso and IK hand and foot controls dragged to {ap['poses']}: the "
         f"joints no control holds are {', '.join(f'{x:.0f}' for x in ap['auto_pose_mm'])} mm from the real pose "
         f"(Blender's IK alone with the same controls: {', '.join(f'{x:.0f}' for x in ap['ik_mm'])} mm); "
         f"effectors within {max(ap['effector_mm']):.1f} mm; answers {ap['answer_ms_median']:.0f} ms median; the "
         f"last pose keyed with Enter ({ap['keyed_bones']} bones); autopose_vs_ik.png ({ap['step_s']:.0f} s)")

    # --- save ----------------------------------------------------------------------------------------------
    bpy.context.view_layer.objects.active = rig
    scene.frame_set(1)
    scene.frame_end = len(noisy)
    blend = out / "gfpose_demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    addon.preferences.stop_local()
    numbers["total_s"] = time.perf_counter() - t_start
    (out / "blender_demo.json").write_text(json.dumps(numbers, indent=2))
    _say(f"saved {blend.name}, complete_before.png, complete_after.png, hypotheses.png, variations.png, "
         f"denoise.png, inbetween.png, character.png, character_paths.png, autopose_vs_ik.png and "
         f"blender_demo.json in {out} ({numbers['total_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
