"""The Engine's contract (DESIGN.md) with the real shipped model."""
import numpy as np
import pytest

from gfpose_core.body.skeleton import BODY_PARTS, INDEX, bone_lengths, yaw_matrix
from gfpose_core.engine import Engine


@pytest.fixture(scope="module")
def engine():
    return Engine.load(device="cpu")


@pytest.fixture(scope="module")
def real_poses(engine):
    """Poses of held-out CMU test subjects when the data is here, else poses the model itself generated."""
    from gfpose_core.data import DATA_DIR, cmu_takes
    if (DATA_DIR / "cmu" / "bvh").exists():
        d = cmu_takes()
        poses = d["joints"][d["split"] == "test"][::97][:40].astype(np.float64)
    else:
        poses = engine.generate(40, seed=3)
    # Put them somewhere in the world, facing anywhere.
    rng = np.random.default_rng(0)
    rot = yaw_matrix(rng.uniform(-np.pi, np.pi, len(poses)))
    return np.einsum("nij,nkj->nki", rot, poses) + rng.normal(0, 2, (len(poses), 1, 3)) * [1, 1, 0]


def arm_unknown(n):
    known = np.ones((n, 24), bool)
    known[:, BODY_PARTS["arm_l"]] = False
    return known


def test_joint_names(engine):
    assert engine.joint_names[:6] == ["pelvis", "spine", "chest", "neck", "head", "head_end"]
    assert len(engine.joint_names) == 24


def test_complete_shapes_and_known_joints_exact(engine, real_poses):
    known = arm_unknown(len(real_poses))
    out = engine.complete(real_poses, known, seed=0)
    assert out.shape == real_poses.shape
    assert np.array_equal(out[known], real_poses[known])
    assert np.isfinite(out).all()
    hyps = engine.complete(real_poses[:5], known[:5], n_hypotheses=4, seed=0)
    assert hyps.shape == (5, 4, 24, 3)
    assert np.array_equal(hyps[:, 2][known[:5]], real_poses[:5][known[:5]])
    assert np.ptp(hyps[:, :, INDEX["wrist_l"]], axis=1).max() > 0.01  # the hypotheses differ


def test_hypotheses_start_with_the_likeliest_and_spread_out(engine, real_poses):
    known = arm_unknown(len(real_poses))[:8]
    hyps = engine.complete(real_poses[:8], known, n_hypotheses=5, seed=4)
    np.testing.assert_allclose(hyps[:, 0], engine.complete(real_poses[:8], known, seed=4), atol=1e-9)
    wrists = hyps[:, :, INDEX["wrist_l"]]
    gaps = np.linalg.norm(wrists[:, :, None] - wrists[:, None], axis=-1)[:, ~np.eye(5, dtype=bool)]
    assert gaps.min() > 0.01     # no hypothesis repeats another


def test_spread_keeps_the_first_and_visits_every_cluster():
    from gfpose_core.prior.hypotheses import spread
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    # 30 candidates: 26 near the first centre, 2 near each other one (a prior's rare answers)
    idx = np.array([0] * 26 + [1, 1, 2, 2])
    cand = (centres[idx] + 0.1 * rng.normal(size=(30, 2)))[None]
    weight = np.array([[1.0, 1.0]])
    first = np.array([[0.05, 0.0]])
    out = spread(cand, weight, 3, first=first)[0]
    np.testing.assert_array_equal(out[0], first[0])
    assert sorted(np.argmin(np.linalg.norm(out[:, None] - centres, axis=-1), 1).tolist()) == [0, 1, 2]
    # a coordinate of weight 0 (a known one) does not count
    cand2 = cand.copy()
    cand2[0, 0, 1] = 100.0
    out2 = spread(cand2, np.array([[1.0, 0.0]]), 2)[0]
    assert abs(out2[1, 0]) > 4


