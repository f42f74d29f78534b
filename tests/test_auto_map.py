"""Automatic rig mapping on skeletons written out here from published rigs: their bone names and hierarchy, rest
positions rounded to the centimetre from the rigs' published proportions (T-pose or A-pose as they ship), random
rolls. Each humanoid maps by itself; where a shipped map covers the rig, both give the same landmarks (both place
them at the training data's fractions, rigs/landmarks.py: within 1.5 cm of each other for every joint); the engine
completes and denoises on each; a quadruped is refused, naming what it has.
"""
from __future__ import annotations

import numpy as np
import pytest

from gfpose_core.body.skeleton import INDEX, JOINT_NAMES
from gfpose_core.data import load_take
from gfpose_core.formats.bvh import read_bvh
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.auto_map import NotHumanoidError, auto_bvh_map, auto_rig_map
from gfpose_core.rigs.binding import bind, rest_joints
from gfpose_core.rigs.rig_map import (
    RigMapError,
    detect_rig_match,
    load_rig_map,
    rig_map_names,
)
from gfpose_core.rigs.solve import bind_for_rig, solve

TOL = 0.03
# Automatic and shipped maps read the same table of landmark fractions (rigs/landmarks.py); they differ only where a
# shipped map puts the crown at a fixed height above the head bone (SMPL: 1.2 cm).
TOL_SHIPPED = 0.015


def _sides(rows):
    """Rows (name, parent, head) where "{S}"/"{s}"/"{X}" take Left/left/L and Right/right/R; left is +X."""
    out = []
    for name, parent, head in rows:
        if "{" not in name:
            out.append((name, parent, head))
            continue
        for side, big, small, letter, sign in (("l", "Left", "left", "L", 1), ("r", "Right", "right", "R", -1)):
            f = {"S": big, "s": small, "X": letter, "c": side}
            out.append((name.format(**f), parent.format(**f) if parent else None,
                        (sign * head[0], head[1], head[2])))
    return out


def make_armature(name, rows, tails=None, world=None, data_turn=None, seed=0):
    """An armature whose world rest positions are `rows` (metres, Z up, facing -Y unless data_turn turns them):
    tails at the first child's head, a chain's last bone continuing its parent's direction (as importers do)
    unless given in `tails`; bone data stored in the object's own frame (world^-1)."""
    rows = _sides(rows)
    names = [r[0] for r in rows]
    index = {n: i for i, n in enumerate(names)}
    parents = [index[r[1]] if r[1] else -1 for r in rows]
    heads = np.array([r[2] for r in rows], dtype=float)
    if data_turn is not None:
        heads = heads @ data_turn.T
    tails = dict(tails or {})
    tail = np.zeros_like(heads)
    for i, n in enumerate(names):
        kids = [k for k, p in enumerate(parents) if p == i]
        if n in tails:
            tail[i] = np.asarray(tails[n], float) @ (data_turn.T if data_turn is not None else np.eye(3))
        elif kids and np.linalg.norm(heads[kids[0]] - heads[i]) > 1e-4:
            tail[i] = heads[kids[0]]
        elif parents[i] >= 0 and np.linalg.norm(heads[i] - heads[parents[i]]) > 1e-4:
            d = heads[i] - heads[parents[i]]
            tail[i] = heads[i] + 0.3 * d
        else:
            tail[i] = heads[i] + [0, 0, 0.1]
    w = np.eye(4) if world is None else np.asarray(world, float)
    inv = np.linalg.inv(w)
    h = heads @ inv[:3, :3].T + inv[:3, 3]
    t = tail @ inv[:3, :3].T + inv[:3, 3]
    rolls = np.random.default_rng(seed).uniform(-np.pi, np.pi, len(names))
    return Armature.from_bones(name, names, parents, h, t, rolls, world=w)


