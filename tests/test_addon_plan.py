"""The add-on's decisions, without Blender: which joints the animator's bones fix, which bones get keys, key gaps,
and the engine's JSON. The joint set comes from the engine's /info, as the add-on reads it."""
from __future__ import annotations

import numpy as np
import pytest

from blender_addon import plan
from gfpose_core.body.skeleton import JOINT_NAMES, PARENTS
from gfpose_core.rigs.rig_map import load_rig_map

INFO = {"joints": list(JOINT_NAMES), "parents": [int(p) for p in PARENTS],
        "motion_model": {"frames": 64, "fps": 30.0, "max_gap_frames": 62}}
SK = plan.Skeleton.from_info(INFO)


def _write(rig: str) -> dict:
    w = load_rig_map(rig).write
    return {"root": w.root, "rest": list(w.rest), "bones": dict(w.bones)}


def test_the_joint_set_comes_from_the_engine_and_a_bad_info_is_named():
    assert SK.names == tuple(JOINT_NAMES) and SK.parents[SK.index["elbow_l"]] == SK.index["shoulder_l"]
    with pytest.raises(ValueError, match="joints and their parents"):
        plan.Skeleton.from_info({"joints": list(JOINT_NAMES)})


def test_a_posed_arm_and_root_fix_that_arm_and_nothing_past_unposed_bones():
    write = _write("mixamo")
    arm = {b for b, j in write["bones"].items()
           if j in ("pelvis", "spine", "chest", "collar_l", "shoulder_l", "elbow_l", "wrist_l")}
    kn = plan.known_joints(SK, write, {write["root"]} | arm)
    known = {n for n, k in zip(SK.names, kn) if k}
    assert "pelvis" in known and "hip_l" in known and "hip_r" in known   # the root carries the hips
    assert {"elbow_l", "wrist_l", "hand_end_l", "neck", "collar_r"} <= known
    assert "knee_l" not in known and "shoulder_r" not in known and "head" not in known
    keyed = plan.bones_to_key(SK, write, {write["root"]} | arm, kn)
    assert not set(keyed) & arm and write["root"] not in keyed
    assert any(write["bones"][b] == "hip_l" for b in keyed)             # the thigh turns the unknown knee


def test_without_the_root_nothing_is_known_and_the_root_gets_a_key():
    write = _write("mixamo")
    arm = {b for b, j in write["bones"].items() if j == "shoulder_l"}
    kn = plan.known_joints(SK, write, arm)
    assert not any(kn)
    assert write["root"] in plan.bones_to_key(SK, write, arm, kn)


def test_an_unposed_root_stays_known_unless_it_may_move():
    write = _write("rigify")
    arm_leg = {b for b, j in write["bones"].items() if j in ("shoulder_l", "elbow_l", "wrist_l", "hip_l", "knee_l",
                                                              "ankle_l") and b != write["root"]}
    posed = plan.with_root(write, arm_leg, move_root=False)
    kn = plan.known_joints(SK, write, posed)
    known = {n for n, k in zip(SK.names, kn) if k}
    assert {"pelvis", "spine", "hip_l", "knee_l", "ankle_l", "toe_l"} <= known and "chest" not in known
    keyed = plan.bones_to_key(SK, write, posed, kn)
    assert write["root"] not in keyed and keyed and not set(keyed) & arm_leg
    assert plan.with_root(write, arm_leg, move_root=True) == arm_leg
    assert plan.with_root(write, {"f_index.01.L"}, move_root=False) == {"f_index.01.L"}    # nothing mapped posed


def test_pinned_bones_hold_their_joint_and_its_children():
    write = _write("mixamo")
    forearm = next(b for b, j in write["bones"].items() if j == "elbow_l")
    assert plan.joints_from_posed_bones(SK, write, {forearm}) == ["elbow_l", "wrist_l"]
    assert plan.joints_from_posed_bones(SK, write, {write["root"]})[0] == "pelvis"


def test_key_gaps_are_judged_at_the_motion_models_rate_in_scene_frames():
    limits = plan.MotionLimits.from_info(INFO)
    plan.check_key_gaps([1, 63], 30.0, limits)                     # 62 frames: fits
    with pytest.raises(ValueError, match="keys on frames 1 and 65 .* select a key between them"):
        plan.check_key_gaps([1, 65], 30.0, limits)
    plan.check_key_gaps([1, 120], 60.0, limits)                     # 119 frames at 60 fps = 59.5 at 30
    with pytest.raises(ValueError, match="keys on frames 1 and 20 "):
        plan.check_key_gaps([1, 20], 8.0, limits)
    with pytest.raises(ValueError, match="no motion model"):
        plan.check_key_gaps([1, 5], 30.0, plan.MotionLimits.from_info({"motion_model": None}))


