"""The proportion bench (issue 16, item 3): changed bodies keep the pose, the measures see what they claim."""
import numpy as np
import pytest

from gfpose_core.bench.proportions import (
    BODIES,
    PART_BONES,
    arm_direction_error,
    body_lengths,
    carry_back,
    elbow_angles,
    proportion_test,
    to_reference_body,
)
from gfpose_core.body.skeleton import (
    BODY_PARTS,
    BONES,
    bone_directions,
    bone_lengths,
    with_bone_lengths,
)
from gfpose_core.engine import WEIGHTS_DIR


def _pose(seed=0, n=5):
    rng = np.random.default_rng(seed)
    ref = 0.1 + 0.3 * rng.random(23)
    dirs = rng.normal(size=(n, 23, 3))
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return _build(dirs, ref), ref


def _build(dirs, lengths):
    from gfpose_core.body.skeleton import from_bone_directions
    return from_bone_directions(dirs, lengths)


def test_changed_body_scales_only_its_part_and_keeps_directions():
    poses, ref = _pose()
    for name, scales in BODIES.items():
        lengths = body_lengths(ref, scales)
        changed = with_bone_lengths(poses, lengths)
        ratio = bone_lengths(changed)[0] / ref
        want = np.ones(23)
        for part, s in scales.items():
            want[PART_BONES[part]] = s
        assert np.allclose(ratio, want), name
        assert np.allclose(bone_directions(changed), bone_directions(poses)), name
    with pytest.raises(ValueError, match="unknown body part"):
        body_lengths(ref, {"tail": 2.0})


def test_elbow_angle_and_direction_error():
    poses, _ = _pose(1)
    side = np.array(["l", "r", "l", "r", "l"])
    straight = poses.copy()
    for i, s in enumerate(side):      # put the wrist on the far side of the elbow: a straight arm
        sh, el, wr = (BODY_PARTS[f"arm_{s}"][k] for k in (1, 2, 3))
        straight[i, wr] = straight[i, el] + (straight[i, el] - straight[i, sh])
    assert np.allclose(elbow_angles(straight, side), 180.0, atol=1e-6)
    assert np.allclose(arm_direction_error(poses, poses, side), 0.0, atol=1e-4)   # arccos near 1
    assert (arm_direction_error(poses, straight, side) > 0).all()


def test_reference_body_round_trip_keeps_known_joints_and_directions():
    poses, ref = _pose(2)
    known = np.ones((len(poses), 24), bool)
    known[:, BODY_PARTS["arm_l"]] = False
    known[:, 0] = True
    changed = with_bone_lengths(poses, body_lengths(ref, {"torso": 1.2, "legs": 0.85}))
    on_ref = to_reference_body(changed, known, ref)
    assert np.isnan(on_ref[~known]).all()
    kb = bone_lengths(on_ref)
    finite = np.isfinite(kb)
    scale = kb[finite].sum() / np.broadcast_to(ref, kb.shape)[finite].sum()
    assert np.allclose(kb[finite], (np.broadcast_to(ref, kb.shape) * scale)[finite], rtol=1e-3)
    # A perfect answer on the reference body: the true pose at the scale the known part was put at.
    answer = with_bone_lengths(poses, ref * scale)
    assert np.allclose(answer[known], on_ref[known], atol=1e-9)
    back = carry_back(answer, changed, known, ref)
    assert np.array_equal(back[known], changed[known])
    arm_bones = np.isin(BONES[:, 0], BODY_PARTS["arm_l"])
    assert np.allclose(bone_directions(back)[:, arm_bones], bone_directions(poses)[:, arm_bones], atol=1e-6)


@pytest.mark.skipif(not (WEIGHTS_DIR / "config.json").exists(), reason="no shipped weights")
def test_section_runs_on_the_engine_and_reports_every_body():
    from gfpose_core.engine import Engine
    eng = Engine.load(device="cpu")
    poses = with_bone_lengths(np.repeat(eng.mean_pose[None], 6, 0), eng.space.reference_bones)
    out = proportion_test(eng, poses, np.random.default_rng(0))
    assert set(out["bodies"]) == set(BODIES)
    for row in out["bodies"].values():
        assert np.isfinite(row["median_arm_direction_deg"]) and row["median_arm_direction_deg"] >= 0