def _rot_x(deg):
    a = np.radians(deg)
    m = np.eye(4)
    m[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return m


TURN_TO_PLUS_X = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # -Y (front) -> +X
FBX_CM = _rot_x(90) @ np.diag([0.01, 0.01, 0.01, 1.0])     # Blender's FBX import of a Y-up centimetre file

# Mixamo (Y Bot proportions, T-pose).
_MIXAMO_BODY = [
    ("mixamorig:Hips", None, (0, 0.0, 1.0)), ("mixamorig:Spine", "mixamorig:Hips", (0, -0.01, 1.10)),
    ("mixamorig:Spine1", "mixamorig:Spine", (0, -0.01, 1.22)),
    ("mixamorig:Spine2", "mixamorig:Spine1", (0, -0.01, 1.355)),
    ("mixamorig:Neck", "mixamorig:Spine2", (0, -0.01, 1.505)), ("mixamorig:Head", "mixamorig:Neck", (0, -0.04, 1.60)),
    ("mixamorig:HeadTop_End", "mixamorig:Head", (0, -0.07, 1.785)),
    ("mixamorig:{S}Shoulder", "mixamorig:Spine2", (0.06, -0.01, 1.45)),
    ("mixamorig:{S}Arm", "mixamorig:{S}Shoulder", (0.18, 0.0, 1.44)),
    ("mixamorig:{S}ForeArm", "mixamorig:{S}Arm", (0.455, 0.0, 1.44)),
    ("mixamorig:{S}Hand", "mixamorig:{S}ForeArm", (0.72, 0.0, 1.44)),
    ("mixamorig:{S}UpLeg", "mixamorig:Hips", (0.09, 0.0, 0.935)),
    ("mixamorig:{S}Leg", "mixamorig:{S}UpLeg", (0.09, 0.0, 0.52)),
    ("mixamorig:{S}Foot", "mixamorig:{S}Leg", (0.09, 0.03, 0.10)),
    ("mixamorig:{S}ToeBase", "mixamorig:{S}Foot", (0.09, -0.10, 0.02)),
    ("mixamorig:{S}Toe_End", "mixamorig:{S}ToeBase", (0.09, -0.18, 0.02)),
]
_MIXAMO_FINGERS = []
for _f, (_x, _y, _z), _step in (("Thumb", (0.745, -0.025, 1.425), (0.022, -0.015, -0.006)),
                                 ("Index", (0.81, -0.025, 1.445), (0.028, 0, 0)),
                                 ("Middle", (0.815, 0.0, 1.445), (0.032, 0, 0)),
                                 ("Ring", (0.81, 0.02, 1.44), (0.028, 0, 0)),
                                 ("Pinky", (0.80, 0.04, 1.435), (0.021, 0, 0))):
    for _k in range(1, 5):
        _p = f"mixamorig:{{S}}Hand{_f}{_k - 1}" if _k > 1 else "mixamorig:{S}Hand"
        _MIXAMO_FINGERS.append((f"mixamorig:{{S}}Hand{_f}{_k}", _p,
                                (_x + _step[0] * (_k - 1), _y + _step[1] * (_k - 1), _z + _step[2] * (_k - 1))))
MIXAMO = _MIXAMO_BODY + _MIXAMO_FINGERS

# Unreal Engine 4 Mannequin (SK_Mannequin, A-pose), with its twist and IK helper bones.
_UE_LIMBS = [
    ("clavicle_{c}", "{spine_top}", (0.04, -0.01, 1.45)), ("upperarm_{c}", "clavicle_{c}", (0.17, 0.0, 1.43)),
    ("upperarm_twist_01_{c}", "upperarm_{c}", (0.26, 0.015, 1.33)),
    ("lowerarm_{c}", "upperarm_{c}", (0.35, 0.03, 1.23)), ("lowerarm_twist_01_{c}", "lowerarm_{c}", (0.44, 0.0, 1.14)),
    ("hand_{c}", "lowerarm_{c}", (0.52, -0.02, 1.06)),
    ("thumb_01_{c}", "hand_{c}", (0.54, -0.05, 1.04)), ("thumb_02_{c}", "thumb_01_{c}", (0.56, -0.07, 1.02)),
    ("index_01_{c}", "hand_{c}", (0.585, -0.05, 0.995)), ("index_02_{c}", "index_01_{c}", (0.61, -0.055, 0.97)),
    ("middle_01_{c}", "hand_{c}", (0.59, -0.03, 0.99)), ("middle_02_{c}", "middle_01_{c}", (0.615, -0.035, 0.96)),
    ("ring_01_{c}", "hand_{c}", (0.585, -0.01, 0.99)), ("pinky_01_{c}", "hand_{c}", (0.575, 0.005, 0.995)),
    ("thigh_{c}", "pelvis", (0.09, 0.0, 0.96)), ("thigh_twist_01_{c}", "thigh_{c}", (0.095, 0.0, 0.75)),
    ("calf_{c}", "thigh_{c}", (0.10, 0.0, 0.53)), ("calf_twist_01_{c}", "calf_{c}", (0.105, 0.01, 0.32)),
    ("foot_{c}", "calf_{c}", (0.11, 0.03, 0.10)), ("ball_{c}", "foot_{c}", (0.12, -0.11, 0.02)),
]
UE4 = [("root", None, (0, 0.0, 0.0)), ("pelvis", "root", (0, 0.0, 0.98)), ("spine_01", "pelvis", (0, 0.0, 1.08)),
       ("spine_02", "spine_01", (0, 0.0, 1.19)), ("spine_03", "spine_02", (0, 0.0, 1.33)),
       ("neck_01", "spine_03", (0, -0.01, 1.50)), ("head", "neck_01", (0, -0.01, 1.59))] + [
    (n, p.replace("{spine_top}", "spine_03"), h) for n, p, h in _UE_LIMBS] + [
    ("ik_foot_root", "root", (0, 0, 0)), ("ik_foot_{c}", "ik_foot_root", (0.11, 0.03, 0.10)),
    ("ik_hand_root", "root", (0, 0, 0)), ("ik_hand_gun", "ik_hand_root", (-0.52, -0.02, 1.06)),
    ("ik_hand_{c}", "ik_hand_gun", (0.52, -0.02, 1.06))]

# Unreal Engine 5 Manny: five spine bones, two neck bones, metacarpals.
UE5 = [("root", None, (0, 0.0, 0.0)), ("pelvis", "root", (0, 0.0, 0.97)), ("spine_01", "pelvis", (0, 0.0, 1.01)),
       ("spine_02", "spine_01", (0, 0.0, 1.10)), ("spine_03", "spine_02", (0, 0.0, 1.21)),
       ("spine_04", "spine_03", (0, 0.0, 1.33)), ("spine_05", "spine_04", (0, 0.0, 1.45)),
       ("neck_01", "spine_05", (0, -0.01, 1.54)), ("neck_02", "neck_01", (0, -0.02, 1.59)),
       ("head", "neck_02", (0, -0.02, 1.64))] + [
    (n.replace("middle_01_{c}", "middle_metacarpal_{c}") if n.startswith("middle_01") else n,
     p.replace("{spine_top}", "spine_05"), h) for n, p, h in _UE_LIMBS if not n.startswith("middle_02")] + [
    ("middle_01_{c}", "middle_metacarpal_{c}", (0.595, -0.032, 0.985))]
UE5 = [(n, p, (h[0], h[1], h[2] - 0.01) if n.startswith(("thigh", "calf", "foot", "ball")) else h)
       for n, p, h in UE5]
UE5 = [(n, p, (0.53, -0.022, 1.05)) if n.startswith("middle_metacarpal") else (n, p, h) for n, p, h in UE5]

# SMPL body joints (the neutral template's joints, rounded; the SMPL-X Blender add-on's bone names).
SMPL = [("pelvis", None, (0, -0.03, 0.93)), ("{s}_hip", "pelvis", (0.07, -0.02, 0.84)),
        ("spine1", "pelvis", (0, -0.01, 1.05)), ("{s}_knee", "{s}_hip", (0.105, -0.015, 0.46)),
        ("spine2", "spine1", (0, -0.01, 1.18)), ("{s}_ankle", "{s}_knee", (0.09, 0.03, 0.065)),
        ("spine3", "spine2", (0, -0.04, 1.235)), ("{s}_foot", "{s}_ankle", (0.12, -0.10, 0.01)),
        ("neck", "spine3", (0, 0.02, 1.44)), ("{s}_collar", "spine3", (0.08, 0.01, 1.35)),
        ("head", "neck", (0, -0.04, 1.51)), ("{s}_shoulder", "{s}_collar", (0.17, 0.015, 1.38)),
        ("{s}_elbow", "{s}_shoulder", (0.43, 0.04, 1.37)), ("{s}_wrist", "{s}_elbow", (0.69, 0.045, 1.375)),
        ("{s}_hand", "{s}_wrist", (0.775, 0.055, 1.37))]

# A game rig with Blender-style names, an IK control per foot that the foot hangs from, and knee poles.
GAME = [("Root", None, (0, 0, 0)), ("Pelvis", "Root", (0, 0.0, 1.0)), ("Spine", "Pelvis", (0, 0.0, 1.12)),
        ("Chest", "Spine", (0, 0.0, 1.29)), ("Neck", "Chest", (0, 0.0, 1.50)), ("Head", "Neck", (0, -0.01, 1.60)),
        ("Collar.{X}", "Chest", (0.03, -0.03, 1.44)), ("UpperArm.{X}", "Collar.{X}", (0.18, 0.0, 1.43)),
        ("LowerArm.{X}", "UpperArm.{X}", (0.45, 0.02, 1.43)), ("Hand.{X}", "LowerArm.{X}", (0.71, 0.0, 1.43)),
        ("UpperLeg.{X}", "Pelvis", (0.09, 0.0, 0.95)), ("LowerLeg.{X}", "UpperLeg.{X}", (0.095, -0.01, 0.52)),
        ("FootControl.{X}", "Root", (0.10, 0.07, 0.0)), ("Foot.{X}", "FootControl.{X}", (0.10, 0.03, 0.09)),
        ("Toe.{X}", "Foot.{X}", (0.10, -0.10, 0.02)), ("KneePole.{X}", "Root", (0.095, -0.5, 0.52))]
GAME_TAILS = {"Head": (0, -0.01, 1.79), "Hand.L": (0.80, 0, 1.42), "Hand.R": (-0.80, 0, 1.42),
              "Toe.L": (0.10, -0.16, 0.02), "Toe.R": (-0.10, -0.16, 0.02), "FootControl.L": (0.10, -0.10, 0.0),
              "FootControl.R": (-0.10, -0.10, 0.0), "LowerLeg.L": (0.10, 0.03, 0.09),
              "LowerLeg.R": (-0.10, 0.03, 0.09), "KneePole.L": (0.095, -0.55, 0.52),
              "KneePole.R": (-0.095, -0.55, 0.52)}
GAME_EXPECT = {"pelvis": None, "spine": "Spine", "chest": "Chest", "neck": "Neck", "head": "Head",
               "head_end": "Head", "collar_l": "Collar.L", "shoulder_l": "UpperArm.L", "elbow_l": "LowerArm.L",
               "wrist_l": "Hand.L", "hand_end_l": "Hand.L", "hip_l": "UpperLeg.L", "knee_l": "LowerLeg.L",
               "ankle_l": "LowerLeg.L", "toe_l": "Toe.L", "hip_r": "UpperLeg.R", "toe_r": "Toe.R",
               "shoulder_r": "UpperArm.R"}

# A glTF character whose bones have no names, no fingers and no toes (the importer's leaf bones point on).
_UNNAMED_ROWS = [(0, None, (0, 0, 0.98)), (1, 0, (0, 0, 1.13)), (2, 1, (0, 0, 1.30)), (3, 2, (0, -0.01, 1.48)),
                 (4, 3, (0, -0.01, 1.57))]
for _i, _s in ((5, 1), (9, -1)):
    _UNNAMED_ROWS += [(_i, 2, (0.04 * _s, -0.02, 1.43)), (_i + 1, _i, (0.18 * _s, 0, 1.42)),
                      (_i + 2, _i + 1, (0.30 * _s, 0.02, 1.18)), (_i + 3, _i + 2, (0.40 * _s, 0, 0.96))]
for _i, _s in ((13, 1), (16, -1)):
    _UNNAMED_ROWS += [(_i, 0, (0.09 * _s, 0, 0.93)), (_i + 1, _i, (0.095 * _s, -0.01, 0.51)),
                      (_i + 2, _i + 1, (0.10 * _s, 0.03, 0.09))]
UNNAMED = [(f"Node_{i}", f"Node_{p}" if p is not None else None, h) for i, p, h in _UNNAMED_ROWS]
UNNAMED_TAILS = {"Node_15": (0.10, -0.09, 0.02), "Node_18": (-0.10, -0.09, 0.02)}
UNNAMED_EXPECT = {"hip_l": "Node_13", "hip_r": "Node_16", "knee_l": "Node_14", "ankle_r": "Node_18",
                  "shoulder_l": "Node_6", "shoulder_r": "Node_10", "elbow_l": "Node_7", "wrist_r": "Node_12",
                  "collar_l": "Node_5", "neck": "Node_3", "head": "Node_4", "spine": "Node_1", "chest": "Node_2"}

# A quadruped (a fox): four legs to the floor, a neck and head forward, a tail; no arms.
FOX = [("Hips", None, (0, 0.22, 0.36)), ("Spine", "Hips", (0, 0.10, 0.37)), ("Chest", "Spine", (0, -0.08, 0.38)),
       ("Neck", "Chest", (0, -0.18, 0.42)), ("Head", "Neck", (0, -0.26, 0.50)), ("Nose", "Head", (0, -0.36, 0.47)),
       ("Tail1", "Hips", (0, 0.30, 0.36)), ("Tail2", "Tail1", (0, 0.45, 0.30)), ("Tail3", "Tail2", (0, 0.60, 0.25)),
       ("Shoulder.{X}", "Chest", (0.06, -0.10, 0.32)), ("Elbow.{X}", "Shoulder.{X}", (0.06, -0.08, 0.18)),
       ("Wrist.{X}", "Elbow.{X}", (0.06, -0.10, 0.05)), ("Paw.{X}", "Wrist.{X}", (0.06, -0.13, 0.0)),
       ("Thigh.{X}", "Hips", (0.06, 0.22, 0.30)), ("Hock.{X}", "Thigh.{X}", (0.06, 0.30, 0.14)),
       ("Foot.{X}", "Hock.{X}", (0.06, 0.26, 0.05)), ("HindPaw.{X}", "Foot.{X}", (0.06, 0.22, 0.0))]


def _scaled(rows, k):
    return [(n, p, tuple(k * v for v in h)) for n, p, h in rows]


def _mixamo_fbx(rows=MIXAMO, **kw):
    # Mixamo FBX files are Y-up centimetres: Blender's importer gives the object a 90 degree turn and scale 0.01.
    return make_armature("Y Bot", rows, world=FBX_CM, **kw)


ARMATURES = {
    "mixamo": lambda: _mixamo_fbx(),
    "mixamo_no_fingers": lambda: _mixamo_fbx(_MIXAMO_BODY),
    "mixamo_plain_names": lambda: make_armature("X Bot", [(n.replace("mixamorig:", ""),
                                                           p and p.replace("mixamorig:", ""), h) for n, p, h in MIXAMO]),
    "ue4_mannequin": lambda: make_armature("SK_Mannequin", UE4),
    "ue5_mannequin": lambda: make_armature("SKM_Manny", UE5),
    "smpl": lambda: make_armature("SMPL-neutral", SMPL, tails={"head": (0, -0.04, 1.60)}),
    "game_rig": lambda: make_armature("Hero", GAME, tails=GAME_TAILS),
    "unnamed": lambda: make_armature("Armature", UNNAMED, tails=UNNAMED_TAILS),
    "robot_scale_100": lambda: make_armature("Robot", _scaled(GAME, 1.0), tails=GAME_TAILS,
                                             world=np.diag([100.0, 100.0, 100.0, 1.0])),
    "tiny_scale_001": lambda: make_armature("Tiny", UE4, world=np.diag([0.01, 0.01, 0.01, 1.0])),
    "facing_plus_x": lambda: make_armature("Sideways", UE5, data_turn=TURN_TO_PLUS_X),
    "upper_chest": lambda: make_armature("UpperChest", [(n, "UpperChest" if n == "Neck" else p, h) for n, p, h in GAME]
                                         + [("UpperChest", "Chest", (0, 0.0, 1.41))], tails=GAME_TAILS),
    "ju_prefixed": lambda: make_armature("JU_rig", [("JU_" + n, p and "JU_" + p, h) for n, p, h in GAME],
                                         tails={"JU_" + k: v for k, v in GAME_TAILS.items()}),
}
SHIPPED = {"mixamo": "mixamo", "mixamo_plain_names": "mixamo", "ue4_mannequin": "ue4_mannequin",
           "ue5_mannequin": "ue5_mannequin", "smpl": "smpl", "tiny_scale_001": "ue4_mannequin",
           "facing_plus_x": "ue5_mannequin"}


@pytest.mark.parametrize("case", sorted(SHIPPED))
def test_automatic_landmarks_agree_with_the_shipped_map(case):
    arm = ARMATURES[case]()
    auto = auto_rig_map(arm)
    a = rest_joints(bind(arm, auto.rig), world=True)
    s = rest_joints(bind(arm, SHIPPED[case]), world=True)
    off = np.linalg.norm(a - s, axis=-1)
    for j, name in enumerate(JOINT_NAMES):
        assert off[j] <= TOL_SHIPPED, (case, name, off[j])
    assert auto.confidence > 0.8
    assert auto.rig.name.startswith("auto:") and auto.rig.write is not None


def _side_sign(arm: Armature, j: np.ndarray) -> float:
    """+1 when the body24 left side is on the character's own left (up x front)."""
    up = j[INDEX["head"]] - j[INDEX["pelvis"]]
    front = (j[INDEX["toe_l"]] + j[INDEX["toe_r"]] - j[INDEX["ankle_l"]] - j[INDEX["ankle_r"]])
    return float(np.sign(np.cross(up, front) @ (j[INDEX["hip_l"]] - j[INDEX["hip_r"]])))


@pytest.mark.parametrize("case", sorted(ARMATURES))
def test_every_humanoid_maps_to_a_plausible_body(case):
    arm = ARMATURES[case]()
    auto = auto_rig_map(arm)
    binding = bind(arm, auto.rig)
    j = rest_joints(binding, world=True)
    assert np.all(np.isfinite(j))
    up = j[INDEX["head_end"]] - j[INDEX["toe_l"]]
    stature = np.linalg.norm(up)
    assert 1.4 < stature < 2.1, stature
    up /= stature
    # Heights in order along the body, left on the character's left, the ends beyond their joints.
    h = {n: float(j[INDEX[n]] @ up) for n in JOINT_NAMES}
    assert h["toe_l"] < h["ankle_l"] < h["knee_l"] < h["hip_l"] < h["spine"] < h["chest"] < h["neck"] \
        < h["head"] < h["head_end"]
    assert _side_sign(arm, j) > 0
    for a, b, c in (("elbow_l", "wrist_l", "hand_end_l"), ("elbow_r", "wrist_r", "hand_end_r")):
        reach = np.linalg.norm(j[INDEX[c]] - j[INDEX[a]])
        assert reach > np.linalg.norm(j[INDEX[b]] - j[INDEX[a]]) + 0.05
    # The names a reader can check by eye.
    expect = {"game_rig": GAME_EXPECT, "unnamed": UNNAMED_EXPECT, "robot_scale_100": GAME_EXPECT,
              "upper_chest": GAME_EXPECT}.get(case, {})
    got = auto.joint_bones()
    for joint, bone in expect.items():
        if bone is not None:
            assert got[joint] == bone, (joint, got[joint], bone)


def test_no_fingers_the_hand_tail_gives_the_knuckles():
    arm = ARMATURES["mixamo_no_fingers"]()
    with pytest.raises(RigMapError, match="LeftHandMiddle1"):
        detect_rig_match(arm.bones, kind="armature")
    auto = auto_rig_map(arm)
    assert auto.rig.joints["hand_end_l"].refs[0] == "mixamorig:LeftHand:tail"
    full = ARMATURES["mixamo"]()
    a = rest_joints(bind(arm), world=True)       # bind() falls back to the automatic mapping
    s = rest_joints(bind(full, "mixamo"), world=True)
    assert np.linalg.norm(a - s, axis=-1).max() < TOL
    assert np.linalg.norm(a[INDEX["hand_end_l"]] - s[INDEX["hand_end_l"]]) < TOL
    assert any("no finger bones" in n for n in auto.notes)


def test_control_parented_feet_key_the_controls():
    arm = ARMATURES["game_rig"]()
    auto = auto_rig_map(arm)
    bones = auto.rig.write.bones
    assert bones["FootControl.L"] == "ankle_l" and bones["FootControl.R"] == "ankle_r"
    assert "Foot.L" not in bones and "KneePole.L" not in bones and "Root" not in bones
    assert auto.rig.write.root == "Pelvis"
    assert bones["UpperLeg.L"] == "hip_l" and bones["LowerArm.R"] == "elbow_r" and bones["Chest"] == "chest"


@pytest.mark.parametrize("case", ["mixamo_no_fingers", "unnamed", "facing_plus_x", "tiny_scale_001", "mixamo",
                                  "smpl", "game_rig", "ju_prefixed"])
def test_poses_write_onto_automatically_mapped_rigs(case):
    """The automatic map keys a pose: every aimed body part points where it was asked (as for shipped maps).
    The game rig's feet hang from controls that the solve turns but does not move (only the root bone takes
    location keys): its parts aim within half a degree there."""
    arm = ARMATURES[case]()
    binding = bind(arm)
    rest = rest_joints(binding, world=True)
    rng = np.random.default_rng(3)
    wanted = rest + rng.normal(scale=0.02, size=(6, 24, 3))
    pose = solve(arm, wanted, binding=binding)
    assert not pose.warnings
    assert pose.aim_error.max() < (0.5 if "game" in case or "ju" in case else 1e-3), pose.aim_error.max(0)  # deg


def test_quadruped_is_refused_naming_what_it_has():
    fox = make_armature("Fox", FOX)
    with pytest.raises(NotHumanoidError) as info:
        auto_rig_map(fox)
    msg = str(info.value)
    assert "does not look like a humanoid" in msg and "4 leg(s)" in msg and "0 arm(s)" in msg
    with pytest.raises(RigMapError) as info:
        bind(fox)
    assert "Rig Mapping" in str(info.value) and len(str(info.value)) < 300


# --- BVH conventions with no map: lower-case Daz names without a head joint, CMU's ASF-converted names ---------

_DAZ = [("hip", None, (0, 0, 0)), ("abdomen", "hip", (0, 20.7, -0.7)), ("chest", "abdomen", (0, 32.4, -1.2)),
        ("neck", "chest", (0, 54.6, -3.4)), ("{c}collar", "chest", (2.7, 51.7, -6.1)),
        ("{c}shldr", "{c}collar", (11.5, 49.7, -4.6)), ("{c}forearm", "{c}shldr", (39.6, 48.0, -4.1)),
        ("{c}hand", "{c}forearm", (62.2, 48.8, 2.9)), ("{c}mid1", "{c}hand", (70.5, 49.9, 6.3)),
        ("{c}mid2", "{c}mid1", (73.6, 49.4, 7.4)), ("{c}buttock", "hip", (8.8, 4.4, 1.2)),
        ("{c}thigh", "{c}buttock", (8.8, 2.6, -1.0)), ("{c}shin", "{c}thigh", (8.8, -34.2, -0.2)),
        ("{c}foot", "{c}shin", (8.0, -79.3, -5.4))]
_DAZ_ENDS = {"neck": (0, 61.7, -2.2), "lmid2": (76.1, 49.0, 8.2), "rmid2": (-76.1, 49.0, 8.2),
             "lfoot": (9.2, -83.0, 6.7), "rfoot": (-9.2, -83.0, 6.7)}
_ASF = [("Hips", None, (0, 0, 0)), ("{S}Hip", "Hips", (1.6, -1.8, 0.7)), ("{S}Knee", "{S}Hip", (4.0, -8.4, 0.7)),
        ("{S}Ankle", "{S}Knee", (6.6, -15.7, 0.7)), ("{S}Toe", "{S}Ankle", (6.8, -16.3, 2.9)),
        ("Chest", "Hips", (0, 2.1, -0.3)), ("Chest2", "Chest", (0.1, 4.3, -0.3)),
        ("lowerneck", "Chest2", (0.1, 4.3, -0.3)), ("Neck", "lowerneck", (0, 5.9, 0)),
        ("Head", "Neck", (0.1, 7.6, -0.3)), ("{S}Collar", "Chest2", (0.1, 4.3, -0.3)),
        ("{S}Shoulder", "{S}Collar", (3.3, 5.1, -1.0)), ("{S}Elbow", "{S}Shoulder", (8.5, 5.1, -1.0)),
        ("{S}Wrist", "{S}Elbow", (12.3, 5.1, -1.0))]
_ASF_ENDS = {"LeftToe": (6.8, -16.3, 4.0), "RightToe": (-6.8, -16.3, 4.0), "Head": (0.1, 9.2, -0.4),
             "LeftWrist": (13.2, 5.1, -1.0), "RightWrist": (-13.2, 5.1, -1.0)}


def write_bvh_text(rows, ends) -> str:
    """A BVH file of the skeleton at rest (absolute positions in `rows`), two frames of zero rotations."""
    rows = _sides(rows)
    pos = {n: np.array(h, float) for n, _, h in rows}
    kids = {n: [m for m, p, _ in rows if p == n] for n, _, _ in rows}
    lines = ["HIERARCHY"]

    def emit(n, parent, depth):
        pad = "  " * depth
        off = pos[n] - (pos[parent] if parent else 0)
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {n}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]:.4f} {off[1]:.4f} {off[2]:.4f}")
        chans = "6 Xposition Yposition Zposition" if parent is None else "3"
        lines.append(f"{pad}  CHANNELS {chans} Zrotation Xrotation Yrotation")
        for k in kids[n]:
            emit(k, n, depth + 1)
        if not kids[n]:
            e = np.array(ends.get(n, pos[n]), float) - pos[n]
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {e[0]:.4f} {e[1]:.4f} {e[2]:.4f}",
                          f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(rows[0][0], None, 0)
    n_chan = 6 + 3 * (len(rows) - 1)
    frame = " ".join(["0"] * n_chan)
    return "\n".join(lines + ["MOTION", "Frames: 2", "Frame Time: 0.0333333", frame, frame]) + "\n"


