"""Generate Variations: variations of the current pose with the selected bones pinned, keyed after the current
frame of a new action '<action>_variations' (a copy of the animator's action, assigned); the animator's action is
never written to and is kept (with a fake user) to assign back."""
from __future__ import annotations

import bpy
import numpy as np

from . import plan, posing, rig_io
from .engine_op import EngineOperator, connect_and_bind, solve_on_rig
from .jobs import Call


class GFPOSE_OT_generate_variations(EngineOperator, bpy.types.Operator):
    bl_idname = "gfpose.generate_variations"
    bl_label = "Generate Variations"
    bl_description = ("Key variations of the current pose on the frames after this one of a new action "
                      "'<action>_variations' (a copy of yours, assigned), keeping the selected bones' joints in "
                      "place; your action is never written to and stays in the file to assign back")

    n_variations: bpy.props.IntProperty(name="Variations", default=4, min=1, max=64)
    diversity: bpy.props.FloatProperty(name="Diversity", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, description="0: a new draw every time")

    def steps(self, obj, spec, scene):
        bound = yield from connect_and_bind(obj, spec, obj.gfpose.rig)
        binding, write = bound.binding, bound.write
        mapped = set(write["bones"]) | {write["root"]}
        fixed = posing.selected_bones(obj) & mapped
        pinned = plan.joints_from_posed_bones(bound.skeleton, write, fixed)
        around = rig_io.read_body24(obj, binding)[0]
        reply = yield Call(bound.client.post, "/generate",
                           {"n": self.n_variations, "around": around.tolist(), "pinned": pinned or None,
                            "diversity": self.diversity, "seed": self.seed or None},
                           progress=0.3, label=f"Generating {self.n_variations} variations")
        poses = np.asarray(reply["joints"], dtype=np.float64)
        solved = yield from solve_on_rig(bound, poses, current=_kept(obj, around, fixed, mapped, len(poses)))
        # Everything answered: key the current pose (where not keyed yet) and the variations after it.
        cur = scene.frame_current
        pbs = obj.pose.bones
        bones = [b for b in dict.fromkeys(list(write["bones"]) + [write["root"]]) if b not in fixed]
        rig_io.apply_properties(obj, solved.get("properties", []))
        held = posing.channel_values(obj, bones, solved.get("rotation_modes", {}))
        per_frame = [plan.keys_of_pose(solved, k, bones, write["root"], held) for k in range(len(poses))]
        # The pinned bones keep their values; every mapped bone gets a key now, so that this frame stays as it is.
        now = {}
        for b in mapped:
            pb = pbs[b]
            mode = pb.rotation_mode
            path = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode,
                                                                                                 "rotation_euler")
            now[(b, path)] = list(getattr(pb, path))
            if b == write["root"] or b in fixed:
                now[(b, "location")] = list(pb.location)
        channels: dict[tuple[str, str], list] = {}
        for keys in per_frame:
            got = {(c["bone"], c["path"]): c["values"][0] for c in keys["channels"]}
            for (b, path), v in now.items():
                if b in fixed:
                    channels.setdefault((b, path), []).append(v)
            for (b, path), v in got.items():
                channels.setdefault((b, path), []).append(v)
        modes = {b: pbs[b].rotation_mode for b in fixed} | per_frame[0]["rotation_modes"]
        variations = {"frames": len(per_frame), "rotation_modes": modes,
                      "properties": solved.get("properties", []),
                      "channels": [{"bone": b, "path": p, "values": v} for (b, p), v in channels.items()]}
        keyed_now = posing.keyed_bones(obj, cur)
        unkeyed_now = [(b, p) for (b, p) in now if b not in keyed_now]
        current = {"frames": 1, "rotation_modes": {},
                   "channels": [{"bone": b, "path": p, "values": [now[(b, p)]]} for b, p in unkeyed_now]}
        original, new = _variations_action(obj)
        try:
            rig_io.write_keys(obj, variations, frame_start=cur + 1, action=new)
            if unkeyed_now:
                rig_io.write_keys(obj, current, frame_start=cur, action=new)
        except Exception:
            if obj.animation_data is not None:
                obj.animation_data.action = original
            bpy.data.actions.remove(new)
            raise
        scene.frame_set(cur)
        kept = f"; '{original.name}' is unchanged (assign it back in the Action editor)" if original else ""
        return (f"Keyed {len(per_frame)} variation(s) on frames {cur + 1}..{cur + len(per_frame)} of new action "
                f"'{new.name}' with rig map '{binding['rig']}'"
                + (f", pinned {', '.join(pinned)}" if pinned else ", nothing pinned") + kept)


def _kept(obj, around: np.ndarray, fixed: set[str], mapped: set[str], n: int) -> dict | None:
    """/pose_for_rig's `current` for n variations: the pinned bones, and bones above the mapped ones posed off
    rest, stay exactly as they are, so the engine solves the other bones under them."""
    keep = sorted(fixed | {b for b in posing.ancestors(obj, mapped) - mapped if posing.has_twist(obj, b)})
    if not keep:
        return None
    got = posing.current_pose(obj, around[None], keep)
    return {"joints": np.repeat(np.asarray(got["joints"]), n, 0).tolist(),
            "rotations": {b: np.repeat(np.asarray(v), n, 0).tolist() for b, v in got["rotations"].items()},
            "keep": keep}


def _variations_action(obj):
    """(the animator's action or None, a new action '<name>_variations' to key into): a copy of the animator's, so
    that the rest of the animation stays in view; the original gets a fake user so that it is kept unassigned."""
    ad = obj.animation_data
    original = ad.action if ad is not None else None
    if original is None:
        return None, bpy.data.actions.new(f"{obj.name}_variations")
    original.use_fake_user = True
    new = original.copy()
    new.name = f"{original.name}_variations"
    new.use_fake_user = False
    return original, new


classes = (GFPOSE_OT_generate_variations,)