def test_nan_marks_unknown(engine, real_poses):
    known = arm_unknown(len(real_poses))
    holes = np.where(known[..., None], real_poses, np.nan)
    a = engine.complete(holes, None, seed=1)
    b = engine.complete(real_poses, known, seed=1)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_completion_is_plausible(engine, real_poses):
    """The completed arm lies closer to the truth than the rest (mean) pose's arm does."""
    known = arm_unknown(len(real_poses))
    out = engine.complete(real_poses, known, seed=0)
    rest = engine.complete(real_poses, known, seed=0, steps=1, sampler="mode")  # one step barely moves
    err = np.linalg.norm(out - real_poses, axis=-1)[~known].mean()
    assert err < 0.2
    lengths = bone_lengths(out)[:, [INDEX["elbow_l"] - 1, INDEX["wrist_l"] - 1]]
    truth = bone_lengths(real_poses)[:, [INDEX["elbow_l"] - 1, INDEX["wrist_l"] - 1]]
    assert np.abs(lengths - truth).mean() < 0.05
    assert rest.shape == out.shape


def _told_mean(engine, poses, known):
    """The shipped posterior mean told the body (body_mean/) for poses with the `known` joints, in model units."""
    masked = np.where(known[..., None], poses, np.nan)
    canon, frame = engine._canonical(masked)
    obs = np.nan_to_num(engine.space.to_model(canon))
    return obs, engine._coord_mask(known), engine._told(masked, frame)


def test_posterior_mean_hedges_toward_the_truth(engine, real_poses):
    """Nothing known: near the mean pose. An arm unknown: nearer the truth than the mean pose's arm, and the single
    completion (which starts from it) keeps the rig's bone lengths."""
    mean = engine.body_mean
    assert mean is not None
    nothing = np.zeros((1, 24), bool)
    obs, cmask, body = _told_mean(engine, real_poses[:1], nothing)
    assert np.abs(mean(obs, cmask, body)).max() < 0.5      # model units: the training poses' mean is 0
    known = arm_unknown(len(real_poses))
    obs, cmask, body = _told_mean(engine, real_poses, known)
    truth, _ = engine._canonical(real_poses)
    guess = engine.space.from_model(mean(obs, cmask, body))
    err = np.linalg.norm(guess - truth, axis=-1)[~known].mean()
    rest = np.linalg.norm(engine.mean_pose - truth, axis=-1)[~known].mean()
    assert err < 0.8 * rest
    out = engine.complete(real_poses, known, seed=0)
    from gfpose_core.body.skeleton import BONE_MIRROR, BONES
    unseen = np.isin(BONES[:, 0], BODY_PARTS["arm_l"])            # the unseen arm takes the other arm's lengths
    measured = bone_lengths(real_poses)
    np.testing.assert_allclose(bone_lengths(out), np.where(unseen, measured[:, BONE_MIRROR], measured), atol=2e-3)


def test_completion_progress_counts_up_once(engine, real_poses):
    for h in (1, 3):
        seen = []
        engine.complete(real_poses[:2], arm_unknown(2), n_hypotheses=h, seed=0,
                        callback=lambda i, n: seen.append((i, n)))
        total = seen[-1][1]
        assert [i for i, _ in seen] == list(range(1, total + 1)) and {n for _, n in seen} == {total}


def test_posterior_mean_from_another_pose_space_is_refused(tmp_path):
    import json
    import shutil

    from gfpose_core.engine import WEIGHTS_DIR
    shutil.copytree(WEIGHTS_DIR, tmp_path / "w", ignore=shutil.ignore_patterns("motion"))
    cfg_path = sorted((tmp_path / "w" / "body_mean").glob("*/config.json"))[-1]   # any one member
    cfg = json.loads(cfg_path.read_text())
    cfg["space"]["std"] *= 1.1
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="pose space"):
        Engine.load(tmp_path / "w", device="cpu")
    cfg["space"]["std"] /= 1.1
    cfg["kind"] = "score"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a body_mean network"):
        Engine.load(tmp_path / "w", device="cpu")