@pytest.mark.parametrize("convention, rows, ends, scale, expect", [
    ("daz_lower_case", _DAZ, _DAZ_ENDS, 0.01, {"shoulder_l": "lshldr", "collar_r": "rcollar", "hip_l": "lthigh",
                                               "hand_end_l": "lmid1", "neck": "neck", "head": "neck:end"}),
    ("cmu_asf_names", _ASF, _ASF_ENDS, 0.056444, {"hip_l": "LeftHip", "knee_r": "RightKnee", "ankle_l": "LeftAnkle",
                                                  "toe_l": "LeftToe", "shoulder_l": "LeftShoulder",
                                                  "elbow_r": "RightElbow", "wrist_l": "LeftWrist",
                                                  "hand_end_l": "LeftWrist:end", "neck": "Neck",
                                                  "head": "Head", "head_end": "Head:end"}),
])
def test_load_take_reads_unmapped_bvh_conventions(tmp_path, convention, rows, ends, scale, expect):
    path = tmp_path / f"{convention}.bvh"
    path.write_text(write_bvh_text(rows, ends))
    auto = auto_bvh_map(read_bvh(path))
    assert auto.rig.unit_scale == pytest.approx(scale) and auto.rig.up_axis == "Y"
    for joint, name in expect.items():
        assert auto.rig.joints[joint].refs[0] == name or (joint == "collar_r" and name in auto.rig.joints[joint].refs)
    take = load_take(path)                       # no rig: detection falls back to the automatic mapping
    j = take.joints[0]
    assert take.joints.shape == (2, 24, 3) and np.all(np.isfinite(take.joints))
    assert j[INDEX["hip_l"], 0] > 0 > j[INDEX["hip_r"], 0]                 # the file's +X is the left side
    assert j[INDEX["head_end"], 2] > j[INDEX["head"], 2] > j[INDEX["neck"], 2] > j[INDEX["pelvis"], 2]
    assert 1.4 < j[INDEX["head_end"], 2] - j[INDEX["toe_l"], 2] < 2.0


