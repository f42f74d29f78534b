"""ASF/AMC reader: forward kinematics against the CMU fixture's BVH twin, hand-computed poses, rigid bones, clear
errors on malformed files, and load_take on AMC clips."""
from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from gfpose_core.body.skeleton import BONES, INDEX, JOINT_NAMES, bone_lengths
from gfpose_core.data import load_take
from gfpose_core.formats.asf_amc import read_amc, read_asf
from gfpose_core.formats.bvh import read_bvh
from gfpose_core.rigs.rig_map import detect_rig_map

FIXTURE_ASF, FIXTURE_AMC, FIXTURE_BVH = "cmu/fixtures/01.asf", "cmu/fixtures/01_01.amc.gz", "cmu/bvh/01_01.bvh.gz"
AMC_CLIP = "cmu/amc/35_01.amc.gz"

# Line numbers matter to the error tests: 17 a's length, 18 its axis, 28 b's dof, 30 b's last limit, 39 end of c,
# 43 "a b".
ASF = """:version 1.10
:name test
:units
  mass 1.0
  length 0.45
  angle deg
:root
  order TX TY TZ RX RY RZ
  axis XYZ
  position 0 0 0
  orientation 0 0 0
:bonedata
  begin
    id 1
    name a
    direction 1 0 0
    length 2
    axis 0 0 0 XYZ
    dof rz
    limits (-180 180)
  end
  begin
    id 2
    name b
    direction 0 1 0
    length 1
    axis 0 0 0 XYZ
    dof rx ry
    limits (-180 180)
           (-180 180)
  end
  begin
    id 3
    name c
    direction 1 0 0
    length 1
    axis 0 0 90 XYZ
    dof rx
  end
:hierarchy
  begin
    root a c
    a b
  end
"""
# 3 frame 1, 6 b's values, 7 c, 10 a in frame 2, 12 last line.
AMC = """:FULLY-SPECIFIED
:DEGREES
1
root 1 2 3 0 0 0
a 90
b 90 90
c 90
2
root 1 2 3 0 0 0
a 0
b 0 0
c 0
"""


def _write(tmp_path, asf=ASF, amc=AMC, amc_name="t_01.amc"):
    (tmp_path / "t.asf").write_text(asf)
    p = tmp_path / amc_name
    if amc_name.endswith(".gz"):
        p.write_bytes(gzip.compress(amc.encode()))
    else:
        p.write_text(amc)
    return tmp_path / "t.asf", p


def test_hand_computed_pose(tmp_path):
    """Dofs compose in the written order (rx ry -> Ry Rx) and the bone axis conjugates them (C M C^-1)."""
    asf, amc = _write(tmp_path, amc_name="t_01.amc.gz")
    clip = read_amc(amc, read_asf(asf), fps=60)
    assert clip.skeleton.names == ["hip", "a", "b", "b:end", "c", "c:end"]
    assert clip.fps == 60 and clip.name == "t_01" and clip.motion.shape == (2, 10)
    pos, rot = clip.forward_kinematics()
    expect = {"hip": [(1, 2, 3), (1, 2, 3)], "a": [(1, 2, 3), (1, 2, 3)], "b": [(1, 4, 3), (3, 2, 3)],
              "b:end": [(1, 5, 3), (3, 3, 3)], "c": [(1, 2, 3), (1, 2, 3)], "c:end": [(1, 2, 2), (2, 2, 3)]}
    for name, pts in expect.items():
        np.testing.assert_allclose(pos[:, clip.skeleton.index(name)], pts, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)


@pytest.fixture(scope="module")
def fixture_fk(DATA):
    for rel in (FIXTURE_ASF, FIXTURE_AMC, FIXTURE_BVH):
        if not (DATA / rel).exists():
            pytest.skip(f"CMU fixture {DATA / rel} not present")
    asf = read_asf(DATA / FIXTURE_ASF)
    bvh = read_bvh(DATA / FIXTURE_BVH)
    bpos = bvh.forward_kinematics()[0][1:]          # BVH frame i+1 is AMC frame i (the BVH adds a T-pose)
    out = {"bvh_names": bvh.skeleton.names, "bvh": bpos, "asf": asf}
    for compat in (False, True):
        clip = read_amc(DATA / FIXTURE_AMC, asf, bvh_compatible=compat)
        out[compat] = (clip.skeleton.names, clip.forward_kinematics()[0])
    return out


# ASF bone (at its start) -> the MotionBuilder joint of bvh/01_01
LOWER = {"hip": "Hips", "lhipjoint": "LHipJoint", "lfemur": "LeftUpLeg", "ltibia": "LeftLeg", "lfoot": "LeftFoot",
         "ltoes": "LeftToeBase", "ltoes:end": "LeftToeBase:end", "rfemur": "RightUpLeg", "rtibia": "RightLeg",
         "rfoot": "RightFoot", "rtoes": "RightToeBase", "lowerback": "LowerBack", "upperback": "Spine",
         "thorax": "Spine1"}
ABOVE = {"lowerneck": "Neck", "upperneck": "Neck1", "head": "Head", "head:end": "Head:end",
         "lclavicle": "LeftShoulder", "lhumerus": "LeftArm", "lradius": "LeftForeArm", "lwrist": "LeftHand",
         "rhumerus": "RightArm", "rwrist": "RightHand"}


