"""Every shipped rig map puts body24's landmarks where the training data has them (rigs/landmarks.py): each map is
read on its rig's own rest pose (the published skeletons of test_auto_map, the CMU and Bandai BVH headers, Blender's
metarig and a Rigify rig under bpy) and every fraction a map can set (spine and chest along pelvis -> neck, the head
pivot on the way to the crown, the collar root out from the midline and its depth against the spine, the knuckles
in forearm lengths, the ball of the foot in shin lengths) must lie in the training frames' 5th-95th percentile band
widened by landmarks.MARGIN. The maps of the CMU conventions made the training data, so they pass by construction.
The automatic mapping uses the same table, so it lands there too.
"""
from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import BANDAI, CMU_ASF31, CMU_DAZ43, CMU_MB31
from test_auto_map import ARMATURES, SHIPPED

from gfpose_core.body.skeleton import INDEX, JOINT_NAMES
from gfpose_core.formats.bvh import BvhClip, read_bvh
from gfpose_core.rigs import landmarks
from gfpose_core.rigs.auto_map import auto_bvh_map, auto_rig_map
from gfpose_core.rigs.binding import bind, rest_joints
from gfpose_core.rigs.landmarks import COMPARED, TRAINING, allowed, fractions, misplaced
from gfpose_core.rigs.rig_map import load_rig_map, rig_map_names

# Every shipped map and where its rest pose comes from in this file.
ARMATURE_CASES = {"mixamo": "mixamo", "mixamo_plain_names": "mixamo", "ue4_mannequin": "ue4_mannequin",
                  "ue5_mannequin": "ue5_mannequin", "smpl": "smpl"}
BVH_CASES = {"cmu_mb31": CMU_MB31, "cmu_daz43": CMU_DAZ43, "cmu_asf31": CMU_ASF31, "bandai": BANDAI}
BLENDER_CASES = ("metarig", "rigify")


def bvh_rest(path, zero_rotations: bool = True) -> BvhClip:
    """A BVH file's header and first frame, every rotation zeroed unless told otherwise: the skeleton at rest."""
    with gzip.open(path, "rt") as f:
        lines = []
        for line in f:
            lines.append(line)
            if line.strip().startswith("Frame Time"):
                lines.append(next(f))
                break
    lines[[k for k, x in enumerate(lines) if x.strip().startswith("Frames")][0]] = "Frames: 1\n"
    clip = read_bvh(str(path), text="".join(lines))
    if not zero_rotations:
        return clip
    motion = clip.motion.copy()
    col = 0
    for chans in clip.skeleton.channels:
        for c in chans:
            if c.endswith("rotation"):
                motion[:, col] = 0.0
            col += 1
    clip.motion = motion
    return clip


def bvh_rest_joints(path, rig) -> np.ndarray:
    # Bandai's zero rotations lay every chain along +X (its bones run along local X), which is no body: its first
    # frame, a person standing at the start of a walk, stands in for a rest pose (the fractions are ratios of
    # lengths or points on fixed lines, which a pose barely moves).
    clip = bvh_rest(path, zero_rotations=rig.name != "bandai")
    pos, rot = clip.forward_kinematics()
    return rig.body24_positions(clip.skeleton.names, pos, rot)[0]


def test_every_shipped_map_is_checked_here():
    covered = set(ARMATURE_CASES.values()) | set(BVH_CASES) | set(BLENDER_CASES) | {"body24"}
    assert covered == set(rig_map_names()) - set(_user_maps()), covered ^ set(rig_map_names())


def _user_maps():
    from gfpose_core.rigs.rig_map import RIGS_DIR
    return {n for n in rig_map_names() if not (RIGS_DIR / f"{n}.toml").exists()}


def test_the_table_is_sane():
    for name in COMPARED:
        s = TRAINING[name]
        assert s.p5 <= s.p25 <= s.median <= s.p75 <= s.p95
    # docs/design.md's spine and chest: a third and two thirds of the way up, which the CMU maps interpolate.
    assert landmarks.SPINE_T == pytest.approx(1 / 3, abs=1e-3) and landmarks.CHEST_T == pytest.approx(2 / 3, abs=1e-3)


@pytest.mark.parametrize("case", sorted(ARMATURE_CASES))
def test_armature_maps_put_landmarks_where_training_has_them(case):
    rest = rest_joints(bind(ARMATURES[case](), ARMATURE_CASES[case]), world=True)
    assert not misplaced(rest), (case, misplaced(rest))


@pytest.mark.parametrize("rig", sorted(BVH_CASES))
def test_bvh_maps_put_landmarks_where_training_has_them(rig, data_file):
    rest = bvh_rest_joints(data_file(BVH_CASES[rig]), load_rig_map(rig))
    assert not misplaced(rest), (rig, misplaced(rest))


def test_body24_map_reads_the_engines_own_joints():
    """The engine's own BVH: each body24 joint is itself, so its landmarks are wherever the model put them."""
    rig = load_rig_map("body24")
    assert all(rig.joints[n].kind == "joint" and rig.joints[n].refs == (n,) for n in JOINT_NAMES)


@pytest.mark.parametrize("case", sorted(set(ARMATURES) - {"mixamo_no_fingers"}))
def test_automatic_maps_put_landmarks_where_training_has_them(case):
    rest = rest_joints(bind(ARMATURES[case](), auto_rig_map(ARMATURES[case]()).rig), world=True)
    f = fractions(rest)
    for name in ("spine", "chest"):
        lo, hi = allowed(name)
        assert lo <= f[name] <= hi, (case, name, f[name])
    if case in SHIPPED:
        assert not misplaced(rest), (case, misplaced(rest))


def test_automatic_bvh_map_of_a_cmu_file_lands_on_the_training_landmarks(data_file):
    """A CMU file read without its map (the automatic mapping) puts the torso where the shipped map, which made the
    training data, puts it: the same pelvis and neck, spine and chest at the same fractions between them (on the
    file's curved spine rather than on the straight line the CMU maps interpolate from the pelvis to the top of the
    forward-leaning lower neck, so up to 4 cm apart)."""
    path = data_file(CMU_MB31)
    auto = auto_bvh_map(bvh_rest(path)).rig
    a, s = bvh_rest_joints(path, auto), bvh_rest_joints(path, load_rig_map("cmu_mb31"))
    for name in ("pelvis", "neck"):
        assert np.linalg.norm(a[INDEX[name]] - s[INDEX[name]]) < 0.01, name
    fa, fs = fractions(a), fractions(s)
    for name in ("spine", "chest"):
        assert abs(fa[name] - fs[name]) <= landmarks.SNAP, (name, fa[name], fs[name])
        assert np.linalg.norm(a[INDEX[name]] - s[INDEX[name]]) < 0.04, name


@pytest.mark.blender
@pytest.mark.parametrize("rig", BLENDER_CASES)
def test_blender_rigs_put_landmarks_where_training_has_them(rig, rigify_blend):
    bpy = pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")
    import sys

    from conftest import REPO_ROOT
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from blender_addon import rig_io
    from blender_rigs import fresh, metarig, open_rigify

    from gfpose_core.rigs.armature import Armature
    if rig == "metarig":
        fresh(bpy)
        obj = metarig(bpy)
    else:
        obj = open_rigify(bpy, rigify_blend)
    binding = bind(Armature.from_dict(rig_io.describe_armature(obj)))
    assert binding.rig.name == rig
    rest = rest_joints(binding, world=True)
    assert not misplaced(rest), (rig, misplaced(rest))