# --- the user's folder: maps the animator saved load by name, and detection finds them --------------------------

def _bind_reply(arm: Armature) -> dict:
    """What the server's /bind answers: the binding and the write table of the map it used."""
    out = bind_for_rig(arm.to_dict())
    w = load_rig_map(out["rig"]).write          # an automatic map is loadable by its name in the same engine
    out["write"] = {"root": w.root, "rest": list(w.rest), "bones": dict(w.bones)}
    return out


def test_reviewed_mapping_saved_in_the_user_folder_loads_by_name(tmp_path, monkeypatch):
    from blender_addon import rig_review
    monkeypatch.setenv("GFPOSE_RIG_MAPS", str(tmp_path / "my maps"))
    arm = ARMATURES["game_rig"]()
    reply = _bind_reply(arm)
    assert reply["rig"].startswith("auto:Hero/")
    # A name from another engine process binds by making the automatic map again.
    assert bind(arm, "auto:Hero/00000000").rig.name == reply["rig"]
    table = dict((j, b) for j, b, _ in rig_review.joint_table(reply, list(JOINT_NAMES)))
    assert table["chest"] == "Chest" and table["toe_l"] == "Toe.L"
    # The animator moves the chest landmark to the Spine bone's head and saves the result as "hero".
    lengths = dict(zip(arm.bones, arm.lengths.tolist()))
    raw = rig_review.map_from_binding(reply, list(JOINT_NAMES), lengths, 1.0, {"chest": "Spine"}, "hero")
    path = rig_review.save_map(raw, rig_review.user_rig_dir(), shipped=["mixamo"])
    assert path.parent == tmp_path / "my maps"
    assert "hero" in rig_map_names()
    saved = load_rig_map("Hero")                 # by name, any case
    before = rest_joints(bind(arm, reply["rig"]), world=True)
    after = rest_joints(bind(arm, saved), world=True)
    changed = np.linalg.norm(after - before, axis=-1)
    assert changed[INDEX["chest"]] > 0.1 and np.allclose(after[INDEX["chest"]], arm.rest[arm.index["Spine"], :3, 3])
    others = [j for j, n in enumerate(JOINT_NAMES) if n != "chest"]
    assert changed[others].max() < 1e-9
    # The saved map keys the same bones, and detection now prefers it over the automatic mapping.
    assert saved.write.bones == load_rig_map(reply["rig"]).write.bones
    assert bind(arm).rig.name == "hero"
    with pytest.raises(ValueError, match="ships"):
        rig_review.save_map(dict(raw, name="Mixamo"), tmp_path, shipped=["mixamo"])
    with pytest.raises(ValueError, match="no bone"):
        rig_review.map_from_binding(reply, list(JOINT_NAMES), lengths, 1.0, {"chest": "Nope"}, "x")


