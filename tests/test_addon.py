"""The Blender add-on end to end in real Blender 5.0 (the `bpy` module) against a real engine process.

The extension zip is built, checked by Blender's own extension validator, installed headless into a throw-away user
repository and enabled; one engine (`gfpose serve`, shipped weights, CPU) serves the whole module through the
add-on preferences' engine_url. Each operator runs through execute on a Rigify rig generated from the human metarig
and on an armature imported from a CMU BVH file by Blender's importer, with poses from real CMU takes.

Undo: the bpy module starts with undo off in background mode; `ed.undo_push()` switches it on, after which an
operator run with undo (bpy.ops.x('EXEC_DEFAULT', True)) is one step that `ed.undo()` takes back, as in the UI.
The modal path (threads, progress, ESC) needs an event loop the bpy module lacks: its job runner is tested on its
own here (threaded steps, cancel), the operators' modal glue is not exercised.
"""
from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import CMU_MB31, ENGINE_PYTHON, REPO_ROOT

pytestmark = pytest.mark.blender

bpy = pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")

import addon_utils  # noqa: E402  (ships with bpy)
import blender_rigs  # noqa: E402

from gfpose_core.body.skeleton import INDEX
from gfpose_core.data import load_take
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.binding import bind
from gfpose_core.rigs.rig_map import load_rig_map
from gfpose_core.rigs.solve import bind_for_rig, pose_for_rig

MODULE = "bl_ext.user_default.gfpose"
CMU_UNSEEN = "cmu/bvh/06_01.bvh.gz"     # a CMU subject the shipped weights never saw (the demo's clip too)
VALIDATOR = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"

RIGIFY_POSED = ["torso", "spine_fk.002", "spine_fk.003", "thigh_fk.L", "shin_fk.L", "foot_fk.L", "thigh_fk.R",
                "shin_fk.R", "foot_fk.R", "root", "hips", "chest", "spine_fk", "spine_fk.001"]
CMU_ARMS_HEAD = ["LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftFingerBase", "LeftHandIndex1",
                 "LThumb", "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightFingerBase",
                 "RightHandIndex1", "RThumb", "Neck1", "Head"]   # Neck turns with the chest (cmu_mb31)
# Segments the completion decides (directions compared, so that rigs of other proportions compare too).
COMPLETED = [(a, b) for a, b in (("collar_l", "shoulder_l"), ("shoulder_l", "elbow_l"), ("elbow_l", "wrist_l"),
                                 ("collar_r", "shoulder_r"), ("shoulder_r", "elbow_r"), ("elbow_r", "wrist_r"),
                                 ("neck", "head"), ("head", "head_end"))]
ARM_JOINTS = [INDEX[n] for n in ("shoulder_l", "elbow_l", "wrist_l", "shoulder_r", "elbow_r", "wrist_r", "head")]


