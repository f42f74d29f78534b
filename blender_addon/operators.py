"""The GFPose operators, one module per job: Complete Pose and its hypotheses (complete_pose), Denoise Action and
Fill In-betweens (take_ops), Generate Variations (variations), Auto Pose (auto_pose); the shell and the binding
they share (engine_op).

Poses go to the engine as its joints read through the rig map's binding (/bind), and come back as keys
(/pose_for_rig), written by rig_io.
"""
from __future__ import annotations

from . import auto_pose, complete_pose, engine_op, rig_review_panel, settings, take_ops, variations
from .complete_pose import (
    GFPOSE_OT_accept_hypothesis,
    GFPOSE_OT_complete_pose,
    GFPOSE_OT_cycle_hypothesis,
)
from .engine_op import GFPOSE_OT_detect_rig, binding_for_panel, clear_bindings
from .take_ops import GFPOSE_OT_denoise_action, GFPOSE_OT_fill_inbetweens
from .variations import GFPOSE_OT_generate_variations

__all__ = ["GFPOSE_OT_accept_hypothesis", "GFPOSE_OT_complete_pose", "GFPOSE_OT_cycle_hypothesis",
           "GFPOSE_OT_denoise_action", "GFPOSE_OT_detect_rig", "GFPOSE_OT_fill_inbetweens",
           "GFPOSE_OT_generate_variations", "binding_for_panel", "clear_bindings"]

classes = (settings.classes + complete_pose.classes + take_ops.classes + variations.classes
           + (engine_op.GFPOSE_OT_detect_rig,) + rig_review_panel.classes + auto_pose.classes)


def register_properties():
    settings.register_properties()


def unregister_properties():
    for session in list(auto_pose._sessions.values()):   # the add-on goes away mid-pose: the rig goes back
        try:
            session.restore()
        except ReferenceError:
            pass
    settings.unregister_properties()
    clear_bindings()
