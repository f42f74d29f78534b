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
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import CMU_MB31, REPO_ROOT

pytestmark = pytest.mark.blender

bpy = pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")

import addon_utils  # noqa: E402  (ships with bpy)

import blender_rigs  # noqa: E402
from gfpose_core import retarget as rt  # noqa: E402
from gfpose_core.data import load_take  # noqa: E402
from gfpose_core.skeleton import INDEX  # noqa: E402

MODULE = "bl_ext.user_default.gfpose"
CMU_UNSEEN = "cmu/bvh/06_01.bvh.gz"     # a CMU subject the shipped weights never saw (the demo's clip too)
VALIDATOR = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"

RIGIFY_POSED = ["torso", "spine_fk.002", "spine_fk.003", "thigh_fk.L", "shin_fk.L", "foot_fk.L", "thigh_fk.R",
                "shin_fk.R", "foot_fk.R", "root", "hips", "chest", "spine_fk", "spine_fk.001"]
CMU_ARMS_HEAD = ["LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftFingerBase", "LeftHandIndex1",
                 "LThumb", "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightFingerBase",
                 "RightHandIndex1", "RThumb", "Neck", "Neck1", "Head"]
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
    proc = subprocess.Popen([sys.executable, "-m", "gfpose_core.cli", "serve", "--port", str(port),
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
    info = rt.bind_for_rig(rig_io.describe_armature(obj))
    rig_io.apply_properties(obj, info["properties"])
    pose = rt.pose_for_rig(rig_io.describe_armature(obj), joints, root_scale=1.0)
    if bones is not None:
        pose["channels"] = [c for c in pose["channels"] if c["bone"] in bones]
        pose["rotation_modes"] = {b: m for b, m in pose["rotation_modes"].items() if b in bones}
    rig_io.write_keys(obj, pose, frame_start=frame_start, action=action)
    bpy.context.scene.frame_set(frame_start)
    return rt.bind(rt.Armature.from_dict(rig_io.describe_armature(obj))).to_dict()


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
           "pose": {pb.name: addon.posing._save_basis(pb) for pb in pbs},
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
    assert (repo_dir / "gfpose" / "rigs" / "rigify.toml").exists()
    assert MODULE in bpy.context.preferences.addons
    for op in ("complete_pose", "denoise_action", "generate_variations", "cycle_hypothesis", "test_connection"):
        assert hasattr(bpy.ops.gfpose, op), op
    panel = bpy.types.GFPOSE_PT_main
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "GFPose")
    for op in (bpy.types.GFPOSE_OT_complete_pose, bpy.types.GFPOSE_OT_denoise_action,
               bpy.types.GFPOSE_OT_generate_variations):
        assert op.bl_options == {"REGISTER", "UNDO"}
    # The rig chooser lists the shipped maps (from the installed extension's rigs/).
    items = [i[0] for i in addon.operators._rig_items(None, bpy.context)]
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
    binding = rt.bind(rt.Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
    frames = [10, 11, 12, 13]
    real = rig_io.read_body24(obj, binding, frames=frames)
    _strip_bones(addon, obj, CMU_ARMS_HEAD)
    rest = rig_io.read_body24(obj, binding, frames=frames)
    before = posing.fcurve_snapshot(obj)
    assert bpy.ops.gfpose.complete_pose(frames="RANGE", frame_start=10, frame_end=13, seed=3) == {"FINISHED"}
    after = posing.fcurve_snapshot(obj)
    assert _same_keys(before, after)                             # every key the take had, bit for bit
    keyed = posing.keyed_bones(obj)
    assert {"LeftArm", "LeftForeArm", "RightArm", "Neck", "Head"} <= keyed
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
    arm = rt.Armature.from_dict(rig_io.describe_armature(obj))
    info = rt.bind_for_rig(arm.to_dict())
    rig_io.apply_properties(obj, info["properties"])
    pose = rt.pose_for_rig(rig_io.describe_armature(obj), noisy)
    rig_io.write_keys(obj, pose, frame_start=1, action="noisy take")
    binding = rt.bind(rt.Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
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
        binding = rt.bind(rt.Armature.from_dict(rig_io.describe_armature(obj))).to_dict()
        pinned_bones = ["Hips", "LHipJoint", "RHipJoint", "LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg",
                        "RightLeg", "RightFoot"]
        cur = 5
    scene = bpy.context.scene
    scene.frame_set(cur)
    posing.set_selected(obj, pinned_bones)
    now = rig_io.read_body24(obj, binding)[0]
    values_now = {b: posing._save_basis(obj.pose.bones[b]) for b in pinned_bones}
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
            np.testing.assert_allclose(np.concatenate(posing._save_basis(obj.pose.bones[b])[1:]),
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
    obj.gfpose.rig = "mixamo"                                     # the wrong map for this rig
    before = _state(addon, obj)
    with pytest.raises(RuntimeError, match="mixamo"):
        bpy.ops.gfpose.generate_variations()
    _assert_same_state(before, _state(addon, obj))
    # Nothing posed, nothing keyed: Complete says so; arms selected without the root: it says what to pose.
    obj.gfpose.rig = "AUTO"
    with pytest.raises(RuntimeError, match="nothing to complete"):
        bpy.ops.gfpose.complete_pose()
    addon.posing.set_selected(obj, ["upper_arm_fk.L", "forearm_fk.L"])
    with pytest.raises(RuntimeError, match="root bone 'torso' is not selected"):
        bpy.ops.gfpose.complete_pose(known_from="SELECTED")
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


def test_engine_python_starts_an_engine_and_disabling_stops_it(addon):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_python = sys.executable
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