def test_posterior_mean_averages_its_networks(engine, real_poses, tmp_path):
    """A posterior-mean folder of several networks trained apart answers their average, and each member folder is a
    weights folder of its own (a training run loads the same way): here the shipped network and a copy of it whose
    weights are perturbed."""
    import shutil

    from safetensors.torch import load_file, save_file

    from gfpose_core.engine import WEIGHTS_DIR
    from gfpose_core.prior.body_mean import BodyMean
    shipped = sorted(p for p in (WEIGHTS_DIR / "body_mean").iterdir() if (p / "config.json").exists())
    assert len(shipped) == len(engine.body_mean.nets) >= 1
    folder = tmp_path / "body_mean"
    for name in ("a", "b"):
        shutil.copytree(shipped[0], folder / name)
    weights = load_file(str(folder / "b" / "model.safetensors"))
    save_file({k: v * 1.05 for k, v in weights.items()}, str(folder / "b" / "model.safetensors"))
    both = BodyMean.load(folder, engine.device, engine.space)
    singles = [BodyMean.load(folder / n, engine.device, engine.space) for n in ("a", "b")]
    assert len(both.nets) == 2
    obs, cmask, body = _told_mean(engine, real_poses, arm_unknown(len(real_poses)))
    answers = [m(obs, cmask, body) for m in singles]
    assert np.abs(answers[0] - answers[1]).max() > 0.05          # two networks, not one twice
    np.testing.assert_allclose(both(obs, cmask, body), np.mean(answers, 0), atol=1e-5)