def test_fill_needs_two_key_frames_with_a_gap():
    with pytest.raises(ValueError, match="none are selected"):
        plan.check_fill_frames([], False)
    with pytest.raises(ValueError, match="only frame 4 has one"):
        plan.check_fill_frames([4], True)
    with pytest.raises(ValueError, match="every frame 3..5"):
        plan.check_fill_frames([3, 4, 5], True)
    plan.check_fill_frames([3, 5], True)


def test_unknown_joints_go_as_null_and_bone_paths_are_parsed():
    joints = np.arange(2 * 24 * 3, dtype=float).reshape(2, 24, 3)
    known = np.zeros((2, 24), bool)
    known[0, 0] = True
    out = plan.joints_payload(joints, known)
    assert out[0][0] == [0.0, 1.0, 2.0] and out[0][1] == [None] * 3 and out[1][0] == [None] * 3
    assert plan.bone_of_path('pose.bones["mixamorig:Left \\"Arm\\""].rotation_quaternion') == \
        ('mixamorig:Left "Arm"', "rotation_quaternion")
    assert plan.bone_of_path('["prop"]') is None


def test_jitter_and_signature():
    t = np.zeros((10, 24, 3))
    assert plan.jitter_mm(t) == 0.0
    t[5, 3, 0] = 0.001
    assert plan.jitter_mm(t) > 0
    desc = {"name": "a", "bones": [{"name": "b", "parent": None, "matrix_local": np.eye(4).tolist()}]}
    other = {"name": "a", "bones": [{"name": "b", "parent": None, "matrix_local": (2 * np.eye(4)).tolist()}]}
    assert plan.armature_signature(desc) == plan.armature_signature(dict(desc))
    assert plan.armature_signature(desc) != plan.armature_signature(other)


def test_the_engines_keys_are_keyed_as_they_come_for_the_bones_asked_only():
    solved = {"frames": 2, "root": "hips", "rotation_modes": {"hips": "QUATERNION", "arm": "XYZ", "leg": "XYZ"},
              "channels": [{"bone": "hips", "path": "rotation_quaternion", "values": [[1, 0, 0, 0], [0, 1, 0, 0]]},
                           {"bone": "hips", "path": "location", "values": [[0, 0, 1], [0, 0, 2]]},
                           {"bone": "arm", "path": "rotation_euler", "values": [[0.1, 0.2, 0.3], [0, 0, 3.0]]},
                           {"bone": "arm", "path": "location", "values": [[0, 0, 0], [0, 0, 0]]},
                           {"bone": "leg", "path": "rotation_euler", "values": [[1, 1, 1], [2, 2, 2]]}],
              "properties": [{"bone": "hips", "name": "IK_FK", "value": 1.0}]}
    keys = plan.keys_of_pose(solved, 1, ["hips", "arm"], "hips")
    got = {(c["bone"], c["path"]): c["values"] for c in keys["channels"]}
    assert got == {("hips", "rotation_quaternion"): [[0, 1, 0, 0]], ("hips", "location"): [[0, 0, 2]],
                   ("arm", "rotation_euler"): [[0, 0, 3.0]]}           # not leg; not a non-root's location
    assert keys["rotation_modes"] == {"hips": "QUATERNION", "arm": "XYZ"} and keys["frames"] == 1
    assert keys["properties"] == solved["properties"]
    # Keyed nearest what the bones hold now: the other quaternion sign, Euler angles a whole turn round.
    now = {("hips", "rotation_quaternion"): [0, -1, 0, 0], ("arm", "rotation_euler"): [0, 0, -3.0]}
    got = {(c["bone"], c["path"]): c["values"][0] for c in plan.keys_of_pose(solved, 1, ["hips", "arm"], "hips",
                                                                             now)["channels"]}
    assert got[("hips", "rotation_quaternion")] == [0, -1, 0, 0]
    np.testing.assert_allclose(got[("arm", "rotation_euler")], [0, 0, 3.0 - 2 * np.pi])
    assert got[("hips", "location")] == [0, 0, 2]
