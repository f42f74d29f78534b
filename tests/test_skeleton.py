"""body24 definition and the exact, invertible canonical frame (pure numpy, no data needed)."""
from __future__ import annotations

import numpy as np
import pytest

from gfpose_core.body import skeleton as sk
from gfpose_core.body.skeleton import (
    BONES,
    INDEX,
    JOINT_NAMES,
    MIRROR,
    PARENTS,
    bone_lengths,
    canonicalise,
    mirror,
    restore,
    yaw_matrix,
)
from gfpose_core.data import load_take

# Copied by hand from DESIGN.md ("Canonical skeleton body24"): the contract, not the implementation.
DESIGN_NAMES = [
    "pelvis", "spine", "chest", "neck", "head", "head_end",
    "collar_l", "shoulder_l", "elbow_l", "wrist_l", "hand_end_l",
    "collar_r", "shoulder_r", "elbow_r", "wrist_r", "hand_end_r",
    "hip_l", "knee_l", "ankle_l", "toe_l",
    "hip_r", "knee_r", "ankle_r", "toe_r",
]
DESIGN_PARENTS = [-1, 0, 1, 2, 3, 4, 2, 6, 7, 8, 9, 2, 11, 12, 13, 14, 0, 16, 17, 18, 0, 20, 21, 22]


def t_pose() -> np.ndarray:
    """A T-pose in the canonical frame: Z up, facing -Y, the character's left on +X, metres."""
    p = {
        "pelvis": (0, 0, 1.0), "spine": (0, 0.01, 1.15), "chest": (0, 0.01, 1.3), "neck": (0, 0, 1.45),
        "head": (0, 0, 1.55), "head_end": (0, -0.02, 1.72),
        "collar_l": (0.03, -0.02, 1.42), "shoulder_l": (0.18, 0, 1.42), "elbow_l": (0.45, 0, 1.42),
        "wrist_l": (0.7, 0, 1.42), "hand_end_l": (0.8, 0, 1.42),
        "hip_l": (0.1, 0, 0.95), "knee_l": (0.1, -0.01, 0.5), "ankle_l": (0.1, 0.03, 0.08),
        "toe_l": (0.1, -0.1, 0.02),
    }
    out = np.zeros((24, 3))
    for name, xyz in p.items():
        out[INDEX[name]] = xyz
        if name.endswith("_l"):
            out[INDEX[name[:-2] + "_r"]] = (-xyz[0], xyz[1], xyz[2])
    return out


def random_canonical_poses(rng, n: int, noise: float = 0.03) -> np.ndarray:
    return t_pose()[None] + rng.normal(scale=noise, size=(n, 24, 3))


def random_world_frames(rng, n: int):
    yaw = rng.uniform(-np.pi, np.pi, n)
    scale = rng.uniform(0.5, 2.0, n)
    root = rng.uniform(-20.0, 20.0, (n, 3))
    return yaw, scale, root


def to_world(canon: np.ndarray, yaw, scale, root) -> np.ndarray:
    return np.einsum("nij,nkj->nki", yaw_matrix(yaw), canon) * scale[:, None, None] + root[:, None, :]


def angle_diff(a, b):
    return np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b))))


def test_names_and_parents_match_design():
    assert list(JOINT_NAMES) == DESIGN_NAMES
    assert PARENTS.tolist() == DESIGN_PARENTS
    assert sk.N_JOINTS == 24
    assert all(INDEX[n] == i for i, n in enumerate(DESIGN_NAMES))
    # Parents come before children (forward kinematics and '@ref' ordering rely on it).
    assert all(p < j for j, p in enumerate(PARENTS))
    assert len(BONES) == 23 and all(PARENTS[c] == p for c, p in BONES)


def test_mirror_table_swaps_sides():
    for i, name in enumerate(JOINT_NAMES):
        partner = JOINT_NAMES[MIRROR[i]]
        if name.endswith("_l"):
            assert partner == name[:-2] + "_r"
        elif name.endswith("_r"):
            assert partner == name[:-2] + "_l"
        else:
            assert partner == name


def test_mirror_is_an_involution():
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(7, 24, 3))
    assert np.array_equal(mirror(mirror(poses)), poses)
    # A symmetric T-pose is its own mirror image; a mirrored pose keeps its bone lengths (swapped by side).
    tp = t_pose()
    np.testing.assert_allclose(mirror(tp), tp, atol=1e-12)
    m = mirror(poses)
    np.testing.assert_allclose(np.sort(bone_lengths(m), -1), np.sort(bone_lengths(poses), -1), atol=1e-12)
    # Leading batch axes are kept.
    assert mirror(poses.reshape(7, 1, 24, 3)).shape == (7, 1, 24, 3)