def test_same_seed_same_result(engine, real_poses):
    known = arm_unknown(len(real_poses))
    a = engine.complete(real_poses, known, n_hypotheses=2, seed=7)
    b = engine.complete(real_poses, known, n_hypotheses=2, seed=7)
    c = engine.complete(real_poses, known, n_hypotheses=2, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_rotating_and_scaling_input_does_the_same_to_output(engine, real_poses):
    known = arm_unknown(len(real_poses))
    base = engine.complete(real_poses, known, seed=0)
    rot = yaw_matrix(np.array(0.9))
    moved = 1.3 * real_poses @ rot.T + np.array([1.0, -2.0, 0.5])
    out = engine.complete(moved, known, seed=0)
    np.testing.assert_allclose(out, 1.3 * base @ rot.T + np.array([1.0, -2.0, 0.5]), atol=1e-4)


def test_denoise_take(engine, real_poses):
    from gfpose_core.data import DATA_DIR, load_take
    clip = DATA_DIR / "cmu" / "bvh" / "06_01.bvh.gz"
    if not clip.exists():
        pytest.skip(f"{clip} not present")
    take = load_take(clip)
    clean = take.joints[1::4][:150].astype(np.float64)
    noisy = clean + np.random.default_rng(0).normal(0, 0.04, clean.shape)
    noisy[40:50, INDEX["wrist_r"]] = np.nan  # a dropout
    out = engine.denoise(noisy, fps=30.0)
    assert out.shape == clean.shape and np.isfinite(out).all()
    before = np.nanmean(np.linalg.norm(noisy - clean, axis=-1))
    after = np.linalg.norm(out - clean, axis=-1).mean()
    assert after < 0.6 * before
    assert np.linalg.norm(out[40:50, INDEX["wrist_r"]] - clean[40:50, INDEX["wrist_r"]], axis=-1).mean() < 0.1


def test_generate(engine, real_poses):
    free = engine.generate(6, seed=0)
    assert free.shape == (6, 24, 3) and np.isfinite(free).all()
    assert np.abs(free[:, 0]).max() < 1e-9  # at the origin
    assert (free[:, INDEX["head"], 2] > free[:, INDEX["ankle_l"], 2]).all()  # upright
    pose = real_poses[0]
    var = engine.generate(5, seed=0, around=pose, pinned=["ankle_l", "ankle_r", "pelvis"], diversity=0.3)
    assert var.shape == (5, 24, 3)
    for j in ("ankle_l", "ankle_r", "pelvis"):
        assert np.array_equal(var[:, INDEX[j]], np.repeat(pose[None, INDEX[j]], 5, 0))
    near = engine.generate(5, seed=0, around=pose, diversity=0.0)
    far = engine.generate(5, seed=0, around=pose, diversity=1.0)
    assert np.linalg.norm(near - pose, axis=-1).mean() < np.linalg.norm(far - pose, axis=-1).mean()


def test_lift(engine, real_poses):
    kp = real_poses[:4, :, [0, 2]] * [100, -100]  # a front view in pixels, y down
    out = engine.lift(kp, seed=0)
    assert out.shape == (4, 24, 3) and np.isfinite(out).all()
    hyps = engine.lift(kp, n_hypotheses=3, seed=0)
    assert hyps.shape == (4, 3, 24, 3)


@pytest.mark.parametrize("call, message", [
    (lambda e, p: e.complete(p[:, :20]), "shape"),
    (lambda e, p: e.complete(np.where(np.arange(24)[None, :, None] == 3, np.inf, p)), "inf"),
    (lambda e, p: e.complete(np.full_like(p, np.nan)), "no known joints"),
    (lambda e, p: e.complete(p, n_hypotheses=10**9), "n_hypotheses"),
    (lambda e, p: e.complete(p, n_hypotheses=0), "n_hypotheses"),
    (lambda e, p: e.complete(p, known=np.ones((3, 24))), "known"),
    (lambda e, p: e.complete(p, sampler="nope"), "sampler"),
    (lambda e, p: e.complete(p, steps=0), "steps"),
    (lambda e, p: e.generate(10**9), "n"),
    (lambda e, p: e.generate(2, diversity=3), "diversity"),
    (lambda e, p: e.generate(2, pinned=["pelvis"]), "pinned"),
    (lambda e, p: e.generate(2, around=p[0], pinned=["tail"]), "tail"),
    (lambda e, p: e.denoise(p, fps=-1), "fps"),
    (lambda e, p: e.denoise(p, strength=2), "strength"),
    (lambda e, p: e.lift(p), "shape"),
    (lambda e, p: e.complete("pose"), "array"),
])
def test_bad_input_names_the_problem(engine, real_poses, call, message):
    with pytest.raises(ValueError, match=message):
        call(engine, real_poses[:2])


def test_a_hidden_arm_that_hangs_straight_is_not_completed_folded(engine, DATA):
    """The single completion's arm is a plausible arm, not the folded average of possible arms: of the real elbows
    straighter than 140 degrees (CMU validation subject 8, one arm hidden per pose), under 5% (issue 16's bound) come
    back bent under 110 degrees. Measured 2.9% with the posterior mean told the body (body_mean.py), 0.6% with the
    posterior-mean networks before it (on 600 poses of subjects 8 and 14 both 6-11%); keeping the posterior mean's
    short shoulder-to-wrist span folded 4%."""
    from gfpose_core.bench.proportions import elbow_angles
    from gfpose_core.data import load_take
    files = sorted((DATA / "cmu" / "bvh").glob("08_*.bvh.gz"))
    if not files:
        pytest.skip("no CMU subject 8 clips")
    poses = np.concatenate([load_take(f).joints[1::15] for f in files]).astype(np.float64)
    side = np.where(np.arange(len(poses)) % 2, "l", "r")
    known = np.ones((len(poses), 24), bool)
    for i, s in enumerate(side):
        known[i, BODY_PARTS[f"arm_{s}"]] = False
    out = engine.complete(poses, known, seed=0)
    real, got = elbow_angles(poses, side), elbow_angles(out, side)
    straight = real > 140
    assert straight.sum() > 100
    assert np.mean(got[straight] < 110) < 0.05, np.mean(got[straight] < 110)
