"""Takes with the motion model (issue 8): in-betweening and denoising whole takes through the Engine, with the
real shipped weights on real CMU clips; window planning, foot locking and motion masks."""
import numpy as np
import pytest
import torch
from conftest import CMU_MB31

from gfpose_core.body.skeleton import INDEX, bone_lengths, yaw_matrix
from gfpose_core.engine import Engine
from gfpose_core.motion.contacts import FOOT_JOINTS, find_contacts, lock_feet
from gfpose_core.motion.takes import fill_plan, sliding_plan
from gfpose_core.prior.masking import MotionMaskingConfig, motion_mask


@pytest.fixture(scope="module")
def engine():
    e = Engine.load(device="cpu")
    if e.motion is None:
        pytest.fail("the shipped weights have no motion model (gfpose_core/weights/motion)")
    return e


@pytest.fixture(scope="module")
def walk(data_file):
    """A real walk (CMU 01_01 has a walk and a jump) at 30 fps, placed somewhere in the room, facing anywhere."""
    from gfpose_core.body.filters import resample
    from gfpose_core.data import load_take
    take = load_take(data_file(CMU_MB31))
    j = resample(take.joints[1:], take.fps, 30.0).astype(np.float64)[:181]
    rot = yaw_matrix(np.array(0.7))
    return j @ rot.T + np.array([1.5, -2.0, 0.0])


def keyed(take, every):
    sparse = np.full_like(take, np.nan)
    sparse[::every] = take[::every]
    return sparse


def mpjpe(a, b, frames=slice(None)):
    return float(np.linalg.norm(a[frames] - b[frames], axis=-1).mean())


# -- in-betweening ------------------------------------------------------------------------------------------------

