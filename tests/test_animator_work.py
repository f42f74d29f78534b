"""Nothing the animator made is undone (issue 17), in real Blender 5.0 against a real engine: keys of a touched
F-curve keep every property, new keys follow the user's preferences, Generate Variations writes to a new action,
an unposed root stays where it stands.

The engine and the installed add-on are test_addon's fixtures (one engine process for this module)."""
from __future__ import annotations

import numpy as np
import pytest
import test_addon
from test_addon import RIGIFY_POSED, _pose_rigify, _real_pose, _rigify_scene

from gfpose_core.rigs.rig_map import load_rig_map

pytestmark = pytest.mark.blender

bpy = pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")

# test_addon's fixtures, for this module: the engine, the extension installed, the add-on enabled per test.
engine_url, addon_zip, repo_dir = test_addon.engine_url, test_addon.addon_zip, test_addon.repo_dir
installed, addon = test_addon.installed, test_addon.addon

_KEY_PROPS = ("co", "handle_left", "handle_right", "handle_left_type", "handle_right_type", "interpolation",
              "easing", "type", "back", "amplitude", "period")


def _keys(bag) -> dict:
    """Every keyframe of a channelbag with every property it stores, by (data path, index, frame)."""
    out = {}
    for fc in bag.fcurves:
        for k in fc.keyframe_points:
            out[fc.data_path, fc.array_index, round(k.co[0], 3)] = tuple(
                tuple(v) if not isinstance(v, (str, float, int)) else v for v in (getattr(k, p) for p in _KEY_PROPS))
    return out


def _bag(addon, obj, action=None):
    # through the add-on's own compatibility layer: slotted actions (4.4+) and legacy ones (4.2) alike
    if action is None:
        return addon.posing.channelbag(obj)
    return addon.anim_compat.channelbag_of(obj, action)


def _bag_of(obj):
    import sys
    return sys.modules[test_addon.MODULE].anim_compat.channelbag(obj)


def _hand_made_key(obj, bone: str, frame: int) -> list[str]:
    """An animator's key on `frame`: rotation keyed, then free handles pulled, ease in, breakdown, Back easing."""
    pb = obj.pose.bones[bone]
    pb.rotation_quaternion = (0.9, 0.3, 0.2, 0.1)
    pb.keyframe_insert("rotation_quaternion", frame=frame)
    paths = []
    for fc in _bag_of(obj).fcurves:
        if fc.data_path != f'pose.bones["{bone}"].rotation_quaternion':
            continue
        k = next(k for k in fc.keyframe_points if abs(k.co[0] - frame) < 1e-3)
        k.handle_left_type = k.handle_right_type = "FREE"
        k.handle_left = (frame - 4.0, k.co[1] + 0.37)
        k.handle_right = (frame + 2.5, k.co[1] - 0.21)
        k.interpolation, k.easing, k.type = "BACK", "EASE_IN", "BREAKDOWN"
        paths.append(fc.data_path)
    pb.rotation_quaternion = (1, 0, 0, 0)
    bpy.context.view_layer.update()
    return paths


def _new_keys_follow(addon, obj, frame: int, path: str, interpolation: str, handle: str):
    bag = addon.posing.channelbag(obj)
    for i in range(4):
        fc = bag.fcurves.find(path, index=i)
        k = next(k for k in fc.keyframe_points if abs(k.co[0] - frame) < 1e-3)
        assert (k.interpolation, k.handle_left_type, k.handle_right_type) == (interpolation, handle, handle), i


