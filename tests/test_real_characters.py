"""Characters as animators get them: a Mixamo skeleton written out and read back through Blender's own FBX and
glTF exporters and importers (with the importers' bone-orientation options animators use), then keyed with a real
take. On each: Denoise Action of a clean take leaves joints and every bone's roll as they were,
and Complete Pose keeps the posed bones bit for bit and fills in the others (real bpy, real engine)."""
from __future__ import annotations

import numpy as np
import pytest
import test_addon
from test_addon import _jitter, _key_take, _strip_bones, _take_at_30fps
from test_animator_work import denoise_clean_take
from test_auto_map import UNNAMED, UNNAMED_TAILS
from test_blender_retarget import _mixamo
from test_rig_review import build_game_rig

from gfpose_core.body.skeleton import INDEX
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.binding import bind, rest_joints
from gfpose_core.rigs.solve import pose_for_rig

pytestmark = pytest.mark.blender

bpy = pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")

# test_addon's fixtures, for this module: the engine, the extension installed, the add-on enabled per test.
engine_url, addon_zip, repo_dir = test_addon.engine_url, test_addon.addon_zip, test_addon.repo_dir
installed, addon = test_addon.installed, test_addon.addon


def _round_trip(addon, tmp_path, fmt: str):
    """The Mixamo skeleton exported and imported again with Blender's own FBX or glTF add-on: the armature the
    importer makes (its bones re-oriented by the importer), alone in the scene."""
    import addon_utils
    module = {"fbx": "io_scene_fbx", "gltf": "io_scene_gltf2"}[fmt]
    addon_utils.enable(module, default_set=True)
    src, _ = _mixamo(bpy, addon.rig_io, seed=3)
    rest_x = {b.name: np.array(b.matrix_local)[:3, 0] for b in src.data.bones}
    path = tmp_path / f"mixamo.{'fbx' if fmt == 'fbx' else 'glb'}"
    bpy.ops.object.select_all(action="DESELECT")
    src.select_set(True)
    bpy.context.view_layer.objects.active = src
    if fmt == "fbx":
        bpy.ops.export_scene.fbx(filepath=str(path), use_selection=True, object_types={"ARMATURE"},
                                 add_leaf_bones=False, bake_anim=False)
    else:
        bpy.ops.export_scene.gltf(filepath=str(path), use_selection=True, export_format="GLB", export_animations=False)
    bpy.data.objects.remove(src)
    before = set(bpy.data.objects)
    # The importers' own choices of bone orientation: FBX as exported (its default) or re-oriented to the children
    # ("Automatic Bone Orientation", common for Maya/Mixamo files); glTF's "Temperance" heuristic.
    if fmt == "fbx":
        bpy.ops.import_scene.fbx(filepath=str(path), automatic_bone_orientation=True)
    else:
        bpy.ops.import_scene.gltf(filepath=str(path), bone_heuristic="TEMPERANCE")
    arms = [o for o in set(bpy.data.objects) - before if o.type == "ARMATURE"]
    assert len(arms) == 1, [o.name for o in set(bpy.data.objects) - before]
    obj = arms[0]
    turned = [b.name for b in obj.data.bones if abs(np.dot(np.array(b.matrix_local)[:3, 0],
                                                           rest_x[b.name])) < 0.99]
    print(f"{fmt}: {len(turned)} of {len(obj.data.bones)} bones re-oriented by the importer")
    for o in list(bpy.data.objects):
        if o != obj:
            bpy.data.objects.remove(o)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    from gfpose_core.rigs.solve import bind_for_rig
    assert bind_for_rig(addon.rig_io.describe_armature(obj))["rig"] == "mixamo"     # detected as Mixamo
    return obj


@pytest.mark.parametrize("fmt", ["fbx", "gltf"])
def test_denoise_of_a_clean_take_on_an_imported_character_keeps_joints_and_rolls(addon, data_file, tmp_path, fmt):
    bpy.context.scene.render.fps = 30
    obj = _round_trip(addon, tmp_path, fmt)
    _, _, moved, roll, bones = denoise_clean_take(addon, obj, _take_at_30fps(data_file, n=40), seed=4)
    print(f"{fmt}: denoise of a clean take moved joints {moved.mean():.2f} mm mean, {moved.max():.2f} mm max; "
          f"roll {roll.max():.3f} deg max")
    assert roll.max() < 1.0, dict(zip(bones, roll.max(0).round(2)))
    assert moved.max() < 2.0, moved.max(0).round(1)