def test_saved_map_of_a_shipped_mapping_gives_the_same_landmarks(tmp_path, monkeypatch):
    from blender_addon import rig_review
    monkeypatch.setenv("GFPOSE_RIG_MAPS", str(tmp_path))
    for case in ("ue5_mannequin", "mixamo_no_fingers", "smpl"):
        arm = ARMATURES[case]()
        reply = _bind_reply(arm)
        lengths = dict(zip(arm.bones, arm.lengths.tolist()))
        raw = rig_review.map_from_binding(reply, list(JOINT_NAMES), lengths, float(np.linalg.norm(arm.world[:3, 0])),
                                          {}, f"copy_{case}")
        rig_review.save_map(raw, tmp_path)
        a = rest_joints(bind(arm, f"copy_{case}"), world=True)
        b = rest_joints(bind(arm, reply["rig"]), world=True)
        np.testing.assert_allclose(a, b, atol=1e-9, err_msg=case)


def test_broken_user_file_does_not_break_detection(tmp_path, monkeypatch):
    monkeypatch.setenv("GFPOSE_RIG_MAPS", str(tmp_path))
    (tmp_path / "broken.toml").write_text("name = [")
    assert bind(ARMATURES["ue4_mannequin"]()).rig.name == "ue4_mannequin"
    with pytest.raises(RigMapError, match="not valid TOML"):
        load_rig_map("broken")


