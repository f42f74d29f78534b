"""Rig mapping files: every shipped map loads, bad maps name every problem at once, detection on real files."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import BANDAI, CMU_ASF31, CMU_DAZ43, CMU_MB31

from gfpose_core.body.rotations import euler_to_matrix, y_up_to_z_up
from gfpose_core.body.skeleton import INDEX, JOINT_NAMES
from gfpose_core.formats.bvh import read_bvh
from gfpose_core.rigs.rig_map import (
    RIGS_DIR,
    RigMapError,
    all_rig_maps,
    detect_rig_map,
    load_rig_map,
    parse_rig_map,
)

RIG_FILES = sorted(RIGS_DIR.glob("*.toml"))


def test_rigs_folder_has_the_source_maps():
    assert {p.stem for p in RIG_FILES} >= {"cmu_mb31", "cmu_daz43", "cmu_asf31", "bandai"}


@pytest.mark.parametrize("path", RIG_FILES, ids=[p.stem for p in RIG_FILES])
def test_every_rig_file_loads(path):
    rig = load_rig_map(path)
    assert set(rig.joints) == set(JOINT_NAMES)
    assert rig.name == path.stem and rig.kind in ("bvh", "armature") and rig.up_axis in ("Y", "Z")
    assert rig.unit_scale > 0 and rig.source_names()
    # By name, with or without .toml, gives the same map.
    assert load_rig_map(path.stem).joints == rig.joints
    assert load_rig_map(path.name).joints == rig.joints


def test_unknown_rig_name_lists_known_ones():
    with pytest.raises(RigMapError, match="no rig map 'nonesuch'.*cmu_mb31"):
        load_rig_map("nonesuch")


def good_data() -> dict:
    return copy.deepcopy(load_rig_map("cmu_mb31").raw)


def problems_of(data: dict) -> str:
    with pytest.raises(RigMapError) as info:
        parse_rig_map(data, "my_rig.toml")
    msg = str(info.value)
    assert msg.startswith("my_rig.toml: ")
    return msg


def test_good_data_parses():
    assert parse_rig_map(good_data(), "x.toml").joints == load_rig_map("cmu_mb31").joints


def test_every_problem_named_in_one_message():
    data = good_data()
    j = data["joints"]
    del j["knee_l"]                                              # missing body24 joint
    j["tail"] = "Tail1"                                           # not a body24 joint
    j["hand_end_l"] = {"joint": "LeftHand", "offset": [1, 2]}     # two numbers
    j["hand_end_r"] = {"joint": "RightHand", "offset": ["a", 0, 0]}
    j["head_end"] = {"joint": "Head", "offset": [math.inf, 0, 0]}
    j["spine"] = {"lerp": ["@pelvis", "@chest"], "t": 0.5}        # chest comes after spine
    msg = problems_of(data)
    for needle in ("missing body24 joint 'knee_l'", "'tail' is not a body24 joint", "hand_end_l: bad offset [1, 2]",
                   "hand_end_r: bad offset ['a', 0, 0]", "head_end: bad offset [inf, 0, 0]",
                   "spine: '@chest' must be defined before spine"):
        assert needle in msg, f"{needle!r} not in {msg!r}"


@pytest.mark.parametrize("entry, needle", [
    ({"joint": "LeftHand", "offset": [1, 2]}, "bad offset"),
    ({"joint": "LeftHand", "offset": ["a", 0, 0]}, "bad offset"),
    ({"joint": "LeftHand", "offset": [float("inf"), 0, 0]}, "bad offset"),
    ({"joint": "LeftHand", "offset": [float("nan"), 0, 0]}, "bad offset"),
    ({"joint": "LeftHand", "offset": [True, 0, 0]}, "bad offset"),
    ({"joint": "LeftHand", "offset": "1 2 3"}, "bad offset"),
    ({"joint": "@wrist_l", "offset": [1, 0, 0]}, "needs a source joint"),
    ({"lerp": ["LeftHand"], "t": 0.5}, "lerp needs two names"),
    ({"lerp": ["LeftHand", "LeftArm"], "t": float("nan")}, "not a finite number"),
    ({"lerp": ["@hand_end_r", "LeftArm"]}, "'@hand_end_r' must be defined before hand_end_l"),
    ({"lerp": ["@thumb", "LeftArm"]}, "'@thumb' is not a body24 joint"),
    ({"bone": "LeftHand"}, "unknown key(s) bone"),
    ({"t": 0.5}, "needs 'joint' or 'lerp'"),
    (3, "expected a name or a table"),
    ("", "is not a name"),
])
def test_single_bad_entry_is_named(entry, needle):
    data = good_data()
    data["joints"]["hand_end_l"] = entry
    msg = problems_of(data)
    assert "hand_end_l" in msg and needle in msg, msg


def test_bad_top_level_values_named():
    data = good_data()
    data.update(unit_scale=-1.0, up_axis="X", kind="mesh", colour="red")
    msg = problems_of(data)
    for needle in ("unit_scale = -1.0", "up_axis = 'X'", "kind = 'mesh'", "unknown top-level key(s) colour"):
        assert needle in msg, msg
    assert "no [joints] table" in problems_of({"name": "x"})


def test_toml_file_with_problems(tmp_path):
    """Through a real TOML file: inf parses as a float and is refused; broken TOML is a RigMapError too."""
    text = (RIGS_DIR / "bandai.toml").read_text()
    text = text.replace('offset = [18.0, 0.0, 0.0]', 'offset = [inf, 0.0, 0.0]').replace('knee_l = "LowerLeg_L"\n', '')
    p = tmp_path / "broken.toml"
    p.write_text(text)
    with pytest.raises(RigMapError) as info:
        load_rig_map(p)
    assert str(p) in str(info.value) and "head_end: bad offset [inf" in str(info.value)
    assert "missing body24 joint 'knee_l'" in str(info.value)
    p.write_text("name = [")
    with pytest.raises(RigMapError, match="not valid TOML"):
        load_rig_map(p)


def test_check_names_lists_missing_skeleton_joints():
    rig = load_rig_map("cmu_mb31")
    names = sorted(rig.source_names())
    rig.check_names(names)   # complete: no error
    with pytest.raises(RigMapError) as info:
        rig.check_names([n for n in names if n not in ("LeftToeBase", "Head:end")])
    msg = str(info.value)
    assert "LeftToeBase" in msg and "Head:end" in msg and "RightToeBase" not in msg
    assert msg.startswith(rig.path)


def test_body24_positions_lerp_offset_and_axes():
    """Joint, lerp, '@' and offset entries on a tiny synthetic skeleton, with units and Y-up conversion."""
    names = [f"S{i}" for i in range(24)]
    joints = {n: f"S{i}" for i, n in enumerate(JOINT_NAMES)}
    joints["spine"] = {"lerp": ["@pelvis", "S3"], "t": 0.25}
    joints["head_end"] = {"joint": "S4", "offset": [10.0, 0.0, 0.0]}
    rig = parse_rig_map({"name": "tiny", "up_axis": "Y", "unit_scale": 0.01, "joints": joints})
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(5, 24, 3)) * 100
    rot = euler_to_matrix(rng.uniform(-180, 180, (5, 24, 3)), "ZYX")
    out = rig.body24_positions(names, pos, rot)
    expect = pos.copy()
    expect[:, INDEX["spine"]] = pos[:, 0] + 0.25 * (pos[:, 3] - pos[:, 0])
    expect[:, INDEX["head_end"]] = pos[:, 4] + rot[:, 4] @ np.array([10.0, 0, 0])
    np.testing.assert_allclose(out, y_up_to_z_up(expect * 0.01), atol=1e-12)


# --- detection on real files --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rel, expected", [(CMU_MB31, "cmu_mb31"), (CMU_DAZ43, "cmu_daz43"),
                                           (CMU_ASF31, "cmu_asf31"), (BANDAI, "bandai")],
                         ids=["cmu_mb31", "cmu_daz43", "cmu_asf31", "bandai"])
def test_detect_rig_map_on_real_files(rel, expected, data_file):
    names = read_bvh(data_file(rel)).skeleton.names
    assert detect_rig_map(names).name == expected
    assert detect_rig_map(names, kind="bvh").name == expected


def test_detect_rig_map_unrelated_skeleton_names_unmapped_joints():
    mixamo = ["mixamorig:Hips", "mixamorig:Spine", "mixamorig:Spine1", "mixamorig:Neck", "mixamorig:Head",
              "mixamorig:LeftUpLeg", "mixamorig:LeftLeg", "mixamorig:LeftFoot", "mixamorig:LeftToeBase"]
    with pytest.raises(RigMapError) as info:
        detect_rig_map(mixamo, kind="bvh")
    msg = str(info.value)
    assert "no rig map fits this skeleton" in msg and "body24 joints unmapped" in msg
    assert "rigs/" in msg   # says how to write a mapping


def test_detect_rig_map_nearly_fitting_skeleton_names_exactly_what_is_missing():
    names = sorted(load_rig_map("cmu_mb31").source_names() - {"LeftToeBase", "RightToeBase"})
    names += ["LHipJoint", "RHipJoint", "LowerBack", "Spine", "Neck", "Head"]
    with pytest.raises(RigMapError) as info:
        detect_rig_map(names)
    msg = str(info.value)
    assert "closest is 'cmu_mb31'" in msg and "lacks LeftToeBase, RightToeBase" in msg
    assert "body24 joints unmapped: toe_l, toe_r" in msg


def test_template_named_in_detection_error_exists():
    with pytest.raises(RigMapError) as info:
        detect_rig_map(["Bone", "Bone.001"])
    assert (RIGS_DIR / "TEMPLATE.toml.txt").exists() and "TEMPLATE.toml.txt" in str(info.value)


def test_all_rig_maps_matches_files():
    assert [r.name for r in all_rig_maps()] == [p.stem for p in RIG_FILES]
