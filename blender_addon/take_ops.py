"""Denoise Action and Fill In-betweens: whole takes through the motion model, each written into a new action beside
the original, which is never written to."""
from __future__ import annotations

import bpy
import numpy as np

from . import plan, posing, rig_io
from .engine_op import EngineOperator, connect_and_bind, solve_on_rig
from .jobs import Call
from .settings import MOTION_MODEL_TIP


def _action_of(obj, what: str):
    ad = obj.animation_data
    action = ad.action if ad is not None else None
    if action is None:
        raise ValueError(f"'{obj.name}' has no action to {what}")
    return action


def _keys_into_copy(obj, action, suffix: str, solved: dict, start: int, scene):
    """The last step, once every engine call has answered: a new action '<name><suffix>', a copy of the original
    (so the channels the map does not key stay), with the mapped bones' keys replaced from `start` on, assigned to
    the object. The original is never written to; a failure removes the copy and puts the original back."""
    new = action.copy()
    new.name = f"{action.name}{suffix}"
    try:
        rig_io.write_keys(obj, solved, frame_start=start, action=new)
    except Exception:
        if obj.animation_data.action == new:
            obj.animation_data.action = action
        bpy.data.actions.remove(new)
        raise
    scene.frame_set(scene.frame_current)
    return new


class GFPOSE_OT_denoise_action(EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.denoise_action"
    bl_label = "Denoise Action"
    bl_description = ("Clean a noisy take (jitter, spikes, dropouts) into a new action '<name>_denoised'; the "
                      "original action is kept as it is")

    use_action_range: bpy.props.BoolProperty(name="Whole Action", default=True)
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    auto_strength: bpy.props.BoolProperty(name="Auto Strength", default=True)
    strength: bpy.props.FloatProperty(name="Strength", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    use_motion_model: bpy.props.BoolProperty(name="Motion Model", default=True, description=MOTION_MODEL_TIP)

    def steps(self, obj, spec, scene):
        action = _action_of(obj, "denoise")
        if self.use_action_range:
            start, end = (int(round(x)) for x in action.frame_range)
        else:
            start, end = self.frame_start, self.frame_end
        if end - start < 2:
            raise ValueError(f"frames {start}..{end}: a take needs at least 3 frames to denoise")
        bound = yield from connect_and_bind(obj, spec, obj.gfpose.rig)
        take = rig_io.read_body24(obj, bound.binding, frames=range(start, end + 1))
        fps = scene.render.fps / scene.render.fps_base
        reply = yield Call(bound.client.post, "/denoise",
                           {"take": take.tolist(), "fps": fps,
                            "strength": None if self.auto_strength else self.strength,
                            "temporal": bool(self.use_motion_model)},
                           progress=0.3, label=f"Denoising {len(take)} frames")
        clean = np.asarray(reply["joints"], dtype=np.float64)
        # An edit of the take the rig has: every bone keeps its twist and turns only as far as its aim moved.
        now = posing.current_pose(obj, take, list(bound.write["bones"]), frames=range(start, end + 1))
        solved = yield from solve_on_rig(bound, clean, current=now)
        new = _keys_into_copy(obj, action, "_denoised", solved, start, scene)
        how = "with the motion model" if self.use_motion_model else "pose by pose"
        return (f"Denoised frames {start}..{end} {how} into action '{new.name}' (jitter {plan.jitter_mm(take):.1f} -> "
                f"{plan.jitter_mm(clean):.1f} mm/frame^2); '{action.name}' is unchanged")


def _fill_frames(obj, mapped: set[str] | None) -> list[int]:
    """The frames of the selected keyframes of the mapped bones (None: of any bone, a first check before the map is
    known): at least two, and with the mapped bones a frame to fill between them."""
    frames = posing.selected_key_frames(obj, mapped)
    plan.check_fill_frames(frames, mapped is not None)
    return frames


class GFPOSE_OT_fill_inbetweens(EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.fill_inbetweens"
    bl_label = "Fill In-betweens"
    bl_description = ("Fill the frames between the selected keyframes with plausible motion, into a new action "
                      "'<name>_inbetween' keyed on every frame from the first selected key to the last (the mapped "
                      "bones' other keys there are replaced, the selected keys keep their values); the original "
                      "action is kept as it is")

    lock_feet: bpy.props.BoolProperty(name="Keep Feet Planted", default=True,
                                      description="A foot resting in the same place at two keys stays there "
                                                  "between them")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="0: a new draw every time")

    def steps(self, obj, spec, scene):
        action = _action_of(obj, "fill")
        _fill_frames(obj, None)          # the selection is wrong whatever the map: say so before the engine starts
        bound = yield from connect_and_bind(obj, spec, obj.gfpose.rig)
        binding, write = bound.binding, bound.write
        keys = _fill_frames(obj, set(write["bones"]) | {write["root"]})
        fps = scene.render.fps / scene.render.fps_base
        plan.check_key_gaps(keys, fps, bound.motion)
        first, last = keys[0], keys[-1]
        take = np.full((last - first + 1, len(bound.skeleton.names), 3), np.nan)
        take[np.array(keys) - first] = rig_io.read_body24(obj, binding, frames=keys)
        known = np.isfinite(take).all(-1)
        reply = yield Call(bound.client.post, "/inbetween",
                           {"take": plan.joints_payload(take, known), "fps": fps, "seed": self.seed or None,
                            "lock_feet": bool(self.lock_feet)},
                           progress=0.3, label=f"Filling {len(take) - len(keys)} frames between {len(keys)} keys")
        filled = np.asarray(reply["joints"], dtype=np.float64)
        # An edit of what Blender shows between the keys now: twists go from key to key as the curves take them.
        span = range(first, last + 1)
        now = posing.current_pose(obj, rig_io.read_body24(obj, binding, frames=span), list(write["bones"]),
                                  frames=span)
        solved = yield from solve_on_rig(bound, filled, current=now)
        # The solve lands within millimetres of the keyed poses, not on them: the animator's keys stay as they
        # were set (their own values, read from the original action), the frames between agree with them in sign.
        solved = rig_io.keep_key_values(solved, np.array(keys) - first, rig_io.key_values(obj, action, solved, keys))
        new = _keys_into_copy(obj, action, "_inbetween", solved, first, scene)
        return (f"Filled {len(take) - len(keys)} frames between the keys on frames {', '.join(map(str, keys))} "
                f"into action '{new.name}' (keyed {first}..{last}); '{action.name}' is unchanged")


classes = (GFPOSE_OT_denoise_action, GFPOSE_OT_fill_inbetweens)
