"""Metrics and classical baselines against hand-computed values."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gfpose_core.bench import metrics as m
from gfpose_core.bench.baselines import (
    GaussianCompletion,
    NearestNeighbourCompletion,
    best_cutoff,
)
from gfpose_core.body.filters import (
    butterworth,
    fill_gaps,
    gaussian_smooth,
    savitzky_golay,
)
from gfpose_core.body.skeleton import INDEX, MIRROR, N_JOINTS


def rand_poses(n, seed=0, scale=0.3):
    return np.random.default_rng(seed).normal(0.0, scale, (n, N_JOINTS, 3))


def tpose():
    """A left/right-symmetric standing pose (character's left on +X, facing -Y, Z up)."""
    mid = {"pelvis": (0, 0, 1.0), "spine": (0, 0, 1.15), "chest": (0, 0, 1.35), "neck": (0, 0, 1.5),
           "head": (0, 0, 1.6), "head_end": (0, 0, 1.8)}
    left = {"collar_l": (0.05, 0, 1.45), "shoulder_l": (0.18, 0, 1.45), "elbow_l": (0.45, 0, 1.45),
            "wrist_l": (0.7, 0, 1.45), "hand_end_l": (0.8, 0, 1.45), "hip_l": (0.1, 0, 0.95),
            "knee_l": (0.1, 0, 0.5), "ankle_l": (0.1, 0.0, 0.08), "toe_l": (0.1, -0.12, 0.02)}
    j = np.zeros((N_JOINTS, 3))
    for name, p in {**mid, **left}.items():
        j[INDEX[name]] = p
    for name, p in left.items():
        j[MIRROR[INDEX[name]]] = (-p[0], p[1], p[2])
    return j


# ------------------------------------------------------------------------------------------ MPJPE family

def test_mpjpe_known_offset_and_mask():
    gt = rand_poses(5)
    pred = gt + np.array([0.03, 0.04, 0.0])                        # 5 cm everywhere
    assert m.mpjpe(pred, gt) == pytest.approx(0.05)
    pred[:, :10] = gt[:, :10] + np.array([0.0, 0.0, 0.2])          # 20 cm on the first 10 joints
    pred[:, 10] = np.nan                                           # unknown and masked out: must not leak
    mask = np.zeros((5, N_JOINTS), bool)
    mask[:, :10] = True
    assert m.mpjpe(pred, gt, mask) == pytest.approx(0.2)
    mask[:, 11:] = True
    assert m.mpjpe(pred, gt, mask) == pytest.approx((10 * 0.2 + 13 * 0.05) / 23)


def test_mpjpe_broadcasts_hypotheses_and_best_of():
    gt = rand_poses(4)
    offsets = np.array([0.1, 0.02, 0.05])
    hyps = gt[:, None] + offsets[None, :, None, None] * np.array([1.0, 0, 0])   # (4, 3, 24, 3)
    assert m.mpjpe(hyps, gt[:, None]) == pytest.approx(offsets.mean())
    mask = np.ones((4, N_JOINTS), bool)
    mask[:, 5:] = False
    assert m.mpjpe(hyps, gt[:, None], mask) == pytest.approx(offsets.mean())
    assert m.best_of_mpjpe(hyps, gt) == pytest.approx(0.02)
    assert m.best_of_mpjpe(hyps, gt, mask) == pytest.approx(0.02)
    assert m.per_sample_mpjpe(hyps, gt[:, None]).shape == (4, 3)


def test_pa_mpjpe_similarity_and_reflection():
    gt = rand_poses(6, seed=1)
    rot = Rotation.random(6, random_state=2).as_matrix()
    scale = np.array([0.5, 1.0, 1.7, 2.0, 0.9, 3.0])
    shift = np.random.default_rng(3).normal(0, 2, (6, 1, 3))
    pred = scale[:, None, None] * np.einsum("nij,nkj->nki", rot, gt) + shift
    assert m.mpjpe(pred, gt) > 0.1
    assert m.pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(m.procrustes_align(pred, gt), gt, atol=1e-9)

    mirrored = gt * np.array([-1.0, 1.0, 1.0])                     # a reflection: no rotation undoes it
    assert m.pa_mpjpe(mirrored, gt) > 0.05
    assert m.pa_mpjpe(mirrored, gt, allow_reflection=True) == pytest.approx(0.0, abs=1e-9)


def test_pa_mpjpe_fits_on_masked_joints_only():
    gt = rand_poses(3, seed=4)
    rot = Rotation.from_euler("z", 40, degrees=True).as_matrix()
    pred = 1.3 * gt @ rot.T + 0.5
    pred[:, 20:] += 1.0                                            # garbage outside the mask
    pred[:, 23] = np.nan
    mask = np.zeros((3, N_JOINTS), bool)
    mask[:, :20] = True
    assert m.pa_mpjpe(pred, gt, mask) == pytest.approx(0.0, abs=1e-9)
    assert m.pa_mpjpe(pred[:, :23], gt[:, :23]) > 0.01


# ------------------------------------------------------------------------------------------ bones

def test_bone_length_error_and_asymmetry():
    gt = tpose()
    pelvis = gt[0]
    bigger = pelvis + 1.1 * (gt - pelvis)                          # every bone 10 % longer
    lengths = np.linalg.norm(gt[m.BONES[:, 0]] - gt[m.BONES[:, 1]], axis=-1)
    assert m.bone_length_error(bigger, gt) == pytest.approx(0.1 * lengths.mean())
    assert m.left_right_asymmetry(gt) == pytest.approx(0.0, abs=1e-12)

    longer = gt.copy()                                             # left forearm 2 cm longer, hand follows
    for name in ("wrist_l", "hand_end_l"):
        longer[INDEX[name], 0] += 0.02
    assert m.bone_length_error(longer, gt) == pytest.approx(0.02 / 23)
    assert m.left_right_asymmetry(longer) == pytest.approx(0.02 / 9)   # 9 mirrored bone pairs


# ------------------------------------------------------------------------------------------ motion

def constant_acceleration_take(T=10, fps=30.0):
    t = np.arange(T)[:, None, None] / fps
    rng = np.random.default_rng(5)
    x0, v, a = rng.normal(size=(3, 1, N_JOINTS, 3))
    return x0 + v * t + 0.5 * a * t ** 2


def test_acceleration_error():
    fps, T = 30.0, 10
    take = constant_acceleration_take(T, fps)
    assert m.acceleration_error(take, take.copy(), fps) == pytest.approx(0.0, abs=1e-9)
    pert = take.copy()
    pert[5, 3] += np.array([0.0, 0.006, 0.008])                    # 1 cm spike on one joint, one frame
    # The spike enters three second differences as +d, -2d, +d (times fps^2) among (T-2) * 24 values.
    expected = (1 + 2 + 1) * 0.01 * fps ** 2 / ((T - 2) * N_JOINTS)
    assert m.acceleration_error(pert, take, fps) == pytest.approx(expected)


def test_foot_skate():
    fps, T = 30.0, 20
    static = np.repeat(tpose()[None], T, axis=0)
    static[:, :16, 2] += 0.1 * np.sin(np.arange(T))[:, None]       # upper body moves, feet planted
    assert m.foot_skate(static, fps) == 0.0

    sliding = static.copy()
    left = [INDEX["ankle_l"], INDEX["toe_l"]]
    sliding[:, left, 0] += 0.5 * np.arange(T)[:, None] / fps        # left foot slides at 0.5 m/s
    right = [INDEX["ankle_r"], INDEX["toe_r"]]
    sliding[:, right, 2] += 0.3                                    # right foot in the air ...
    sliding[:, right, 0] += 2.0 * np.arange(T)[:, None] / fps       # ... swinging fast: not skating
    # Ground is the toe height (0.02 m); the ankle (0.08 m) sits above the 5 cm band: only toe_l counts.
    assert m.foot_skate(sliding, fps) == pytest.approx(0.5)
    sliding[:, INDEX["ankle_l"], 2] = 0.03                          # ankle lowered into the band, same speed
    assert m.foot_skate(sliding, fps) == pytest.approx(0.5)

    rising = static.copy()
    rising[:, m.FOOT_JOINTS, 2] = np.arange(T)[:, None] * 0.2        # touches ground on one frame only
    assert m.foot_skate(rising, fps) == 0.0


# ------------------------------------------------------------------------------------------ diversity, distributions

def test_apd():
    a = tpose()
    b = a + np.array([0.3, 0.4, 0.0])
    assert m.apd(np.stack([a, b])) == pytest.approx(0.5)
    c = a + np.array([0.0, 0.0, 1.0])
    # pairs: a-b 0.5, a-c 1.0, b-c sqrt(0.3^2 + 0.4^2 + 1)
    assert m.apd(np.stack([a, b, c])) == pytest.approx((0.5 + 1.0 + np.sqrt(1.25)) / 3)
    batch = np.stack([np.stack([a, b]), np.stack([a, c])])
    np.testing.assert_allclose(m.apd(batch), [0.5, 1.0])
    many = rand_poses(300, seed=6)                                 # blocked path vs direct formula
    d = np.linalg.norm(many[:, None] - many[None], axis=-1).mean(-1)
    assert m.apd(many) == pytest.approx(d[np.triu_indices(300, 1)].mean())


def brute_prc(g, r, k):
    g, r = g.reshape(len(g), -1), r.reshape(len(r), -1)
    d_rr = np.linalg.norm(r[:, None] - r[None], axis=-1)
    d_gg = np.linalg.norm(g[:, None] - g[None], axis=-1)
    d_gr = np.linalg.norm(g[:, None] - r[None], axis=-1)
    rad_r, rad_g = np.sort(d_rr, 1)[:, k], np.sort(d_gg, 1)[:, k]
    return ((d_gr <= rad_r[None]).any(1).mean(), (d_gr <= rad_g[:, None]).any(0).mean(),
            (d_gr.min(0) <= rad_r).mean())


def test_precision_recall_coverage_toy_sets():
    real = rand_poses(200, seed=7)
    assert tuple(m.precision_recall_coverage(real, real.copy(), k=5)) == (1.0, 1.0, 1.0)
    far = rand_poses(200, seed=8) + 100.0
    assert tuple(m.precision_recall_coverage(far, real, k=5)) == (0.0, 0.0, 0.0)

    # Real poses in two far clusters, generated poses reproduce one of them: half recall and coverage.
    two = np.concatenate([real[:100], real[100:] + 50.0])
    prc = m.precision_recall_coverage(real[:100], two, k=5)
    assert prc.precision == 1.0 and prc.recall == 0.5 and prc.coverage == 0.5

    gen = rand_poses(150, seed=9, scale=0.35)
    np.testing.assert_allclose(tuple(m.precision_recall_coverage(gen, real, k=3)), brute_prc(gen, real, 3))


def test_precision_finds_large_far_ball():
    # A query lies in no ball of its 32+ nearest real poses (a tight cluster) but inside the big ball of a
    # farther outlier: the exact fallback must find it.
    e = np.zeros((N_JOINTS, 3))
    e[1, 0] = 1.0
    cluster = rand_poses(40, seed=10, scale=0.001)
    real = np.concatenate([cluster, [3.0 * e]])
    query = np.stack([1.2 * e, 1.2 * e + 1e-4])
    assert m.precision_recall_coverage(query, real, k=5).precision == 1.0
    np.testing.assert_allclose(tuple(m.precision_recall_coverage(query, real, k=1)), brute_prc(query, real, 1))


def test_frechet_distance():
    a = rand_poses(500, seed=11)
    a[:, 0] = 0.0                                                  # pelvis pinned: singular covariance
    assert m.frechet_distance(a, a.copy()) == pytest.approx(0.0, abs=1e-6)
    shift = np.random.default_rng(12).normal(0, 0.1, (N_JOINTS, 3))
    assert m.frechet_distance(a, a + shift) == pytest.approx((shift ** 2).sum(), rel=1e-6)
    a, b = rand_poses(5000, seed=13, scale=0.3), rand_poses(5000, seed=14, scale=0.6)
    # Isotropic covariances s1^2 I, s2^2 I: FD = d (s1 - s2)^2 (up to sampling error).
    assert m.frechet_distance(a, b) == pytest.approx(72 * 0.3 ** 2, rel=0.05)


# ------------------------------------------------------------------------------------------ completion baselines

def canonical_train(n=400, seed=14):
    x = tpose()[None] + rand_poses(n, seed=seed, scale=0.1)
    return x - x[:, :1]                                            # pelvis at the origin


def test_nearest_neighbour_returns_hidden_training_pose():
    train = canonical_train()
    nn = NearestNeighbourCompletion(train)
    rows = np.arange(0, 400, 5)                                    # 80 queries: the kd-tree path
    known = np.ones((len(rows), N_JOINTS), bool)
    known[:, 16:20] = False                                        # left leg hidden
    query = train[rows].copy()
    query[~known] = np.nan
    np.testing.assert_array_equal(nn.complete(query, known), train[rows])

    rng = np.random.default_rng(15)                                # random masks: the brute-force path
    known = rng.random((len(rows), N_JOINTS)) > 0.5
    known[:, 0] = True
    query = train[rows].copy()
    query[~known] = 123.0                                          # unknown values must be ignored
    np.testing.assert_array_equal(nn.complete(query, known), train[rows])

    out = nn.complete(query, known, k=3)
    assert out.shape == (len(rows), 3, N_JOINTS, 3)
    np.testing.assert_array_equal(out[:, 0], train[rows])
    pasted = np.broadcast_to(known[:, None], out.shape[:3])
    np.testing.assert_array_equal(out[pasted], np.broadcast_to(query[:, None], out.shape)[pasted])


def test_nearest_neighbour_tree_and_brute_agree():
    train = canonical_train(300, seed=16)
    queries = canonical_train(100, seed=17)
    known = np.ones((100, N_JOINTS), bool)
    known[:, 6:11] = False
    tree = NearestNeighbourCompletion(train)
    brute = NearestNeighbourCompletion(train)
    brute.TREE_MIN_GROUP = 10 ** 9
    np.testing.assert_array_equal(tree.neighbours(queries, known, k=4), brute.neighbours(queries, known, k=4))
    with pytest.raises(ValueError):
        tree.complete(queries, np.zeros((100, N_JOINTS), bool))


def test_gaussian_conditional_mean_2d_closed_form():
    # Only two coordinates vary (joint 3 z = u, joint 4 z = v, correlated): E[v | u] in closed form.
    rng = np.random.default_rng(18)
    u = rng.normal(0.2, 0.5, 2000)
    v = 1.0 + 0.8 * u + rng.normal(0, 0.1, 2000)
    train = np.zeros((2000, N_JOINTS, 3))
    train[:, 3, 2], train[:, 4, 2] = u, v
    ridge = 1e-6
    g = GaussianCompletion(train, ridge=ridge)
    c = np.cov(u, v)
    query = np.zeros((3, N_JOINTS, 3))
    query[:, 3, 2] = [-1.0, 0.0, 2.5]
    query[:, 4] = np.nan
    known = np.ones((3, N_JOINTS), bool)
    known[:, 4] = False
    out = g.complete(query, known)
    expected = v.mean() + c[0, 1] / (c[0, 0] + ridge) * (query[:, 3, 2] - u.mean())
    np.testing.assert_allclose(out[:, 4, 2], expected, rtol=1e-9)
    np.testing.assert_allclose(out[:, 4, :2], 0.0, atol=1e-12)
    np.testing.assert_array_equal(out[:, :4], query[:, :4])

    samples = g.sample(4000, rng=0)
    assert samples.shape == (4000, N_JOINTS, 3)
    np.testing.assert_allclose(np.cov(samples[:, 3, 2], samples[:, 4, 2]), c, rtol=0.1, atol=1e-3)


def test_gaussian_batched_solve_matches_per_mask_formula():
    train = canonical_train(500, seed=19)
    g = GaussianCompletion(train)
    queries = canonical_train(30, seed=20)
    known = np.random.default_rng(21).random((30, N_JOINTS)) > 0.4
    known[0] = False                                               # nothing known: the mean
    out = g.complete(queries, known)
    np.testing.assert_allclose(out[0].reshape(-1), g.mean, atol=1e-12)
    for i in range(1, 30):
        k = np.repeat(known[i], 3)
        x = queries[i].reshape(-1)
        cond = g.mean[~k] + g.cov[np.ix_(~k, k)] @ np.linalg.solve(g.cov[np.ix_(k, k)], x[k] - g.mean[k])
        np.testing.assert_allclose(out[i].reshape(-1)[~k], cond, atol=1e-7)
        np.testing.assert_array_equal(out[i].reshape(-1)[k], x[k])
    draws = g.sample_conditional(queries[:3], known[:3], n=4, rng=1)
    assert draws.shape == (3, 4, N_JOINTS, 3)
    for i in (1, 2):
        np.testing.assert_array_equal(draws[i][:, known[i]], np.repeat(queries[i][None, known[i]], 4, axis=0))
        assert np.ptp(draws[i][:, ~known[i]], axis=0).min() > 0         # unknown joints actually vary


# ------------------------------------------------------------------------------------------ temporal filters

def sine_take(fps=100.0, T=300, high=True):
    t = np.arange(T) / fps
    low = np.sin(2 * np.pi * 1.0 * t)
    noise = 0.2 * np.sin(2 * np.pi * 30.0 * t) if high else 0.0
    phase = np.linspace(0, 1, N_JOINTS * 3).reshape(1, N_JOINTS, 3)
    return low[:, None, None] + phase, (low + noise)[:, None, None] + phase


def test_butterworth_removes_high_frequency_keeps_low():
    clean, noisy = sine_take()
    out = butterworth(noisy, 100.0, cutoff_hz=6.0)
    assert np.abs(noisy - clean).max() > 0.15
    assert np.abs(out - clean)[20:-20].max() < 0.01
    # filtfilt's odd extension pins the end frames to the input, so the ends stay noisy; the rest is clean.
    assert m.mpjpe(out, clean) < 0.2 * m.mpjpe(noisy, clean)
    assert butterworth(noisy.astype(np.float32), 100.0, 6.0).dtype == np.float32
    assert np.isfinite(butterworth(noisy[:5], 100.0, 6.0)).all()   # shorter than filtfilt's padding


def test_nan_gaps_are_filled():
    T = 40
    take = np.repeat(tpose()[None], T, axis=0) + (np.arange(T) * 0.01)[:, None, None]   # linear drift
    holed = take.copy()
    holed[10:15, 3] = np.nan
    holed[20] = np.nan
    holed[:3, 7, 1] = np.nan                                       # leading gap: held at the first value
    filled = fill_gaps(holed)
    np.testing.assert_allclose(filled[3:], take[3:], atol=1e-12)
    np.testing.assert_allclose(filled[:3, 7], np.repeat(take[3:4, 7], 3, axis=0))
    other = np.arange(N_JOINTS) != 7     # joint 7's held start bends its path; the IIR filter smears that a bit
    for out in (butterworth(holed, 30.0, 5.0), savitzky_golay(holed, 7, 2), gaussian_smooth(holed, 2.0)):
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out[10:30, other], take[10:30, other], atol=1e-6)   # linear motion passes
        np.testing.assert_allclose(out[10:30, 7], take[10:30, 7], atol=1e-3)


