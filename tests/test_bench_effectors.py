"""The bench's "effectors" section (issue 20): its scores, its nearest neighbour on the effectors, and Blender's own
IK on a Rigify rig (scripts/blender_ik_baseline.py under the real bpy)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CMU_MB31, REPO_ROOT

from gfpose_core.bench.effectors import (
    EFFECTOR_MASK,
    EFFECTORS,
    auto_pose_latency,
    blender_ik,
    effector_query,
    effector_scores,
    nn_on_effectors,
)
from gfpose_core.body.skeleton import BONES, INDEX, JOINT_NAMES, Frame, bone_lengths, restore, to_canonical
from gfpose_core.engine import WEIGHTS_DIR

UNKNOWN = ~EFFECTOR_MASK


@pytest.fixture(scope="module")
def engine():
    if not (WEIGHTS_DIR / "config.json").exists():
        pytest.skip(f"no shipped weights in {WEIGHTS_DIR}")
    from gfpose_core.engine import Engine
    return Engine.load(device="cpu")


@pytest.fixture(scope="module")
def poses(engine):
    """Plausible poses placed in the world: turned, moved and at 1.1x the reference size."""
    canon = engine.generate(12, seed=3)
    rng = np.random.default_rng(0)
    frame = Frame(root=rng.uniform(-2, 2, (12, 3)) * [1, 1, 0] + [0, 0, 1.0], yaw=rng.uniform(-np.pi, np.pi, 12),
                  scale=np.full(12, 1.1))
    return restore(canon, frame)


def test_effectors_are_the_engines():
    from gfpose_core.prior.effectors import EFFECTOR_JOINTS
    assert set(EFFECTORS) == set(EFFECTOR_JOINTS)


def test_truth_scores_zero(poses):
    s = effector_scores(poses, poses)
    for k in ("mpjpe_mm", "pa_mpjpe_mm", "spine_mm", "collars_mm", "shoulders_mm", "elbows_mm", "knees_mm",
              "elbow_angle_deg", "knee_angle_deg", "bone_err_mm"):
        assert s[k] == pytest.approx(0, abs=1e-6), k


def test_an_offset_scores_that_offset_on_the_unknown_joints_only(poses):
    moved = poses.copy()
    moved[:, UNKNOWN] += [0.03, -0.04, 0.0]                   # 50 mm on every joint between the effectors
    moved[:, EFFECTOR_MASK] += [0.5, 0.0, 0.0]                # effectors are given, never scored
    s = effector_scores(moved, poses)
    assert s["mpjpe_mm"] == pytest.approx(50.0, abs=1e-6)
    for part in ("spine", "collars", "shoulders", "elbows", "knees"):
        assert s[f"{part}_mm"] == pytest.approx(50.0, abs=1e-6)
    assert s["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-6)   # a shift of the scored joints alone: aligned away


def test_elbow_angle_error(poses):
    """Bending the left elbow by 30 degrees (the wrist turned about the elbow in the arm's plane) is 30 degrees on
    one of the two elbows: 15 on average; the knees are untouched."""
    gt = poses[:1].copy()
    sh, el, wr = (gt[0, INDEX[j]] for j in ("shoulder_l", "elbow_l", "wrist_l"))
    axis = np.cross(sh - el, wr - el)
    axis /= np.linalg.norm(axis)
    a = np.radians(30.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k
    before = np.degrees(np.arccos(np.dot(sh - el, wr - el) / np.linalg.norm(sh - el) / np.linalg.norm(wr - el)))
    if before < 40:          # keep the bent angle away from 0 whichever way the turn goes
        rot = rot.T
    pred = gt.copy()
    pred[0, INDEX["wrist_l"]] = el + rot @ (wr - el)
    s = effector_scores(pred, gt)
    assert s["elbow_angle_deg"] == pytest.approx(15.0, abs=1e-3)
    assert s["knee_angle_deg"] == pytest.approx(0.0, abs=1e-6)


def test_nearest_neighbour_places_a_training_pose_on_the_effectors(engine, poses):
    """The training set holds each pose as the engine's frame of its effectors sees it: the neighbour of a pose's
    effectors is that pose, brought back to the world whole; another pose's effectors come back exactly."""
    from gfpose_core.bench.baselines import NearestNeighbourCompletion
    query, known = effector_query(poses)
    _, frame = engine._canonical(query)
    nn = NearestNeighbourCompletion(to_canonical(poses, frame))
    got = nn_on_effectors(engine, nn, query, known)
    np.testing.assert_allclose(got, poses, atol=1e-9)
    other = poses[::-1].copy()
    other[:, EFFECTOR_MASK] += np.random.default_rng(1).normal(0, 0.05, (len(other), EFFECTOR_MASK.sum(), 3))
    q2, k2 = effector_query(other)
    got2 = nn_on_effectors(engine, nn, q2, k2)
    assert np.array_equal(got2[:, EFFECTOR_MASK], other[:, EFFECTOR_MASK])
    assert np.isfinite(got2).all()


def test_a_missing_script_or_bpy_is_a_skip_with_the_reason(tmp_path, poses):
    out, why = blender_ik(poses[:2], script=tmp_path / "nope.py")
    assert out is None and "nope.py not found" in why
    assert "not found" in auto_pose_latency(script=tmp_path / "nope.py")["skipped"]
    failing = tmp_path / "fails.py"
    failing.write_text("import sys\nprint('no rig here', file=sys.stderr)\nsys.exit(3)\n")
    out, why = blender_ik(poses[:2], script=failing)
    import importlib.util
    if importlib.util.find_spec("bpy") is None:
        assert out is None and "bpy" in why
    else:
        assert out is None and "exit 3" in why and "no rig here" in why


@pytest.mark.blender
def test_blender_ik_reaches_the_hands_and_feet_with_the_spine_at_rest(data_file, tmp_path):
    pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")
    from gfpose_core.data import load_take
    real = load_take(data_file(CMU_MB31)).joints[[40, 400, 900]].astype(np.float64)
    src, dst = tmp_path / "poses.npz", tmp_path / "ik.npz"
    np.savez(src, joints=real)
    r = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "blender_ik_baseline.py"), "--poses", str(src),
                        "--out", str(dst)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = np.load(dst)
    gt, ik, reach, rest = out["gt"], out["ik"], out["reach_error_m"], out["rest"]
    assert gt.shape == ik.shape == real.shape and reach.shape == (3, 4)
    # gt is the real pose on the rig's own body: the rig's limb lengths, not the mocap's
    limbs = [k for k, (c, _) in enumerate(BONES) if JOINT_NAMES[c].split("_")[0] in ("elbow", "wrist", "knee", "ankle")]
    np.testing.assert_allclose(bone_lengths(gt)[:, limbs], np.broadcast_to(bone_lengths(rest)[limbs], (3, 8)),
                               atol=1e-3)
    assert np.abs(bone_lengths(real)[:, limbs] - bone_lengths(rest)[limbs]).max() > 0.02
    # IK reaches every hand and foot within the limb's span (IK stretch off: bones keep their lengths)
    for k, (root, mid, end) in enumerate((("shoulder_l", "elbow_l", "wrist_l"), ("shoulder_r", "elbow_r", "wrist_r"),
                                          ("hip_l", "knee_l", "ankle_l"), ("hip_r", "knee_r", "ankle_r"))):
        span = np.linalg.norm(rest[INDEX[mid]] - rest[INDEX[root]]) + np.linalg.norm(rest[INDEX[end]] - rest[INDEX[mid]])
        reachable = np.linalg.norm(gt[:, INDEX[end]] - ik[:, INDEX[root]], axis=-1) < span - 0.01
        assert reachable.any()
        assert (reach[reachable, k] < 0.003).all(), (end, reach[:, k])
        np.testing.assert_allclose(reach[:, k], np.linalg.norm(ik[:, INDEX[end]] - gt[:, INDEX[end]], axis=-1))
    # the pelvis is where gt has it; spine, chest, neck and collars ride on it as at rest (one rigid motion)
    np.testing.assert_allclose(ik[:, [INDEX["pelvis"], INDEX["hip_l"], INDEX["hip_r"]]],
                               gt[:, [INDEX["pelvis"], INDEX["hip_l"], INDEX["hip_r"]]], atol=1e-3)
    torso = [INDEX[j] for j in ("pelvis", "hip_l", "hip_r", "spine", "chest", "neck", "collar_l", "collar_r")]
    from gfpose_core.bench.metrics import procrustes_align
    for k in range(3):
        fitted = procrustes_align(rest[None, torso], ik[k][None, torso])[0]
        assert np.linalg.norm(fitted - ik[k, torso], axis=-1).max() < 1e-3
        assert np.linalg.norm(gt[k, torso] - ik[k, torso], axis=-1).max() > 0.005   # gt's spine does bend