def test_inbetween_keeps_keys_exact_and_fills_every_frame(engine, walk):
    take = walk[:121]
    out = engine.inbetween(keyed(take, 20), seed=0)
    assert out.shape == take.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(out[::20], take[::20])
    between = np.setdiff1d(np.arange(121), np.arange(0, 121, 20))
    # frames between keys move: not a hold of the previous key
    assert np.linalg.norm(out[between] - take[(between // 20) * 20], axis=-1).mean() > 0.02
    # filled bones keep the take's own lengths (keys keep theirs, exactly as keyed)
    np.testing.assert_allclose(bone_lengths(out[between]),
                               np.repeat(np.median(bone_lengths(take), 0)[None], len(between), 0), atol=0.01)


def test_inbetween_follows_the_motion_of_a_real_walk(engine, walk):
    """Far better than holding each key, and near linear interpolation (which the shipped motion model does not
    beat yet: docs/bench/report.md, takes section)."""
    from gfpose_core.body.filters import fill_gaps
    take = walk[:121]
    sparse = keyed(take, 20)
    between = np.setdiff1d(np.arange(121), np.arange(0, 121, 20))
    ours = mpjpe(engine.inbetween(sparse, seed=0), take, between)
    hold = mpjpe(take[(np.arange(121) // 20) * 20], take, between)
    linear = mpjpe(fill_gaps(sparse), take, between)
    assert ours < 0.7 * hold and ours < 1.5 * linear, (ours, hold, linear)


def test_inbetween_is_same_seed_same_result_and_rotates_with_the_take(engine, walk):
    take = keyed(walk[:61], 15)
    a = engine.inbetween(take, seed=3)
    np.testing.assert_array_equal(a, engine.inbetween(take, seed=3))
    rot = yaw_matrix(np.array(1.1))
    shift = np.array([-3.0, 0.5, 0.0])
    b = engine.inbetween(take @ rot.T + shift, seed=3)
    np.testing.assert_allclose(b, a @ rot.T + shift, atol=2e-3)


def test_partial_keys_keep_their_known_joints(engine, walk):
    take = walk[:61].copy()
    known = np.zeros(take.shape[:2], bool)
    known[::30] = True
    arms = [INDEX[n] for n in ("shoulder_l", "elbow_l", "wrist_l", "shoulder_r", "elbow_r", "wrist_r")]
    known[15][arms] = True          # an arms-only key in the middle
    out = engine.inbetween(take, known=known, seed=0)
    np.testing.assert_array_equal(out[known], take[known])
    assert np.isfinite(out).all()


def test_inbetween_at_another_frame_rate(engine, walk):
    from gfpose_core.body.filters import resample
    take24 = resample(walk.astype(np.float32), 30.0, 24.0).astype(np.float64)[:97]
    out = engine.inbetween(keyed(take24, 24), fps=24.0, seed=0)
    assert out.shape == take24.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(out[::24], take24[::24])


def test_planted_feet_between_keys_stay_planted(engine):
    """Keys of someone standing still with the arms moving: the feet must not slide in between."""
    pose = engine.generate(1, seed=5)[0]
    pose[:, 2] -= pose[:, 2].min()
    take = np.repeat(pose[None], 61, 0)
    for f in range(61):   # wave the right arm
        take[f, INDEX["wrist_r"], 2] += 0.2 * np.sin(f / 10)
    sparse = keyed(take, 30)
    out = engine.inbetween(sparse, seed=0)
    planted = pose[FOOT_JOINTS, 2] < 0.05
    assert planted.any()
    feet = out[:, np.array(FOOT_JOINTS)[planted]]
    drift = np.linalg.norm(feet[:, :, :2] - feet[:1, :, :2], axis=-1).max()
    assert drift < 0.01, drift


@pytest.mark.parametrize("make, words", [
    (lambda t: np.full_like(t, np.nan), "no known joints"),
    (lambda t: np.where(np.isin(np.arange(len(t)), [0, 100])[:, None, None], t, np.nan), "frames 1-99"),
    (lambda t: t[:, :20], "shape"),
    (lambda t: np.where(np.arange(len(t))[:, None, None] == 3, np.inf, t), "inf"),
])
def test_inbetween_bad_input_names_the_problem(engine, walk, make, words):
    with pytest.raises(ValueError, match=words):
        engine.inbetween(make(walk[:101].copy()))


def test_inbetween_bad_fps_and_known(engine, walk):
    with pytest.raises(ValueError, match="fps"):
        engine.inbetween(keyed(walk[:31], 10), fps=-3)
    with pytest.raises(ValueError, match="known"):
        engine.inbetween(walk[:31], known=np.ones((5, 24), bool))


# -- denoising ----------------------------------------------------------------------------------------------------

def corrupted(take, seed=0):
    from gfpose_core.bench.denoising import corrupt
    return corrupt(take, "jitter40_spikes_dropouts", np.random.default_rng(seed))


def test_temporal_denoise_repairs_jitter_spikes_and_dropouts(engine, walk):
    noisy = corrupted(walk)
    assert np.isnan(noisy).any()
    out = engine.denoise(noisy, fps=30.0)
    assert out.shape == walk.shape and np.isfinite(out).all()
    from gfpose_core.body.filters import fill_gaps
    assert mpjpe(out, walk) < 0.5 * mpjpe(fill_gaps(noisy), walk)
    # a rigid body: each bone keeps one length through the take (within 2 mm), close to the capture's own
    lengths = bone_lengths(out)
    assert lengths.std(0).max() < 0.002
    assert np.abs(np.median(lengths, 0) - bone_lengths(walk).mean(0)).max() < 0.03


def test_a_denoised_noisy_take_is_no_jerkier_than_the_clean_one(engine, walk):
    """40 mm jitter, spikes and dropouts cleaned: the result moves no more jerkily than the capture itself (mean
    joint acceleration). Joints held back within their noise's reach one by one put the noise back (2.5 sigma: twice
    the clean take's acceleration)."""
    def acceleration(take):
        return float(np.linalg.norm(np.diff(take, 2, axis=0), axis=-1).mean()) * 30.0 ** 2
    for seed in (0, 1):
        out = engine.denoise(corrupted(walk, seed), fps=30.0)
        assert acceleration(out) < acceleration(walk), (seed, acceleration(out), acceleration(walk))


def test_temporal_denoise_leaves_a_still_clean_take_still(engine, walk):
    import warnings
    still = np.repeat(walk[:1], 40, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no division by a zero jitter on the way
        assert np.abs(engine.denoise(still, fps=30.0) - still).max() < 0.005
        assert np.isfinite(engine.denoise(still, fps=30.0, strength=0.3)).all()   # asked to move: may move


def test_temporal_denoise_beats_the_per_frame_engine(engine, walk):
    noisy = corrupted(walk, seed=1)
    temporal = mpjpe(engine.denoise(noisy, fps=30.0, temporal=True), walk)
    per_frame = mpjpe(engine.denoise(noisy, fps=30.0, temporal=False), walk)
    assert temporal < per_frame, (temporal, per_frame)


def test_temporal_denoise_of_a_short_take_and_at_120_fps(engine, walk):
    short = walk[:20] + np.random.default_rng(2).normal(0, 0.02, walk[:20].shape)
    assert engine.denoise(short, temporal=True).shape == short.shape
    fast = np.repeat(walk[:60], 4, 0)   # 120 fps, a step every 4 frames
    out = engine.denoise(fast, fps=120.0, temporal=True)
    assert out.shape == fast.shape and np.isfinite(out).all()


def test_temporal_needs_a_motion_model(engine, walk):
    bare = Engine(engine.net, engine.space, engine.config, engine.device, motion=None)
    with pytest.raises(ValueError, match="motion model"):
        bare.denoise(walk[:30], temporal=True)
    with pytest.raises(ValueError, match="motion model"):
        bare.inbetween(keyed(walk[:30], 10))
    assert np.isfinite(bare.denoise(walk[:30])).all()   # the per-frame path serves without one


# -- windows, contacts, masks -------------------------------------------------------------------------------------

def test_fill_plan_covers_every_frame_and_each_gap_sits_in_one_window():
    W = 64
    rng = np.random.default_rng(0)
    for _ in range(50):
        T = int(rng.integers(65, 400))
        has = rng.random(T) < rng.uniform(0.02, 0.9)
        has[0] = True
        keys = np.flatnonzero(has)
        while np.diff(np.r_[keys, T - 1]).max() > W - 1:   # respect the window's reach
            gap = np.argmax(np.diff(np.r_[keys, T - 1]))
            has[keys[gap] + W // 2] = True
            keys = np.flatnonzero(has)
        plan = fill_plan(has, W)
        covered = np.zeros(T, int)
        for start, first, last in plan:
            assert 0 <= start <= T - W and start <= first <= last < start + W
            covered[first:last + 1] += 1
        assert (covered >= 1).all()


def test_fill_plan_refuses_gaps_longer_than_a_window():
    has = np.zeros(200, bool)
    has[[0, 10, 150, 199]] = True
    with pytest.raises(ValueError, match="frames 11-149"):
        fill_plan(has, 64)


def test_sliding_plan_reaches_the_end():
    for T in (64, 65, 100, 1000):
        starts = sliding_plan(T, 64)
        assert starts[0] == 0 and starts[-1] == T - 64


def test_lock_feet_holds_a_planted_foot_and_keeps_the_legs(engine):
    rng = np.random.default_rng(0)
    from gfpose_core.body.skeleton import with_bone_lengths
    pose = engine.generate(1, seed=1)[0]
    pose[:, 2] -= pose[:, 2].min()
    take = np.repeat(pose[None], 40, 0) + rng.normal(0, 0.004, (40, 24, 3))
    take = with_bone_lengths(take, bone_lengths(pose))
    contacts = find_contacts(take, 30.0)
    inner = contacts[3:-3]
    assert inner.all(0).any()               # standing still: the feet on the ground are found
    locked = lock_feet(take, contacts)
    k = np.flatnonzero(inner.all(0))[0]
    j = FOOT_JOINTS[k]
    assert np.ptp(locked[3:-3, j, :2], axis=0).max() < 1e-9
    np.testing.assert_allclose(bone_lengths(locked), bone_lengths(take), atol=2e-3)


def test_interpolated_condition_draws_lines_between_each_joints_keys():
    from gfpose_core.motion.network import interpolate_known, motion_condition
    W = 12
    obs = torch.randn(2, W, 24, 3)
    known = torch.zeros(2, W, 24, dtype=torch.bool)
    known[0, [2, 8], 5] = True          # a joint keyed twice: a line between, held outside
    known[1, 4, :] = True               # one full key: held everywhere
    out = interpolate_known(obs, known)
    for f in range(W):
        w = min(max((f - 2) / 6, 0.0), 1.0)
        assert torch.allclose(out[0, f, 5], (1 - w) * obs[0, 2, 5] + w * obs[0, 8, 5], atol=1e-6)
    assert torch.all(out[0, :, 6] == 0)          # never known: nothing made up
    assert torch.allclose(out[1], obs[1, 4].expand(W, 24, 3))
    cond = motion_condition(obs.reshape(2, -1), known).reshape(2, W, 96)
    assert torch.allclose(cond[..., :72], out.reshape(2, W, 72)) and torch.equal(cond[..., 72:] > 0, known)
    keys = motion_condition(obs.reshape(2, -1), known, "keys").reshape(2, W, 96)
    assert torch.all(keys[0, 3, :72] == 0) and torch.equal(keys[0, 2, 15:18], obs[0, 2, 5])
    with pytest.raises(ValueError, match="unknown motion condition"):
        motion_condition(obs.reshape(2, -1), known, "spline")


def test_smoothing_between_keys_keeps_keys_and_arcs_and_drops_wobble():
    from gfpose_core.motion.takes import smooth_between_keys
    rng = np.random.default_rng(1)
    T = 61
    f = np.arange(T)
    known = np.zeros((T, 24), bool)
    known[::20] = True
    known[5, 3] = True                       # a joint with a key of its own
    arc = np.zeros((T, 24, 3))
    arc[..., 2] = 0.1 * np.sin(np.pi * (f % 20) / 20)[:, None]      # an arc between keys, zero at them
    truth = np.linspace(0, 1, T)[:, None, None] + arc
    wobbly = truth + np.where(known[..., None], 0.0, rng.normal(0, 0.01, truth.shape))
    out = smooth_between_keys(wobbly, known, 30.0, 2.0)
    assert np.array_equal(out[known], wobbly[known])
    assert np.abs(out - truth).mean() < 0.4 * np.abs(wobbly - truth).mean()
    assert np.abs(out[..., 2] - truth[..., 2]).max() < 0.02          # the arc stays


def test_spikes_are_measured_against_the_takes_own_jitter(walk):
    from gfpose_core.prior.denoise import estimate_jitter, find_spikes
    rng = np.random.default_rng(3)
    noisy = walk + rng.normal(0, 0.10, walk.shape)            # very noisy capture, no spikes
    noisy[50, 9] += np.array([0.0, 0.0, 0.6])                  # one real spike
    assert find_spikes(noisy).mean() > 0.3                     # a fixed 10 cm threshold calls the jitter spikes
    spikes = find_spikes(noisy, jitter=estimate_jitter(noisy))
    assert spikes.mean() < 0.02 and spikes[50, 9]


def test_residual_analysis_cuts_lower_for_slow_motion_and_more_noise():
    from gfpose_core.body.filters import butterworth, residual_cutoff
    rng = np.random.default_rng(0)
    t = np.arange(240) / 30.0
    def take(hz):
        x = np.zeros((240, 24, 3))
        x[..., 0] = 0.2 * np.sin(2 * np.pi * hz * t)[:, None] + np.linspace(0, 1, 24)
        return x
    slow, fast = take(0.5), take(3.0)
    fc_slow = residual_cutoff(slow + rng.normal(0, 0.01, slow.shape), 30.0)
    fc_fast = residual_cutoff(fast + rng.normal(0, 0.01, fast.shape), 30.0)
    assert fc_slow.shape == (24,) and fc_slow.max() < fc_fast.min()
    assert fc_fast.min() > 3.0        # the motion's own frequency passes
    noisy = fast + rng.normal(0, 0.01, fast.shape)
    fc = residual_cutoff(noisy, 30.0)
    def err(cutoff):
        return np.abs(butterworth(noisy, 30.0, cutoff) - fast).mean()
    assert err(float(fc[0])) < min(err(1.5), err(12.0), np.abs(noisy - fast).mean())   # no lower, no higher


def test_sure_picks_a_low_cutoff_for_a_still_part_and_keeps_a_moving_one():
    """Stein's unbiased risk estimate with the identity as the denoiser (its divergence is known): the still part
    gets a cutoff that removes most noise, the moving part keeps its 3 Hz motion, and each chosen cutoff scores
    close to the best of the grid against the (unseen) clean take."""
    from gfpose_core.body.filters import butterworth
    from gfpose_core.motion.takes import CUTOFF_GROUPS, sure_cutoff
    rng = np.random.default_rng(0)
    t = np.arange(240) / 30.0
    clean = np.zeros((240, 24, 3))
    arm = CUTOFF_GROUPS == CUTOFF_GROUPS[INDEX["wrist_l"]]
    clean[:, arm, 0] = 0.2 * np.sin(2 * np.pi * 3.0 * t)[:, None]
    sigma = 0.02
    noisy = clean + rng.normal(0, sigma, clean.shape)
    known = np.ones(clean.shape[:2], bool)
    known[100:110, 3] = False                                  # unmeasured coordinates stay out of the estimate
    probe = rng.choice([-1.0, 1.0], size=clean.shape) * known[..., None]
    fc = sure_cutoff(noisy, known, noisy, probe, probe, sigma, 30.0, CUTOFF_GROUPS)
    assert fc.shape == (24,)
    assert np.all(fc[~arm] <= 1.5) and np.all(fc[arm] >= 3.0)
    for sel in (arm, ~arm):
        errs = {f: np.square(butterworth(noisy[:, sel], 30.0, f) - clean[:, sel]).mean()
                for f in np.arange(0.5, 12.0, 0.5)}
        assert errs[float(fc[sel][0])] < 1.3 * min(errs.values()) < np.square(noisy - clean).mean()


def test_mirror_averaging_cancels_a_lopsided_answer():
    """A network that leans every answer 5 cm towards the character's +X: averaged with its answer on the mirror
    image, the lean cancels."""
    from gfpose_core.motion.takes import _mirror_averaged
    rng = np.random.default_rng(1)
    wins = rng.normal(0, 0.3, (3, 16, 24, 3))
    known = np.ones(wins.shape[:3], bool)
    out = _mirror_averaged(lambda w, k, frame: w + np.array([0.05, 0.0, 0.0]), wins, known, known, 1.0, None)
    assert np.allclose(out, wins)


def test_motion_masks_cover_the_cases():
    m = motion_mask(400, 64, MotionMaskingConfig(), torch.Generator().manual_seed(0))
    assert m.shape == (400, 64, 24)
    per_window = m.float().mean((1, 2))
    assert (per_window == 0).any()                      # free windows (the prior)
    frames_known = m.any(-1).float().mean(1)
    assert ((frames_known > 0) & (frames_known < 0.6)).any()   # sparse keys
    assert ((per_window > 0.6) & (per_window < 1)).any()       # mostly known, with gaps
