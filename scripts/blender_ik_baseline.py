"""Blender's own IK as a baseline for posing from effectors (issue 20): real poses on a Rigify rig, then the same
hands, feet and pelvis given to the rig's IK controls.

Run under a Python with Blender's `bpy` module (the project's venv):

    .venv/bin/python scripts/blender_ik_baseline.py --poses IN.npz --out OUT.npz

IN.npz holds `joints` (N, 24, 3): body24 poses, world space, Z up, metres. The script generates a Rigify rig from
Blender's human metarig and, for every pose:

- `gt`: the pose retargeted onto the rig's FK controls as the add-on does it (gfpose_core.rigs.solve with the rigify
  map, written with blender_addon.rig_io.write_keys) and read back off the ORG bones: the real pose on this body's
  proportions, the truth the benchmark scores against;
- `ik`: the limbs switched to IK (IK_FK = 0), hand_ik / foot_ik placed where they put the hands and feet of `gt`
  (position and orientation), `torso` where `gt` has it (pelvis position and turn), every other control at rest:
  spine, neck and head (following the chest, as the rigify map sets them), collars, poles at Rigify's defaults (no
  pole targets). IK stretch is off so that every bone keeps its length, as a body does: a hand or foot out of the
  limb's reach is reached for, not stretched to, and `reach_error_m` records the miss.

OUT.npz: `gt`, `ik` (N, 24, 3), `reach_error_m` (N, 4), how far IK's wrist_l, wrist_r, ankle_l, ankle_r ended
from their targets, and `rest` (24, 3), the rig at rest. The benchmark (gfpose_core/bench/effectors.py) runs this in a subprocess: the engine never
imports bpy.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# IK control -> the ORG bone it moves (Rigify builds each control on its ORG bone's rest, offset for the foot).
IK_CONTROLS = {"hand_ik.L": "ORG-hand.L", "hand_ik.R": "ORG-hand.R", "foot_ik.L": "ORG-foot.L",
               "foot_ik.R": "ORG-foot.R"}
LIMB_SWITCHES = ("upper_arm_parent.L", "upper_arm_parent.R", "thigh_parent.L", "thigh_parent.R")
REACHED = ("wrist_l", "wrist_r", "ankle_l", "ankle_r")


def _say(msg: str):
    print(f"[blender_ik {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rigify_rig(bpy):
    """A Rigify rig generated from Blender's human metarig in an empty scene (object "rig")."""
    import blender_rigs
    blender_rigs.fresh(bpy)
    meta = blender_rigs.metarig(bpy)
    if bpy.ops.pose.rigify_generate() != {"FINISHED"}:
        raise RuntimeError("Rigify could not generate a rig from the human metarig")
    bpy.data.objects.remove(meta)
    rig = bpy.data.objects["rig"]
    bpy.context.view_layer.objects.active = rig
    return rig


def _armature_matrices(rig, names) -> np.ndarray:
    """Evaluated pose matrices (armature space) of the named bones, (len(names), 4, 4)."""
    return np.array([np.array(rig.pose.bones[n].matrix, dtype=np.float64) for n in names])


def put_on_rig(bpy, rig_io, rig, joints: np.ndarray):
    """Key the poses onto the rig's FK controls (frames 1..N) and read back body24 and the matrices the IK pass
    needs: (gt (N, 24, 3), {bone: (N, 4, 4)} for the ORG hands and feet and torso), plus the binding."""
    from gfpose_core.rigs.solve import bind_for_rig, pose_for_rig
    info = bind_for_rig(rig_io.describe_armature(rig), "rigify")
    skipped = rig_io.apply_properties(rig, info["properties"])
    if skipped:
        raise RuntimeError(f"the Rigify rig lacks the properties {skipped}")
    binding = {k: info[k] for k in ("rig", "prefix", "bones", "points", "weights")}
    pose = pose_for_rig(rig_io.describe_armature(rig), joints, rig="rigify")
    rig_io.write_keys(rig, pose, frame_start=1, action="gfpose gt")
    names = list(IK_CONTROLS.values()) + ["torso"]
    gt = np.empty((len(joints), 24, 3))
    mats = np.empty((len(joints), len(names), 4, 4))
    scene = bpy.context.scene
    for k in range(len(joints)):
        scene.frame_set(k + 1)
        gt[k] = rig_io.read_body24(rig, binding)[0]
        mats[k] = _armature_matrices(rig, names)
    return gt, {n: mats[:, i] for i, n in enumerate(names)}, binding