def test_merge_into_a_report_keeps_its_other_sections(tmp_path, poses):
    """`gfpose bench --sections effectors --merge-into docs/bench`: the committed report gains the section and is
    rendered again; every other section's numbers stay as they were."""
    import json
    import shutil

    from gfpose_core.bench.run import merge_into
    shutil.copytree(REPO_ROOT / "docs" / "bench", tmp_path / "report")
    before = json.loads((tmp_path / "report" / "results.json").read_text())
    scores = effector_scores(poses + 0.01, poses)
    new = {"meta": {"date": "now", "mode": "tiny", "sizes": {}, "git_commit": "x", "elapsed_s": 1.0,
                    "load_start": 0.1, "load_end": 0.2, "device": "cpu", "section_seconds": {"effectors": 1.0},
                    "errors": {}},
           "effectors": {"effectors": list(EFFECTORS), "unknown": [], "body": "test", "blender_ik_skipped": None,
                         "cmu": {"engine": {**scores, "ms_per_pose_one_thread": 1.0,
                                            "effector_err_mm": 0.0},
                                 "nn": scores, "blender_ik": {**scores, "reach_median_mm": 0.0, "reach_p95_mm": 0.0,
                                                              "unreached_share": 0.0}},
                         "auto_pose": {"skipped": "test"}}}
    merged = merge_into(tmp_path / "report", new, ["effectors"])
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert saved == json.loads(json.dumps(merged))
    for key in set(before) - {"effectors", "meta", "targets", "comparisons"}:
        assert saved[key] == before[key], key
    assert saved["targets"]["effectors_vs_blender_ik"]["value"] == pytest.approx(1.0)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## 1b. Posing from effectors" in report and "## 1. Completion" in report