@pytest.mark.parametrize("with_scale", [False, True])
def test_canonicalise_restore_is_exact_inverse(with_scale):
    rng = np.random.default_rng(1)
    world = to_world(random_canonical_poses(rng, 64), *random_world_frames(rng, 64))
    ref = bone_lengths(t_pose()) if with_scale else None
    canon, frame = canonicalise(world, reference_bones=ref)
    assert canon.shape == world.shape and frame.root.shape == (64, 3)
    assert frame.yaw.shape == (64,) and frame.scale.shape == (64,)
    np.testing.assert_allclose(restore(canon, frame), world, rtol=0, atol=1e-9)
    # Hypotheses axis (N, H, 24, 3) restores with the same frame per pose.
    hyp = np.stack([canon, canon + 0.1], axis=1)
    back = restore(hyp, frame)
    np.testing.assert_allclose(back[:, 0], world, rtol=0, atol=1e-9)
    assert back.shape == (64, 2, 24, 3)


def test_canonical_pose_faces_minus_y():
    rng = np.random.default_rng(2)
    truth = random_canonical_poses(rng, 32, noise=0.01)
    canon, frame = canonicalise(to_world(truth, *random_world_frames(rng, 32)))
    # Pelvis at the origin.
    np.testing.assert_allclose(canon[:, INDEX["pelvis"]], 0.0, atol=1e-9)
    # The character's left is +X: left hip, shoulder, hand on the +X side of their right partners.
    for side in ("hip", "shoulder", "wrist"):
        assert (canon[:, INDEX[side + "_l"], 0] > canon[:, INDEX[side + "_r"], 0]).all(), side
    # Summed left-minus-right across vector lies exactly on +X.
    across = sum(canon[:, INDEX[a + "_l"], :2] - canon[:, INDEX[a + "_r"], :2]
                 for a in ("hip", "shoulder", "collar", "knee", "elbow"))
    np.testing.assert_allclose(across[:, 1], 0.0, atol=1e-9)
    assert (across[:, 0] > 0).all()
    # Toes point forward (-Y) from the ankles, Z stays up.
    for s in ("l", "r"):
        assert (canon[:, INDEX["toe_" + s], 1] < canon[:, INDEX["ankle_" + s], 1]).all()
    assert (canon[:, INDEX["head"], 2] > canon[:, INDEX["knee_l"], 2]).all()


@pytest.mark.parametrize("rel", ["cmu/bvh/01_01.bvh.gz", "cmu/bvh/10_04.bvh.gz", "cmu/bvh/16_01.bvh.gz",
                                 "bandai/data/dataset-2_walk-turn-left_elderly_008.bvh.gz"],
                         ids=["cmu_mb31", "cmu_daz43", "cmu_asf31", "bandai"])
def test_real_takes_canonicalise_to_facing_minus_y(rel, data_file):
    """Real clips through their rig maps: after canonicalising, the left side is +X, toes point -Y, head is up.

    Catches a handedness or axis slip anywhere between the BVH reader, the rig maps and the canonical frame.
    """
    joints = load_take(data_file(rel)).joints.astype(np.float64)
    canon, _ = canonicalise(joints)
    frac = lambda cond: float(np.mean(cond))   # noqa: E731 -- share of frames where a statement holds
    assert frac(canon[:, INDEX["hip_l"], 0] > 0.03) > 0.99
    assert frac(canon[:, INDEX["shoulder_l"], 0] > canon[:, INDEX["shoulder_r"], 0]) > 0.99
    for s in ("l", "r"):
        assert frac(canon[:, INDEX["toe_" + s], 1] < canon[:, INDEX["ankle_" + s], 1]) > 0.9
    assert frac(canon[:, INDEX["head_end"], 2] > canon[:, INDEX["neck"], 2]) > 0.99
    assert frac(canon[:, INDEX["neck"], 2] > canon[:, INDEX["knee_l"], 2]) > 0.99


def test_canonicalising_a_canonical_pose_is_identity_frame():
    tp = t_pose()
    tp = tp - tp[0]
    canon, frame = canonicalise(tp[None])
    np.testing.assert_allclose(canon[0], tp, atol=1e-12)
    assert abs(frame.yaw[0]) < 1e-12 and frame.scale[0] == 1.0


