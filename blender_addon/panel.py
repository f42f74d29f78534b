"""The sidebar panel: View3D > Sidebar > GFPose, on the active armature."""
from __future__ import annotations

import json

import bpy

from . import auto_pose, operators
from .preferences import prefs


class GFPOSE_PT_main(bpy.types.Panel):
    bl_idname = "GFPOSE_PT_main"
    bl_label = "GFPose"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GFPose"

    def draw(self, context):
        layout = self.layout
        # Engine: status line and the connection test.
        box = layout.box()
        row = box.row()
        try:
            p = prefs(context)
            where = "local engine" if p.engine_python else p.engine_url
            row.label(text=f"Engine: {p.status}", icon="LINKED" if p.status.startswith("ok") else "UNLINKED")
            box.label(text=where)
        except (KeyError, AttributeError):
            row.label(text="Engine: add-on preferences missing", icon="ERROR")
        box.operator("gfpose.test_connection", icon="PLUGIN")

        obj = context.active_object
        if obj is None or obj.type != "ARMATURE":
            layout.label(text="Select an armature", icon="INFO")
            return
        scene = context.scene
        s = scene.gfpose

        # Rig map: chooser, and what /bind found for this armature.
        box = layout.box()
        box.prop(obj.gfpose, "rig")
        bound = operators.binding_for_panel(obj)
        if bound:
            write = bound.get("write") or {}
            box.label(text=f"Mapped: {bound['rig']} ({len(write.get('bones', {}))} bones keyed)", icon="ARMATURE_DATA")
        else:
            box.label(text="Not matched yet", icon="QUESTION")
        box.operator("gfpose.detect_rig", icon="VIEWZOOM")

        # Auto Pose: drag the controls, the body follows.
        box = layout.box()
        box.label(text="Auto Pose", icon="POSE_HLT")
        box.operator("gfpose.auto_pose", icon="PLAY")
        box.label(text="Enter keys the pose, Esc puts the rig back")
        if bound and bound.get("write"):
            offered, pins = auto_pose.pin_choices(obj, bound)
            col = box.column(align=True)
            col.label(text="Pins (dragged in Auto Pose):")
            for bone in offered:
                op = col.operator("gfpose.toggle_pin", text=bone, depress=bone in pins,
                                  icon="PINNED" if bone in pins else "UNPINNED")
                op.bone = bone
        else:
            box.label(text="Detect the rig map to choose pins")

        # Complete Pose.
        box = layout.box()
        box.label(text="Complete Pose", icon="POSE_HLT")
        box.prop(s, "known_from")
        box.prop(s, "frames")
        if s.frames == "RANGE":
            row = box.row(align=True)
            row.prop(s, "frame_start")
            row.prop(s, "frame_end")
        box.prop(s, "n_hypotheses")
        box.prop(s, "move_root")
        op = box.operator("gfpose.complete_pose", icon="CON_ARMATURE")
        op.frames, op.known_from, op.n_hypotheses = s.frames, s.known_from, s.n_hypotheses
        op.move_root = s.move_root
        op.frame_start, op.frame_end, op.seed = s.frame_start, s.frame_end, s.seed
        if obj.gfpose.hypotheses:
            try:
                n = len(json.loads(obj.gfpose.hypotheses)["entries"][0]["keys"])
            except (ValueError, KeyError, IndexError):
                n = 0
            row = box.row(align=True)
            row.label(text=f"Hypothesis {obj.gfpose.hypothesis + 1} / {n}")
            row.operator("gfpose.cycle_hypothesis", text="", icon="TRIA_LEFT").step = -1
            row.operator("gfpose.cycle_hypothesis", text="", icon="TRIA_RIGHT").step = 1
            row.operator("gfpose.accept_hypothesis", icon="CHECKMARK")

        # Denoise Action and Fill In-betweens: both write a new action next to the original.
        box = layout.box()
        box.label(text="Action", icon="MOD_SMOOTH")
        box.prop(s, "use_action_range")
        if not s.use_action_range:
            row = box.row(align=True)
            row.prop(s, "frame_start")
            row.prop(s, "frame_end")
        box.prop(s, "auto_strength")
        sub = box.row()
        sub.enabled = not s.auto_strength
        sub.prop(s, "strength", slider=True)
        box.prop(s, "use_motion_model")
        row = box.row(align=True)
        op = row.operator("gfpose.denoise_action", icon="ACTION")
        op.use_action_range, op.frame_start, op.frame_end = s.use_action_range, s.frame_start, s.frame_end
        op.auto_strength, op.strength, op.use_motion_model = s.auto_strength, s.strength, s.use_motion_model
        row.operator("gfpose.fill_inbetweens", icon="IPO_BEZIER")
        box.label(text="In-betweens: between the selected keyframes")

        # Generate Variations.
        box = layout.box()
        box.label(text="Generate Variations", icon="OUTLINER_OB_ARMATURE")
        box.label(text="Selected bones stay in place")
        box.label(text="Keys a new action '<action>_variations'; yours is kept")
        box.prop(s, "n_variations")
        box.prop(s, "diversity", slider=True)
        box.prop(s, "seed")
        op = box.operator("gfpose.generate_variations", icon="DUPLICATE")
        op.n_variations, op.diversity, op.seed = s.n_variations, s.diversity, s.seed


classes = (GFPOSE_PT_main,)
