"""Editing a pose the rig already has (issue 17), without Blender: `solve(..., current=...)` turns each bone by the
least rotation from its aim now to the wanted one, so the twist a bone has stays, where a fresh solve from the rest
pose would invent its own."""
from __future__ import annotations

import numpy as np
import pytest
from test_retarget import build_armature, random_poses

from gfpose_core.body.rotations import axis_angle_matrix, quaternion_to_matrix
from gfpose_core.rigs.binding import bind
from gfpose_core.rigs.plan import PARTS, _fk, _fk_joints, _plan
from gfpose_core.rigs.solve import solve


def _orientations(binding, pose):
    """Armature-space orientation (F, 3, 3) of every keyed bone of a RigPose, and the joints it puts (world)."""
    arm, plan = binding.armature, _plan(binding)
    f = pose.location.shape[0]
    local = {arm.index[b]: quaternion_to_matrix(q) for b, q in zip(pose.bones, np.moveaxis(pose.quaternions, 1, 0))}
    heads, rots, _ = _fk(plan, local, f, local=True, root_location=pose.location)
    return {b: rots[:, plan.slot[arm.index[b]]] for b in pose.bones}, arm.to_world(_fk_joints(plan, heads, rots))


def _roll_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees the orientation b is turned about its own Y axis (the bone's) from a, once the aims are aligned."""
    rel = np.swapaxes(a, -1, -2) @ b
    x = rel[..., :, 0]                                  # a's X axis as b carries it, in a's frame
    return np.degrees(np.abs(np.arctan2(-x[..., 2], x[..., 0])))


@pytest.fixture(scope="module")
def rig():
    arm = build_armature("mixamo", seed=4, modes="QUATERNION")
    return arm, bind(arm, "mixamo")


def test_the_same_joints_keep_every_bones_own_twist(rig):
    arm, binding = rig
    poses = random_poses(6, seed=2, max_angle=0.7)
    fresh = solve(arm, poses, binding=binding, root_scale=1.0)
    now, _ = _orientations(binding, fresh)
    # The animator rolls every bone about its own axis (joints stay where they are: the twist body24 cannot see).
    rng = np.random.default_rng(0)
    twisted = {b: r @ axis_angle_matrix(np.array([0.0, 1.0, 0.0]), np.array(rng.uniform(-0.8, 0.8))) for b, r in
               now.items()}
    plan = _plan(binding)
    heads, rots, _ = _fk(plan, {arm.index[b]: r for b, r in twisted.items()}, len(poses),
                         root_location=fresh.location)
    seen = arm.to_world(_fk_joints(plan, heads, rots))    # the joints the twisted rig shows (hips turned too)
    tw_pose = solve(arm, seen, binding=binding, root_scale=1.0, current={"joints": seen, "rotations": twisted})
    got, joints = _orientations(binding, tw_pose)
    for b in now:
        np.testing.assert_allclose(got[b], twisted[b], atol=1e-6, err_msg=b)
    np.testing.assert_allclose(joints, seen, atol=1e-5)
    # A new pose from there: aims reached as the fresh solve reaches them; each bone turned by a swing, so its twist
    # about its own axis changes only as much as swinging it implies (small for small changes).
    moved = seen + np.random.default_rng(1).normal(0, 0.01, poses.shape)
    edit = solve(arm, moved, binding=binding, root_scale=1.0, current={"joints": seen, "rotations": twisted})
    direct = solve(arm, moved, binding=binding, root_scale=1.0)
    assert edit.aim_error.max() < max(1.0, direct.aim_error.max() + 0.5)
    got, _ = _orientations(binding, edit)
    roll = np.array([_roll_deg(twisted[b], got[b]) for b in now])
    assert np.median(roll) < 2.0, np.round(roll.max(-1), 1)
    fresh_roll = np.array([_roll_deg(twisted[b], _orientations(binding, direct)[0][b]) for b in now])
    assert np.median(fresh_roll) > 10.0                  # what re-solving from rest did to the twist


def test_bones_that_disagree_with_the_joints_are_solved_afresh(rig):
    arm, binding = rig
    poses = random_poses(3, seed=5, max_angle=0.7)
    fresh = solve(arm, poses, binding=binding, root_scale=1.0)
    now, _ = _orientations(binding, fresh)
    wrong = {b: np.swapaxes(r, -1, -2) for b, r in now.items()}           # not the pose the joints show
    out = solve(arm, poses, binding=binding, root_scale=1.0, current={"joints": fresh.joints, "rotations": wrong})
    np.testing.assert_allclose(out.joints, fresh.joints, atol=1e-3)
    with pytest.raises(ValueError, match="current rotation for bone 'nope'"):
        solve(arm, poses, binding=binding, current={"joints": fresh.joints, "rotations": {"nope": now[fresh.bones[0]]}})


def test_kept_bones_stay_and_the_others_are_solved_under_them(rig):
    """The animator's posed bones (`keep`) stay exactly as they are, even where the wanted joints would turn them
    (a chest posed with its own lean), and the bones below are solved under them: their keys, applied under the
    kept parents, reach the wanted aims. This is what lets the add-on key the engine's values as they come."""
    arm, binding = rig
    poses = random_poses(4, seed=7, max_angle=0.7)
    fresh = solve(arm, poses, binding=binding, root_scale=1.0)
    now, _ = _orientations(binding, fresh)
    chest = fresh.bones[fresh.parts.index("chest")]
    lean = now[chest] @ axis_angle_matrix(np.array([1.0, 0.0, 0.0]), np.array(0.35))
    current = {"joints": fresh.joints, "rotations": {chest: lean}, "keep": [chest]}
    out = solve(arm, poses, binding=binding, root_scale=1.0, current=current)
    got, joints = _orientations(binding, out)
    np.testing.assert_allclose(got[chest], lean, atol=1e-6)          # kept as it is, not re-aimed
    below = [b for b, p in zip(out.bones, out.parts) if p in ("neck", "shoulder_l", "shoulder_r", "elbow_l")]
    assert below
    parts = [out.parts[out.bones.index(b)] for b in below]
    err = out.aim_error[:, [PARTS.index(p) for p in parts]]
    assert err.max() < 1.0, err.max()                                  # the children still reach their aims
    # keep per frame: kept on the first two frames only
    flags = {"joints": fresh.joints, "rotations": {chest: lean}, "keep": {chest: [True, True, False, False]}}
    part = solve(arm, poses, binding=binding, root_scale=1.0, current=flags)
    got2, _ = _orientations(binding, part)
    np.testing.assert_allclose(got2[chest][:2], lean[:2], atol=1e-6)
    assert not np.allclose(got2[chest][2:], lean[2:], atol=1e-3)
    with pytest.raises(ValueError, match="keeps bone 'nope'"):
        solve(arm, poses, binding=binding, current={"joints": fresh.joints, "rotations": {}, "keep": ["nope"]})
    with pytest.raises(ValueError, match="gives no rotation"):
        solve(arm, poses, binding=binding, current={"joints": fresh.joints, "rotations": {}, "keep": [chest]})
