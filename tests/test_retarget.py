"""Retargeting math without Blender: synthetic armatures of every armature family, round trips, twist, stability.

Armatures here are built from bone lists (head, tail, roll) the way Blender builds them (`bone_matrix`), on one
made-up T-pose body, with random bone rolls: a family's rig map must write any body24 pose onto them and read the
same directions back, whatever the rolls.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BANDAI, CMU_MB31

from gfpose_core.body.rotations import (
    EULER_ORDERS,
    _unit,
    axis_angle_matrix,
    blender_euler_to_matrix,
    continuous_quaternions,
    matrix_to_blender_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
    swing,
    y_up_to_z_up,
)
from gfpose_core.body.skeleton import (
    BONES,
    INDEX,
    JOINT_NAMES,
    PARENTS,
    bone_directions,
    bone_lengths,
    from_bone_directions,
)
from gfpose_core.formats.bvh import read_bvh
from gfpose_core.rigs.armature import Armature, bone_matrix
from gfpose_core.rigs.binding import Binding, bind, joints_from_pose, rest_joints
from gfpose_core.rigs.plan import _PARTS, PARTS
from gfpose_core.rigs.rig_map import (
    RIGS_DIR,
    RigMapError,
    detect_rig_match,
    load_rig_map,
    parse_rig_map,
)
from gfpose_core.rigs.solve import (
    RigPose,
    bind_for_rig,
    forward_kinematics,
    pose_for_rig,
    solve,
)

# A T-pose body, metres, Z up, facing -Y (character's left on +X).
_LEFT = {"collar": (0.03, -0.03, 1.43), "shoulder": (0.18, 0.01, 1.43), "elbow": (0.46, 0.02, 1.43),
         "wrist": (0.71, 0.01, 1.43), "hand_end": (0.81, 0.0, 1.42), "hip": (0.09, 0.0, 0.95),
         "knee": (0.095, -0.01, 0.52), "ankle": (0.1, 0.03, 0.09), "toe": (0.1, -0.1, 0.02)}
_MID = {"pelvis": (0.0, 0.0, 0.97), "spine": (0.0, 0.01, 1.12), "chest": (0.0, 0.0, 1.28),
        "neck": (0.0, 0.01, 1.46), "head": (0.0, 0.0, 1.56), "head_end": (0.0, -0.01, 1.76)}
T_POSE = np.zeros((24, 3))
for _n, _p in _MID.items():
    T_POSE[INDEX[_n]] = _p
for _n, _p in _LEFT.items():
    T_POSE[INDEX[f"{_n}_l"]] = _p
    T_POSE[INDEX[f"{_n}_r"]] = (-_p[0], _p[1], _p[2])


def _point(expr, side: str) -> np.ndarray:
    """A body24 name ("elbow_" gets the side), a lerp (a, b, t) or a point plus an offset (a, (dx, dy, dz))."""
    if isinstance(expr, str):
        return T_POSE[INDEX[expr + side if expr.endswith("_") else expr]].copy()
    if len(expr) == 3:
        a, b, t = expr
        return _point(a, side) + t * (_point(b, side) - _point(a, side))
    a, off = expr
    off = np.array(off, dtype=float)
    if side == "r":
        off[0] = -off[0]
    return _point(a, side) + off


# Bone lists: (name, parent, head, tail); "{s}" / "{S}" are the side in the family's spelling; "_" joints take it.
RECIPES = {
    "mixamo": ("mixamorig:", {"l": "Left", "r": "Right"}, [
        ("Hips", None, ("pelvis", (0, 0, 0.03)), ("pelvis", "spine", 0.5)),
        ("Spine", "Hips", ("pelvis", "spine", 0.5), "spine"),
        ("Spine1", "Spine", "spine", "chest"), ("Spine2", "Spine1", "chest", "neck"),
        ("Neck", "Spine2", "neck", "head"), ("Head", "Neck", "head", "head_end"),
        ("HeadTop_End", "Head", "head_end", ("head_end", (0, 0, 0.05))),
        ("{S}Shoulder", "Spine2", "collar_", "shoulder_"), ("{S}Arm", "{S}Shoulder", "shoulder_", "elbow_"),
        ("{S}ForeArm", "{S}Arm", "elbow_", "wrist_"), ("{S}Hand", "{S}ForeArm", "wrist_", "hand_end_"),
        ("{S}HandMiddle1", "{S}Hand", "hand_end_", ("hand_end_", (0.03, 0, 0))),
        ("{S}UpLeg", "Hips", "hip_", "knee_"), ("{S}Leg", "{S}UpLeg", "knee_", "ankle_"),
        ("{S}Foot", "{S}Leg", "ankle_", "toe_"), ("{S}ToeBase", "{S}Foot", "toe_", ("toe_", (0, -0.05, 0))),
    ]),
    "ue4_mannequin": ("", {"l": "l", "r": "r"}, [
        ("root", None, ("pelvis", (0, 0, -0.97)), ("pelvis", (0, 0.1, -0.97))),
        ("pelvis", "root", "pelvis", ("pelvis", "spine", 0.3)),
        ("spine_01", "pelvis", ("pelvis", "spine", 0.3), "spine"), ("spine_02", "spine_01", "spine", "chest"),
        ("spine_03", "spine_02", "chest", "neck"), ("neck_01", "spine_03", "neck", "head"),
        ("head", "neck_01", "head", ("head", (0, 0, 0.1))),
        ("clavicle_{s}", "spine_03", "collar_", "shoulder_"), ("upperarm_{s}", "clavicle_{s}", "shoulder_", "elbow_"),
        ("lowerarm_{s}", "upperarm_{s}", "elbow_", "wrist_"), ("hand_{s}", "lowerarm_{s}", "wrist_", ("wrist_", "hand_end_", 0.5)),
        ("middle_01_{s}", "hand_{s}", "hand_end_", ("hand_end_", (0.03, 0, 0))),
        ("thigh_{s}", "pelvis", "hip_", "knee_"), ("calf_{s}", "thigh_{s}", "knee_", "ankle_"),
        ("foot_{s}", "calf_{s}", "ankle_", "toe_"), ("ball_{s}", "foot_{s}", "toe_", ("toe_", (0, -0.05, 0))),
    ]),
    "ue5_mannequin": ("", {"l": "l", "r": "r"}, [
        ("root", None, ("pelvis", (0, 0, -0.97)), ("pelvis", (0, 0.1, -0.97))),
        ("pelvis", "root", "pelvis", ("pelvis", "spine", 0.3)),
        ("spine_01", "pelvis", ("pelvis", "spine", 0.3), "spine"),
        ("spine_02", "spine_01", "spine", ("spine", "chest", 0.5)),
        ("spine_03", "spine_02", ("spine", "chest", 0.5), "chest"),
        ("spine_04", "spine_03", "chest", ("chest", "neck", 0.5)),
        ("spine_05", "spine_04", ("chest", "neck", 0.5), "neck"),
        ("neck_01", "spine_05", "neck", ("neck", "head", 0.5)), ("neck_02", "neck_01", ("neck", "head", 0.5), "head"),
        ("head", "neck_02", "head", ("head", (0, 0, 0.1))),
        ("clavicle_{s}", "spine_05", "collar_", "shoulder_"), ("upperarm_{s}", "clavicle_{s}", "shoulder_", "elbow_"),
        ("lowerarm_{s}", "upperarm_{s}", "elbow_", "wrist_"), ("hand_{s}", "lowerarm_{s}", "wrist_", ("wrist_", "hand_end_", 0.3)),
        ("middle_metacarpal_{s}", "hand_{s}", ("wrist_", "hand_end_", 0.1), "hand_end_"),
        ("middle_01_{s}", "middle_metacarpal_{s}", "hand_end_", ("hand_end_", (0.03, 0, 0))),
        ("thigh_{s}", "pelvis", "hip_", "knee_"), ("calf_{s}", "thigh_{s}", "knee_", "ankle_"),
        ("foot_{s}", "calf_{s}", "ankle_", "toe_"), ("ball_{s}", "foot_{s}", "toe_", ("toe_", (0, -0.05, 0))),
    ]),
    "smpl": ("", {"l": "left", "r": "right"}, [
        ("pelvis", None, ("pelvis", (0, 0, 0.02)), ("pelvis", "spine", 0.4)),
        ("spine1", "pelvis", ("pelvis", "spine", 0.4), "spine"), ("spine2", "spine1", "spine", "chest"),
        ("spine3", "spine2", "chest", "neck"), ("neck", "spine3", "neck", "head"),
        ("head", "neck", "head", ("head", (0, 0, 0.1))),
        ("{s}_collar", "spine3", "collar_", "shoulder_"), ("{s}_shoulder", "{s}_collar", "shoulder_", "elbow_"),
        ("{s}_elbow", "{s}_shoulder", "elbow_", "wrist_"), ("{s}_wrist", "{s}_elbow", "wrist_", "hand_end_"),
        ("{s}_hand", "{s}_wrist", "hand_end_", ("hand_end_", (0.05, 0, 0))),
        ("{s}_hip", "pelvis", "hip_", "knee_"), ("{s}_knee", "{s}_hip", "knee_", "ankle_"),
        ("{s}_ankle", "{s}_knee", "ankle_", "toe_"), ("{s}_foot", "{s}_ankle", "toe_", ("toe_", (0, -0.05, 0))),
    ]),
}


def bvh_armature(path, name: str) -> Armature:
    """The armature Blender's BVH importer makes of a BVH file's skeleton (bones from each joint to the mean of its
    children, zero-length ones given a 5 cm tail, no roll), in metres by the rig map `name`'s unit scale."""
    rig = load_rig_map(name)
    sk = read_bvh(path).skeleton
    pos = np.zeros((len(sk.names), 3))
    for j, p in enumerate(sk.parents):
        pos[j] = sk.offsets[j] + (pos[p] if p >= 0 else 0)
    pos = y_up_to_z_up(pos * rig.unit_scale)
    joints = [j for j in range(len(sk.names)) if not sk.is_end[j]]
    heads, tails = [], []
    for j in joints:
        kids = [c for c in range(len(sk.names)) if sk.parents[c] == j]
        tail = pos[kids].mean(0) if kids else pos[j] + [0, 0, 0.05]
        if np.linalg.norm(tail - pos[j]) < 1e-3:           # zero-length joints: Blender's importer does this too
            tail = pos[j] + [0, 0, 0.05]
        heads.append(pos[j])
        tails.append(tail)
    index = {j: i for i, j in enumerate(joints)}
    return Armature.from_bones(name, [sk.names[j] for j in joints], [index.get(sk.parents[j], -1) for j in joints],
                               np.array(heads), np.array(tails), np.zeros(len(joints)))


