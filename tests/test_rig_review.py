"""Rig mapping in real Blender: the automatic mapping on Blender's human metarig and a generated Rigify rig agrees
with their shipped maps, and the add-on's Rig Mapping review changes one joint and saves a map that the engine then
loads by name (on a game rig built here bone by bone, feet hanging from IK controls).

The engine's side of /bind runs in this process (gfpose_core's bind_for_rig, as the server does), so no engine
process is needed; the operators and the panel are the add-on's own, registered from the source tree.
"""
from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")

import blender_rigs  # noqa: E402
from test_auto_map import (  # noqa: E402,I001
    _ASF,
    _ASF_ENDS,
    _DAZ,
    _DAZ_ENDS,
    GAME,
    GAME_TAILS,
    MIXAMO,
    TOL,
    UNNAMED,
    UNNAMED_EXPECT,
    UNNAMED_TAILS,
    _sides,
    write_bvh_text,
)

from gfpose_core.body.skeleton import INDEX, JOINT_NAMES  # noqa: E402
from gfpose_core.rigs.armature import Armature  # noqa: E402
from gfpose_core.rigs.auto_map import auto_rig_map  # noqa: E402
from gfpose_core.rigs.binding import bind, rest_joints  # noqa: E402
from gfpose_core.rigs.rig_map import load_rig_map  # noqa: E402
from gfpose_core.rigs.solve import bind_for_rig  # noqa: E402


@pytest.fixture(scope="module")
def addon_modules():
    from blender_addon import engine_op, preferences, rig_io, rig_review_panel
    for cls in rig_review_panel.classes:
        bpy.utils.register_class(cls)
    yield engine_op, preferences, rig_io, rig_review_panel
    for cls in reversed(rig_review_panel.classes):
        try:
            bpy.utils.unregister_class(cls)
        except RuntimeError:
            pass     # the installed extension's own registration replaced it


def _shipped_vs_auto(obj, rig_io, shipped: str) -> np.ndarray:
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    a = rest_joints(bind(arm, auto_rig_map(arm).rig), world=True)
    s = rest_joints(bind(arm, shipped), world=True)
    return np.linalg.norm(a - s, axis=-1)


def test_metarig_and_rigify_map_automatically_like_their_shipped_maps(addon_modules, rigify_blend):
    rig_io = addon_modules[2]
    blender_rigs.fresh(bpy)
    meta = blender_rigs.metarig(bpy)
    off = _shipped_vs_auto(meta, rig_io, "metarig")
    assert off.max() < 0.03, dict(zip(JOINT_NAMES, off.round(3)))
    rig = blender_rigs.open_rigify(bpy, rigify_blend)
    off = _shipped_vs_auto(rig, rig_io, "rigify")
    assert off.max() < 0.03, dict(zip(JOINT_NAMES, off.round(3)))


def build_game_rig(name="Hero", rows=GAME, tails=GAME_TAILS, fresh=True):
    """A skeleton of test_auto_map (the game rig unless told) as a Blender armature, bone by bone in edit mode."""
    if fresh:
        blender_rigs.fresh(bpy)
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    rows = _sides(rows)
    heads = {n: np.array(h, float) for n, _, h in rows}
    for n, parent, head in rows:
        b = data.edit_bones.new(n)
        kids = [m for m, p, _ in rows if p == n]
        b.head = head
        b.tail = tails.get(n, heads[kids[0]] if kids else heads[n] + [0, 0, 0.1])
    for n, parent, _ in rows:
        if parent:
            data.edit_bones[n].parent = data.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


class _Layout:
    """Stands in for a panel layout: records the labels drawn."""

    def __init__(self, log):
        self.log = log

    def row(self, **_):
        return self

    column = box = row

    def label(self, text="", **_):
        self.log.append(text)

    def operator(self, idname, **_):
        module, name = idname.split(".")
        assert getattr(getattr(bpy.ops, module), name).poll() is not None