# --- fixtures: the zip, the engine, the add-on ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine_url():
    port = _free_port()
    proc = subprocess.Popen([ENGINE_PYTHON, "-m", "gfpose_core", "serve", "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"engine exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("engine did not start within 90 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO_ROOT))
    import build_addon
    return build_addon.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory) -> Path:
    """A throw-away directory for Blender's "user_default" extension repository (never the user's own)."""
    return tmp_path_factory.mktemp("extensions")


def _user_repo(repo_dir: Path):
    repos = bpy.context.preferences.extensions.repos
    repo = repos[[r.module for r in repos].index("user_default")]
    repo.use_custom_directory = True
    repo.custom_directory = str(repo_dir)
    return repo


@pytest.fixture(scope="module")
def installed(addon_zip, repo_dir):
    # An extension left enabled by another test module (installed from its own folder) would register the same
    # classes twice.
    for name in [a.module for a in bpy.context.preferences.addons if a.module.rsplit(".", 1)[-1] == "gfpose"]:
        addon_utils.disable(name, default_set=True)
    blender_rigs.fresh(bpy)
    _user_repo(repo_dir)
    result = bpy.ops.extensions.package_install_files(filepath=str(addon_zip), repo="user_default",
                                                      enable_on_install=True)
    return result


@pytest.fixture
def addon(installed, repo_dir, engine_url):
    """Per test: factory settings (empty file), the installed extension enabled, the engine's URL set."""
    blender_rigs.fresh(bpy)
    _user_repo(repo_dir)
    addon_utils.enable(MODULE, default_set=True)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_python = ""
    prefs.engine_url = engine_url
    return sys.modules[MODULE]


# --- scenes ------------------------------------------------------------------------------------------------------

def _real_pose(data_file, frame=200) -> np.ndarray:
    return load_take(data_file(CMU_UNSEEN)).joints[frame].astype(np.float64)


def _pose_rigify(rig_io, obj, joints: np.ndarray, bones=None, frame_start=1, action="take"):
    """Key body24 poses (F, 24, 3) on the Rigify rig (only `bones` when given), as an animator's keys."""
    info = bind_for_rig(rig_io.describe_armature(obj))
    rig_io.apply_properties(obj, info["properties"])
    pose = pose_for_rig(rig_io.describe_armature(obj), joints, root_scale=1.0)
    if bones is not None:
        pose["channels"] = [c for c in pose["channels"] if c["bone"] in bones]
        pose["rotation_modes"] = {b: m for b, m in pose["rotation_modes"].items() if b in bones}
    rig_io.write_keys(obj, pose, frame_start=frame_start, action=action)
    bpy.context.scene.frame_set(frame_start)
    return bind(Armature.from_dict(rig_io.describe_armature(obj))).to_dict()


def _rigify_scene(addon, rigify_blend):
    obj = blender_rigs.open_rigify(bpy, rigify_blend)
    bpy.context.view_layer.objects.active = obj
    return obj


def _cmu_scene(tmp_path, data_file, frames=40):
    obj = blender_rigs.import_bvh(bpy, data_file(CMU_UNSEEN), "cmu_mb31", tmp_path, frames=frames)
    bpy.context.view_layer.objects.active = obj
    return obj


def _strip_bones(addon, obj, bones):
    """Delete the keys of some bones and put them at rest: what an animator has not posed yet."""
    bag = addon.posing.channelbag(obj)
    for fc in list(bag.fcurves):
        hit = addon.posing.bone_of_path(fc.data_path)
        if hit and hit[0] in bones:
            bag.fcurves.remove(fc)
    for b in bones:
        pb = obj.pose.bones[b]
        pb.rotation_quaternion, pb.rotation_euler, pb.location = (1, 0, 0, 0), (0, 0, 0), (0, 0, 0)
    bpy.context.view_layer.update()


def _state(addon, obj) -> dict:
    """Everything an operator could change: every action's keys, assignments, pose values, custom properties."""
    pbs = obj.pose.bones
    out = {"actions": sorted(a.name for a in bpy.data.actions),
           "assigned": (obj.animation_data.action.name if obj.animation_data and obj.animation_data.action
                        else None),
           "pose": {pb.name: addon.posing.basis_values(pb) for pb in pbs},
           "props": {pb.name: {k: pb[k] for k in pb.keys() if isinstance(pb[k], (int, float, str))} for pb in pbs},
           "hypotheses": obj.gfpose.hypotheses, "frame": bpy.context.scene.frame_current}
    for a in bpy.data.actions:
        out["keys", a.name] = addon.posing.fcurve_snapshot(obj, a)
    return out


def _same_keys(a: dict, b: dict, only=None) -> bool:
    keys = [k for k in a if only is None or only(k)]
    return all(k in b and all(np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in keys)


def _assert_same_state(before: dict, after: dict):
    assert before["actions"] == after["actions"] and before["assigned"] == after["assigned"]
    assert before["pose"] == after["pose"]
    assert before["props"] == after["props"] and before["hypotheses"] == after["hypotheses"]
    for k in before:
        if isinstance(k, tuple):
            assert set(before[k]) == set(after[k]) and _same_keys(before[k], after[k]), k


def _bone_keys(addon, snapshot: dict, bones) -> dict:
    return {k: v for k, v in snapshot.items() if (addon.posing.bone_of_path(k[0]) or ("",))[0] in bones}


def _direction_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between the completed segments' directions in two poses (..., 24, 3)."""
    out = []
    for p, c in COMPLETED:
        d1, d2 = a[..., INDEX[c], :] - a[..., INDEX[p], :], b[..., INDEX[c], :] - b[..., INDEX[p], :]
        cos = np.sum(d1 * d2, -1) / (np.linalg.norm(d1, axis=-1) * np.linalg.norm(d2, axis=-1))
        out.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.stack(out, -1)


def _jitter(take: np.ndarray) -> float:
    return float(np.linalg.norm(take[2:] - 2 * take[1:-1] + take[:-2], axis=-1).mean())


# --- install -------------------------------------------------------------------------------------------------------

def test_zip_validates_installs_and_enables(addon, installed, addon_zip, repo_dir, engine_url):
    assert installed == {"FINISHED"}                            # package_install_files from the zip
    # Blender's own extension validator (bl_pkg's command line) accepts the zip and the source folder.
    for src in (addon_zip, REPO_ROOT / "blender_addon"):
        out = subprocess.run([sys.executable, str(VALIDATOR), "validate", str(src)], capture_output=True, text=True)
        assert out.returncode == 0 and "Success" in out.stdout, out.stdout + out.stderr
    assert (repo_dir / "gfpose" / "blender_manifest.toml").exists()
    assert not (repo_dir / "gfpose" / "rigs").exists()           # one copy of the rig maps: the engine's
    manifest = tomllib.loads((repo_dir / "gfpose" / "blender_manifest.toml").read_text())
    assert manifest["blender_version_min"] == "4.2.0"             # 4.2 LTS and later install it
    assert MODULE in bpy.context.preferences.addons
    for op in ("complete_pose", "denoise_action", "fill_inbetweens", "generate_variations", "cycle_hypothesis",
               "test_connection"):
        assert hasattr(bpy.ops.gfpose, op), op
    panel = bpy.types.GFPOSE_PT_main
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "GFPose")
    for op in (bpy.types.GFPOSE_OT_complete_pose, bpy.types.GFPOSE_OT_denoise_action,
               bpy.types.GFPOSE_OT_fill_inbetweens, bpy.types.GFPOSE_OT_generate_variations):
        assert op.bl_options == {"REGISTER", "UNDO"}
    # The rig chooser lists the engine's maps once the engine has been reached.
    addon.operators.clear_bindings()
    assert [i[0] for i in addon.settings._rig_items(None, bpy.context)] == ["AUTO"]
    assert bpy.ops.gfpose.test_connection() == {"FINISHED"}
    items = [i[0] for i in addon.settings._rig_items(None, bpy.context)]
    assert items[0] == "AUTO" and {"rigify", "metarig", "mixamo", "cmu_mb31", "ue5_mannequin"} <= set(items)
    # The add-on imports only bpy, mathutils, numpy and the standard library (no torch, no engine package).
    imported = set()
    for path in (repo_dir / "gfpose").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) <= {"bpy", "bpy_extras", "mathutils", "numpy"}, imported
    # Test Connection fills the status line.
    prefs = bpy.context.preferences.addons[MODULE].preferences
    assert bpy.ops.gfpose.test_connection() == {"FINISHED"}
    assert prefs.status.startswith("ok: cpu")


# --- Complete Pose -------------------------------------------------------------------------------------------------

def test_complete_pose_on_rigify_keeps_posed_keys_cycles_and_undoes(addon, rigify_blend, data_file):
    rig_io = addon.rig_io
    obj = _rigify_scene(addon, rigify_blend)
    real = _real_pose(data_file)
    binding = _pose_rigify(rig_io, obj, real[None], bones=RIGIFY_POSED)
    rest_arms = rig_io.read_body24(obj, binding)[0]
    before = addon.posing.fcurve_snapshot(obj)
    bpy.ops.ed.undo_push(message="posed")
    assert bpy.ops.gfpose.complete_pose("EXEC_DEFAULT", True) == {"FINISHED"}
    obj = bpy.data.objects["rig"]
    after = addon.posing.fcurve_snapshot(obj)
    # The animator's keys are bit for bit what they were; the arms, neck and head got keys.
    assert _same_keys(before, after)
    new_bones = {addon.posing.bone_of_path(k[0])[0] for k in set(after) - set(before)}
    assert new_bones == {"shoulder.L", "upper_arm_fk.L", "forearm_fk.L", "hand_fk.L", "shoulder.R",
                         "upper_arm_fk.R", "forearm_fk.R", "hand_fk.R", "neck", "head"}
    done = rig_io.read_body24(obj, binding)[0]
    known = [INDEX[n] for n in ("pelvis", "spine", "chest", "neck", "collar_l", "collar_r", "hip_l", "knee_l",
                                "ankle_l", "toe_l", "hip_r", "knee_r", "ankle_r", "toe_r")]
    np.testing.assert_allclose(done[known], rest_arms[known], atol=1e-6)
    # The completed arms and head lie closer to the real pose than the rest arms did.
    err_rest, err_done = _direction_error(rest_arms, real), _direction_error(done, real)
    assert err_done.mean() < 0.75 * err_rest.mean(), (err_rest.round(), err_done.round())
    # Undo gives back the posed-only keys.
    bpy.ops.ed.undo()
    obj = bpy.data.objects["rig"]
    undone = addon.posing.fcurve_snapshot(obj)
    assert set(undone) == set(before) and _same_keys(before, undone)

    # Three hypotheses: cycling keys the next one (other arms), the posed keys and known joints still untouched.
    bpy.ops.ed.undo_push(message="posed again")
    assert bpy.ops.gfpose.complete_pose("EXEC_DEFAULT", True, n_hypotheses=3, seed=5) == {"FINISHED"}
    obj = bpy.data.objects["rig"]
    assert obj.gfpose.hypotheses and obj.gfpose.hypothesis == 0
    hyps = [rig_io.read_body24(obj, binding)[0]]
    for k in (1, 2):
        assert bpy.ops.gfpose.cycle_hypothesis("EXEC_DEFAULT", True) == {"FINISHED"}
        assert obj.gfpose.hypothesis == k
        hyps.append(rig_io.read_body24(obj, binding)[0])
    bpy.context.scene.frame_set(1)
    np.testing.assert_allclose(rig_io.read_body24(obj, binding)[0], hyps[-1], atol=1e-5)  # the keys hold it
    hyps = np.array(hyps)
    assert np.linalg.norm(hyps[1:, ARM_JOINTS] - hyps[0, ARM_JOINTS], axis=-1).max() > 0.01
    np.testing.assert_allclose(hyps[:, known], rest_arms[known][None].repeat(3, 0), atol=1e-6)
    assert _same_keys(before, addon.posing.fcurve_snapshot(obj))
    assert bpy.ops.gfpose.accept_hypothesis("EXEC_DEFAULT", True) == {"FINISHED"} and not obj.gfpose.hypotheses
    # Undo: accept, two cycles, the completion.
    for _ in range(4):
        bpy.ops.ed.undo()
    obj = bpy.data.objects["rig"]
    undone = addon.posing.fcurve_snapshot(obj)
    assert set(undone) == set(before) and _same_keys(before, undone) and not obj.gfpose.hypotheses
    # Known from the selection instead of the keys: the same bones keyed, the posed keys untouched.
    addon.posing.set_selected(obj, RIGIFY_POSED)
    assert bpy.ops.gfpose.complete_pose(known_from="SELECTED") == {"FINISHED"}
    after = addon.posing.fcurve_snapshot(obj)
    assert _same_keys(before, after) and {addon.posing.bone_of_path(k[0])[0] for k in set(after) - set(before)} \
        == new_bones


def test_complete_pose_on_bvh_armature_over_a_frame_range(addon, data_file, tmp_path):
    rig_io, posing = addon.rig_io, addon.posing
    obj = _cmu_scene(tmp_path, data_file)
    binding = bind(Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
    frames = [10, 11, 12, 13]
    real = rig_io.read_body24(obj, binding, frames=frames)
    _strip_bones(addon, obj, CMU_ARMS_HEAD)
    rest = rig_io.read_body24(obj, binding, frames=frames)
    before = posing.fcurve_snapshot(obj)
    assert bpy.ops.gfpose.complete_pose(frames="RANGE", frame_start=10, frame_end=13, seed=3) == {"FINISHED"}
    after = posing.fcurve_snapshot(obj)
    assert _same_keys(before, after)                             # every key the take had, bit for bit
    keyed = posing.keyed_bones(obj)
    assert {"LeftArm", "LeftForeArm", "RightArm", "Neck1", "Head"} <= keyed
    arm = [k for k in after if k[0] == 'pose.bones["LeftArm"].rotation_euler'][0]
    np.testing.assert_array_equal(after[arm][0][0::2], frames)   # keys at the range's keyframes only
    done = rig_io.read_body24(obj, binding, frames=frames)
    # Same rig as the take: positions compare directly (metres), and directions.
    assert np.linalg.norm(done[:, ARM_JOINTS] - real[:, ARM_JOINTS], axis=-1).mean() < \
        0.5 * np.linalg.norm(rest[:, ARM_JOINTS] - real[:, ARM_JOINTS], axis=-1).mean()
    assert _direction_error(done, real).mean() < 0.5 * _direction_error(rest, real).mean()
    assert bpy.context.scene.frame_current == 1


# --- Denoise Action ------------------------------------------------------------------------------------------------

def _noisy_take(data_file, n=48, sigma=0.012, seed=0) -> tuple[np.ndarray, np.ndarray]:
    clean = load_take(data_file(CMU_MB31)).joints[400:400 + 4 * n:4].astype(np.float64)   # 120 -> 30 fps
    rng = np.random.default_rng(seed)
    return clean, clean + rng.normal(0, sigma, clean.shape)


@pytest.mark.parametrize("rig", ["rigify", "cmu_bvh"])
def test_denoise_action_makes_a_new_cleaner_action(addon, rig, rigify_blend, data_file, tmp_path):
    rig_io, posing = addon.rig_io, addon.posing
    bpy.context.scene.render.fps = 30
    obj = _rigify_scene(addon, rigify_blend) if rig == "rigify" else _cmu_scene(tmp_path, data_file, frames=5)
    bpy.context.scene.render.fps = 30
    clean, noisy = _noisy_take(data_file)
    arm = Armature.from_dict(rig_io.describe_armature(obj))
    info = bind_for_rig(arm.to_dict())
    rig_io.apply_properties(obj, info["properties"])
    pose = pose_for_rig(rig_io.describe_armature(obj), noisy)
    rig_io.write_keys(obj, pose, frame_start=1, action="noisy take")
    binding = bind(Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
    frames = range(1, len(noisy) + 1)
    read_noisy = rig_io.read_body24(obj, binding, frames=frames)
    original = posing.fcurve_snapshot(obj)
    bpy.ops.ed.undo_push(message="noisy")
    assert bpy.ops.gfpose.denoise_action("EXEC_DEFAULT", True) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    new = obj.animation_data.action
    assert new.name == "noisy take_denoised" and "noisy take" in bpy.data.actions
    # The original action: the same keys, bit for bit.
    kept = posing.fcurve_snapshot(obj, bpy.data.actions["noisy take"])
    assert set(kept) == set(original) and _same_keys(original, kept)
    read_clean = rig_io.read_body24(obj, binding, frames=frames)
    assert _jitter(read_clean) < 0.5 * _jitter(read_noisy), (_jitter(read_noisy), _jitter(read_clean))
    # ... and it stays the take: near the clean motion, nearer than the noisy keys were (in the rig's proportions,
    # so the motion is compared through the rig's own reading of the noisy take).
    assert np.abs(read_clean - read_noisy).mean() < 0.05
    # Undo takes the new action away and gives the original back.
    bpy.ops.ed.undo()
    obj = bpy.context.view_layer.objects.active
    assert obj.animation_data.action.name == "noisy take" and "noisy take_denoised" not in bpy.data.actions


def test_denoise_action_with_and_without_the_motion_model(addon, data_file, tmp_path):
    rig_io, posing = addon.rig_io, addon.posing
    obj = _cmu_scene(tmp_path, data_file, frames=5)
    bpy.context.scene.render.fps = 30
    _, noisy = _noisy_take(data_file, n=40, seed=1)
    rig_io.write_keys(obj, pose_for_rig(rig_io.describe_armature(obj), noisy), frame_start=1, action="noisy")
    binding = bind(Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
    frames = range(1, len(noisy) + 1)
    read_noisy = rig_io.read_body24(obj, binding, frames=frames)
    original = bpy.data.actions["noisy"]
    before = posing.fcurve_snapshot(obj, original)
    cleaned = {}
    for use in (False, True):
        obj.animation_data.action = original
        assert bpy.ops.gfpose.denoise_action(use_motion_model=use) == {"FINISHED"}
        new = obj.animation_data.action
        assert new != original and new.name.startswith("noisy_denoised")
        cleaned[use] = rig_io.read_body24(obj, binding, frames=frames)
    assert len({a.name for a in bpy.data.actions if a.name.startswith("noisy_denoised")}) == 2
    kept = posing.fcurve_snapshot(obj, original)
    assert set(kept) == set(before) and _same_keys(before, kept)
    # The option reaches the engine: two different cleanings of the same take. (How clean the motion model's is,
    # is the default's test above.)
    assert np.abs(cleaned[True] - cleaned[False]).max() > 1e-3
    assert _jitter(cleaned[False]) < 0.5 * _jitter(read_noisy), (_jitter(read_noisy), _jitter(cleaned[False]))


# --- Fill In-betweens ----------------------------------------------------------------------------------------------

def _take_at_30fps(data_file, start=100, n=61) -> np.ndarray:
    """A real motion (a CMU subject the weights never saw), 120 fps -> 30 fps, to key on a rig."""
    take = load_take(data_file(CMU_UNSEEN))
    step = int(round(take.fps / 30))
    return take.joints[start:start + step * n:step].astype(np.float64)


def _key_take(rig_io, obj, joints: np.ndarray, action: str) -> dict:
    """Key a body24 take on every frame from 1 (the rig map's switches set), as a keyed animation; the binding to
    read it back with."""
    info = bind_for_rig(rig_io.describe_armature(obj))
    rig_io.apply_properties(obj, info["properties"])
    rig_io.write_keys(obj, pose_for_rig(rig_io.describe_armature(obj), joints), frame_start=1, action=action)
    bpy.context.scene.frame_set(1)
    return bind(Armature.from_dict(rig_io.describe_armature(obj))).to_dict()


def _select_keys(addon, obj, frames) -> None:
    """Select the keyframes on `frames` (every channel) and deselect the others, as in the Dope Sheet."""
    for fc in addon.posing.channelbag(obj).fcurves:
        at = addon.posing.keyframe_frames(fc)
        fc.keyframe_points.foreach_set("select_control_point", np.isin(np.round(at), list(frames)))


def _keyed_frames(snapshot: dict, bone: str, path: str) -> set:
    (key,) = [k for k in snapshot if k[0] == f'pose.bones["{bone}"].{path}' and k[1] == 0]
    return set(snapshot[key][0][0::2].astype(int).tolist())


def _post(url: str, path: str, payload: dict) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"engine refused {path}: {e.read().decode()[:2000]}") from None


def _nulls(take: np.ndarray) -> list:
    return [[p.tolist() if np.isfinite(p).all() else [None] * 3 for p in pose] for pose in take]


def _rotation_path(obj, bone: str) -> str:
    mode = obj.pose.bones[bone].rotation_mode
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode, "rotation_euler")


def _curve(snapshot: dict, path: str, index: int, frames) -> np.ndarray:
    """An F-curve's values at `frames`, from a snapshot of a curve keyed on each of those frames."""
    co = snapshot[path, index][0].reshape(-1, 2)
    at = {int(round(f)): v for f, v in co}
    return np.array([at[f] for f in frames], dtype=np.float64)


def _turn_the_other_way(addon, obj, bone: str, path: str) -> None:
    """Store a bone's rotation keys as another animator might, the same rotations written differently: the
    quaternions negated (q and -q are one rotation) or an Euler angle a whole turn on (2 pi)."""
    bag = addon.posing.channelbag(obj)
    for i in range(4 if path == "rotation_quaternion" else 1):
        fc = bag.fcurves.find(f'pose.bones["{bone}"].{path}', index=i)
        co = np.empty(len(fc.keyframe_points) * 2, dtype=np.float32)
        fc.keyframe_points.foreach_get("co", co)
        co[1::2] = -co[1::2] if path == "rotation_quaternion" else co[1::2] + 2 * np.pi
        fc.keyframe_points.foreach_set("co", co)
        fc.update()
    bpy.context.view_layer.update()


def test_keep_key_values_pins_keys_and_follows_their_sign(addon):
    """The pure part of Fill In-betweens' key keeping: key rows take the originals, the rows between are written
    as the keys are (quaternion sign, Euler turns), a change between two keys that disagree at the gentlest step."""
    angle = np.array([0.0, 0.1, 0.2, 2.9, 3.0, 3.1, 3.2, 3.3, 3.4])     # a half-turn-ish jump from row 2 to 3
    q = np.stack([np.cos(angle / 2), np.sin(angle / 2), np.zeros(9), np.zeros(9)], -1)
    euler = np.stack([[0.0, 0.1, -2.9, -2.8, -2.7, -2.6, -2.5, -2.4, -2.3], np.linspace(0, 0.8, 9),
                      np.linspace(0, -0.8, 9)], -1)                    # x drops 3 rad from row 1 to 2
    pose = {"frames": 9, "channels": [{"bone": "a", "path": "rotation_quaternion", "values": q.tolist()},
                                      {"bone": "a", "path": "rotation_euler", "values": euler.tolist()},
                                      {"bone": "b", "path": "location", "values": np.zeros((9, 3)).tolist()}]}
    keys = [0, 4, 8]
    # The animator's keys 4 and 8 are the solve's -q (key 0 a little off it); Euler x a turn up from key 4 on,
    # y as solved, z not keyed at all.
    orig_q = np.array([q[0] + 0.001, -q[4], -q[8]])
    orig_e = euler[keys] + [[0, 0, 0], [2 * np.pi, 0, 0], [2 * np.pi, 0, 0]]
    orig_e[:, 2] = np.nan
    out = addon.rig_io.keep_key_values(pose, keys, {("a", "rotation_quaternion"): orig_q,
                                                    ("a", "rotation_euler"): orig_e})
    got_q, got_e, got_l = (c["values"] for c in out["channels"])
    np.testing.assert_array_equal(got_q[keys], orig_q)
    np.testing.assert_array_equal(got_q[[1, 2]], q[[1, 2]])         # with key 0 up to the gentlest step (2 to 3)
    np.testing.assert_array_equal(got_q[[3, 5, 6, 7]], -q[[3, 5, 6, 7]])  # with keys 4 and 8 after it
    np.testing.assert_array_equal(got_e[keys, :2], orig_e[:, :2])
    np.testing.assert_allclose(got_e[:, 0], euler[:, 0] + np.where(np.arange(9) >= 2, 2 * np.pi, 0))
    np.testing.assert_array_equal(got_e[:, 1:], euler[:, 1:])       # y: pinned to the same values; z: no curve
    np.testing.assert_array_equal(got_l, 0.0)
    assert pose["channels"][0]["values"] == q.tolist()              # the solve is not written to
    # Keys that agree with the solve: the solve's own values between them, the keys' on them.
    same = addon.rig_io.keep_key_values(pose, keys, {("a", "rotation_quaternion"): q[keys] + 0.001})
    np.testing.assert_array_equal(same["channels"][0]["values"][[1, 2, 3, 5, 6, 7]], q[[1, 2, 3, 5, 6, 7]])
    np.testing.assert_array_equal(same["channels"][0]["values"][keys], q[keys] + 0.001)


@pytest.mark.parametrize("rig", ["rigify", "cmu_bvh"])
def test_fill_inbetweens_between_selected_keys_into_a_new_action(addon, rig, rigify_blend, data_file, tmp_path,
                                                                 engine_url):
    rig_io, posing = addon.rig_io, addon.posing
    obj = _rigify_scene(addon, rigify_blend) if rig == "rigify" else _cmu_scene(tmp_path, data_file, frames=5)
    scene = bpy.context.scene
    scene.render.fps = 30
    truth = _take_at_30fps(data_file)
    binding = _key_take(rig_io, obj, truth, "take")
    frames = list(range(1, len(truth) + 1))
    write = load_rig_map(binding["rig"]).write
    mapped = set(write.bones) | {write.root}
    # One bone's rotations keyed the other way round (the same poses): the solve's own choice of sign or turn must
    # give way to the animator's, between the keys as well as on them.
    other = next((b for b in sorted(mapped) if obj.pose.bones[b].rotation_mode == "QUATERNION"), sorted(mapped)[0])
    _turn_the_other_way(addon, obj, other, _rotation_path(obj, other))
    real = rig_io.read_body24(obj, binding, frames=frames)           # the take in this rig's proportions
    keys = [1, 31, 61]
    _select_keys(addon, obj, keys)
    # A channel the map does not key (a finger, or a BVH bone the map leaves alone) must survive in the copy; its
    # key, selected as a new key is, is no key to fill between (frame 12 stays an in-between).
    spare = "f_index.01.L" if rig == "rigify" else next(b.name for b in obj.data.bones if b.name not in mapped)
    obj.pose.bones[spare].keyframe_insert("location", frame=12)
    assert addon.posing.selected_key_frames(obj) == [1, 12, 31, 61]
    original = posing.fcurve_snapshot(obj)
    bpy.ops.ed.undo_push(message="keyed")
    assert bpy.ops.gfpose.fill_inbetweens("EXEC_DEFAULT", True, seed=7) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    new = obj.animation_data.action
    assert new.name == "take_inbetween" and "take" in bpy.data.actions
    kept = posing.fcurve_snapshot(obj, bpy.data.actions["take"])
    assert set(kept) == set(original) and _same_keys(original, kept)     # the original, bit for bit
    filled = posing.fcurve_snapshot(obj)
    spare_keys = _bone_keys(addon, original, {spare})
    assert spare_keys and _same_keys(spare_keys, filled)
    # Every mapped bone keyed on every frame first..last.
    for bone in mapped:
        assert set(frames) <= _keyed_frames(filled, bone, _rotation_path(obj, bone)), bone
    # On the keys: the animator's own values, exactly, on every mapped channel (not the solve's, mm away).
    mapped_curves = [k for k in _bone_keys(addon, original, mapped)
                     if set(keys) <= set(np.round(original[k][0][0::2]).astype(int).tolist())]
    assert len(mapped_curves) >= 3 * len(mapped)
    for path, i in mapped_curves:
        np.testing.assert_allclose(_curve(filled, path, i, keys), _curve(original, path, i, keys), rtol=0,
                                   atol=1e-6, err_msg=f"{path}[{i}]")
    # Between two keys no quaternion curve changes hemisphere from one frame to the next (Blender would spin the bone
    # between those frames), unless the filled rotations, followed continuously from one key, come round to the next
    # key's -q: then one change is needed (however the frames are written, the number of changes has that parity)
    # and it is made at the step nearest a half turn. The bone keyed as -q makes every run need the solve negated.
    quats = forced = 0
    for bone in mapped:
        path = f'pose.bones["{bone}"].{_rotation_path(obj, bone)}'
        if not path.endswith("rotation_quaternion"):
            continue
        quats += 1
        q = np.stack([_curve(filled, path, i, frames) for i in range(4)], -1)
        for a, b in zip(keys, keys[1:]):
            dots = np.sum(q[a:b] * q[a - 1:b - 1], -1)               # steps from frame a to frame b
            assert (dots < 0).sum() <= 1, (bone, a, b, np.round(dots, 3).tolist())
            if (dots < 0).any():
                assert -dots.min() == pytest.approx(np.abs(dots).min(), abs=1e-6), (bone, a, b)
                forced += 1
    assert quats > 0 if rig == "rigify" else quats == 0
    print(f"quaternion curves: {quats}, runs needing a change of hemisphere: {forced}")
    got = rig_io.read_body24(obj, binding, frames=frames)
    at_keys = np.array(keys) - 1
    np.testing.assert_allclose(got[at_keys], real[at_keys], rtol=0, atol=1e-5)     # the keyed poses themselves
    between = [f - 1 for f in frames if f not in keys]
    assert np.linalg.norm(got[between] - real[0], axis=-1).mean() > 0.02        # motion, not a hold of frame 1
    # The frames between are the engine's in-betweens (asked again here with the same keys and seed) as this rig
    # takes them: the same poses as keying the engine's answer through the rig solve directly. (Whether they are
    # good motion is the engine's business, tested there; here: the right keys, frames and rate reach the rig.)
    take = np.where(np.isin(np.arange(len(frames)), at_keys)[:, None, None], real, np.nan)
    engine = _post(engine_url, "/inbetween", {"take": _nulls(take), "fps": 30.0, "seed": 7})["joints"]
    rig_io.write_keys(obj, pose_for_rig(rig_io.describe_armature(obj), engine, root_scale=1.0), frame_start=1,
                      action="engine's in-betweens")
    np.testing.assert_allclose(got[between], rig_io.read_body24(obj, binding, frames=frames)[between], atol=1e-4)
    # Undo: the original action is assigned again and the copy is gone.
    bpy.ops.ed.undo()
    obj = bpy.context.view_layer.objects.active
    assert obj.animation_data.action.name == "take" and "take_inbetween" not in bpy.data.actions


def test_fill_inbetweens_refuses_a_bad_selection_and_changes_nothing(addon, rigify_blend, data_file):
    rig_io = addon.rig_io
    obj = _rigify_scene(addon, rigify_blend)
    bpy.context.scene.render.fps = 30
    with pytest.raises(RuntimeError, match="'rig' has no action to fill"):
        bpy.ops.gfpose.fill_inbetweens()
    truth = _take_at_30fps(data_file, start=0, n=100)
    _key_take(rig_io, obj, truth, "take")
    for picked, message in (([], "select keyframes on at least two frames.*none are selected"),
                            ([20], "select keyframes on at least two frames.*only frame 20"),
                            ([5, 6, 7], "nothing to fill: the selected keyframes are on every frame 5..7"),
                            ([1, 30, 100], "keys on frames 30 and 100 are 2.33 s apart")):
        _select_keys(addon, obj, picked)
        before = _state(addon, obj)
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.gfpose.fill_inbetweens()
        _assert_same_state(before, _state(addon, obj))
    # Keys selected only on bones the map does not key (a finger): not keys to fill between.
    addon.posing.set_selected(obj, [])
    for fc in addon.posing.channelbag(obj).fcurves:
        fc.keyframe_points.foreach_set("select_control_point", np.zeros(len(fc.keyframe_points), bool))
    finger = obj.pose.bones["f_index.01.L"]
    for f in (1, 31):
        finger.keyframe_insert("rotation_quaternion", frame=f)
    before = _state(addon, obj)
    with pytest.raises(RuntimeError, match="select keyframes of the mapped bones on at least two frames"):
        bpy.ops.gfpose.fill_inbetweens()
    _assert_same_state(before, _state(addon, obj))


# --- Generate Variations ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rig", ["rigify", "cmu_bvh"])
def test_generate_variations_keys_n_frames_with_pinned_bones_unchanged(addon, rig, rigify_blend, data_file,
                                                                      tmp_path):
    rig_io, posing = addon.rig_io, addon.posing
    if rig == "rigify":
        obj = _rigify_scene(addon, rigify_blend)
        binding = _pose_rigify(rig_io, obj, _real_pose(data_file)[None])
        pinned_bones = ["torso", "thigh_fk.L", "shin_fk.L", "foot_fk.L", "thigh_fk.R", "shin_fk.R", "foot_fk.R"]
        cur = 1
    else:
        obj = _cmu_scene(tmp_path, data_file, frames=12)
        binding = bind(Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
        pinned_bones = ["Hips", "LHipJoint", "RHipJoint", "LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg",
                        "RightLeg", "RightFoot"]
        cur = 5
    scene = bpy.context.scene
    scene.frame_set(cur)
    posing.set_selected(obj, pinned_bones)
    now = rig_io.read_body24(obj, binding)[0]
    values_now = {b: posing.basis_values(obj.pose.bones[b]) for b in pinned_bones}
    n = 3
    assert bpy.ops.gfpose.generate_variations(n_variations=n, diversity=0.8, seed=11) == {"FINISHED"}
    pinned_joints = [INDEX[j] for j in ("pelvis", "hip_l", "knee_l", "ankle_l", "toe_l", "hip_r", "knee_r",
                                        "ankle_r", "toe_r")]
    got = rig_io.read_body24(obj, binding, frames=range(cur, cur + n + 1))
    np.testing.assert_allclose(got[0], now, atol=1e-5)                     # this frame stays as it was
    snap = posing.fcurve_snapshot(obj)
    for bone in ("upper_arm_fk.L" if rig == "rigify" else "LeftArm", pinned_bones[1]):
        key = [k for k in snap if posing.bone_of_path(k[0]) == (bone, "rotation_quaternion" if rig == "rigify"
                                                                   else "rotation_euler")][0]
        frames = snap[key][0][0::2]
        assert set(range(cur, cur + n + 1)) <= set(frames.astype(int).tolist()), (bone, frames)
    for k in range(1, n + 1):
        scene.frame_set(cur + k)
        for b in pinned_bones:                                             # the pinned bones' own values
            np.testing.assert_allclose(np.concatenate(posing.basis_values(obj.pose.bones[b])[1:]),
                                       np.concatenate(values_now[b][1:]), atol=1e-6, err_msg=b)
    # The pinned joints stay (their bones keep their values), the rest varies between variations.
    assert np.abs(got[1:, pinned_joints] - now[pinned_joints]).max() < 1e-4
    free = [INDEX[j] for j in ("elbow_l", "wrist_l", "elbow_r", "wrist_r", "head_end")]
    spread = np.linalg.norm(got[1:, free] - got[1:, free].mean(0), axis=-1).max()
    assert spread > 0.02, spread
    scene.frame_set(cur)


# --- a dead engine ---------------------------------------------------------------------------------------------------

def test_dead_engine_reports_an_error_and_changes_nothing(addon, rigify_blend, data_file):
    rig_io = addon.rig_io
    obj = _rigify_scene(addon, rigify_blend)
    _pose_rigify(rig_io, obj, _real_pose(data_file)[None], bones=RIGIFY_POSED)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_url = f"http://127.0.0.1:{_free_port()}"       # nothing listens there
    addon.operators.clear_bindings()
    addon.posing.set_selected(obj, ["thigh_fk.L"])
    before = _state(addon, obj)
    for call in (lambda: bpy.ops.gfpose.complete_pose(n_hypotheses=2),
                 lambda: bpy.ops.gfpose.denoise_action(use_action_range=False, frame_end=10),
                 lambda: bpy.ops.gfpose.generate_variations(n_variations=2)):
        with pytest.raises(RuntimeError, match="no engine at http://127.0.0.1"):
            call()
        _assert_same_state(before, _state(addon, obj))
    assert prefs.status == "no engine"


def test_refused_request_reports_the_engine_message(addon, rigify_blend, engine_url):
    obj = _rigify_scene(addon, rigify_blend)
    assert bpy.ops.gfpose.test_connection() == {"FINISHED"}       # the chooser lists the engine's maps
    obj.gfpose.rig = "mixamo"                                     # the wrong map for this rig
    before = _state(addon, obj)
    with pytest.raises(RuntimeError, match="mixamo"):
        bpy.ops.gfpose.generate_variations()
    _assert_same_state(before, _state(addon, obj))
    # Nothing posed, nothing keyed: Complete says so; arms selected without the root, and the root allowed to move
    # (Move Root): it says what to pose (without Move Root the unposed root is known where it stands).
    obj.gfpose.rig = "AUTO"
    with pytest.raises(RuntimeError, match="nothing to complete"):
        bpy.ops.gfpose.complete_pose()
    addon.posing.set_selected(obj, ["upper_arm_fk.L", "forearm_fk.L"])
    with pytest.raises(RuntimeError, match="root bone 'torso' is not selected"):
        bpy.ops.gfpose.complete_pose(known_from="SELECTED", move_root=True)
    _assert_same_state(before, _state(addon, obj))


# --- the panel, and an engine the add-on starts itself ---------------------------------------------------------------

class _Layout:
    """Stands in for a UI layout (the bpy module draws nothing): records labels, checks every property and
    operator property the panel names."""

    def __init__(self, log):
        self.log, self.enabled = log, True

    def box(self):
        return _Layout(self.log)

    def row(self, **_):
        return _Layout(self.log)

    column = row

    def label(self, text="", **_):
        self.log.append(text)

    def prop(self, data, name, **_):
        assert name in data.bl_rna.properties.keys(), name

    def operator(self, idname, **_):
        module, name = idname.split(".")
        props = getattr(getattr(bpy.ops, module), name).get_rna_type().properties.keys()

        class Props:
            def __setattr__(self, key, value):
                assert key in props, (idname, key)
        return Props()


def test_panel_shows_status_and_rig_map(addon, rigify_blend):
    from types import SimpleNamespace
    obj = _rigify_scene(addon, rigify_blend)
    panel = bpy.types.GFPOSE_PT_main
    log = []
    panel.draw(SimpleNamespace(layout=_Layout(log)), bpy.context)
    assert "Engine: not checked" in log and "Not matched yet" in log
    assert bpy.ops.gfpose.detect_rig() == {"FINISHED"}
    assert addon.operators.binding_for_panel(obj)["rig"] == "rigify"
    obj.gfpose.hypotheses, log[:] = '{"entries": [{"frame": 1, "keys": [{}, {}]}]}', []
    panel.draw(SimpleNamespace(layout=_Layout(log)), bpy.context)
    assert any(t.startswith("Engine: ok") for t in log) and any(t.startswith("Mapped: rigify (19 bones") for t in log)
    assert "Hypothesis 1 / 2" in log


def test_install_engine_from_a_local_wheel_sets_engine_python_and_the_add_on_talks_to_it(addon, tmp_path):
    """Install Engine, driven headless: the engine's wheel from a folder (no network), into an environment folder
    the test picks; then Engine Python is that environment and the add-on starts the engine from it."""
    from engine_envs import build_wheel, seeded_env
    wheel = build_wheel(tmp_path / "dist")
    env = seeded_env(tmp_path / "engine", ENGINE_PYTHON)    # the dependencies, as a wheelhouse would give them
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.install_source, prefs.install_folder, prefs.install_python = str(wheel), str(env), ENGINE_PYTHON
    assert bpy.ops.gfpose.install_engine() == {"FINISHED"}, prefs.install_status
    assert Path(prefs.engine_python) == env / "bin" / "python" and prefs.install_status.startswith("installed")
    prefs.engine_device = "cpu"
    assert bpy.ops.gfpose.test_connection() == {"FINISHED"} and prefs.status.startswith("ok: cpu")
    (engine,) = addon.preferences._local.values()
    assert engine.proc.args[0] == prefs.engine_python
    # A source that is not there: refused before anything is made, Engine Python unchanged.
    prefs.install_source = str(tmp_path / "missing.whl")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.gfpose.install_engine()
    assert Path(prefs.engine_python) == env / "bin" / "python"
    addon.preferences.stop_local()


def test_engine_python_starts_an_engine_and_disabling_stops_it(addon):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_python = ENGINE_PYTHON
    prefs.engine_device = "cpu"
    assert bpy.ops.gfpose.test_connection() == {"FINISHED"} and prefs.status.startswith("ok: cpu")
    (engine,) = addon.preferences._local.values()
    assert engine.alive()
    addon_utils.disable(MODULE, default_set=True)
    assert not engine.alive()


# --- the job runner behind the modal operators ------------------------------------------------------------------

def test_job_runner_threads_progress_and_cancel(addon):
    jobs = addon.jobs
    log = []

    def steps(fail=False):
        try:
            a = yield jobs.Call(lambda: 2, progress=0.25, label="one")
            log.append(("main", a))
            b = yield jobs.Call(lambda: time.sleep(0.05) or a * 10, progress=0.75, label="two")
            if fail:
                yield jobs.Call(lambda: 1 / 0)
            return f"got {b}"
        finally:
            log.append("cleanup")

    assert jobs.Job(steps()).run() == "got 20" and log == [("main", 2), "cleanup"]
    job = jobs.Job(steps())
    assert job.start() is False
    while not job.poll():
        time.sleep(0.01)
    assert job.result == "got 20" and job.progress == 0.75 and job.label == "two"
    job = jobs.Job(steps(fail=True))
    job.start()
    while not job.poll():
        time.sleep(0.01)
    assert isinstance(job.error, ZeroDivisionError)
    log.clear()
    job = jobs.Job(steps())
    job.start()
    job.cancel()                                                 # ESC: the generator's cleanup runs at once
    assert job.done and isinstance(job.error, jobs.Cancelled) and log == ["cleanup"]