def test_hand_made_keys_survive_complete_cycle_and_variations(addon, rigify_blend, data_file):
    obj = _rigify_scene(addon, rigify_blend)
    _pose_rigify(addon.rig_io, obj, _real_pose(data_file)[None], bones=RIGIFY_POSED)
    # A breakdown on frame 20 on a bone the completion keys at frame 1 (its curves are touched).
    (path, *_) = _hand_made_key(obj, "upper_arm_fk.L", 20)
    edit = bpy.context.preferences.edit
    keep_prefs = edit.keyframe_new_interpolation_type, edit.keyframe_new_handle_type
    edit.keyframe_new_interpolation_type, edit.keyframe_new_handle_type = "LINEAR", "VECTOR"
    try:
        bpy.context.scene.frame_set(1)
        before = _keys(_bag(addon, obj))
        assert sum(1 for k in before if k[0] == path and k[2] == 20.0) == 4
        assert bpy.ops.gfpose.complete_pose(n_hypotheses=2, seed=3) == {"FINISHED"}
        after = _keys(_bag(addon, obj))
        assert {k: after.get(k) for k in before} == before          # every key there was, every property
        assert {k for k in after if k[0] == path} == {(path, i, f) for i in range(4) for f in (1.0, 20.0)}
        _new_keys_follow(addon, obj, 1, path, "LINEAR", "VECTOR")
        assert bpy.ops.gfpose.cycle_hypothesis() == {"FINISHED"}
        cycled = _keys(_bag(addon, obj))
        assert {k: cycled.get(k) for k in before} == before and set(cycled) == set(after)
        assert any(cycled[k] != after[k] for k in after if k[0] == path and k[2] == 1.0)   # frame 1 re-keyed
        # Preferences changed again: a new key follows them; the key it replaces keeps its own types.
        edit.keyframe_new_interpolation_type, edit.keyframe_new_handle_type = "CONSTANT", "AUTO"
        assert bpy.ops.gfpose.cycle_hypothesis() == {"FINISHED"}
        _new_keys_follow(addon, obj, 1, path, "LINEAR", "VECTOR")

        # Generate Variations: into a copy; the animator's action is never written to and is kept.
        original = obj.animation_data.action
        mine = _keys(_bag(addon, obj))
        addon.posing.set_selected(obj, ["torso", "thigh_fk.L", "shin_fk.L", "foot_fk.L"])
        assert bpy.ops.gfpose.generate_variations(n_variations=2, seed=4) == {"FINISHED"}
        assert obj.animation_data.action.name == f"{original.name}_variations"
        assert original.name in bpy.data.actions and original.use_fake_user
        assert _keys(_bag(addon, obj, bpy.data.actions[original.name])) == mine
        copy = _keys(_bag(addon, obj))
        assert {k: copy.get(k) for k in mine if k[2] != 1.0} == {k: v for k, v in mine.items() if k[2] != 1.0}
        assert {k[2] for k in copy if k[0] == path} == {1.0, 2.0, 3.0, 20.0}
        _new_keys_follow(addon, obj, 2, path, "CONSTANT", "AUTO")
    finally:
        edit.keyframe_new_interpolation_type, edit.keyframe_new_handle_type = keep_prefs


ARM_AND_LEG = ["upper_arm_fk.L", "forearm_fk.L", "hand_fk.L", "thigh_fk.L", "shin_fk.L", "foot_fk.L"]


def test_complete_pose_with_an_arm_and_a_leg_posed_leaves_the_root_where_it_stands(addon, rigify_blend, data_file):
    obj = _rigify_scene(addon, rigify_blend)
    binding = _pose_rigify(addon.rig_io, obj, _real_pose(data_file)[None], bones=ARM_AND_LEG)
    torso = obj.pose.bones["torso"]
    torso.location = (0.3, -0.2, 0.05)                  # moved by hand, not keyed
    bpy.context.view_layer.update()
    where = np.array(torso.matrix)
    values = addon.posing.basis_values(torso)
    before = _keys(_bag(addon, obj))
    arm_leg = addon.rig_io.read_body24(obj, binding)[0]
    with pytest.raises(RuntimeError, match="root bone 'torso' is not keyed"):
        bpy.ops.gfpose.complete_pose(move_root=True)
    assert bpy.ops.gfpose.complete_pose(seed=2) == {"FINISHED"}
    after = _keys(_bag(addon, obj))
    assert {k: after.get(k) for k in before} == before
    keyed = {addon.posing.bone_of_path(k[0])[0] for k in set(after) - set(before)}
    assert "torso" not in keyed and {"spine_fk.003", "upper_arm_fk.R", "thigh_fk.R", "head"} <= keyed
    assert addon.posing.basis_values(torso) == values
    np.testing.assert_allclose(np.array(torso.matrix), where, atol=1e-6)
    done = addon.rig_io.read_body24(obj, binding)[0]
    from gfpose_core.body.skeleton import INDEX
    leg = [INDEX[n] for n in ("pelvis", "hip_l", "knee_l", "ankle_l", "toe_l")]
    np.testing.assert_allclose(done[leg], arm_leg[leg], atol=1e-5)          # the posed leg, where it was


# --- editing, not re-solving ---------------------------------------------------------------------------------------