def to_rest(rig):
    """Every pose bone at rest, no action: the IK pass starts from the rig as Rigify made it (its drivers, which
    live in the same animation data, kept: they carry the IK/FK switches)."""
    rig.animation_data.action = None
    ident = np.eye(4)
    from mathutils import Matrix
    for pb in rig.pose.bones:
        pb.matrix_basis = Matrix(ident.tolist())


def switch_to_ik(bpy, rig):
    for bone in LIMB_SWITCHES:
        pb = rig.pose.bones[bone]
        pb["IK_FK"] = 0.0          # 0 = IK
        # bones keep their lengths, as the engine's do (Rigify's default, 1, stretches a limb to a target out of
        # reach; on 40 CMU validation poses it scored 69.5 mm against 69.8 mm here: no advantage either way)
        pb["IK_Stretch"] = 0.0
    torso = rig.pose.bones["torso"]
    torso["neck_follow"] = 1.0     # neck and head ride on the chest, as the rigify map sets them for gt
    torso["head_follow"] = 1.0
    rig.update_tag()
    bpy.context.view_layer.update()


def ik_poses(bpy, rig_io, rig, binding, targets: dict, gt: np.ndarray):
    """Blender IK's answer for every pose: (ik (N, 24, 3), reach error (N, 4) m).

    The hands and feet are turned as in gt, twist included, which body24's effectors do not carry; with the poles
    at Rigify's defaults the twist does not move the elbows or knees (40 CMU validation poses: the same answer,
    to the digit, with the controls only pointed as body24 points them)."""
    from mathutils import Matrix

    from gfpose_core.body.skeleton import INDEX
    rest = {b.name: np.array(b.matrix_local, dtype=np.float64) for b in rig.data.bones
            if b.name in IK_CONTROLS or b.name in IK_CONTROLS.values()}
    layer = bpy.context.view_layer
    n = len(gt)
    ik = np.empty((n, 24, 3))
    for k in range(n):
        rig.pose.bones["torso"].matrix = Matrix(targets["torso"][k].tolist())
        layer.update()
        for ctrl, org in IK_CONTROLS.items():
            # where the control goes so that its ORG bone takes the pose it has in gt
            m = targets[org][k] @ np.linalg.inv(rest[org]) @ rest[ctrl]
            rig.pose.bones[ctrl].matrix = Matrix(m.tolist())
        layer.update()
        ik[k] = rig_io.read_body24(rig, binding)[0]
    idx = [INDEX[j] for j in REACHED]
    reach = np.linalg.norm(ik[:, idx] - gt[:, idx], axis=-1)
    return ik, reach


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--poses", required=True, help="npz with joints (N, 24, 3), body24 world metres, Z up")
    ap.add_argument("--out", required=True, help="npz to write gt, ik and reach_error_m to")
    args = ap.parse_args(argv)
    joints = np.asarray(np.load(args.poses)["joints"], dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (24, 3) or len(joints) == 0:
        raise SystemExit(f"--poses: joints must be (N, 24, 3) with N > 0, got {joints.shape}")
    if not np.isfinite(joints).all():
        raise SystemExit("--poses: joints contain NaN or inf")
    t0 = time.perf_counter()
    import bpy

    from blender_addon import rig_io
    rig = rigify_rig(bpy)
    _say(f"Rigify rig generated ({time.perf_counter() - t0:.1f} s)")
    gt, targets, binding = put_on_rig(bpy, rig_io, rig, joints)
    _say(f"{len(joints)} poses on the rig's FK controls ({time.perf_counter() - t0:.1f} s)")
    to_rest(rig)
    switch_to_ik(bpy, rig)
    rest = rig_io.read_body24(rig, binding)[0]
    ik, reach = ik_poses(bpy, rig_io, rig, binding, targets, gt)
    _say(f"IK solved ({time.perf_counter() - t0:.1f} s); reach error median {np.median(reach) * 1000:.1f} mm, "
         f"max {reach.max() * 1000:.1f} mm")
    if not (np.isfinite(gt).all() and np.isfinite(ik).all()):
        raise SystemExit("the rig gave non-finite joints")
    np.savez(args.out, gt=gt, ik=ik, reach_error_m=reach, rest=rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