# --- the engine on automatically mapped rigs ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    from gfpose_core import Engine
    return Engine.load(device="cpu")


@pytest.mark.parametrize("case", ["mixamo_no_fingers", "unnamed", "facing_plus_x", "tiny_scale_001", "game_rig",
                                  "robot_scale_100"])
def test_complete_pose_and_denoise_run_on_automatically_mapped_rigs(engine, case):
    arm = ARMATURES[case]()
    binding = bind(arm)
    assert binding.rig.name.startswith("auto:") or case in SHIPPED
    rest = rest_joints(binding, world=True)
    # Complete Pose: the torso and the left arm are posed, the rest is filled in and keyed onto the rig.
    known = np.zeros(24, dtype=bool)
    known[[INDEX[n] for n in ("pelvis", "spine", "chest", "neck", "head", "shoulder_l", "elbow_l", "wrist_l")]] = True
    done = engine.complete(rest[None], known[None], seed=0)
    assert np.all(np.isfinite(done)) and np.allclose(done[0, known], rest[known], atol=1e-5)
    pose = solve(arm, done, binding=binding)
    assert np.all(np.isfinite(pose.quaternions))
    # Denoise: a jittery take of the rig's own rest pose comes back smoother, and keys onto the rig.
    rng = np.random.default_rng(1)
    take = rest[None] + rng.normal(scale=0.01, size=(30, 24, 3))
    clean = engine.denoise(take, fps=30.0)
    assert clean.shape == take.shape and np.all(np.isfinite(clean))
    jitter = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()     # noqa: E731
    assert jitter(clean) < jitter(take)
    assert np.all(np.isfinite(solve(arm, clean, binding=binding).quaternions))