def build_armature(family: str, seed: int = 0, prefix: str | None = None, modes=None, rolls: bool = True,
                   world=None) -> Armature:
    """A synthetic armature of a family from its recipe, with random rolls (Blender would keep any roll)."""
    default_prefix, sides, recipe = RECIPES[family]
    prefix = default_prefix if prefix is None else prefix
    rng = np.random.default_rng(seed)
    names, parents, heads, tails = [], [], [], []
    for name, parent, head, tail in recipe:
        for s in (["l", "r"] if "{" in name else [""]):
            spell = sides.get(s, "")
            fill = {"s": spell, "S": spell}
            names.append(prefix + name.format(**fill))
            parents.append(prefix + parent.format(**fill) if parent else None)
            heads.append(_point(head, s))
            tails.append(_point(tail, s))
    index = {n: i for i, n in enumerate(names)}
    roll = rng.uniform(-np.pi, np.pi, len(names)) if rolls else np.zeros(len(names))
    if modes is None:     # a mix of rotation modes, as imported rigs have
        modes = [["QUATERNION", "XYZ", "ZXY", "YZX"][i % 4] for i in range(len(names))]
    elif isinstance(modes, str):
        modes = [modes] * len(names)
    return Armature.from_bones(family, names, [index[p] if p else -1 for p in parents], np.array(heads),
                                  np.array(tails), roll, rotation_modes=modes, world=world)