def _mixamo_rig(addon, family="mixamo"):
    """A Mixamo-named armature (mixamorig: names, the auto-rigger's bone list) built in edit mode, with rolls of its
    own on every bone (test_blender_retarget's builder); or an Unreal mannequin's (family "ue4_mannequin")."""
    from test_blender_retarget import _mixamo
    obj, _ = _mixamo(bpy, addon.rig_io, seed=2, family=family)
    bpy.context.view_layer.objects.active = obj
    return obj


def _mapped_bones(obj, family: str) -> list[str]:
    """The armature's bones that the family's rig map keys."""
    write = load_rig_map(family).write
    return [b.name for b in obj.data.bones if b.name.removeprefix("mixamorig:") in write.bones]


def _twist_keys(addon, obj, bones, seed=0):
    """The animator's own twists: every bone's quaternion keys turned about the bone's own axis (q * twist), a
    different amount per bone, constant over the take."""
    from mathutils import Quaternion
    rng = np.random.default_rng(seed)
    bag = addon.posing.channelbag(obj)
    for b in bones:
        path = f'pose.bones["{b}"].rotation_quaternion'
        curves = [bag.fcurves.find(path, index=i) for i in range(4)]
        if any(c is None for c in curves):
            continue
        twist = Quaternion((0.0, 1.0, 0.0), float(rng.uniform(-1.0, 1.0)))
        cos = []
        for c in curves:
            co = np.empty(len(c.keyframe_points) * 2, dtype=np.float32)
            c.keyframe_points.foreach_get("co", co)
            cos.append(co.reshape(-1, 2))
        q = np.stack([co[:, 1] for co in cos], -1)
        out = np.array([tuple(Quaternion(v) @ twist) for v in q], dtype=np.float32)
        for i, c in enumerate(curves):
            cos[i][:, 1] = out[:, i]
            c.keyframe_points.foreach_set("co", cos[i].ravel())
            c.update()
    bpy.context.view_layer.update()


def _orientations(addon, obj, bones, frames) -> np.ndarray:
    names = [b.name for b in obj.data.bones]
    m = addon.rig_io.read_pose_matrices(obj, frames)[:, [names.index(b) for b in bones], :3, :3]
    return m / np.linalg.norm(m, axis=-2, keepdims=True)


def _roll_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees b is turned about the bone's own axis (Y) from a: the twist part of a^T b."""
    rel = np.swapaxes(a, -1, -2) @ b
    w = np.sqrt(np.maximum(1 + np.trace(rel, axis1=-2, axis2=-1), 1e-12)) / 2
    y = (rel[..., 0, 2] - rel[..., 2, 0]) / (4 * w)
    return np.degrees(2 * np.abs(np.arctan2(y, w)))


def denoise_clean_take(addon, obj, truth, seed=0, family="mixamo"):
    """Key a clean take on a Mixamo-named rig (or the family's), give every mapped bone a twist of its own, Denoise
    Action: (clean joints, denoised joints, mm each joint moved (F, 24), degrees each bone's roll changed (F, B),
    bones)."""
    from test_addon import _key_take
    binding = _key_take(addon.rig_io, obj, truth, "take")
    bones = _mapped_bones(obj, family)
    _twist_keys(addon, obj, bones, seed=seed)
    frames = list(range(1, len(truth) + 1))
    clean = addon.rig_io.read_body24(obj, binding, frames=frames)
    before = _orientations(addon, obj, bones, frames)
    assert bpy.ops.gfpose.denoise_action() == {"FINISHED"}
    assert obj.animation_data.action.name == "take_denoised"
    got = addon.rig_io.read_body24(obj, binding, frames=frames)
    moved = np.linalg.norm(got - clean, axis=-1) * 1000
    return clean, got, moved, _roll_deg(before, _orientations(addon, obj, bones, frames)), bones