def test_savgol_and_gaussian():
    T = 50
    t = np.arange(T)[:, None, None] / 30.0
    quad = tpose()[None] + 0.3 * t + 0.7 * t ** 2
    np.testing.assert_allclose(savitzky_golay(quad, 9, 2), quad, atol=1e-10)   # exact for polyorder 2
    assert savitzky_golay(quad, 100, 2).shape == quad.shape                    # window clipped to the take
    const = np.repeat(tpose()[None], T, axis=0)
    np.testing.assert_allclose(gaussian_smooth(const, 3.0), const, atol=1e-12)
    clean, noisy = sine_take()
    assert m.mpjpe(gaussian_smooth(noisy, 3.0), clean) < 0.3 * m.mpjpe(noisy, clean)
    assert m.mpjpe(savitzky_golay(noisy, 11, 2), clean) < 0.3 * m.mpjpe(noisy, clean)


def test_best_cutoff():
    clean, noisy = sine_take()
    best, scores = best_cutoff([clean, clean[:150]], [noisy, noisy[:150]], 100.0, [0.3, 6.0, 45.0])
    assert best == 6.0 and set(scores) == {0.3, 6.0, 45.0}
    best, _ = best_cutoff([clean], [noisy], 100.0, [1, 2.5, 40], method="gaussian")
    assert best == 2.5
    best, _ = best_cutoff([clean], [noisy], 100.0, [3, 7, 151], method="savgol")
    assert best == 7
