"""GFPose for Blender: complete, denoise, in-between and vary poses on your own armature with a learned human pose
prior (and a motion model for takes).

An extension (blender_manifest.toml; id `gfpose`). The engine runs as a separate process reached over HTTP (add-on
preferences: Engine URL, or Engine Python to start one); this package imports only bpy, mathutils, numpy and the
standard library. Operators: gfpose.complete_pose, gfpose.denoise_action, gfpose.fill_inbetweens,
gfpose.generate_variations; panel: View3D > Sidebar > GFPose.

Supported Blender: 4.2 LTS, 4.5 LTS, 5.0 and 5.2 LTS (blender_version_min 4.2.0; the API differences live in
anim_compat.py). Install Engine (preferences) makes the engine's Python environment for users without one.

The Blender modules load in register(), not on import, so the add-on's bpy-free logic (plan.py) imports anywhere.
"""
from __future__ import annotations


def _classes():
    from . import install_ops, operators, panel, preferences
    return preferences.classes + install_ops.classes + operators.classes + panel.classes


def register():
    import bpy

    from . import operators
    for cls in _classes():
        bpy.utils.register_class(cls)
    operators.register_properties()


def unregister():
    import bpy

    from . import operators, preferences
    preferences.stop_local()      # an engine this add-on started goes with it
    operators.unregister_properties()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