def test_review_changes_one_joint_and_saves_a_map_the_engine_loads(addon_modules, tmp_path, monkeypatch):
    engine_op, preferences, rig_io, panel_mod = addon_modules
    monkeypatch.setenv("GFPOSE_RIG_MAPS", str(tmp_path / "rigs"))
    obj = build_game_rig()
    desc = rig_io.describe_armature(obj)
    # What /bind answers for this armature (no map file fits it: the automatic mapping).
    reply = bind_for_rig(desc)
    w = load_rig_map(reply["rig"]).write
    reply["write"] = {"root": w.root, "rest": list(w.rest), "bones": dict(w.bones)}
    engine_op._last_binding[obj.name_full] = reply
    preferences._infos["test"] = {"joints": list(JOINT_NAMES)}
    try:
        log = []
        bpy.types.GFPOSE_PT_rig_review.draw(type("P", (), {"layout": _Layout(log)})(), bpy.context)
        assert "In use: automatic (no map file fits)" in log
        assert log[log.index("chest") + 1] == "Chest" and log[log.index("ankle_l") + 1] == "LowerLeg.L"
        # The animator takes the chest from the Spine bone instead, and saves the mapping as "hero".
        assert bpy.ops.gfpose.rig_review_pick(joint="chest", bone="Spine") == {"FINISHED"}
        with pytest.raises(RuntimeError, match="no bone 'Nope'"):
            bpy.ops.gfpose.rig_review_pick(joint="chest", bone="Nope")
        log.clear()
        bpy.types.GFPOSE_PT_rig_review.draw(type("P", (), {"layout": _Layout(log)})(), bpy.context)
        assert log[log.index("chest") + 1] == "Spine"
        assert bpy.ops.gfpose.rig_review_save(name="hero") == {"FINISHED"}
        assert (tmp_path / "rigs" / "hero.toml").exists()
        assert not obj.keys() and obj.animation_data is None         # nothing written into the scene
    finally:
        preferences._infos.pop("test", None)
        engine_op._last_binding.pop(obj.name_full, None)
    # The engine loads it by name; the chest moved to the Spine bone's head, every other joint stayed.
    arm = Armature.from_dict(desc)
    saved = rest_joints(bind(arm, "hero"), world=True)
    before = rest_joints(bind(arm, reply["rig"]), world=True)
    np.testing.assert_allclose(saved[INDEX["chest"]], np.array(obj.data.bones["Spine"].head_local), atol=1e-5)
    keep = [j for j, n in enumerate(JOINT_NAMES) if n != "chest"]
    np.testing.assert_allclose(saved[keep], before[keep], atol=1e-6)
    assert bind(arm).rig.name == "hero"         # and detection now finds the animator's map for this rig


def test_fbx_and_bvh_through_blenders_importers_map_automatically(addon_modules, tmp_path):
    rig_io = addon_modules[2]
    # A Mixamo skeleton written out as FBX and read back by Blender's FBX importer (bones re-oriented by it).
    build_game_rig("YBot", rows=MIXAMO, tails={})
    fbx = tmp_path / "ybot.fbx"
    assert bpy.ops.export_scene.fbx(filepath=str(fbx), object_types={"ARMATURE"}, add_leaf_bones=False) == \
        {"FINISHED"}
    blender_rigs.fresh(bpy)
    assert bpy.ops.import_scene.fbx(filepath=str(fbx)) == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    a = rest_joints(bind(arm, auto_rig_map(arm).rig), world=True)
    s = rest_joints(bind(arm, "mixamo"), world=True)
    # Both maps read the training data's landmark fractions (rigs/landmarks.py): every joint agrees.
    for j, name in enumerate(JOINT_NAMES):
        assert np.linalg.norm(a[j] - s[j]) < TOL, (name, np.linalg.norm(a[j] - s[j]))
    # BVH files of lower-case Daz names without a head joint, and of CMU's ASF-converted names, through
    # Blender's BVH importer.
    for stem, rows, ends, scale in (("daz_lower", _DAZ, _DAZ_ENDS, 0.01), ("cmu_asf", _ASF, _ASF_ENDS, 0.056444)):
        bvh = tmp_path / f"{stem}.bvh"
        bvh.write_text(write_bvh_text(rows, ends))
        blender_rigs.fresh(bpy)
        assert bpy.ops.import_anim.bvh(filepath=str(bvh), global_scale=scale, axis_forward="-Z", axis_up="Y",
                                       rotate_mode="NATIVE", update_scene_fps=False) == {"FINISHED"}
        (obj,) = [o for o in bpy.data.objects if o.type == "ARMATURE"]
        arm = Armature.from_dict(rig_io.describe_armature(obj))
        binding = bind(arm)
        assert binding.rig.name.startswith("auto:"), stem
        _check_body(rest_joints(binding, world=True))


def _check_body(j):
    """Left on +X (the files face -Y once imported), human height (CMU's ASF conversions drop the thorax, so they
    stand about 1.35 m), heights in order up the body."""
    assert j[INDEX["hip_l"], 0] > 0 > j[INDEX["hip_r"], 0] and j[INDEX["shoulder_l"], 0] > 0.1
    assert 1.3 < j[INDEX["head_end"], 2] - j[INDEX["toe_l"], 2] < 2.0
    assert j[INDEX["head_end"], 2] > j[INDEX["head"], 2] > j[INDEX["neck"], 2] > j[INDEX["chest"], 2]


def test_unnamed_bones_through_gltf_map_automatically(addon_modules, tmp_path):
    rig_io = addon_modules[2]
    obj = build_game_rig("Armature", rows=UNNAMED, tails=UNNAMED_TAILS)
    # A skinned mesh, so that the glTF exporter writes the skeleton as a skin.
    bpy.ops.mesh.primitive_cube_add(size=0.2, location=(0, 0, 1))
    cube = bpy.context.active_object
    cube.modifiers.new("arm", "ARMATURE").object = obj
    cube.vertex_groups.new(name="Node_0").add(list(range(8)), 1.0, "REPLACE")
    cube.parent = obj
    glb = tmp_path / "unnamed.glb"
    assert bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB") == {"FINISHED"}
    blender_rigs.fresh(bpy)
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    auto = auto_rig_map(arm)
    j = rest_joints(bind(arm), world=True)
    _check_body(j)
    got = auto.joint_bones()
    for joint, bone in UNNAMED_EXPECT.items():
        assert got[joint] == bone, (joint, got[joint])
