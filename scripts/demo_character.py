"""The demo's Mixamo-style character: a denoised take and a filled hold on an armature with Mixamo's bone names,
hierarchy and a roll of its own on every bone (as its FBX files import), next to the Rigify rig.

Called by scripts/blender_demo.py once the add-on is installed and the engine is running; writes character.png
(the Rigify rig, the character's denoised take and its hold, as Workbench renders) and character_paths.png (the
right wrist over the frames: noisy, denoised, and the held pose) and returns its numbers.
"""
from __future__ import annotations

import time

import numpy as np

HOLD_KEYS = [1, 31, 61]          # the same pose keyed three times: a hold, as blocking has it
NOISE_M = 0.012                  # jitter of a noisy optical take


def _jitter_mm(take) -> float:
    t = np.asarray(take)
    return float(np.linalg.norm(t[2:] - 2 * t[1:-1] + t[:-2], axis=-1).mean() * 1000)


def mixamo_character(bpy, addon, client, rig, out, clean: np.ndarray, plot_joint, say) -> dict:
    """clean: (T, 24, 3) a clean take at 30 fps in body24 (world, metres); the character stands 1.5 m to the rig's
    right. plot_joint: blender_demo's joint-path plot. Returns the numbers it printed."""
    import blender_rigs
    from test_blender_retarget import _mixamo

    from gfpose_core.body.skeleton import INDEX
    rig_io, posing = addon.rig_io, addon.posing
    scene = bpy.context.scene
    t0 = time.perf_counter()
    obj, _ = _mixamo(bpy, rig_io, seed=2)
    obj.name = "mixamo_character"
    obj.location.x = -1.5
    bpy.context.view_layer.update()
    clean = clean + np.array([-1.5, 0.0, 0.0])
    bound = client.post("/bind", {"armature": rig_io.describe_armature(obj)})
    binding = {k: bound[k] for k in ("rig", "prefix", "bones", "points", "weights")}
    desc = rig_io.describe_armature(obj)

    # Denoise Action on a noisy take of the character.
    rng = np.random.default_rng(5)
    noisy = clean + rng.normal(0, NOISE_M, clean.shape)
    take = client.post("/pose_for_rig", {"armature": desc, "joints": noisy.tolist(), "rig": bound["rig"],
                                         "root_scale": 1.0})
    original = rig_io.write_keys(obj, take, frame_start=1, action="mixamo_take")
    bpy.context.view_layer.objects.active = obj
    frames = range(1, len(noisy) + 1)
    read_noisy = rig_io.read_body24(obj, binding, frames=frames)
    kept = posing.fcurve_snapshot(obj, original)
    assert bpy.ops.gfpose.denoise_action() == {"FINISHED"}
    denoised_action = obj.animation_data.action
    read_clean = rig_io.read_body24(obj, binding, frames=frames)
    still = posing.fcurve_snapshot(obj, original)
    untouched = set(kept) == set(still) and all(all(np.array_equal(x, y) for x, y in zip(kept[k], still[k]))
                                                for k in kept)
    ref = np.asarray(client.post("/pose_for_rig", {"armature": desc, "joints": clean.tolist(), "rig": bound["rig"],
                                                   "root_scale": 1.0})["joints"])
    numbers = {"rig": bound["rig"], "frames": len(noisy), "new_action": denoised_action.name,
               "original_unchanged": untouched, "jitter_mm_noisy": _jitter_mm(read_noisy),
               "jitter_mm_denoised": _jitter_mm(read_clean),
               "error_mm_noisy": float(np.linalg.norm(read_noisy - ref, axis=-1).mean() * 1000),
               "error_mm_denoised": float(np.linalg.norm(read_clean - ref, axis=-1).mean() * 1000)}
    say(f"Mixamo-style character (rig map '{bound['rig']}'): Denoise Action of a {len(noisy)}-frame take with "
        f"{NOISE_M * 1000:.0f} mm noise into '{denoised_action.name}', '{original.name}' "
        f"{'unchanged' if untouched else 'CHANGED'}; error to the clean capture {numbers['error_mm_noisy']:.1f} -> "
        f"{numbers['error_mm_denoised']:.1f} mm, jitter {numbers['jitter_mm_noisy']:.1f} -> "
        f"{numbers['jitter_mm_denoised']:.1f} mm/frame^2")

    # A hold: one clean pose keyed at 1, 31 and 61, the frames between filled.
    one = client.post("/pose_for_rig", {"armature": desc, "joints": [clean[0].tolist()], "rig": bound["rig"],
                                        "root_scale": 1.0})
    hold_action = None
    for f in HOLD_KEYS:
        hold_action = rig_io.write_keys(obj, one, frame_start=f, action=hold_action or "mixamo_hold")
    for fc in posing.channelbag(obj).fcurves:
        fc.keyframe_points.foreach_set("select_control_point", np.ones(len(fc.keyframe_points), bool))
    scene.frame_set(1)
    key_pose = rig_io.read_body24(obj, binding)[0]
    assert bpy.ops.gfpose.fill_inbetweens(seed=1) == {"FINISHED"}
    held = rig_io.read_body24(obj, binding, frames=range(HOLD_KEYS[0], HOLD_KEYS[-1] + 1))
    numbers["hold_max_mm"] = float(np.linalg.norm(held - key_pose, axis=-1).max() * 1000)
    numbers["hold_action"] = obj.animation_data.action.name
    say(f"  a hold (the same pose keyed on frames {', '.join(map(str, HOLD_KEYS))}) filled into "
        f"'{numbers['hold_action']}': every frame within {numbers['hold_max_mm']:.3f} mm of the key pose")

    # Pictures: the Rigify rig, the character's denoised take (mid-take) and its hold (between two keys).
    bones = [b.name for b in obj.data.bones]
    mid = len(noisy) // 2 + 1
    columns = [[(blender_rigs.stick_figure(bpy, rig_io, rig, blender_rigs.rigify_bones(rig), "char_rigify"),
                 (0.6, 0.6, 0.6, 1))]]
    obj.animation_data.action = denoised_action
    scene.frame_set(mid)
    columns.append([(blender_rigs.stick_figure(bpy, rig_io, obj, bones, "char_denoised"), (0.95, 0.5, 0.15, 1))])
    obj.animation_data.action = bpy.data.actions[numbers["hold_action"]]
    scene.frame_set(16)
    columns.append([(blender_rigs.stick_figure(bpy, rig_io, obj, bones, "char_hold"), (0.2, 0.45, 0.9, 1))])
    scene.frame_set(1)
    blender_rigs.render_figures(bpy, columns, out / "character.png")
    hold_path = np.full_like(read_clean, np.nan)
    n = min(len(held), len(hold_path))
    hold_path[:n] = held[:n]
    plot_joint(out / "character_paths.png", "wrist_r", INDEX, "character's right wrist", np.arange(len(noisy)),
               [(read_noisy, "#bbbbbb", 1.5, "noisy take"), (ref, "#3070e0", 1, "clean capture"),
                (read_clean, "#f08020", 1.5, "denoised"), (hold_path, "#20a040", 1.5, "hold, filled")])
    numbers["step_s"] = time.perf_counter() - t0
    say(f"  character.png (Rigify rig | character denoised, frame {mid} | character's hold, frame 16) and "
        f"character_paths.png ({numbers['step_s']:.0f} s)")
    return numbers
