"""BVH reader/writer: round trips on real clips, rigid bones, clear errors on malformed files, fuzzing."""
from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from conftest import BANDAI, CMU_ASF31, CMU_DAZ43, CMU_MB31
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfpose_core.body.rotations import euler_to_matrix, matrix_to_euler, y_up_to_z_up
from gfpose_core.body.skeleton import BONES, JOINT_NAMES
from gfpose_core.data import load_take
from gfpose_core.formats.bvh import read_bvh, write_bvh

# A small valid file. Line numbers matter to the error tests below:
#  1 HIERARCHY, 9 Chest CHANNELS, 17 Leg OFFSET, 18 Leg CHANNELS, 25 MOTION, 26 Frames, 27 Frame Time, 28-30 rows.
VALID = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Chest
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
  JOINT Leg
  {
    OFFSET 3 -10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -8 1
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 90 0 0 0 0 0 0 0 0 0 0
1 91 0 5 0 0 12 0 0 0 0 1
2 92 0 10 0 0 14 0 0 0 30 2
"""


def replace_line(text: str, line: int, new: str | None) -> str:
    lines = text.split("\n")
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    return "\n".join(lines)


def write(tmp_path, text: str, name: str = "clip.bvh"):
    p = tmp_path / name
    p.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    return p


# --- reading a small file exactly -------------------------------------------------------------------------------

def test_small_file_parses_and_forward_kinematics_by_hand():
    clip = read_bvh("small.bvh", text=VALID)
    sk = clip.skeleton
    assert sk.names == ["Hips", "Chest", "Chest:end", "Leg", "Leg:end"]
    assert sk.parents.tolist() == [-1, 0, 1, 0, 3]
    assert sk.is_end.tolist() == [False, False, True, False, True]
    assert sk.channels[3] == ["Zrotation", "Xrotation", "Yrotation"] and sk.channels[2] == []
    assert clip.motion.shape == (3, 12) and clip.frame_time == pytest.approx(0.0333333)
    assert clip.name == "small"
    pos, rot = clip.forward_kinematics()
    assert pos.shape == (3, 5, 3) and rot.shape == (3, 5, 3, 3)
    np.testing.assert_allclose(pos[0], [[0, 90, 0], [0, 100, 0], [0, 105, 0], [3, 80, 0], [3, 72, 1]], atol=1e-12)

    def rz(d):
        return euler_to_matrix(np.array([d, 0.0, 0.0]), "ZXY")
    # Frame 2: root Z 10 deg; Chest Z 14 deg on top; Leg (order Z X Y) X 30, Y 2 on top of the root.
    hips = np.array([2, 92, 0.0])
    np.testing.assert_allclose(pos[2, 1], hips + rz(10) @ [0, 10, 0], atol=1e-12)
    np.testing.assert_allclose(pos[2, 2], pos[2, 1] + rz(24) @ [0, 5, 0], atol=1e-12)
    leg_r = rz(10) @ euler_to_matrix(np.array([0.0, 30.0, 2.0]), "ZXY")
    np.testing.assert_allclose(pos[2, 4], hips + rz(10) @ [3, -10, 0] + leg_r @ [0, -8, 1], atol=1e-12)
    np.testing.assert_allclose(rot[2, 3], leg_r, atol=1e-12)


def test_position_channels_replace_offset():
    """A non-root joint with position channels sits at those values, not at OFFSET + values (the Bandai files)."""
    text = VALID.replace("CHANNELS 3 Zrotation Xrotation Yrotation",
                         "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
    rows = ["0 90 0 0 0 0 10 0 0 7 -9 1 0 0 0", "1 91 0 5 0 0 12 0 0 7 -9 1 0 0 1",
            "2 92 0 10 0 0 14 0 0 7 -9 1 0 30 2"]
    text = text.split("MOTION")[0] + "MOTION\nFrames: 3\nFrame Time: 0.0333333\n" + "\n".join(rows) + "\n"
    pos, _ = read_bvh("six.bvh", text=text).forward_kinematics()
    np.testing.assert_allclose(pos[0, 3], [7, 90 - 9, 1], atol=1e-12)
    # Only some position channels: each replaces its own OFFSET component, the others keep the OFFSET's.
    # (Blender's importer differs here: it zeroes the components without a channel. No data set we use has such
    # joints; every joint with position channels has all three.)
    partial = VALID.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 4 Yposition Zrotation Xrotation Yrotation")
    rows = ["0 90 0 0 0 0 0 0 0 -4 0 0 0", "1 91 0 5 0 0 12 0 0 -4 0 0 1", "2 92 0 10 0 0 14 0 0 -4 0 30 2"]
    partial = partial.split("MOTION")[0] + "MOTION\nFrames: 3\nFrame Time: 0.0333333\n" + "\n".join(rows) + "\n"
    pos, _ = read_bvh("partial.bvh", text=partial).forward_kinematics()
    np.testing.assert_allclose(pos[0, 3], [3, 90 - 4, 0], atol=1e-12)


# --- rotations --------------------------------------------------------------------------------------------------

ORDERS = ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"]


@pytest.mark.parametrize("order", ORDERS)
def test_euler_round_trip_all_orders(order):
    rng = np.random.default_rng(7)
    angles = np.stack([rng.uniform(-179.9, 179.9, 500), rng.uniform(-89.9, 89.9, 500),
                       rng.uniform(-179.9, 179.9, 500)], -1)
    m = euler_to_matrix(angles, order)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(m, order), angles, atol=1e-8)
    # Written channel order: R = R(first) @ R(second) @ R(third), as scipy's intrinsic rotations.
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(m, Rotation.from_euler(order, angles, degrees=True).as_matrix(), atol=1e-12)
    # Gimbal lock (middle angle +-90): the angles differ, the rotation must not.
    locked = angles.copy()
    locked[:, 1] = rng.choice([-90.0, 90.0], 500)
    ml = euler_to_matrix(locked, order)
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(ml, order), order), ml, atol=1e-7)


def test_y_up_to_z_up_is_a_proper_rotation():
    pts = np.random.default_rng(8).normal(size=(10, 3))
    out = y_up_to_z_up(pts)
    m = np.linalg.lstsq(pts, out, rcond=None)[0].T
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    # Up (+Y) goes to +Z, BVH forward (+Z) goes to Blender forward (-Y).
    np.testing.assert_allclose(y_up_to_z_up(np.array([0, 1.0, 0])), [0, 0, 1])
    np.testing.assert_allclose(y_up_to_z_up(np.array([0, 0, 1.0])), [0, -1, 0])


# --- real clips ---------------------------------------------------------------------------------------------------

CLIPS = [CMU_MB31, CMU_DAZ43, CMU_ASF31, BANDAI]
CLIP_IDS = ["cmu_mb31", "cmu_daz43", "cmu_asf31", "bandai"]


@pytest.mark.parametrize("rel", CLIPS, ids=CLIP_IDS)
@pytest.mark.parametrize("suffix", [".bvh", ".bvh.gz"])
def test_round_trip_on_real_clips(rel, suffix, data_file, tmp_path):
    clip = read_bvh(data_file(rel))
    if suffix == ".bvh.gz":
        clip.motion = clip.motion[:300]   # the compressed path needs no full clip
    out = tmp_path / f"copy{suffix}"
    write_bvh(out, clip)
    if suffix == ".bvh.gz":
        assert out.read_bytes()[:2] == b"\x1f\x8b"
    else:
        assert out.read_text().startswith("HIERARCHY")
    back = read_bvh(out)
    a, b = clip.skeleton, back.skeleton
    assert b.names == a.names and b.parents.tolist() == a.parents.tolist() and b.channels == a.channels
    assert b.is_end.tolist() == a.is_end.tolist()
    np.testing.assert_allclose(b.offsets, a.offsets, rtol=1e-8, atol=1e-9)
    assert back.frame_time == pytest.approx(clip.frame_time, rel=1e-8)
    assert back.name == "copy"
    p0, _ = clip.forward_kinematics()
    p1, _ = back.forward_kinematics()
    size = np.linalg.norm(np.ptp(p0[0], axis=0))   # bounding-box diagonal of the first frame
    assert size > 0
    assert np.abs(p1 - p0).max() < 1e-5 * size


# Bones whose ends are not fixed in one rigid body part, and why:
#  - spine and chest are interpolated between pelvis and neck (and the collars hang off chest), so every bone
#    touching spine/chest follows the back's bend (the CMU maps' neck, Neck1/upperneck, and head, Head/head, are
#    joints of their own, so neck->head and head->head_end are single bones there).
INTERPOLATED = {"spine", "chest"}


@pytest.mark.parametrize("rel, rig", list(zip(CLIPS, CLIP_IDS)), ids=CLIP_IDS)
def test_rigid_bone_lengths_constant_over_clip(rel, rig, data_file):
    take = load_take(data_file(rel))
    assert take.joints.shape[1:] == (24, 3) and np.isfinite(take.joints).all()
    joints = take.joints.astype(np.float64)
    checked = 0
    for c, p in BONES:
        names = (JOINT_NAMES[c], JOINT_NAMES[p])
        if INTERPOLATED & set(names):
            continue
        lengths = np.linalg.norm(joints[:, c] - joints[:, p], axis=-1)
        assert lengths.std() < 1e-4, f"{rig}: bone {names[1]}->{names[0]} length varies (std {lengths.std():.2e} m)"
        assert 0.01 < lengths.mean() < 0.7, (names, lengths.mean())
        checked += 1
    assert checked >= 16


def test_detected_rig_matches_manifest(DATA):
    """Auto-detection agrees with the manifest's skeleton column on a spread of CMU BVH clips of both kinds."""
    import csv

    from gfpose_core.rigs.rig_map import detect_rig_map
    expect = {"cmu-motionbuilder-31": {"cmu_mb31", "cmu_asf31"}, "cmu-daz-43": {"cmu_daz43"}}
    with open(DATA / "cmu" / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["format"] == "bvh"]
    for skeleton in expect:
        mine = [r for r in rows if r["skeleton"] == skeleton]
        assert mine, skeleton
        for r in mine[:: max(1, len(mine) // 5)]:
            names = read_bvh(DATA / "cmu" / "bvh" / f"{r['clip']}.bvh.gz").skeleton.names
            assert detect_rig_map(names, kind="bvh").name in expect[skeleton], r["clip"]


# --- malformed files ----------------------------------------------------------------------------------------------

MALFORMED = {
    "empty file": ("", 1),
    "only whitespace": ("\n  \n\t\n", 1),
    "truncated hierarchy": ("\n".join(VALID.split("\n")[:12]) + "\n", 12),
    "hierarchy without closing brace": (replace_line(VALID, 24, None), 23),  # its last hierarchy line
    "no HIERARCHY keyword": (replace_line(VALID, 1, "HIERARCHIE"), 1),
    "non-number in OFFSET": (replace_line(VALID, 17, "    OFFSET 3 x 0"), 17),
    "unknown channel name": (replace_line(VALID, 9, "    CHANNELS 3 Zrotation Wrotation Xrotation"), 9),
    "channel count too high": (replace_line(VALID, 9, "    CHANNELS 4 Zrotation Yrotation Xrotation"), 10),
    "channel count too low": (replace_line(VALID, 9, "    CHANNELS 2 Zrotation Yrotation Xrotation"), 9),
    "channel count not a number": (replace_line(VALID, 18, "    CHANNELS three Zrotation Xrotation Yrotation"), 18),
    "channel count a non-ASCII digit": (replace_line(VALID, 18, "    CHANNELS ² Zrotation Xrotation"), 18),
    "duplicate joint": (VALID.replace("JOINT Leg", "JOINT Chest"), 15),
    "MOTION missing": (VALID.split("MOTION")[0], 24),
    "MOTION without Frames": (VALID.split("Frames")[0], 25),
    "bad frame count": (replace_line(VALID, 26, "Frames: three"), 26),
    "zero frames": (replace_line(VALID, 26, "Frames: 0"), 26),
    "bad frame time": (replace_line(VALID, 27, "Frame Time: fast"), 27),
    "negative frame time": (replace_line(VALID, 27, "Frame Time: -0.1"), 27),
    "truncated MOTION": (replace_line(VALID, 30, None), 29),  # the last line
    "row with a missing value": (replace_line(VALID, 29, "1 91 0 5 0 0 12 0 0 0 0"), 29),
    "row with an extra value": (replace_line(VALID, 28, "0 90 0 0 0 0 10 0 0 0 0 0 0"), 28),
    "short row then long row": (replace_line(replace_line(VALID, 28, "0 90 0 0 0 0 10 0 0 0 0"), 29,
                                             "1 91 0 5 0 0 12 0 0 0 0 1 0"), 28),
    "non-number in MOTION": (replace_line(VALID, 30, "2 92 abc 10 0 0 14 0 0 0 30 2"), 30),
    "nan in MOTION": (replace_line(VALID, 29, "1 91 0 5 nan 0 12 0 0 0 0 1"), 29),
    "inf in MOTION": (replace_line(VALID, 29, "1 91 0 5 1e999 0 12 0 0 0 0 1"), 29),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
@pytest.mark.parametrize("name", ["bad.bvh", "bad.bvh.gz"])
def test_malformed_file_error_names_file_and_line(case, name, tmp_path):
    text, line = MALFORMED[case]
    path = write(tmp_path, text, name)
    with pytest.raises(ValueError) as info:
        read_bvh(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), f"{case}: {msg!r} (expected line {line})"
    assert len(msg) > len(f"{path}:{line}: ") + 5


def test_corrupt_gzip_names_file(tmp_path):
    path = tmp_path / "broken.bvh.gz"
    path.write_bytes(gzip.compress(VALID.encode())[:40])
    with pytest.raises(ValueError, match=re.escape(str(path)) + r":\d+: "):
        read_bvh(path)


def test_deep_hierarchy_is_a_value_error(tmp_path):
    n = 3000
    text = "HIERARCHY\nROOT J0\n{\nOFFSET 0 0 0\nCHANNELS 1 Xrotation\n"
    text += "".join(f"JOINT J{i}\n{{\nOFFSET 0 1 0\nCHANNELS 1 Xrotation\n" for i in range(1, n))
    text += "}\n" * n + "MOTION\nFrames: 1\nFrame Time: 0.1\n" + " ".join(["0"] * n) + "\n"
    path = write(tmp_path, text, "deep.bvh")
    with pytest.raises(ValueError, match=re.escape(str(path)) + r":\d+: .*nest"):
        read_bvh(path)


def test_joint_named_like_an_end_site_round_trips(tmp_path):
    """A real joint whose name ends in ':end' is still a joint (End Sites are told by the file, not the name)."""
    text = VALID.replace("JOINT Leg", "JOINT Leg:end")
    clip = read_bvh("odd.bvh", text=text)
    assert clip.skeleton.names[3] == "Leg:end" and not clip.skeleton.is_end[3]
    assert clip.skeleton.is_end[4]
    write_bvh(tmp_path / "odd.bvh", clip)
    back = read_bvh(tmp_path / "odd.bvh")
    assert back.skeleton.names == clip.skeleton.names and back.skeleton.channels == clip.skeleton.channels
    np.testing.assert_allclose(back.motion, clip.motion)
    # ... and a name that collides with an End Site is a clear error.
    clash = VALID.replace("JOINT Leg", "JOINT Chest:end")
    with pytest.raises(ValueError, match=r"odd\.bvh:\d+: .*duplicate"):
        read_bvh("odd.bvh", text=clash)


# --- fuzzing ------------------------------------------------------------------------------------------------------

_PIECES = re.split(r"(\s+)", VALID)   # tokens at even indices, whitespace at odd ones
_TOKEN_IDX = [i for i in range(0, len(_PIECES), 2) if _PIECES[i]]
_ODD_TOKENS = st.sampled_from(["{", "}", "JOINT", "ROOT", "End", "Site", "OFFSET", "CHANNELS", "MOTION", "Frames:",
                               "Frame", "Time:", "0", "-1", "7", "1e999", "nan", "inf", "1_0", "²", "٣", "0x10",
                               "Xposition", "Zrotation", "HIERARCHY", "\n", "\x00", "é", ""])
_MUTATION = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(_TOKEN_IDX)),
    st.tuples(st.just("duplicate"), st.sampled_from(_TOKEN_IDX)),
    st.tuples(st.just("replace"), st.sampled_from(_TOKEN_IDX), st.one_of(_ODD_TOKENS, st.text(max_size=6))),
    st.tuples(st.just("truncate"), st.integers(0, len(VALID))),
    st.tuples(st.just("bytes"), st.integers(0, len(VALID)), st.binary(min_size=1, max_size=8)),
)


def _mutate(mutations) -> bytes:
    pieces = list(_PIECES)
    raw_edits = []
    for m in mutations:
        if m[0] == "delete":
            pieces[m[1]] = ""
        elif m[0] == "duplicate":
            pieces[m[1]] = pieces[m[1]] + " " + pieces[m[1]]
        elif m[0] == "replace":
            pieces[m[1]] = m[2]
        else:
            raw_edits.append(m)
    data = "".join(pieces).encode("utf-8")
    for m in raw_edits:
        data = data[: m[1]] if m[0] == "truncate" else data[: m[1]] + m[2] + data[m[1]:]
    return data


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=3), gz=st.booleans())
def test_fuzzed_files_raise_only_value_error(mutations, gz, fuzz_dir):
    data = _mutate(mutations)
    path = fuzz_dir / ("fuzz.bvh.gz" if gz else "fuzz.bvh")
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        clip = read_bvh(path)
    except ValueError as e:
        assert re.match(re.escape(str(path)) + r":\d+: \S", str(e)), str(e)
        return
    # Whatever parses is consistent and usable.
    assert clip.motion.ndim == 2 and clip.motion.shape[1] == clip.skeleton.n_channels
    assert np.isfinite(clip.motion).all() and np.isfinite(clip.skeleton.offsets).all()
    assert clip.frame_time > 0 and clip.motion.shape[0] >= 1
    pos, _ = clip.forward_kinematics()
    assert pos.shape == (clip.motion.shape[0], len(clip.skeleton.names), 3)


def test_joint_with_fewer_rotation_channels(tmp_path):
    """Some exporters write only the axes a joint turns about (found by the fuzz test)."""
    text = ("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 4 Xposition Yposition Zposition Yrotation\n"
            " JOINT Knee\n {\n  OFFSET 0 -10 0\n  CHANNELS 1 Xrotation\n  End Site\n  {\n   OFFSET 0 -10 0\n  }\n"
            " }\n}\nMOTION\nFrames: 1\nFrame Time: 0.033333\n0 0 0 0 90\n")
    path = tmp_path / "partial.bvh"
    path.write_text(text)
    pos, _ = read_bvh(path).forward_kinematics()
    np.testing.assert_allclose(pos[0, 2], [0, -10, -10], atol=1e-9)  # the shin turned 90 degrees about X
