"""Our BVH forward kinematics against Blender's own BVH importer (real Blender 5.0 as the `bpy` module).

Every frame and every joint (and every End Site of non-zero length, read as the bone's tail) must agree to
1e-4 of the body height, after the same conversion: positions * the rig map's unit_scale, then Y up -> Z up.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import BANDAI, CMU_DAZ43, CMU_MB31

from gfpose_core.body.rotations import y_up_to_z_up
from gfpose_core.formats.bvh import read_bvh, write_bvh
from gfpose_core.rigs.rig_map import load_rig_map

pytestmark = pytest.mark.blender

N_FRAMES = 150   # enough motion to exercise every joint; CMU clips (120 fps) are taken at every 4th frame


def _bpy():
    return pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")


def _import_with_blender(bpy, path, unit_scale):
    bpy.ops.wm.read_factory_settings(use_empty=True)   # no state carried over from an earlier test
    result = bpy.ops.import_anim.bvh(
        filepath=str(path), global_scale=unit_scale, axis_forward="-Z", axis_up="Y", rotate_mode="NATIVE",
        update_scene_fps=False, frame_start=1, use_fps_scale=False)
    assert result == {"FINISHED"}
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert len(armatures) == 1
    return armatures[0]


def _blender_positions(bpy, arm, n_frames):
    """World-space pose bone heads and tails, (F, B, 3) each, frames 1..n_frames, in pose-bone order."""
    bones = arm.pose.bones
    n = len(bones)
    heads = np.zeros((n_frames, n, 3))
    tails = np.zeros((n_frames, n, 3))
    buf = np.zeros(n * 3, dtype=np.float32)
    scene = bpy.context.scene
    for f in range(n_frames):
        scene.frame_set(1 + f)
        mw = np.array(arm.matrix_world, dtype=np.float64)
        for out, prop in ((heads, "head"), (tails, "tail")):
            bones.foreach_get(prop, buf)
            out[f] = buf.reshape(n, 3) @ mw[:3, :3].T + mw[:3, 3]
    return [b.name for b in bones], heads, tails


@pytest.mark.parametrize("rel, rig_name, stride", [(CMU_MB31, "cmu_mb31", 4), (CMU_DAZ43, "cmu_daz43", 4),
                                                   (BANDAI, "bandai", 1)], ids=["cmu_mb31", "cmu_daz43", "bandai"])
def test_forward_kinematics_matches_blender_importer(rel, rig_name, stride, data_file, tmp_path):
    bpy = _bpy()
    rig = load_rig_map(rig_name)
    clip = read_bvh(data_file(rel))
    clip.motion = clip.motion[::stride][:N_FRAMES]
    path = tmp_path / f"{clip.name}.bvh"          # Blender reads plain text only, not .gz
    write_bvh(path, clip)
    clip = read_bvh(path)                          # compare on exactly the numbers Blender reads
    n_frames = clip.motion.shape[0]

    pos, _ = clip.forward_kinematics()
    ours = y_up_to_z_up(pos * rig.unit_scale)      # (F, J, 3) metres, Z up, facing -Y
    height = float(np.max(ours[..., 2].max(-1) - ours[..., 2].min(-1)))
    assert 1.0 < height < 2.5, height
    tol = 1e-4 * height

    arm = _import_with_blender(bpy, path, rig.unit_scale)
    names, heads, tails = _blender_positions(bpy, arm, n_frames)
    sk = clip.skeleton
    assert sorted(names) == sorted(n for n, e in zip(sk.names, sk.is_end) if not e)

    columns, theirs, labels = [], [], []
    for b, name in enumerate(names):
        columns.append(sk.index(name))
        theirs.append(heads[:, b])
        labels.append(name)
    for j, name in enumerate(sk.names):
        # End Sites: Blender puts the parent bone's tail there, unless the End Site is (near) zero length, where
        # the importer invents a tail of its own (Bandai's head, hands and toes).
        if sk.is_end[j] and np.linalg.norm(sk.offsets[j]) * rig.unit_scale > 2e-3:
            columns.append(j)
            theirs.append(tails[:, names.index(sk.names[sk.parents[j]])])
            labels.append(name)
    theirs = np.stack(theirs, axis=1)
    err = np.linalg.norm(theirs - ours[:, columns], axis=-1)          # (F, checked joints)
    f, k = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() < tol, (f"{rig_name}: Blender and our FK differ by {err.max() * 1000:.4f} mm at frame {f}, "
                             f"joint {labels[k]} (tolerance {tol * 1000:.4f} mm)")
    assert len(labels) >= len(names)