def test_fixture_matches_bvh(fixture_fk):
    """Up to the thorax's start the ASF/AMC and the BVH conversion agree to ~1e-4 units; above it every point sits
    the thorax bone's length (which the conversion drops) away, for the whole clip."""
    names, pos = fixture_fk[False]
    bnames, bpos = fixture_fk["bvh_names"], fixture_fk["bvh"]
    assert pos.shape == bpos.shape
    for a, b in LOWER.items():
        err = np.linalg.norm(pos[:, names.index(a)] - bpos[:, bnames.index(b)], axis=-1)
        assert err.max() < 3e-4, (a, b, err.max())
    thorax = fixture_fk["asf"].bones["thorax"].length
    assert thorax == pytest.approx(2.065, abs=1e-3)
    for a, b in ABOVE.items():
        d = np.linalg.norm(pos[:, names.index(a)] - bpos[:, bnames.index(b)], axis=-1)
        assert np.abs(d - thorax).max() < 3e-4, (a, b, np.abs(d - thorax).max())


def test_fixture_bvh_compatible_matches_every_joint(fixture_fk):
    """With the conversion's geometry (lengths of branching bones dropped) all 38 points agree, joint for joint."""
    names, pos = fixture_fk[True]
    assert len(names) == len(fixture_fk["bvh_names"])
    err = np.linalg.norm(pos - fixture_fk["bvh"], axis=-1)
    assert err.max() < 3e-4, names[int(np.argmax(err.max(0)))]


def test_cmu_asf31_map_detected(fixture_fk):
    assert detect_rig_map(fixture_fk[True][0], kind="bvh").name == "cmu_asf31"


RIGID = ["head", "shoulder_l", "elbow_l", "wrist_l", "hand_end_l", "shoulder_r", "elbow_r", "wrist_r", "hand_end_r",
         "hip_l", "knee_l", "ankle_l", "toe_l", "hip_r", "knee_r", "ankle_r", "toe_r"]  # children of rigid bones


def test_load_take_amc(data_file):
    path = data_file(AMC_CLIP)
    take = load_take(path)
    n_frames = sum(1 for line in gzip.open(path, "rt") if line.strip().isdigit())
    assert take.joints.shape == (n_frames, 24, 3) and take.joints.dtype == np.float32
    assert take.fps == 120.0 and take.name == "35_01"
    j = take.joints.astype(np.float64)
    lengths = bone_lengths(j)
    child_to_bone = {JOINT_NAMES[c]: b for b, (c, _) in enumerate(BONES)}
    for name in RIGID:
        col = lengths[:, child_to_bone[name]]
        assert col.std() < 1e-5 + 1e-4 * col.mean(), (name, col.std())
    # Height along the body, toe to head top (pose independent), and the feet below the head (Z up).
    chain = ["ankle_l", "knee_l", "hip_l", "pelvis", "spine", "chest", "neck", "head", "head_end"]
    height = sum(np.linalg.norm(j[:, INDEX[a]] - j[:, INDEX[b]], axis=-1) for a, b in zip(chain, chain[1:]))
    height = np.median(height + j[:, INDEX["ankle_l"], 2] - j[:, :, 2].min(1))
    assert 1.4 < height < 2.0, height
    assert (j[:, INDEX["head_end"], 2] > j[:, INDEX["toe_l"], 2] + 1.0).mean() > 0.9


def _expect_error(tmp_path, line, asf=ASF, amc=AMC, what="amc", message=""):
    asf_p, amc_p = _write(tmp_path, asf, amc)
    bad = amc_p if what == "amc" else asf_p
    with pytest.raises(ValueError, match=re.escape(f"{bad}:{line}:") + ".*" + message):
        read_amc(amc_p, asf_p)


def _replace_line(text, n, new):
    lines = text.splitlines()
    lines[n - 1] = new
    return "\n".join(lines) + "\n"


def _truncate(text, n):
    return "\n".join(text.splitlines()[:n]) + "\n"


@pytest.mark.parametrize("line, asf, message", [
    (30, _truncate(ASF, 30), "inside a bone"),
    (39, _truncate(ASF, 39), "no :hierarchy"),
    (43, _replace_line(ASF, 43, "    a z"), "unknown bone 'z'"),
    (17, _replace_line(ASF, 17, "    length two"), "not a number: 'two'"),
    (28, _replace_line(ASF, 28, "    dof rx rw"), "unsupported dof"),
    (18, _replace_line(ASF, 18, "    axis 0 0 XYZ"), "axis"),
])
def test_malformed_asf(tmp_path, line, asf, message):
    _expect_error(tmp_path, line, asf=asf, what="asf", message=message)


@pytest.mark.parametrize("line, amc, message", [
    (11, _truncate(AMC, 11), "frame 2 .*lacks c"),
    (7, _replace_line(AMC, 7, "zz 90"), "unknown bone 'zz'"),
    (10, _replace_line(AMC, 10, "a x1"), "not a number: 'x1'"),
    (6, _replace_line(AMC, 6, "b 90"), "expected 2 numbers, found 1"),
    (4, _replace_line(AMC, 4, "root 1 2 3 0 0 0 0"), "expected 6 numbers, found 7"),
    (10, _replace_line(AMC, 10, "a nan"), "non-finite"),
    (8, _replace_line(AMC, 8, "3"), "frame 3 follows frame 1"),
    (2, "# nothing\n:DEGREES\n", "no frames"),
])
def test_malformed_amc(tmp_path, line, amc, message):
    _expect_error(tmp_path, line, amc=amc, message=message)


def test_truncated_gzip_amc(tmp_path):
    asf_p, amc_p = _write(tmp_path, amc_name="t_01.amc.gz")
    amc_p.write_bytes(amc_p.read_bytes()[:-12])
    with pytest.raises(ValueError, match=re.escape(str(amc_p))):
        read_amc(amc_p, asf_p)