@pytest.mark.parametrize("family", ["mixamo", "ue4_mannequin"])
def test_denoise_of_a_clean_take_keeps_joints_and_every_bones_roll(addon, data_file, family):
    from test_addon import _take_at_30fps
    bpy.context.scene.render.fps = 30
    obj = _mixamo_rig(addon, family)
    clean, got, moved, roll, bones = denoise_clean_take(addon, obj, _take_at_30fps(data_file, n=40), family=family)
    print(f"{family}: denoise of a clean take: joints moved {moved.mean():.2f} mm mean, {moved.max():.2f} mm max; "
          f"roll {roll.mean():.3f} deg mean, {roll.max():.3f} deg max")
    assert roll.max() < 1.0, dict(zip(bones, roll.max(0).round(2)))
    # Joints: the engine may move a measured joint only 2.5 times the take's jitter beyond what its own motion shows
    # (prior/denoise.within_noise): under 2 mm anywhere (measured 0.57 mean / 1.38 mm max), where re-solving from rest
    # with the unclamped engine moved joints up to 71 mm.
    assert moved.max() < 2.0, moved.max(0).round(1)
    # The body keeps its shape: spine landmarks in place, segment lengths (pelvis->spine, ankle->toe) as they were.
    from gfpose_core.body.skeleton import INDEX
    spine = [INDEX[n] for n in ("pelvis", "spine", "chest", "neck")]
    assert moved[:, spine].max() < 2.0
    for a, b in (("pelvis", "spine"), ("spine", "chest"), ("ankle_l", "toe_l"), ("ankle_r", "toe_r")):
        length = [np.linalg.norm(x[:, INDEX[b]] - x[:, INDEX[a]], axis=-1) for x in (clean, got)]
        assert np.abs(length[1] - length[0]).max() < 0.001, (a, b)


@pytest.mark.parametrize("family", ["mixamo", "ue4_mannequin"])
def test_fill_between_three_identical_keys_holds_the_pose(addon, data_file, family):
    from test_addon import _select_keys, _take_at_30fps

    from gfpose_core.rigs.armature import Armature
    from gfpose_core.rigs.binding import bind
    from gfpose_core.rigs.solve import pose_for_rig
    bpy.context.scene.render.fps = 30
    obj = _mixamo_rig(addon, family)
    rig_io = addon.rig_io
    pose = _take_at_30fps(data_file, n=1)
    solved = pose_for_rig(rig_io.describe_armature(obj), pose)
    keys = [1, 31, 61]
    for f in keys:
        rig_io.write_keys(obj, solved, frame_start=f, action="blocking")
    bones = _mapped_bones(obj, family)
    _twist_keys(addon, obj, bones, seed=1)
    binding = bind(Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
    bpy.context.scene.frame_set(1)
    key_pose = rig_io.read_body24(obj, binding)[0]
    key_rot = _orientations(addon, obj, bones, [1])
    _select_keys(addon, obj, keys)
    assert bpy.ops.gfpose.fill_inbetweens(seed=3) == {"FINISHED"}
    assert obj.animation_data.action.name == "blocking_inbetween"
    frames = list(range(1, 62))
    got = rig_io.read_body24(obj, binding, frames=frames)
    moved = np.linalg.norm(got - key_pose, axis=-1) * 1000
    roll = _roll_deg(key_rot, _orientations(addon, obj, bones, frames))
    print(f"{family} hold: joints within {moved.max():.3f} mm of the key pose, roll {roll.max():.4f} deg")
    assert moved.max() < 5.0 and roll.max() < 1.0


def test_complete_pose_of_a_partly_keyed_frame_keeps_the_twist_between_keys(addon, data_file):
    from test_addon import _key_take, _take_at_30fps
    bpy.context.scene.render.fps = 30
    obj = _mixamo_rig(addon)
    truth = _take_at_30fps(data_file, n=9)
    _key_take(addon.rig_io, obj, truth, "take")
    write = load_rig_map("mixamo").write
    bones = [b.name for b in obj.data.bones if b.name.removeprefix("mixamorig:") in write.bones]
    _twist_keys(addon, obj, bones, seed=2)
    # The left arm is not keyed on frame 5: Blender shows it between its keys on 4 and 6, twist included.
    arm = ["mixamorig:LeftArm", "mixamorig:LeftForeArm", "mixamorig:LeftHand"]
    bag = addon.posing.channelbag(obj)
    for fc in bag.fcurves:
        hit = addon.posing.bone_of_path(fc.data_path)
        if hit and hit[0] in arm:
            fc.keyframe_points.remove(next(k for k in fc.keyframe_points if abs(k.co[0] - 5) < 1e-3))
    bpy.context.scene.frame_set(5)
    before = _orientations(addon, obj, arm, [5])
    assert bpy.ops.gfpose.complete_pose(seed=4) == {"FINISHED"}
    assert arm[0] in addon.posing.keyed_bones(obj, 5)
    after = _orientations(addon, obj, arm, [5])
    aim = np.degrees(np.arccos(np.clip(np.sum(before[..., 1] * after[..., 1], -1), -1, 1)))
    roll = _roll_deg(before, after)
    print(f"completed arm: aims turned {aim.round(1).tolist()} deg, roll {roll.round(3).tolist()} deg")
    assert roll.max() < 1.0