def _check_only_frame_changes(world, ref, mean_pose, rng):
    n = world.shape[0]
    yaw, scale, shift = random_world_frames(rng, n)
    if ref is None:
        scale = np.ones(n)  # without reference bones canonical poses keep the input's size
    moved = to_world(world, yaw, scale, shift)
    c0, f0 = canonicalise(world, reference_bones=ref, mean_pose=mean_pose)
    c1, f1 = canonicalise(moved, reference_bones=ref, mean_pose=mean_pose)
    np.testing.assert_allclose(c1, c0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(angle_diff(f1.yaw, f0.yaw + yaw), 0.0, atol=1e-9)
    np.testing.assert_allclose(f1.scale, f0.scale * scale if ref is not None else 1.0, rtol=1e-9)
    np.testing.assert_allclose(f1.root, np.einsum("nij,nj->ni", yaw_matrix(yaw), f0.root) * scale[:, None] + shift,
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(restore(c1, f1), moved, rtol=0, atol=1e-8)


def test_rotating_scaling_moving_input_changes_only_the_frame():
    rng = np.random.default_rng(3)
    world = to_world(random_canonical_poses(rng, 40), *random_world_frames(rng, 40))
    _check_only_frame_changes(world, bone_lengths(t_pose()), None, rng)
    _check_only_frame_changes(world, None, None, rng)


@pytest.mark.parametrize("mean_pose", [None, "t_pose"])
def test_unknown_joints_and_unknown_pelvis(mean_pose):
    rng = np.random.default_rng(4)
    n = 48
    world = to_world(random_canonical_poses(rng, n), *random_world_frames(rng, n))
    unknown = rng.random((n, 24)) < 0.3
    unknown[: n // 2, INDEX["pelvis"]] = True     # half the poses have no pelvis
    unknown[0, :] = True                          # one pose knows nothing at all
    unknown[0, INDEX["knee_l"]] = False           # ... but a single joint
    world[unknown] = np.nan
    mp = t_pose() - t_pose()[0] if mean_pose else None
    ref = bone_lengths(t_pose())
    canon, frame = canonicalise(world, reference_bones=ref, mean_pose=mp)
    # Unknown stays unknown, the frame is always finite, and restore gives back every known joint exactly.
    assert np.array_equal(np.isnan(canon).any(-1), unknown)
    assert np.isfinite(frame.root).all() and np.isfinite(frame.yaw).all()
    assert np.isfinite(frame.scale).all() and (frame.scale > 0).all()
    back = restore(canon, frame)
    assert np.array_equal(np.isnan(back).any(-1), unknown)
    np.testing.assert_allclose(back[~unknown], world[~unknown], rtol=0, atol=1e-9)
    # Still only the frame changes when the whole input is turned, scaled and moved, for every pose whose facing
    # is observable (at least one known left/right pair; a pose without one gets yaw 0 by definition).
    pairs = [(INDEX[a + "_l"], INDEX[a + "_r"]) for a in ("hip", "shoulder", "collar", "knee", "elbow")]
    facing_known = np.any([~unknown[:, l] & ~unknown[:, r] for l, r in pairs], axis=0)
    assert facing_known.sum() > n // 2
    _check_only_frame_changes(world[facing_known], ref, mp, rng)


def test_unknown_pelvis_root_uses_mean_pose():
    """With the mean pose given, a pose whose pelvis is lost gets its root where that pose's pelvis would be."""
    tp = t_pose() - t_pose()[0]
    rng = np.random.default_rng(5)
    yaw, scale, shift = random_world_frames(rng, 5)
    world = to_world(np.repeat(tp[None], 5, 0), yaw, scale, shift)
    world[:, INDEX["pelvis"]] = np.nan
    canon, frame = canonicalise(world, reference_bones=bone_lengths(tp), mean_pose=tp)
    np.testing.assert_allclose(frame.root, shift, atol=1e-9)
    np.testing.assert_allclose(frame.scale, scale, rtol=1e-9)
    np.testing.assert_allclose(np.delete(canon, 0, axis=1), np.delete(np.repeat(tp[None], 5, 0), 0, axis=1),
                               atol=1e-9)


def test_settling_bone_lengths_meets_them_and_moves_joints_little():
    from gfpose_core.body.skeleton import (
        bone_lengths,
        fit_bone_lengths,
        settle_bone_lengths,
        with_bone_lengths,
    )
    rng = np.random.default_rng(0)
    pose = np.cumsum(rng.normal(0, 0.1, (50, 24, 3)), 1)          # any shapes: joints are a random walk
    truth = with_bone_lengths(pose, np.full(23, 0.2))
    noisy = truth + rng.normal(0, 0.01, truth.shape)
    target = bone_lengths(truth)[0]
    settled = settle_bone_lengths(noisy, target)
    assert np.abs(bone_lengths(settled) - target).max() < 1e-3
    moved = np.linalg.norm(settled - noisy, axis=-1).mean()
    pushed = np.linalg.norm(fit_bone_lengths(noisy, np.repeat(target[None], 50, 0),
                                             np.eye(24, dtype=bool)[[0] * 50]) - noisy, axis=-1).mean()
    assert moved < 0.5 * pushed           # no chain dragged along from the root
    assert np.linalg.norm(settled - truth, axis=-1).mean() < np.linalg.norm(noisy - truth, axis=-1).mean()