def test_no_toes_facing_plus_x_names_decide_the_sides():
    """Without toes the rest pose cannot tell the front; where bone names say the sides, they decide."""
    rows = [(n, "LowerLeg.{X}" if n.startswith("Foot.") else p, h) for n, p, h in GAME
            if not n.startswith(("Toe.", "FootControl.", "KneePole."))]
    tails = {k: v for k, v in GAME_TAILS.items() if not k.startswith(("Toe.", "FootControl.", "KneePole.", "Lower"))}
    tails.update({"Foot.L": (0.10, 0.03, 0.0), "Foot.R": (-0.10, 0.03, 0.0)})      # straight down, as importers do
    arm = make_armature("Sideways", rows, tails=tails, data_turn=TURN_TO_PLUS_X)
    auto = auto_rig_map(arm)
    got = auto.joint_bones()
    assert got["hip_l"] == "UpperLeg.L" and got["shoulder_r"] == "UpperArm.R" and got["wrist_l"] == "Hand.L"
    assert auto.confidence < 0.8 and any("front" in n for n in auto.notes)
    j = rest_joints(bind(arm, auto.rig), world=True)
    # The ball of the foot is placed in front of the ankle: +X here.
    assert j[INDEX["toe_l"], 0] - j[INDEX["ankle_l"], 0] > 0.05