def random_poses(n: int, seed: int = 1, max_angle: float = 1.2) -> np.ndarray:
    """Body24 poses with every segment turned at random (up to max_angle rad), lengths scaled, moved and turned."""
    rng = np.random.default_rng(seed)
    dirs = np.broadcast_to(bone_directions(T_POSE), (n, 23, 3))
    axis = rng.normal(size=(n, 23, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    turn = axis_angle_matrix(axis, rng.uniform(0, max_angle, (n, 23)))
    dirs = np.einsum("nbij,nbj->nbi", turn, dirs)
    lengths = np.linalg.norm(T_POSE[BONES[:, 0]] - T_POSE[BONES[:, 1]], axis=-1) * rng.uniform(0.8, 1.2, (n, 1))
    root = rng.uniform(-2, 2, (n, 3)) * [1, 1, 0] + [0, 0, 0.9]
    return from_bone_directions(dirs, lengths, root)


def aimed_errors(pose_joints: np.ndarray, wanted: np.ndarray, pose: RigPose) -> np.ndarray:
    """Degrees between the rig's and the wanted direction of every segment a keyed bone aims (F, n)."""
    parts = sorted(set(pose.parts), key=PARTS.index)
    a = [INDEX[_PARTS[p][0]] for p in parts]
    c = [INDEX[_PARTS[p][1]] for p in parts]
    d1 = _unit(pose_joints[:, c] - pose_joints[:, a])[0]
    d2 = _unit(wanted[:, c] - wanted[:, a])[0]
    return np.degrees(np.arccos(np.clip(np.sum(d1 * d2, -1), -1, 1)))


# --- rotation helpers ---------------------------------------------------------------------------------------------

def test_quaternion_and_euler_round_trips():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(200, 4))
    m = quaternion_to_matrix(q)
    q2 = matrix_to_quaternion(m)
    np.testing.assert_allclose(quaternion_to_matrix(q2), m, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(q2 * q / np.linalg.norm(q, axis=-1, keepdims=True), -1)), 1, atol=1e-12)
    for order in EULER_ORDERS:
        e = matrix_to_blender_euler(m, order)
        np.testing.assert_allclose(blender_euler_to_matrix(e, order), m, atol=1e-9, err_msg=order)
    # Blender's "XYZ" turns about X first: R = Rz @ Ry @ Rx.
    e = np.array([0.3, 0.5, 0.7])
    rx, ry, rz = (axis_angle_matrix(np.eye(3)[i], np.array(e[i])) for i in range(3))
    np.testing.assert_allclose(blender_euler_to_matrix(e, "XYZ"), rz @ ry @ rx, atol=1e-12)


def test_swing_is_smallest_rotation_even_half_turns():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 3))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b = np.concatenate([rng.normal(size=(49, 3)), -a[-1:]])
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    r = swing(a, b)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", r, a), b, atol=1e-9)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-9)
    # The axis is perpendicular to both (no twist about a).
    axis = _unit(np.cross(a[:-1], b[:-1]))[0]
    np.testing.assert_allclose(np.einsum("nij,nj->ni", r[:-1], axis), axis, atol=1e-9)


