"""The `gfpose` command line on real files: BVH in and out, JSON in and out, one clear line for bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest

from gfpose_core.data import DATA_DIR, load_take
from gfpose_core.formats.bvh import read_bvh, write_bvh


def gfpose(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "gfpose_core", *map(str, args)], capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def short_take(tmp_path):
    src = DATA_DIR / "cmu" / "bvh" / "06_01.bvh.gz"
    if not src.exists():
        pytest.skip(f"{src} not present")
    clip = read_bvh(src)
    clip.motion = clip.motion[1:481:4]  # 120 frames at 30 fps
    clip.frame_time *= 4
    path = tmp_path / "take.bvh"
    write_bvh(path, clip)
    return path


@pytest.mark.blender
def test_denoise_bvh_reads_back_in_blender_with_same_skeleton(short_take, tmp_path):
    bpy = pytest.importorskip("bpy")
    clip = read_bvh(short_take)
    rng = np.random.default_rng(0)
    rot_cols = [i for i, c in enumerate(c for chans in clip.skeleton.channels for c in chans) if "rotation" in c]
    clip.motion[:, rot_cols] += rng.normal(0, 2.0, (len(clip.motion), len(rot_cols)))  # jittery joints
    noisy = tmp_path / "noisy.bvh"
    write_bvh(noisy, clip)
    out = tmp_path / "clean.bvh"
    gfpose("denoise", noisy, "-o", out, "--device", "cpu")
    cleaned = read_bvh(out)
    assert cleaned.skeleton.names == clip.skeleton.names and cleaned.motion.shape == clip.motion.shape
    truth = load_take(short_take).joints
    err = lambda p: np.linalg.norm(load_take(p).joints - truth, axis=-1).mean()
    assert err(out) < err(noisy)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(out), global_scale=0.056444, rotate_mode="NATIVE", update_scene_fps=False,
                            frame_start=1, use_fps_scale=False)
    arm = bpy.context.active_object
    assert arm.type == "ARMATURE"
    bones = {b.name for b in arm.data.bones}
    assert bones == {n for n in clip.skeleton.names if not n.endswith(":end")}
    start, end = arm.animation_data.action.frame_range
    assert int(end - start) + 1 == clip.motion.shape[0]


def test_batch_denoise_skips_and_lists_bad_files(short_take, tmp_path):
    folder = tmp_path / "takes"
    folder.mkdir()
    (folder / "a.bvh").write_bytes(short_take.read_bytes())
    (folder / "b.bvh").write_bytes(short_take.read_bytes())
    (folder / "corrupt.bvh").write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0\n")
    proc = gfpose("denoise", folder, "--out", tmp_path / "clean", "--device", "cpu")
    assert "denoised 2 of 3" in proc.stdout and "corrupt.bvh" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == ["a.bvh", "b.bvh"]


def test_complete_and_generate_files(tmp_path):
    from gfpose_core.engine import Engine
    pose = Engine.load(device="cpu").generate(1, seed=2)[0].tolist()
    for j in (7, 8, 9, 10):
        pose[j] = [None, None, None]
    (tmp_path / "in.json").write_text(json.dumps({"joints": [pose]}))
    gfpose("complete", tmp_path / "in.json", "-o", tmp_path / "out.json", "--seed", "1", "--device", "cpu")
    out = np.array(json.loads((tmp_path / "out.json").read_text())["joints"])
    assert out.shape == (1, 24, 3) and np.isfinite(out).all()
    assert np.array_equal(out[0, 0], np.array(pose[0]))

    gfpose("generate", "-n", "4", "-o", tmp_path / "poses.bvh", "--seed", "0", "--device", "cpu")
    gfpose("generate", "-n", "4", "-o", tmp_path / "poses.json", "--seed", "0", "--device", "cpu")
    from_bvh = load_take(tmp_path / "poses.bvh").joints
    from_json = np.array(json.loads((tmp_path / "poses.json").read_text())["joints"])
    assert from_bvh.shape == (4, 24, 3)
    # The BVH keeps the poses' bone directions on the reference body.
    assert np.linalg.norm(from_bvh - from_json, axis=-1).mean() < 0.01


@pytest.mark.parametrize("args, words", [
    (["complete", "missing.json", "-o", "x.json"], "missing.json"),
    (["denoise", "missing.bvh", "-o", "x.bvh"], "missing.bvh"),
    (["generate", "-n", "0", "-o", "x.json"], "n must be"),
    (["serve", "--host", "0.0.0.0"], "token"),
    (["train", "--out", "run", "--known-noise", "0.02"], "--posterior-mean"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, words):
    proc = gfpose(*args, check=False)
    assert proc.returncode != 0
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_json_is_one_clear_line(tmp_path):
    (tmp_path / "bad.json").write_text("{nope")
    proc = gfpose("complete", tmp_path / "bad.json", "-o", tmp_path / "o.json", check=False)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "shape.json").write_text(json.dumps({"joints": [[[0, 0, 0]] * 5]}))
    proc = gfpose("complete", tmp_path / "shape.json", "-o", tmp_path / "o.json", check=False)
    assert proc.returncode == 2 and "shape" in proc.stderr and "Traceback" not in proc.stderr


def test_inbetween_json_to_json_and_bvh(tmp_path):
    import json

    from gfpose_core.engine import Engine
    pose = Engine.load(device="cpu").generate(1, seed=4)[0]
    take = [[[None] * 3] * 24 for _ in range(21)]
    take[0], take[20] = pose.tolist(), (pose + [0.2, 0, 0]).tolist()
    src = tmp_path / "keys.json"
    src.write_text(json.dumps({"take": take, "fps": 30}))
    gfpose("inbetween", src, "-o", tmp_path / "out.json", "--seed", 1)
    out = np.array(json.loads((tmp_path / "out.json").read_text())["joints"])
    assert out.shape == (21, 24, 3) and np.isfinite(out).all()
    np.testing.assert_allclose(out[0], pose)
    gfpose("inbetween", src, "-o", tmp_path / "out.bvh")
    from gfpose_core.formats.bvh import read_bvh
    assert read_bvh(tmp_path / "out.bvh").motion.shape[0] == 21
    src.write_text(json.dumps({"take": [[[None] * 3] * 24] * 3}))
    proc = gfpose("inbetween", src, "-o", tmp_path / "bad.json", check=False)
    assert proc.returncode != 0 and "no known joints" in proc.stderr and "Traceback" not in proc.stderr
