"""Rigs and renders in real Blender (the `bpy` module) shared by the Blender tests and scripts/blender_demo.py:
Blender's human metarig, a Rigify rig generated from it, armatures imported from BVH files by Blender's own
importer, and a headless Workbench render of armatures as tube figures.

Import only where bpy is installed; the functions take the `bpy` module so that callers decide when it loads.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np


def fresh(bpy):
    bpy.ops.wm.read_factory_settings(use_empty=True)


def enable_rigify():
    import addon_utils
    addon_utils.enable("rigify", default_set=True)


def metarig(bpy):
    enable_rigify()
    assert bpy.ops.object.armature_human_metarig_add() == {"FINISHED"}
    return bpy.context.active_object


def make_rigify_blend(bpy, path: Path) -> Path:
    """Generate a Rigify rig from the human metarig in an empty file and save it (the rig object is "rig")."""
    fresh(bpy)
    meta = metarig(bpy)
    assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
    bpy.data.objects.remove(meta)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def open_rigify(bpy, blend: Path):
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    return bpy.data.objects["rig"]


def import_bvh(bpy, path: Path, rig_name: str, tmp_path: Path, frames: int | None = None):
    """An armature from a (gzipped) BVH file through Blender's own importer, at the rig map's unit scale; frames:
    keep only the first so many frames of the take (a shorter import)."""
    from gfpose_core.rigs.rig_map import load_rig_map
    plain = Path(tmp_path) / (Path(path).name.replace(".gz", ""))     # Blender reads plain text only
    opener = gzip.open if str(path).endswith(".gz") else open
    if frames is None:
        with opener(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with opener(path, "rt") as src:
            text = src.read()
        head, motion = text.split("MOTION", 1)
        lines = motion.strip().splitlines()
        rows = [ln for ln in lines[2:] if ln.strip()][:frames]
        plain.write_text(f"{head}MOTION\nFrames: {len(rows)}\n{lines[1]}\n" + "\n".join(rows) + "\n")
    before = set(bpy.data.objects)
    assert bpy.ops.import_anim.bvh(filepath=str(plain), global_scale=load_rig_map(rig_name).unit_scale,
                                   axis_forward="-Z", axis_up="Y", rotate_mode="NATIVE", update_scene_fps=False,
                                   frame_start=1, use_fps_scale=False) == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o not in before and o.type == "ARMATURE"]
    return obj


def cmu_bones(obj):
    return [b.name for b in obj.data.bones]


def rigify_bones(obj):
    body = ("DEF-spine", "DEF-shoulder", "DEF-upper_arm", "DEF-forearm", "DEF-hand", "DEF-thigh", "DEF-shin",
            "DEF-foot", "DEF-toe", "DEF-pelvis")
    return [b.name for b in obj.data.bones if b.name.startswith(body)]


def stick_figure(bpy, rig_io, obj, bones, name):
    """A mesh of tapered tubes along the given bones of an armature as it is posed now, in world space."""
    import bmesh
    from mathutils import Matrix
    world = np.array(obj.matrix_world)
    scale = np.linalg.norm(world[:3, 0])
    names = [b.name for b in obj.data.bones]
    mats = rig_io.read_pose_matrices(obj)[0]
    bm = bmesh.new()
    for bone in bones:
        i = names.index(bone)
        length = obj.data.bones[bone].length * scale
        if length < 1e-3:
            continue
        head = world[:3, :3] @ mats[i, :3, 3] + world[:3, 3]
        z = world[:3, :3] @ mats[i, :3, 1]
        z /= np.linalg.norm(z)
        x = np.cross(z, [0, 0, 1.0] if abs(z[2]) < 0.9 else [1.0, 0, 0])
        x /= np.linalg.norm(x)
        m = np.eye(4)
        m[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
        m[:3, 3] = head + z * length / 2          # create_cone centres the cone on the origin, along Z
        geom = bmesh.ops.create_cone(bm, cap_ends=True, segments=8, radius1=0.025, radius2=0.012, depth=length)
        bmesh.ops.transform(bm, matrix=Matrix(m.tolist()), verts=geom["verts"])
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    return bpy.data.objects.new(name, mesh)


def render_side_by_side(bpy, rig_io, rigs, picks, out: Path, keep_scene: bool = False) -> Path:
    """Workbench render (headless) of each rig's own bones as tubes: one column per picked frame, the rigs side by
    side within a column; top row seen from the front, bottom row the same figures seen from their left side.

    rigs: [(armature object, frames, bone names, RGBA colour)]; picks: indices into each rig's frames."""
    scene = bpy.context.scene
    keep_frame = scene.frame_current
    columns = []
    for col, k in enumerate(picks):
        cell = []
        for obj, frames, bones, colour in rigs:
            scene.frame_set(frames[k])
            cell.append((stick_figure(bpy, rig_io, obj, bones, f"sticks_{obj.name}_{col}"), colour))
        columns.append(cell)
    scene.frame_set(keep_frame)
    return render_figures(bpy, columns, out, keep_scene=keep_scene)


def render_figures(bpy, columns, out: Path, keep_scene: bool = False) -> Path:
    """Workbench render (headless) of tube figures (stick_figure, not linked yet): columns of [(figure, RGBA)],
    the figures of a column side by side; top row seen from the front, bottom row from the figures' left side.
    The figures and the camera are removed afterwards (other objects' render visibility put back) unless
    keep_scene."""
    from mathutils import Matrix
    scene = bpy.context.scene
    per_col = max(len(c) for c in columns)
    made = []
    for col, cell in enumerate(columns):
        for side, (stick, colour) in enumerate(cell):
            co = np.array([v.co for v in stick.data.vertices])
            # Centre the figure on its own origin (feet stay on the ground), then place it in its cell.
            stick.data.transform(Matrix.Translation((-co[:, 0].mean(), -co[:, 1].mean(), 0.0)))
            for row in (0, 1):
                fig = stick if row == 0 else bpy.data.objects.new(stick.name + "_side", stick.data)
                fig.location = (col * 2.2 + (side - (per_col - 1) / 2) * 0.9, 0.0, -2.4 * row)
                fig.rotation_euler = (0.0, 0.0, -np.pi / 2 * row)   # bottom row: turned to show the profile
                fig.color = colour
                scene.collection.objects.link(fig)
                made.append(fig)
    n = len(columns)
    hidden = {o.name: o.hide_render for o in bpy.data.objects}
    for o in bpy.data.objects:
        o.hide_render = o not in made
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.data.type = "ORTHO"
    width = 2.2 * n + 0.2 + 0.9 * max(per_col - 2, 0)
    height = 5.0                                        # both rows: z from about -2.65 to 2.15
    cam.data.ortho_scale = max(width, height)           # Blender applies it to the longer side of the image
    cam.location = (2.2 * (n - 1) / 2, -10.0, -0.25)
    cam.rotation_euler = (np.pi / 2, 0, 0)              # looking along +Y at the characters' fronts
    keep_camera = scene.camera
    scene.camera = cam
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.color_type = "OBJECT"
    scene.display.shading.light = "STUDIO"
    scene.render.resolution_y = 1080
    scene.render.resolution_x = int(round(1080 * width / height))
    scene.render.resolution_percentage = 100
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    if not keep_scene:
        scene.camera = keep_camera
        meshes = {o.data for o in made}
        cam_data = cam.data
        for o in made + [cam]:
            bpy.data.objects.remove(o)
        for m in meshes:
            bpy.data.meshes.remove(m)
        bpy.data.cameras.remove(cam_data)
        for o in bpy.data.objects:
            if o.name in hidden:
                o.hide_render = hidden[o.name]
    return out
