"""Rig Mapping review in the GFPose sidebar tab: the mapping in use (a map file or the automatic mapping) with each
body24 joint's bone, a joint changed by picking a bone, and the result saved as a map in the animator's own folder.

Picks are kept for the session only, per armature, and change nothing in the scene; the logic is in rig_review.
"""
from __future__ import annotations

import bpy

from . import engine_op, preferences, rig_review

_picks: dict[str, dict[str, str]] = {}      # armature object name -> {body24 joint: bone}


def picks_for(obj) -> dict[str, str]:
    return _picks.setdefault(obj.name_full, {})


def _joint_names() -> list[str]:
    for info in list(preferences._infos.values()):
        if info.get("joints"):
            return list(info["joints"])
    return []


def _info() -> dict:
    infos = list(preferences._infos.values())
    return infos[0] if infos else {}


def _bound(context):
    obj = context.active_object
    if obj is None or obj.type != "ARMATURE":
        return None, None
    return obj, engine_op.binding_for_panel(obj)


def _joint_items(self, context):
    return [(n, n, f"body24 joint {n}") for n in _joint_names()] or [("NONE", "(detect the rig map first)", "")]


class GFPOSE_OT_rig_review_pick(bpy.types.Operator):
    bl_idname = "gfpose.rig_review_pick"
    bl_label = "Pick Bone for Joint"
    bl_description = "Take this joint from the head of another bone (kept until saved as a map)"
    bl_options = {"REGISTER"}

    joint: bpy.props.EnumProperty(name="Joint", items=_joint_items)
    bone: bpy.props.StringProperty(name="Bone")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        self.layout.prop(self, "joint")
        self.layout.prop_search(self, "bone", context.active_object.data, "bones")

    def execute(self, context):
        obj, bound = _bound(context)
        if bound is None:
            self.report({"ERROR"}, "Select an armature and press Detect Rig Map first")
            return {"CANCELLED"}
        if self.bone not in obj.data.bones:
            self.report({"ERROR"}, f"'{obj.name}' has no bone '{self.bone}'")
            return {"CANCELLED"}
        picks_for(obj)[self.joint] = self.bone
        self.report({"INFO"}, f"{self.joint} now from bone '{self.bone}' (save as a map to use it)")
        return {"FINISHED"}


class GFPOSE_OT_rig_review_save(bpy.types.Operator):
    bl_idname = "gfpose.rig_review_save"
    bl_label = "Save as Rig Map"
    bl_description = "Save the mapping shown, with the picked bones, as a rig map in your own folder"
    bl_options = {"REGISTER"}

    name: bpy.props.StringProperty(name="Name", default="my_rig")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        obj, bound = _bound(context)
        names = _joint_names()
        if bound is None or not names:
            self.report({"ERROR"}, "Select an armature and press Detect Rig Map first")
            return {"CANCELLED"}
        lengths = {b.name: b.length for b in obj.data.bones}
        scale = float(obj.matrix_world.to_scale()[0])
        info = _info()
        try:
            raw = rig_review.map_from_binding(bound, names, lengths, scale, picks_for(obj), self.name)
            path = rig_review.save_map(raw, rig_review.user_rig_dir(info), shipped=info.get("shipped_rig_maps", []))
        except (ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        picks_for(obj).clear()
        engine_op.clear_bindings()          # the next call binds again and finds the saved map
        preferences.forget_engines()        # and the rig map list learns its name
        self.report({"INFO"}, f"Saved rig map '{self.name}' to {path}")
        return {"FINISHED"}


class GFPOSE_PT_rig_review(bpy.types.Panel):
    bl_idname = "GFPOSE_PT_rig_review"
    bl_label = "Rig Mapping"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GFPose"
    bl_options = {"DEFAULT_CLOSED"}
    bl_order = 10

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and context.active_object.type == "ARMATURE"

    def draw(self, context):
        layout = self.layout
        obj, bound = _bound(context)
        if bound is None:
            layout.label(text="Press Detect Rig Map to see the mapping", icon="INFO")
            return
        layout.label(text=f"In use: {rig_review.source_of(bound)}", icon="ARMATURE_DATA")
        picks = picks_for(obj)
        col = layout.column(align=True)
        for joint, bone, picked in rig_review.joint_table(bound, _joint_names(), picks):
            row = col.row()
            row.label(text=joint)
            row.label(text=bone, icon="BONE_DATA" if not picked else "GREASEPENCIL")
        row = layout.row(align=True)
        row.operator("gfpose.rig_review_pick", icon="EYEDROPPER")
        row.operator("gfpose.rig_review_save", icon="FILE_TICK")


classes = (GFPOSE_OT_rig_review_pick, GFPOSE_OT_rig_review_save, GFPOSE_PT_rig_review)