def test_bone_matrix_follows_blender_convention():
    m = bone_matrix([0, 0, 0], [0, 2, 0], 0.0)          # along +Y, no roll: the identity
    np.testing.assert_allclose(m[:3, :3], np.eye(3), atol=1e-12)
    m = bone_matrix([1, 2, 3], [1, 2, 5], 0.0)          # straight up: Y -> Z, Z -> -Y (Blender's default)
    np.testing.assert_allclose(m[:3, 1], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(m[:3, 2], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    rolled = bone_matrix([1, 2, 3], [1, 2, 5], np.pi / 2)
    np.testing.assert_allclose(rolled[:3, 1], [0, 0, 1], atol=1e-12)
    assert abs(rolled[:3, 0] @ m[:3, 0]) < 1e-12           # roll turns X about the bone
    down = bone_matrix([0, 0, 0], [0, -1, 0], 0.0)      # along -Y: Blender's special case
    np.testing.assert_allclose(down[:3, :3], np.diag([-1.0, -1.0, 1.0]), atol=1e-12)
    with pytest.raises(ValueError, match="zero-length"):
        bone_matrix([0, 0, 0], [0, 0, 0], 0.0)


def test_continuous_quaternions_never_flip():
    t = np.linspace(0, 4 * np.pi, 400)                      # two full turns
    q = np.stack([np.cos(t / 2), np.zeros_like(t), np.zeros_like(t), np.sin(t / 2)], -1)
    q *= np.where(np.random.default_rng(0).random(400) < 0.5, -1, 1)[:, None]  # random signs, as a solver gives
    c = continuous_quaternions(q)
    assert np.all(np.sum(c[1:] * c[:-1], -1) > 0.99)
    assert c[0, 0] >= 0


# --- every armature family: write any pose, read the same directions back ----------------------------------------

FAMILIES = sorted(RECIPES)


@pytest.mark.parametrize("family", FAMILIES)
def test_detection_finds_family_with_or_without_prefix(family):
    arm = build_armature(family)
    m = detect_rig_match(arm.bones, kind="armature")
    assert m.rig.name == family and m.fits and not m.missing_write
    if family == "mixamo":
        for prefix in ("mixamorig:", "mixamorig7:", ""):
            m = detect_rig_match(build_armature(family, prefix=prefix).bones, kind="armature")
            assert (m.rig.name, m.prefix) == ("mixamo", prefix)


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_on_synthetic_armature(family):
    arm = build_armature(family, seed=2)
    binding = bind(arm)
    wanted = random_poses(40, seed=5)
    pose = solve(arm, wanted, binding=binding)
    assert not pose.warnings
    # Every aimed segment points where it was asked to; the keys alone (Blender's convention) give the same body.
    assert pose.aim_error.max() < 1e-4
    assert aimed_errors(pose.joints, wanted, pose).max() < 1e-4
    np.testing.assert_allclose(forward_kinematics(pose, binding), pose.joints, atol=1e-6)
    # Bones keep their lengths: every segment rigid in one bone keeps the rig's own length.
    rest = rest_joints(binding, world=True)
    for child, parent in BONES:
        if JOINT_NAMES[child] in ("hand_end_l", "hand_end_r", "elbow_l", "knee_r", "ankle_l", "toe_r"):
            got = np.linalg.norm(pose.joints[:, child] - pose.joints[:, parent], axis=-1)
            np.testing.assert_allclose(got, np.linalg.norm(rest[child] - rest[parent]), rtol=1e-6)
    # Quaternion keys are unit and the root moved the pelvis to the (leg-scaled) wanted root.
    np.testing.assert_allclose(np.linalg.norm(pose.quaternions, axis=-1), 1, atol=1e-9)
    np.testing.assert_allclose(pose.joints[:, 0], wanted[:, 0] * pose.root_scale, atol=1e-9)


def test_rolls_change_keys_not_poses():
    wanted = random_poses(10, seed=7)
    a, b = build_armature("mixamo", seed=1), build_armature("mixamo", seed=2)
    pa, pb = solve(a, wanted), solve(b, wanted)
    np.testing.assert_allclose(pa.joints, pb.joints, atol=1e-9)
    assert np.abs(pa.quaternions - pb.quaternions).max() > 0.1   # the rig's own rolls stay: keys differ


def test_rest_pose_gives_identity_keys_and_whole_body_turn_goes_to_root():
    arm = build_armature("mixamo", modes="QUATERNION")
    binding = bind(arm)
    rest = rest_joints(binding, world=True)
    pose = solve(arm, rest, binding=binding, root_scale=1.0)
    np.testing.assert_allclose(np.abs(pose.quaternions[..., 0]), 1, atol=1e-9)
    np.testing.assert_allclose(pose.location, 0, atol=1e-9)
    # Turn the whole rest body 90 degrees about Z and move it: only the root (Hips) turns, everything else rests.
    yaw = axis_angle_matrix(np.array([0, 0, 1.0]), np.array(np.pi / 2))
    pose = solve(arm, (rest - rest[0]) @ yaw.T + [1, 2, 0] + rest[0], binding=binding, root_scale=1.0)
    hips = pose.bones.index("mixamorig:Hips")
    want_local = arm.rest[arm.index["mixamorig:Hips"], :3, :3].T @ yaw @ arm.rest[arm.index["mixamorig:Hips"], :3, :3]
    np.testing.assert_allclose(quaternion_to_matrix(pose.quaternions[0, hips]), want_local, atol=1e-9)
    others = np.delete(pose.quaternions[0], hips, axis=0)
    np.testing.assert_allclose(np.abs(others[:, 0]), 1, atol=1e-9)


def test_elbow_stays_a_hinge_and_bend_plane_sets_upper_arm_twist():
    """Bending the elbow in the rig's own rest bend plane keeps the upper arm's twist; the same bend turned a
    quarter turn about the upper arm twists the upper arm a quarter turn about itself; the forearm turns about
    one axis only (the hinge), the same in both."""
    arm = build_armature("mixamo", modes="QUATERNION", rolls=False)
    binding = bind(arm)
    rest = rest_joints(binding, world=True)
    s, e, w, h = (INDEX[n] for n in ("shoulder_l", "elbow_l", "wrist_l", "hand_end_l"))
    upper_dir = _unit(rest[e] - rest[s])[0]
    hinge = _unit(np.cross(rest[e] - rest[s], rest[w] - rest[e]))[0]   # the rig's rest bend plane normal
    flex = axis_angle_matrix(hinge, np.array(np.radians(80.0)))
    roll = axis_angle_matrix(upper_dir, np.array(np.radians(90.0)))
    bodies = []
    for turn in (flex, roll @ flex):
        body = rest.copy()
        body[w] = rest[e] + turn @ (rest[w] - rest[e])
        body[h] = rest[e] + turn @ (rest[h] - rest[e])
        bodies.append(body)
    pose = solve(arm, np.stack(bodies), binding=binding, root_scale=1.0)
    upper = quaternion_to_matrix(pose.quaternions[:, pose.bones.index("mixamorig:LeftArm")])
    lower = quaternion_to_matrix(pose.quaternions[:, pose.bones.index("mixamorig:LeftForeArm")])
    np.testing.assert_allclose(upper[0], np.eye(3), atol=1e-9)           # in the rest bend plane: no twist
    # Turned bend: the upper arm turns 90 degrees about its own axis (the bone's Y), nothing else.
    np.testing.assert_allclose(upper[1], axis_angle_matrix(np.array([0, 1.0, 0]), np.array(np.pi / 2)),
                               atol=1e-9)
    np.testing.assert_allclose(lower[0], lower[1], atol=1e-9)
    angle = np.degrees(np.arccos(np.clip((np.trace(lower[0]) - 1) / 2, -1, 1)))
    assert abs(angle - 80) < 1e-6
    # The forearm's local rotation axis is the hinge, seen in the forearm's rest frame.
    fore_rest = arm.rest[arm.index["mixamorig:LeftForeArm"], :3, :3]
    np.testing.assert_allclose(lower[0], fore_rest.T @ flex @ fore_rest, atol=1e-9)


@pytest.mark.parametrize("root_scale", [1.0, 1.3])
def test_reach_lands_the_marked_hands_and_feet_where_the_body_has_them(root_scale):
    """A body whose shoulders and hips the rig cannot take (moved off the rig's own collar and pelvis distances):
    aimed bone by bone the hands and feet miss by centimetres; with `reach` each limb is bent from where the rig put
    its root and lands them exactly where the body has them from its pelvis (the root translation scaled or not),
    the bones keep the rig's lengths, and unmarked limbs and limbs with a marked elbow are solved as before."""
    arm = build_armature("mixamo")
    binding = bind(arm)
    rest = rest_joints(binding, world=True)
    bodies = random_poses(6, seed=3, max_angle=0.6)
    bodies = solve(arm, bodies, binding=binding, root_scale=1.0).joints           # poses the rig can take
    wanted = bodies.copy()
    for root, end in (("shoulder_l", "wrist_l"), ("shoulder_r", "wrist_r"), ("hip_l", "ankle_l")):
        # 3 cm towards the limb's end and 2 cm across it: the end stays within the limb's reach
        along = _unit(bodies[:, INDEX[end]] - bodies[:, INDEX[root]])[0]
        across = _unit(np.cross(along, [0.0, 0.0, 1.0]))[0]
        wanted[:, INDEX[root]] += 0.03 * along + 0.02 * across
    ends = [INDEX[n] for n in ("wrist_l", "wrist_r", "ankle_l")]
    reach = np.zeros(wanted.shape[:2], bool)
    reach[:, ends] = True
    aimed = solve(arm, wanted, binding=binding, root_scale=root_scale)
    reached = solve(arm, wanted, binding=binding, root_scale=root_scale, reach=reach)
    pelvis = INDEX["pelvis"]
    got = reached.joints - reached.joints[:, pelvis:pelvis + 1]          # from the pelvis
    want = wanted - wanted[:, pelvis:pelvis + 1]
    missed = aimed.joints - aimed.joints[:, pelvis:pelvis + 1]
    assert np.linalg.norm(missed[:, ends] - want[:, ends], axis=-1).max() > 0.02
    # Within the limb's reach of where the rig put its root: exact; beyond it: the limb straight at the target.
    for end in ends:
        mid, root = PARENTS[end], PARENTS[PARENTS[end]]
        span = np.linalg.norm(rest[mid] - rest[root]) + np.linalg.norm(rest[end] - rest[mid])
        far = np.linalg.norm(want[:, end] - got[:, root], axis=-1)
        miss = np.linalg.norm(got[:, end] - want[:, end], axis=-1)
        inside = far < span - 1e-4
        assert inside.sum() >= 4, JOINT_NAMES[end]
        np.testing.assert_allclose(miss[inside], 0.0, atol=1e-5, err_msg=JOINT_NAMES[end])
        np.testing.assert_allclose(miss[~inside], far[~inside] - span, atol=1e-5, err_msg=JOINT_NAMES[end])
    np.testing.assert_allclose(forward_kinematics(reached, binding), reached.joints, atol=1e-6)
    limbs = [INDEX[n] - 1 for n in ("elbow_l", "wrist_l", "elbow_r", "wrist_r", "knee_l", "ankle_l")]
    np.testing.assert_allclose(bone_lengths(reached.joints)[:, limbs],
                               np.broadcast_to(bone_lengths(rest)[limbs], (6, len(limbs))), atol=1e-6)
    free = INDEX["ankle_r"]                          # not marked: where the aimed solve has it
    np.testing.assert_allclose(reached.joints[:, free], aimed.joints[:, free], atol=1e-6)
    pinned = reach.copy()
    pinned[:, INDEX["elbow_r"]] = True               # a pinned elbow: that arm as aimed, the others still reached
    kept = solve(arm, wanted, binding=binding, root_scale=root_scale, reach=pinned).joints
    np.testing.assert_allclose(kept[:, [INDEX["elbow_r"], INDEX["wrist_r"]]],
                               aimed.joints[:, [INDEX["elbow_r"], INDEX["wrist_r"]]], atol=1e-6)
    np.testing.assert_allclose(kept[:, INDEX["wrist_l"]], reached.joints[:, INDEX["wrist_l"]], atol=1e-6)


def test_twist_stays_smooth_through_a_straight_limb_and_slow_turns():
    """A leg swinging through straight (no bend plane) and the whole body turning two full turns: keys change
    smoothly from frame to frame, no quaternion sign flips, no Euler jumps."""
    arm = build_armature("mixamo", seed=4)
    binding = bind(arm)
    rest = rest_joints(binding, world=True)
    n = 240
    t = np.linspace(0, 1, n)
    yaw = axis_angle_matrix(np.array([0, 0, 1.0]), 4 * np.pi * t)
    frames = np.einsum("fij,kj->fki", yaw, rest - rest[0]) + rest[0]
    # Knee bend goes from 35 degrees forward through straight to 8 degrees backwards (mocap hyperextension), back.
    bend = np.radians(17.5 + 17.5 * np.cos(2 * np.pi * t) - 8 * np.sin(np.pi * t))
    k, a = INDEX["knee_l"], INDEX["ankle_l"]
    shin = frames[:, a] - frames[:, k]
    across = np.einsum("fij,j->fi", yaw, [1.0, 0, 0])
    turn = axis_angle_matrix(across, bend)
    new_ankle = frames[:, k] + np.einsum("fij,fj->fi", turn, shin)
    frames[:, INDEX["toe_l"]] += new_ankle - frames[:, a]
    frames[:, a] = new_ankle
    pose = solve(arm, frames, binding=binding, root_scale=1.0)
    step = np.linalg.norm(np.diff(pose.quaternions, axis=0), axis=-1)
    assert step.max() < 0.15, step.max()                  # about 8 degrees per frame at most, never a flip
    assert np.all(np.sum(pose.quaternions[1:] * pose.quaternions[:-1], -1) > 0)
    for mode, values in zip(pose.rotation_modes, pose.rotations):
        if mode != "QUATERNION":
            assert np.abs(np.diff(values, axis=0)).max() < 0.6, mode     # unwrapped Euler curves
    assert pose.aim_error.max() < 1e-4


@pytest.mark.parametrize("family", ["mixamo", "smpl"])
def test_object_transform_and_a_pose_rest(family):
    """The armature object moved, turned and uniformly scaled, and a rig whose rest is an A-pose: same body."""
    world = np.eye(4)
    world[:3, :3] = axis_angle_matrix(np.array([0, 0, 1.0]), np.array(0.7)) * 0.01   # centimetre rig
    world[:3, 3] = [3, -1, 0.5]
    plain = build_armature(family, seed=3)
    moved = build_armature(family, seed=3, world=world)
    moved.rest = moved.rest.copy()
    moved.rest[:, :3, 3] *= 100                            # bones in centimetres, the object scaled by 0.01
    moved.lengths = moved.lengths * 100
    wanted = random_poses(8, seed=9)
    p0, p1 = solve(plain, wanted), solve(moved, wanted)
    np.testing.assert_allclose(rest_joints(bind(moved), world=True)[:6] - world[:3, 3],
                               (rest_joints(bind(plain), world=True)[:6]) @ world[:3, :3].T * 100, atol=1e-9)
    assert p1.aim_error.max() < 1e-4
    np.testing.assert_allclose(p1.joints[:, 0], wanted[:, 0] * p1.root_scale, atol=1e-9)
    assert p0.root_scale == pytest.approx(p1.root_scale)


def test_a_pose_and_t_pose_rigs_take_the_same_directions():
    t_rig = build_armature("mixamo", seed=0)
    binding = bind(t_rig)
    # Build an A-pose twin: arms lowered 40 degrees about the shoulders (bones move with them).
    rest = rest_joints(binding, world=True)
    a_pose = solve(t_rig, _lower_arms(rest, 40), binding=binding, root_scale=1.0)
    mats = _pose_matrices(t_rig, binding, a_pose)
    a_rig = Armature(name="a", bones=t_rig.bones, parents=t_rig.parents, rest=mats, lengths=t_rig.lengths,
                        rotation_modes=t_rig.rotation_modes, local_location=t_rig.local_location,
                        inherit_rotation=t_rig.inherit_rotation, constraints=t_rig.constraints)
    wanted = random_poses(12, seed=11)
    j_t, j_a = solve(t_rig, wanted).joints, solve(a_rig, wanted).joints
    np.testing.assert_allclose(bone_directions(j_t), bone_directions(j_a), atol=1e-6)


def _lower_arms(rest: np.ndarray, degrees: float) -> np.ndarray:
    out = rest.copy()
    for s, sign in (("l", -1), ("r", 1)):
        pivot = rest[INDEX[f"shoulder_{s}"]]
        turn = axis_angle_matrix(np.array([0, 1.0, 0]), np.array(np.radians(degrees) * sign))
        for n in ("elbow", "wrist", "hand_end"):
            out[INDEX[f"{n}_{s}"]] = pivot + turn @ (rest[INDEX[f"{n}_{s}"]] - pivot)
    return out


def _pose_matrices(arm: Armature, binding: Binding, pose: RigPose) -> np.ndarray:
    """Armature-space matrices of every bone for frame 0 of a pose (all bones of the test rigs are keyed or are
    leaves), by Blender's convention: parent @ inv(parent rest) @ rest @ basis."""
    local = {arm.index[b]: quaternion_to_matrix(q) for b, q in zip(pose.bones, pose.quaternions[0])}
    out = np.zeros_like(arm.rest)
    for b in range(len(arm.bones)):                        # recipes list parents before children
        basis = np.eye(4)
        basis[:3, :3] = local.get(b, np.eye(3))
        if arm.bones[b] == pose.root:
            basis[:3, 3] = pose.location[0]
        p = arm.parents[b]
        out[b] = (out[p] @ np.linalg.inv(arm.rest[p]) if p >= 0 else np.eye(4)) @ arm.rest[b] @ basis
    return out


def test_joints_from_pose_reads_pose_matrices():
    arm = build_armature("ue5_mannequin", seed=5)
    binding = bind(arm)
    pose = solve(arm, random_poses(1, seed=2), binding=binding)
    mats = _pose_matrices(arm, binding, pose)
    np.testing.assert_allclose(joints_from_pose(binding, mats)[0], pose.joints[0], atol=1e-9)


def test_bvh_family_map_on_an_armature_built_from_its_file(data_file):
    """A BVH map reads and writes an armature built from its file's rest skeleton (Blender's importer does the
    same): offsets in the file's axes become bone-local points; interpolated torso joints need the FK sweeps."""
    from gfpose_core.data import load_take

    for rel, name in ((BANDAI, "bandai"), (CMU_MB31, "cmu_mb31")):
        arm = bvh_armature(data_file(rel), name)
        binding = bind(arm)
        assert binding.rig.name == name
        wanted = load_take(data_file(BANDAI if name == "cmu_mb31" else CMU_MB31)).joints[1:200:20]
        pose = solve(arm, wanted, binding=binding)
        assert pose.aim_error.max() < 1e-4, (name, pose.aim_error.max(0))
        np.testing.assert_allclose(forward_kinematics(pose, binding), pose.joints, atol=1e-6)


# --- clear errors -------------------------------------------------------------------------------------------------

def test_unmatched_armature_names_unmapped_joints_and_template_command():
    arm = Armature.from_bones("blob", ["Bone", "Bone.001"], [-1, 0], [[0, 0, 0], [0, 0, 1]],
                                 [[0, 0, 1], [0, 0, 2]], [0, 0])
    with pytest.raises(RigMapError) as info:
        bind(arm)
    msg = str(info.value)
    # Neither a map nor the automatic mapping fits: say what was found and what to do in the add-on, briefly.
    assert "does not look like a humanoid" in msg and "0 arm(s)" in msg and "Rig Mapping" in msg
    assert len(msg) < 300


def test_missing_bone_is_named_with_the_joints_it_leaves_unmapped():
    arm = build_armature("mixamo")
    keep = [i for i, n in enumerate(arm.bones) if n != "mixamorig:LeftForeArm"]
    idx = {old: new for new, old in enumerate(keep)}
    parents = [idx.get(arm.parents[i], -1) if arm.parents[i] in idx else (-1 if arm.parents[i] < 0 else 0)
               for i in keep]
    small = Armature(name="mixamo-", bones=[arm.bones[i] for i in keep], parents=parents,
                        rest=arm.rest[keep], lengths=arm.lengths[keep],
                        rotation_modes=[arm.rotation_modes[i] for i in keep], local_location=arm.local_location[keep],
                        inherit_rotation=arm.inherit_rotation[keep], constraints=[[] for _ in keep])
    with pytest.raises(RigMapError) as info:
        bind(small, "mixamo")
    msg = str(info.value)
    assert "mixamorig:LeftForeArm" in msg and "elbow_l" in msg and "prefix 'mixamorig:'" in msg
    # Detection says the same: closest is mixamo, and which body24 joint is unmapped.
    with pytest.raises(RigMapError, match="closest is 'mixamo'.*elbow_l"):
        detect_rig_match(small.bones, kind="armature")
    # bind() then tries the automatic mapping, which finds one arm too short to be an arm, and says so.
    with pytest.raises(RigMapError, match="does not look like a humanoid.*Rig Mapping"):
        bind(small)


def test_bad_descriptions_are_refused_with_a_message():
    arm = build_armature("smpl")
    d = arm.to_dict()
    again = Armature.from_dict(json.loads(json.dumps(d)))
    np.testing.assert_allclose(again.rest, arm.rest)
    bad = json.loads(json.dumps(d))
    bad["bones"][3] = {"name": bad["bones"][3]["name"], "parent": bad["bones"][3]["parent"],
                       "head": [0, 0, 1], "tail": [0, 0, 1]}
    with pytest.raises(ValueError, match="zero length"):
        Armature.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["bones"][2]["matrix_local"] = np.diag([0.0, 1, 1, 1]).tolist()
    with pytest.raises(ValueError, match="no proper rest orientation"):
        Armature.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["matrix_world"] = np.diag([1.0, 2.0, 1.0, 1.0]).tolist()
    with pytest.raises(ValueError, match="non-uniform scale"):
        Armature.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["bones"][1]["parent"] = "nobody"
    with pytest.raises(ValueError, match="nobody"):
        Armature.from_dict(bad)
    with pytest.raises(ValueError, match="not an armature description"):
        Armature.from_dict({"bones": [{"parent": None}]})


def test_bad_poses_and_maps_without_write_are_refused():
    arm = build_armature("mixamo")
    pose = random_poses(2)
    pose[1, INDEX["wrist_r"]] = np.nan
    with pytest.raises(ValueError, match="wrist_r"):
        solve(arm, pose)
    with pytest.raises(ValueError, match="shape"):
        solve(arm, np.zeros((3, 23, 3)))
    data = load_rig_map("mixamo").raw.copy()
    data.pop("write")
    with pytest.raises(RigMapError, match="no \\[write\\] table"):
        solve(arm, random_poses(1), rig=parse_rig_map(data, "readonly.toml"))
    # A map whose rest pose has two body24 joints on top of each other cannot give that part a direction.
    data = load_rig_map("mixamo").raw.copy()
    data["joints"] = dict(data["joints"], head_end="Head")
    with pytest.raises(RigMapError, match="'head' and 'head_end' at the same place"):
        solve(arm, random_poses(1), rig=parse_rig_map(data, "flat.toml"))


def test_write_table_is_validated():
    data = load_rig_map("mixamo").raw.copy()
    data["write"] = {"root": "Pelvis", "bones": {"Hips": "pelvis", "Spine": "belly"}, "rest": ["Hips"],
                     "properties": {"Hips": {"IK_FK": "fk"}}, "colour": 1}
    with pytest.raises(RigMapError) as info:
        parse_rig_map(data, "w.toml")
    msg = str(info.value)
    for needle in ("root bone 'Pelvis' must also be listed", "Spine = 'belly' is not a body24 joint",
                   "both keyed and held at rest", "IK_FK must be numbers", "unknown key(s) colour"):
        assert needle in msg, msg


def test_server_helpers_speak_json():
    arm = build_armature("ue4_mannequin")
    d = json.loads(json.dumps(arm.to_dict()))
    info = bind_for_rig(d)
    assert info["rig"] == "ue4_mannequin" and info["can_write"] and len(info["weights"]) == 24
    keys = pose_for_rig(d, random_poses(3).tolist())
    json.dumps(keys)
    paths = {(c["bone"], c["path"]) for c in keys["channels"]}
    assert ("pelvis", "location") in paths and ("upperarm_l", "rotation_quaternion") in paths or \
        ("upperarm_l", "rotation_euler") in paths
    assert len(keys["channels"][0]["values"]) == 3


def test_the_server_plans_an_armature_once_and_names_it_after():
    """The add-on sends an armature once; later solves name its binding_id, and give the same keys as sending the
    armature again. An id the cache does not hold is refused (the add-on then sends the armature)."""
    from gfpose_core.rigs.solve import BindingCache, UnknownBinding
    d = json.loads(json.dumps(build_armature("ue4_mannequin").to_dict()))
    cache = BindingCache(size=2)
    poses = random_poses(2).tolist()
    first = cache.pose_for_rig(poses, d)
    bid = first["binding_id"]
    again = cache.pose_for_rig(poses, binding_id=bid)
    assert again["channels"] == first["channels"] and again["binding_id"] == bid
    assert cache.get(bid).plan is not None                      # planned once, kept with the binding
    assert cache.pose_for_rig(poses, d)["binding_id"] == bid     # the same armature is the same binding
    moved = json.loads(json.dumps(d))
    moved["bones"][0]["matrix_local"][0][3] += 0.1
    assert cache.pose_for_rig(poses, moved)["binding_id"] != bid
    cache.pose_for_rig(poses, build_armature("mixamo").to_dict())   # a third armature: the oldest goes
    with pytest.raises(UnknownBinding):
        cache.pose_for_rig(poses, binding_id=bid)


def test_template_command_prints_a_loadable_map(tmp_path, capsys):
    from gfpose_core.rigs.rig_map import main
    assert main(["template", "my_rig", "--like", "mixamo"]) == 0
    text = capsys.readouterr().out
    p = tmp_path / "my_rig.toml"
    p.write_text(text)
    assert load_rig_map(p).name == "my_rig"
    assert main(["template", "blank"]) == 0
    assert 'name = "blank"' in capsys.readouterr().out
    assert (RIGS_DIR / "TEMPLATE.toml.txt").exists()