@pytest.mark.parametrize("fmt", ["fbx", "gltf"])
def test_complete_pose_on_an_imported_character_keeps_the_posed_bones(addon, data_file, tmp_path, fmt):
    bpy.context.scene.render.fps = 30
    obj = _round_trip(addon, tmp_path, fmt)
    truth = _take_at_30fps(data_file, n=1)
    binding = _key_take(addon.rig_io, obj, truth, "pose")
    # The animator keeps the legs, hips and spine, and deletes the arms' and head's keys to have them filled in.
    bag = addon.posing.channelbag(obj)
    loose = ("Arm", "Shoulder", "Hand", "Head", "Neck")
    for fc in list(bag.fcurves):
        bone = fc.data_path.split('"')[1]
        if any(k in bone for k in loose):
            bag.fcurves.remove(fc)
    posed = sorted(addon.posing.keyed_bones(obj, 1))
    assert posed and not any(any(k in b for k in loose) for b in posed)
    values = {b: addon.posing.basis_values(obj.pose.bones[b]) for b in posed}
    bpy.context.scene.frame_set(1)
    start = addon.rig_io.read_body24(obj, binding)[0]
    assert bpy.ops.gfpose.complete_pose() == {"FINISHED"}
    assert {b: addon.posing.basis_values(obj.pose.bones[b]) for b in posed} == values     # bit for bit
    done = addon.rig_io.read_body24(obj, binding)[0]
    legs = [INDEX[n] for n in ("pelvis", "hip_l", "knee_l", "ankle_l", "toe_l", "hip_r", "knee_r", "ankle_r")]
    np.testing.assert_allclose(done[legs], start[legs], atol=1e-5)
    keyed = addon.posing.keyed_bones(obj, 1)
    assert any("LeftForeArm" in b for b in keyed) and any("Head" in b for b in keyed)
    # A plausible arm: hands near the body's sides, not through the chest, elbows not folded shut.
    for s in ("l", "r"):
        sh, el, wr = (done[INDEX[f"{n}_{s}"]] for n in ("shoulder", "elbow", "wrist"))
        cos = np.dot(sh - el, wr - el) / (np.linalg.norm(sh - el) * np.linalg.norm(wr - el))
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))) > 30.0


# --- a rig no map file fits (bones without names), mapped automatically, through the add-on and a running engine --------------------------

def test_complete_pose_and_denoise_action_on_an_automatically_mapped_rig(addon):
    rig_io, posing = addon.rig_io, addon.posing
    obj = build_game_rig("Armature", rows=UNNAMED, tails=UNNAMED_TAILS, fresh=False)    # bones with no names
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.render.fps = 30
    desc = rig_io.describe_armature(obj)
    arm = Armature.from_dict(desc)
    binding = bind(arm)
    assert binding.rig.name.startswith("auto:")
    rest = rest_joints(binding, world=True)
    rng = np.random.default_rng(0)
    sway = np.sin(np.linspace(0, 2 * np.pi, 40))[:, None, None] * [0.05, 0.0, 0.0]
    noisy = rest[None] + sway + rng.normal(0, 0.01, (40, 24, 3))
    rig_io.write_keys(obj, pose_for_rig(desc, noisy), frame_start=1, action="take")
    assert bpy.ops.gfpose.detect_rig() == {"FINISHED"}
    assert addon.operators.binding_for_panel(obj)["rig"].startswith("auto:")
    # Denoise Action: a new, smoother action; the take's own keys stay.
    b = binding.to_dict()
    frames = range(1, 41)
    before = rig_io.read_body24(obj, b, frames=frames)
    assert bpy.ops.gfpose.denoise_action("EXEC_DEFAULT", True) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.animation_data.action.name == "take_denoised" and "take" in bpy.data.actions
    after = rig_io.read_body24(obj, b, frames=frames)
    assert _jitter(after) < 0.5 * _jitter(before)
    # Complete Pose: the left arm's keys removed; completing keys it again and leaves the rest as it was.
    obj.animation_data.action = bpy.data.actions["take"]
    arm_bones = ["Node_6", "Node_7", "Node_8"]          # the left upper arm, forearm and hand
    _strip_bones(addon, obj, arm_bones)
    kept = {k: v for k, v in posing.fcurve_snapshot(obj).items()}
    assert bpy.ops.gfpose.complete_pose(frames="RANGE", frame_start=1, frame_end=3, seed=1) == {"FINISHED"}
    assert set(arm_bones) <= posing.keyed_bones(obj)
    now = posing.fcurve_snapshot(obj)
    assert all(np.array_equal(np.asarray(now[k][0]), np.asarray(v[0])) for k, v in kept.items() if k in now)
