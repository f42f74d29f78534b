"""Retargeting on real armatures in real Blender 5.0 (`bpy`): write body24 poses from real clips onto rigs built
here, read them back, and copy a pose from a CMU BVH armature to a Rigify rig through body24.

Rigs: Blender's human metarig, a Rigify rig generated from it (keys on the FK controls, read off the ORG bones),
armatures imported from a CMU and a Bandai BVH file by Blender's own importer (Euler rotation modes), and a
Mixamo-named armature built from a bone list with random bone rolls. The engine side (gfpose_core.rigs) is
called directly between the add-on's reading and writing (blender_addon/rig_io.py), as the server would.

Set GFPOSE_ARTIFACTS=<folder> to keep the rendered comparison PNG and the measured numbers (JSON); otherwise they
go to pytest's tmp folder.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import blender_rigs
import numpy as np
import pytest
from conftest import BANDAI, CMU_MB31, REPO_ROOT

from gfpose_core.body.skeleton import BONES, INDEX, JOINT_NAMES
from gfpose_core.data import load_take
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.binding import bind, rest_joints
from gfpose_core.rigs.plan import _PARTS, PARTS
from gfpose_core.rigs.rig_map import RigMapError
from gfpose_core.rigs.solve import RigPose, bind_for_rig, solve

pytestmark = pytest.mark.blender

CMU_OTHER = "cmu/bvh/05_02.bvh.gz"     # a second CMU take (different subject) for poses written onto the CMU rig


def _bpy():
    return pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")


@pytest.fixture(scope="module")
def rig_io():
    _bpy()
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from blender_addon import rig_io
    return rig_io


def _compat():
    from blender_addon import anim_compat
    return anim_compat


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("GFPOSE_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("retarget_artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fresh(bpy):
    blender_rigs.fresh(bpy)


def _metarig(bpy):
    return blender_rigs.metarig(bpy)


def _rigify(bpy, blend: Path):
    return blender_rigs.open_rigify(bpy, blend)


def _import_bvh(bpy, path: Path, rig_name: str, tmp_path: Path):
    return blender_rigs.import_bvh(bpy, path, rig_name, tmp_path)


def _mixamo(bpy, rig_io, prefix="mixamorig:", seed=0, drop=(), family="mixamo"):
    """A Mixamo-named armature (or another family's: test_retarget.RECIPES) built bone by bone in edit mode from
    the synthetic recipe, with random rolls."""
    from test_retarget import build_armature
    arm = build_armature(family, seed=seed, prefix=prefix if family == "mixamo" else None)
    rolls = np.random.default_rng(seed).uniform(-np.pi, np.pi, len(arm.bones))   # as build_armature draws them
    data = bpy.data.armatures.new("Armature")
    obj = bpy.data.objects.new("Armature", data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    rest = arm.rest
    for i, name in enumerate(arm.bones):
        if name in drop:
            continue
        b = data.edit_bones.new(name)
        b.head = rest[i, :3, 3]
        b.tail = rest[i, :3, 3] + rest[i, :3, 1] * arm.lengths[i]
        b.roll = rolls[i]                             # the synthetic rig's random roll, as Blender reads rolls
        p = arm.parents[i]
        if p >= 0 and arm.bones[p] in data.edit_bones:
            b.parent = data.edit_bones[arm.bones[p]]
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj, arm


def _takes(data_file, n=36) -> np.ndarray:
    """Body24 poses from two real clips (a CMU walk and a Bandai walk-and-turn), world space."""
    cmu = load_take(data_file(CMU_MB31)).joints[1::8][:n]
    bandai = load_take(data_file(BANDAI)).joints[::4][:n]
    return np.concatenate([cmu, bandai]).astype(np.float64)


def _write_and_read(bpy, rig_io, obj, wanted, rig=None, action="gfpose test"):
    """The add-on's round trip: bind (engine), set switches, describe, solve (engine), key, read back."""
    info = bind_for_rig(rig_io.describe_armature(obj), rig)
    assert not rig_io.apply_properties(obj, info["properties"])
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    binding = bind(arm, rig or info["rig"])
    pose = solve(arm, wanted, binding=binding)
    assert not pose.warnings, pose.warnings
    rig_io.write_keys(obj, pose.to_dict(), frame_start=1, action=action)
    got = rig_io.read_body24(obj, binding.to_dict(), frames=range(1, len(wanted) + 1))
    return arm, binding, pose, got


def _direction_errors(a: np.ndarray, b: np.ndarray, pairs) -> np.ndarray:
    """Degrees between the directions of joint pairs (parent, child) in two pose sets (F, n)."""
    pairs = np.asarray(pairs)
    d1 = a[:, pairs[:, 1]] - a[:, pairs[:, 0]]
    d2 = b[:, pairs[:, 1]] - b[:, pairs[:, 0]]
    cos = np.sum(d1 * d2, -1) / (np.linalg.norm(d1, axis=-1) * np.linalg.norm(d2, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _aimed_pairs(pose: RigPose):
    return [(INDEX[_PARTS[p][0]], INDEX[_PARTS[p][1]]) for p in sorted(set(pose.parts), key=PARTS.index)]


ALL_PAIRS = [(int(p), int(c)) for c, p in BONES]


def _posed_bone_lengths(bpy, rig_io, obj, frames) -> np.ndarray:
    """Head-to-tail distance of every pose bone (F, B), armature space, at some frames."""
    n = len(obj.pose.bones)
    out = []
    for f in frames:
        bpy.context.scene.frame_set(f)
        h, t = np.empty(n * 3, np.float32), np.empty(n * 3, np.float32)
        obj.pose.bones.foreach_get("head", h)
        obj.pose.bones.foreach_get("tail", t)
        out.append(np.linalg.norm(h.reshape(-1, 3) - t.reshape(-1, 3), axis=-1))
    return np.array(out)


def _check_round_trip(bpy, rig_io, obj, wanted, record: dict, name: str, rig=None, bones_to_check=None):
    rest_before = rig_io.describe_armature(obj)
    arm, binding, pose, got = _write_and_read(bpy, rig_io, obj, wanted, rig)
    aimed = _direction_errors(got, wanted, _aimed_pairs(pose))
    every = _direction_errors(got, wanted, ALL_PAIRS)
    pos = np.linalg.norm(got - pose.joints, axis=-1) * 1000
    height = float(np.ptp(rest_joints(binding, world=True), axis=0).max())   # rest poses may lie down
    record[name] = {"rig": binding.rig.name, "frames": len(wanted), "aimed_max_deg": float(aimed.max()),
                    "all_segments_median_deg": float(np.median(every)), "all_segments_max_deg": float(every.max()),
                    "position_vs_prediction_max_mm": float(pos.max()), "rig_height_m": height,
                    "root_scale": pose.root_scale}
    # Mapped joint directions agree within 1 degree; positions (the rig's own bone lengths) within 1 mm.
    assert aimed.max() < 1.0, (name, aimed.max(0))
    assert pos.max() < 1.0 * max(height, 1.0), (name, pos.max(0))
    # The rig's bone lengths are untouched: rest unchanged, no posed bone stretched.
    rest_after = rig_io.describe_armature(obj)
    np.testing.assert_allclose([b["length"] for b in rest_after["bones"]],
                               [b["length"] for b in rest_before["bones"]], rtol=1e-6)
    np.testing.assert_allclose([b["matrix_local"] for b in rest_after["bones"]],
                               [b["matrix_local"] for b in rest_before["bones"]], atol=1e-6)
    names = [b.name for b in obj.pose.bones]
    check = [names.index(b) for b in (bones_to_check or pose.bones)]
    posed = _posed_bone_lengths(bpy, rig_io, obj, [1, len(wanted) // 2, len(wanted)])[:, check]
    rest_len = np.array([obj.data.bones[names[i]].length for i in check])
    np.testing.assert_allclose(posed, np.broadcast_to(rest_len, posed.shape), rtol=1e-4)
    return arm, binding, pose, got


@pytest.fixture(scope="module")
def record(artifacts):
    numbers: dict = {}
    yield numbers
    (artifacts / "retarget_numbers.json").write_text(json.dumps(numbers, indent=2))


# --- round trips on each rig ----------------------------------------------------------------------------------------

def test_metarig_round_trip(rig_io, data_file, record):
    bpy = _bpy()
    _fresh(bpy)
    obj = _metarig(bpy)
    assert bind(Armature.from_dict(rig_io.describe_armature(obj))).rig.name == "metarig"
    _check_round_trip(bpy, rig_io, obj, _takes(data_file), record, "metarig")


def test_rigify_round_trip_drives_deform_bones(rig_io, rigify_blend, data_file, record):
    bpy = _bpy()
    _fresh(bpy)
    obj = _rigify(bpy, rigify_blend)
    assert bind(Armature.from_dict(rig_io.describe_armature(obj))).rig.name == "rigify"
    wanted = _takes(data_file, n=24)
    rest_def = rig_io.read_pose_matrices(obj)[0]
    _, binding, pose, got = _check_round_trip(bpy, rig_io, obj, wanted, record, "rigify")
    # Limbs were switched to FK and the switch is keyed.
    assert obj.pose.bones["upper_arm_parent.L"]["IK_FK"] == 1.0
    # The FK chain really drives the deform bones: DEF heads sit on the ORG heads (which the map reads) and moved.
    pairs = [("DEF-upper_arm.L", "ORG-upper_arm.L"), ("DEF-forearm.L", "ORG-forearm.L"), ("DEF-hand.R", "ORG-hand.R"),
             ("DEF-thigh.R", "ORG-thigh.R"), ("DEF-shin.L", "ORG-shin.L"), ("DEF-foot.L", "ORG-foot.L"),
             ("DEF-toe.R", "ORG-toe.R"), ("DEF-spine.003", "ORG-spine.003"), ("DEF-spine.006", "ORG-spine.006"),
             ("DEF-shoulder.L", "ORG-shoulder.L")]
    names = [b.name for b in obj.data.bones]
    mats = rig_io.read_pose_matrices(obj, frames=[1, 7, 30])
    for d, o in pairs:
        i, j = names.index(d), names.index(o)
        np.testing.assert_allclose(mats[:, i, :3, 3], mats[:, j, :3, 3], atol=1e-4, err_msg=d)
        assert np.linalg.norm(mats[:, i, :3, 3] - rest_def[i, :3, 3], axis=-1).max() > 0.05, d
        # ... and turn with them (the deform bones' own directions follow the FK chain within a few degrees).
        cos = np.sum(mats[:, i, :3, 1] * mats[:, j, :3, 1], -1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 5.0, d


def test_cmu_bvh_armature_round_trip(rig_io, data_file, record, tmp_path):
    bpy = _bpy()
    _fresh(bpy)
    obj = _import_bvh(bpy, data_file(CMU_MB31), "cmu_mb31", tmp_path)
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    binding = bind(arm)
    assert binding.rig.name == "cmu_mb31"
    # Reading the importer's own animation through the map gives what our BVH reader gives.
    read = rig_io.read_body24(obj, binding.to_dict(), frames=range(1, 21))
    np.testing.assert_allclose(read, load_take(data_file(CMU_MB31)).joints[:20], atol=1e-4)
    other = load_take(data_file(CMU_OTHER)).joints[1::8][:30].astype(np.float64)
    _check_round_trip(bpy, rig_io, obj, np.concatenate([other, _takes(data_file, 20)]), record, "cmu_bvh_armature")
    assert obj.pose.bones["LeftArm"].rotation_mode != "QUATERNION"   # Euler keys went into the bones' own modes


def test_bandai_bvh_armature_round_trip(rig_io, data_file, record, tmp_path):
    bpy = _bpy()
    _fresh(bpy)
    obj = _import_bvh(bpy, data_file(BANDAI), "bandai", tmp_path)
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    binding = bind(arm)
    assert binding.rig.name == "bandai"
    read = rig_io.read_body24(obj, binding.to_dict(), frames=range(1, 21))
    np.testing.assert_allclose(read, load_take(data_file(BANDAI)).joints[:20], atol=1e-4)
    _check_round_trip(bpy, rig_io, obj, _takes(data_file), record, "bandai_bvh_armature")


def test_mixamo_armature_with_own_rolls_round_trip_and_key_merging(rig_io, data_file, record):
    bpy = _bpy()
    _fresh(bpy)
    obj, synthetic = _mixamo(bpy, rig_io, prefix="mixamorig1:", seed=3)
    desc = rig_io.describe_armature(obj)
    # Our head/tail/roll construction is Blender's: the same rest matrices.
    blender_rest = {b["name"]: b["matrix_local"] for b in desc["bones"]}
    np.testing.assert_allclose([blender_rest[n] for n in synthetic.bones], synthetic.rest, atol=1e-4)
    binding = bind(Armature.from_dict(desc))
    assert (binding.rig.name, binding.prefix) == ("mixamo", "mixamorig1:")
    wanted = _takes(data_file)
    _check_round_trip(bpy, rig_io, obj, wanted, record, "mixamo")
    # Writing a shorter take into the same action from frame 20 replaces those keys and keeps frames 1..19.
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    pose = solve(arm, wanted[:10][::-1], binding=bind(arm))
    act = rig_io.write_keys(obj, pose.to_dict(), frame_start=20, action="gfpose test")
    bag = _compat().channelbag_of(obj, act)
    fc = bag.fcurves.find('pose.bones["mixamorig1:LeftArm"].rotation_quaternion', index=0)
    frames = np.array([k.co[0] for k in fc.keyframe_points])
    np.testing.assert_array_equal(frames, np.arange(1, len(wanted) + 1))
    got = rig_io.read_body24(obj, bind(arm).to_dict(), frames=[5, 20, 29])
    np.testing.assert_allclose(got[1:], pose.joints[[0, 9]], atol=1e-4)


# --- a pose copied from one rig to another --------------------------------------------------------------------------

def test_cmu_pose_onto_rigify_looks_the_same_and_renders(rig_io, rigify_blend, data_file, record, artifacts,
                                                       tmp_path):
    bpy = _bpy()
    _fresh(bpy)
    rig = _rigify(bpy, rigify_blend)
    cmu = _import_bvh(bpy, data_file(CMU_MB31), "cmu_mb31", tmp_path)
    cmu.location.x = -1.5                                  # side by side; world space handles the offset
    bpy.context.view_layer.update()
    frames = list(range(40, 40 + 8 * 30, 8))             # a stretch of the walk, every 8th of 120 fps
    source = bind(Armature.from_dict(rig_io.describe_armature(cmu)))
    wanted = rig_io.read_body24(cmu, source.to_dict(), frames=frames)
    wanted = wanted + [3.0, 0, 0]                          # put the Rigify copy on the other side
    _, binding, pose, got = _write_and_read(bpy, rig_io, rig, wanted)
    aimed = _direction_errors(got, wanted, _aimed_pairs(pose))
    every = _direction_errors(got, wanted, ALL_PAIRS)
    record["cmu_to_rigify"] = {"frames": len(frames), "aimed_max_deg": float(aimed.max()),
                               "all_segments_median_deg": float(np.median(every)),
                               "per_segment_max_deg": {f"{JOINT_NAMES[p]}-{JOINT_NAMES[c]}": float(e)
                                                       for (p, c), e in zip(ALL_PAIRS, every.max(0))}}
    assert aimed.max() < 1.0
    # Segments no bone aims (pelvis to hips, chest to collars) differ only as the two bodies' shapes do.
    assert np.median(every) < 3.0 and np.percentile(every, 90) < 20.0, record["cmu_to_rigify"]
    png = _render_side_by_side(bpy, rig_io, [(cmu, frames, _cmu_bones(cmu), (0.2, 0.45, 0.9, 1)),
                                             (rig, list(range(1, len(frames) + 1)), _rigify_bones(rig),
                                              (0.95, 0.5, 0.15, 1))],
                               picks=[0, 10, 20], out=artifacts / "cmu_to_rigify.png")
    assert png.exists() and png.stat().st_size > 10_000
    record["cmu_to_rigify"]["png"] = str(png)
    print(f"\ncomparison render: {png}")


_cmu_bones = blender_rigs.cmu_bones
_rigify_bones = blender_rigs.rigify_bones


def _render_side_by_side(bpy, rig_io, rigs, picks, out: Path) -> Path:
    return blender_rigs.render_side_by_side(bpy, rig_io, rigs, picks, out)


# --- clear errors ---------------------------------------------------------------------------------------------------

def test_mapping_errors_are_clear_in_blender(rig_io):
    bpy = _bpy()
    _fresh(bpy)
    # An armature no file fits: the message names the unmapped joints and how to write a mapping.
    data = bpy.data.armatures.new("Blob")
    blob = bpy.data.objects.new("Blob", data)
    bpy.context.scene.collection.objects.link(blob)
    bpy.context.view_layer.objects.active = blob
    bpy.ops.object.mode_set(mode="EDIT")
    for i, name in enumerate(("Bone", "Bone.001", "Hips", "Spine")):
        b = data.edit_bones.new(name)
        b.head, b.tail = (0, 0, i * 0.2), (0, 0, i * 0.2 + 0.2)
    # A zero-length bone (Blender keeps it at a tiny length with a proper orientation) is described and bound
    # like any other, no crash; the error is about the names.
    z = data.edit_bones.new("Zero")
    z.head = z.tail = (0, 0, 0)
    z.parent = data.edit_bones["Hips"]
    bpy.ops.object.mode_set(mode="OBJECT")
    described = Armature.from_dict(rig_io.describe_armature(blob))
    if bpy.app.version >= (5, 0, 0):     # 4.2 and 4.5 delete a zero-length bone on leaving edit mode
        assert described.lengths[described.index["Zero"]] < 1e-4
    with pytest.raises(RigMapError) as info:
        bind(described)
    msg = str(info.value)
    assert "does not look like a humanoid" in msg and "Rig Mapping" in msg and len(msg) < 300
    # A file naming bones the armature lacks says which.
    obj, _ = _mixamo(bpy, rig_io, drop=("mixamorig:LeftForeArm", "mixamorig:RightToeBase"))
    with pytest.raises(RigMapError) as info:
        bind(Armature.from_dict(rig_io.describe_armature(obj)), "mixamo")
    msg = str(info.value)
    assert "mixamorig:LeftForeArm" in msg and "mixamorig:RightToeBase" in msg and "elbow_l" in msg
    # Non-uniform object scale is refused with a message, on reading the rig and on keying it.
    obj.scale = (1.0, 2.0, 1.0)
    bpy.context.view_layer.update()
    with pytest.raises(ValueError, match="non-uniform scale"):
        rig_io.describe_armature(obj)
    with pytest.raises(ValueError, match="non-uniform scale"):
        rig_io.write_keys(obj, {"frames": 1, "channels": []})
    # A uniform scale is fine (the object's scale is part of world space).
    obj.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    Armature.from_dict(rig_io.describe_armature(obj))


def test_key_writing_benchmark_runs(rig_io):
    """The benchmark itself (not a timing assertion): see blender_addon.rig_io.benchmark_write_keys."""
    bpy = _bpy()
    _fresh(bpy)
    out = rig_io.benchmark_write_keys(n_bones=6, n_frames=30, repeats=1)
    assert out["keys"] == 6 * 4 * 30 + 90 and out["fresh_s"] > 0
    assert len(bpy.data.actions) == 0 and "gfpose_bench" not in bpy.data.objects
