"""What the add-on keeps on the scene and on each armature: the panel's settings, the rig map chosen for the
armature and the hypotheses waiting to be cycled."""
from __future__ import annotations

import bpy

from .preferences import known_rig_maps

_rig_items_cache: list = []


def _rig_items(self, context):
    """Auto-detect, then the maps the engine knows (listed once it has been reached: Test Connection or any
    operator). Blender keeps only pointers to these strings, so the list lives on between calls."""
    names = known_rig_maps()
    if [i[0] for i in _rig_items_cache[1:]] != names or not _rig_items_cache:
        _rig_items_cache[:] = [("AUTO", "Auto-detect", "Detect the rig map from the bone names")]
        _rig_items_cache.extend((n, n, f"the engine's rig map '{n}'") for n in names)
    return _rig_items_cache


MOTION_MODEL_TIP = ("Clean with the temporal (motion) model, which sees windows of frames (about two seconds) "
                    "at once, rather than each pose on its own")


class GFPoseObjectSettings(bpy.types.PropertyGroup):
    rig: bpy.props.EnumProperty(name="Rig Map", items=_rig_items,
                                description="Which rig map maps this armature to the engine's joints")
    hypotheses: bpy.props.StringProperty(name="Hypotheses", default="",
                                         description="Completions waiting to be cycled or accepted (JSON)")
    hypothesis: bpy.props.IntProperty(name="Hypothesis", default=0, min=0)
    auto_pose_pins: bpy.props.StringProperty(
        name="Auto Pose Pins", default="",
        description="Bones Auto Pose lets you drag, one per line (empty: the hand, foot, root and head controls)")


class GFPoseSceneSettings(bpy.types.PropertyGroup):
    frames: bpy.props.EnumProperty(
        name="Frames", default="CURRENT",
        items=[("CURRENT", "Current Frame", "Complete the pose at the current frame"),
               ("RANGE", "Keyframes in Range", "Complete the pose at every keyframe between start and end")])
    known_from: bpy.props.EnumProperty(
        name="Keep", default="KEYED",
        items=[("KEYED", "Keyed Bones", "The bones keyed at the frame are what the animator posed"),
               ("SELECTED", "Selected Bones", "The selected bones are what the animator posed")])
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    n_hypotheses: bpy.props.IntProperty(name="Hypotheses", default=1, min=1, max=16,
                                        description="Completions to cycle through before accepting one")
    move_root: bpy.props.BoolProperty(name="Move Root", default=False,
                                      description="Let the completion move and turn the root bone when you did not "
                                                  "pose it (off: an unposed root stays where it stands)")
    auto_strength: bpy.props.BoolProperty(name="Auto Strength", default=True,
                                          description="Let the engine judge how noisy the take is")
    strength: bpy.props.FloatProperty(name="Strength", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    use_motion_model: bpy.props.BoolProperty(name="Motion Model", default=True, description=MOTION_MODEL_TIP)
    use_action_range: bpy.props.BoolProperty(name="Whole Action", default=True)
    n_variations: bpy.props.IntProperty(name="Variations", default=4, min=1, max=64)
    diversity: bpy.props.FloatProperty(name="Diversity", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="0: a new draw every time")


classes = (GFPoseObjectSettings, GFPoseSceneSettings)


def register_properties():
    bpy.types.Object.gfpose = bpy.props.PointerProperty(type=GFPoseObjectSettings)
    bpy.types.Scene.gfpose = bpy.props.PointerProperty(type=GFPoseSceneSettings)


def unregister_properties():
    del bpy.types.Scene.gfpose
    del bpy.types.Object.gfpose
