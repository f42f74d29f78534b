"""Tasks on whole takes with the motion prior: fill what is unknown (in-betweening, capture gaps) and denoise.

A take is longer than the model's window, so it is cut into windows:
- filling: one window per run of frames between known frames (several short runs share one), centred on it, so
  that every gap is filled by a window that sees the keys on both sides; neighbouring runs meet at a known frame;
- denoising: windows every half window, each taken as the take at a small noise level and brought back by the
  prior (SDEdit; by default its posterior mean in one step), blended with Hann weights that sum to one, so no seam
  shows (the take and its mirror image averaged), then low-passed per body part at the cutoff with the least
  estimated error (Stein's unbiased risk estimate, from the data alone).
Takes at another frame rate are resampled to the model's and back. Feet planted in the input stay planted.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

from gfpose_core.body.filters import butterworth, fill_gaps, resample, residual_cutoff
from gfpose_core.body.skeleton import (
    BODY_PARTS,
    BONE_MIRROR,
    BONES,
    Frame,
    fit_bone_lengths,
    mirror,
    settle_bone_lengths,
    take_bone_lengths,
)
from gfpose_core.body.skeleton import MIRROR as _MIRROR_JOINTS
from gfpose_core.motion.contacts import find_contacts, lock_feet
from gfpose_core.motion.windows import anchor_frame, stack_frames, take_scale
from gfpose_core.prior.denoise import estimate_jitter, find_spikes

# Filling: the motion model sees every known joint interpolated linearly between its keys and predicts the window's
# difference from that. The answer is the mean of FILL_SAMPLES posterior-mean estimates (the `tweedie` sampler
# from the interpolation noised to FILL_T_START), its wobble between keys then dropped (SMOOTH_BETWEEN_HZ).
# Measured on CMU / Bandai validation takes (6 takes each, full-pose keys every 10 / 30 frames, MPJPE mm on the
# frames between keys): linear interpolation 34.2 / 116.9 (CMU), 33.2 / 70.3 (Bandai); t 0.7 with 8 estimates
# 34.6 / 96.2, 34.5 / 71.1; t 1.0 36.1 / 98.9; t 0.5 38.8 / 111.2; mode-seeking 10 steps from t 1 43.4 / 150.9.
FILL_T_START = 0.7
FILL_SAMPLES = 4
# Without it the frames between keys wobble (mean acceleration 20-50 m/s² where the clean takes have 1-7).
SMOOTH_BETWEEN_HZ = 2.0
# Denoising: each window's posterior mean (`tweedie`, one evaluation) from the take itself, as if its jitter were
# the SDE's noise at NOISE_FRACTION times the jitter estimated from the take, then a low-pass per body part at the
# cutoff that minimises Stein's unbiased risk estimate of the whole result (POST_CUTOFF_HZ "sure"; or "residual":
# per joint by Winter's residual analysis of the result; or a fixed Hz). Measured on CMU / Bandai validation
# takes (6 each, 40 mm jitter + spikes + dropouts; best tuned Butterworth 31.0 / 30.5 mm): NOISE_FRACTION 1.0 /
# 1.15 / 1.5: 22.0 / 22.2 / 23.5 mm (CMU), 21.6 / 21.7 / 23.0 (Bandai), 1.15 the smoother; windows every quarter
# instead of half window: no change; mode-seeking 4 steps instead of tweedie: +6 mm. With mirror averaging:
# residual analysis 21.6 / 21.0, SURE per part 21.6 / 20.1 (per joint 21.8 / 20.3 but jerky: one random probe
# is too few for 3 x 120 numbers; one cutoff per take 21.5 / 20.7); on the 8 stillest Bandai windows (clean
# mean acceleration 0.25 m/s²) residual analysis leaves 16.7 mm and 0.97 m/s², SURE 15.0 mm and 0.36 m/s²: the
# network's leftover error there is slow, so residual analysis takes it for motion. At 20 / 100 mm jitter SURE
# is 0.3 / 0.4-3.4 mm better again. SURE assumes noise independent per coordinate; noise that comes through a rig's
# rotations is correlated along each chain and makes SURE trust the raw output (the demo's BVH armature: 31.6 mm
# with SURE alone, 24.4 with residual analysis), so the cutoff is never above residual analysis' for the joint:
# 23.8 mm there, and 21.6 / 20.1 mm, 15.0 mm and 0.32 m/s² on the takes above. Then the bones are settled on the
# take's median lengths (skeleton.settle_bone_lengths): 20.4 / 19.0 mm and 14.3 mm; pushing chains out from the
# pelvis instead (fit_bone_lengths) 23.0 / 21.2; lengths from the noisy input, debiased, 21.4 / 19.6.
POST_CUTOFF_HZ = "sure"
CUTOFF_GROUPS = np.array([next(i for i, p in enumerate(BODY_PARTS.values()) if j in p) for j in range(24)])
# With the low-pass and the settled bones doing part of the smoothing, a weaker prior step is better: NOISE_FRACTION
# 0.8 / 0.9 / 1.0 / 1.15 / 1.3: 20.3 / 20.1 / 20.1 / 20.4 / 20.8 mm (CMU), 18.4 / 18.4 / 18.5 / 19.0 / 19.6 (Bandai);
# on 12 other validation takes each 0.8 / 1.0 / 1.15 / 1.4: 20.5 / 20.4 / 20.8 / 21.9 and 16.0 / 16.1 / 16.4 / 17.4
# (choosing it per take with hindsight would gain under 1%).
NOISE_FRACTION = 1.0
# Half of the windows the prior sees are the take's mirror image (left and right swapped), mirrored back before
# averaging: the network is not exactly mirror-symmetric and its two answers err differently. Measured on the same
# validation takes: denoising 22.2 -> 21.7 mm (CMU), 21.7 -> 20.9 (Bandai), at the cost of twice the windows;
# in-betweening every 10 / 30 frames 34.6 / 96.2 -> 32.9 / 94.2 (CMU), 34.5 / 71.1 -> 33.3 / 66.5 (Bandai), and
# 4 estimates a window (each averaged with its mirror) do as well as 8, at the cost of 8.
MIRROR_AVERAGE = True
CONTEXT_FRAMES = 8           # known frames kept on each side of the runs a filling window serves
WINDOW_OVERLAP = 2           # windows covering each frame when denoising


def fill_plan(has_known: np.ndarray, W: int) -> list[tuple[int, int, int]]:
    """(T,) frames with any known joint -> [(window_start, first, last)]: the window [start, start + W) fills
    frames first..last. Raises ValueError where a stretch without known frames is longer than a window allows."""
    T = len(has_known)
    if not has_known.any():
        raise ValueError("take has no known joints")
    if T <= W:
        return [(0, 0, T - 1)]
    cuts = sorted(set(np.flatnonzero(has_known).tolist()) | {0, T - 1})
    for a, b in zip(cuts, cuts[1:]):
        if b - a + 1 > W:
            raise ValueError(f"frames {a + 1}-{b - 1} ({b - a - 1} frames) have no known joint: the motion model "
                             f"fills at most {W - 2} frames between known frames")
    plan, i = [], 0
    while i < len(cuts) - 1:
        first, j = cuts[i], i + 1
        while j + 1 < len(cuts) and cuts[j + 1] - first + 1 <= W - 2 * CONTEXT_FRAMES:
            j += 1
        last = cuts[j]
        start = int(np.clip(round((first + last + 1) / 2 - W / 2), 0, T - W))
        plan.append((start, first, last))
        i = j
    return plan


def sliding_plan(T: int, W: int, hop: int | None = None) -> list[int]:
    """Window starts every `hop` frames (default half a window), the last one flush with the end."""
    if T <= W:
        return [0]
    starts = list(range(0, T - W + 1, hop or W // 2))
    if starts[-1] != T - W:
        starts.append(T - W)
    return starts


def hann(W: int) -> np.ndarray:
    return np.sin(np.pi * (np.arange(W) + 0.5) / W) ** 2


def _pad(take: np.ndarray, known: np.ndarray, W: int):
    """A take shorter than the window: padded by holding its last frame, the padding unknown."""
    T = len(take)
    if T >= W:
        return take, known
    reps = W - T
    return (np.concatenate([take, np.repeat(take[-1:], reps, 0)]),
            np.concatenate([known, np.zeros((reps,) + known.shape[1:], bool)]))


def _repeat_frame(frame: Frame, k: int) -> Frame:
    return Frame(*(np.repeat(v, k, 0) for v in (frame.root, frame.yaw, frame.scale)))


def _mirror_averaged(run, wins: np.ndarray, known: np.ndarray, anchors: np.ndarray, scale: float,
                     mean_pose) -> np.ndarray:
    """run(windows, known, frames) on the windows, and (MIRROR_AVERAGE) on their mirror images in the same batch,
    the two answers averaged. Each window's frame of reference comes from its joints where `anchors` is true.
    Mirroring flips world X, which is horizontal (Z is up)."""
    if MIRROR_AVERAGE:
        wins = np.concatenate([wins, mirror(wins)])
        known, anchors = (np.concatenate([m, m[..., _MIRROR_JOINTS]]) for m in (known, anchors))
    frame = stack_frames([anchor_frame(np.where(a[..., None], w, np.nan), scale, mean_pose)
                          for w, a in zip(wins, anchors)])
    out = run(wins, known, frame)
    if not MIRROR_AVERAGE:
        return out
    n = len(out) // 2
    return 0.5 * (out[:n] + mirror(out[n:]))


def fill(prior, take: np.ndarray, known: np.ndarray, scale: float, *, sampler: str, steps: int, generator,
         t_start: float | None = None, callback=None) -> np.ndarray:
    """Sample every unknown joint of a take (at the model's rate) given the known ones; known ones come back.

    t_start < 1 starts from the known joints interpolated over time (linearly), noised to t_start, instead of
    from pure noise: the prior then corrects an interpolation rather than inventing the motion anew. Each window
    is sampled FILL_SAMPLES times and the results averaged (with the `tweedie` sampler: the posterior mean)."""
    T, W = len(take), prior.frames
    t_start = FILL_T_START if t_start is None else t_start
    plan = fill_plan(known.any(-1), W)
    masked = np.where(known[..., None], take, np.nan)
    guess = fill_gaps(masked) if t_start < 1 else masked
    if t_start < 1 and not np.isfinite(guess).all():   # joints never known: the prior starts them from noise
        t_start, guess = 1.0, masked
    padded, pknown = _pad(guess, known, W)
    wins = np.stack([padded[s:s + W] for s, _, _ in plan])
    wknown = np.stack([pknown[s:s + W] for s, _, _ in plan])
    K = FILL_SAMPLES
    out = _mirror_averaged(
        lambda w, k, frame: prior.sample(np.repeat(w, K, 0), np.repeat(k, K, 0), _repeat_frame(frame, K),
                                         sampler=sampler, steps=steps, generator=generator, t_start=t_start,
                                         from_observation=t_start < 1, start_noise=True, callback=callback
                                         ).reshape((len(w), K) + w.shape[1:]).mean(1),
        wins, wknown, wknown, scale, prior.mean_pose)
    acc, cnt = np.zeros(take.shape), np.zeros(T)
    for (s, first, last), w in zip(plan, out):
        acc[first:last + 1] += w[first - s:last - s + 1]
        cnt[first:last + 1] += 1
    result = acc / cnt[:, None, None]
    return np.where(known[..., None], take, result)


def smooth_by_prior(prior, take: np.ndarray, scale: float, t0: float, *, sampler: str, steps: int, generator,
                    callback=None) -> np.ndarray:
    """SDEdit over sliding windows: each window starts at t0 from the take itself; Hann-weighted blend."""
    T, W = len(take), prior.frames
    padded, _ = _pad(take, np.ones(take.shape[:2], bool), W)
    starts = sliding_plan(T, W, W // WINDOW_OVERLAP)
    wins = np.stack([padded[s:s + W] for s in starts])
    none = np.zeros(wins.shape[:3], bool)
    out = _mirror_averaged(
        lambda w, k, frame: prior.sample(w, k, frame, sampler=sampler, steps=steps, generator=generator,
                                         t_start=t0, from_observation=True, callback=callback),
        wins, none, ~none, scale, prior.mean_pose)
    weight = hann(W)
    acc, cnt = np.zeros(padded.shape), np.zeros(len(padded))
    for s, w in zip(starts, out):
        acc[s:s + W] += weight[:, None, None] * w
        cnt[s:s + W] += weight
    return (acc / cnt[:, None, None])[:T]


def post_filter(take: np.ndarray, fps: float, cutoff) -> np.ndarray:
    """Zero-phase low-pass: cutoff in Hz, one per joint (inf: left as is), or "residual" (per joint, by Winter's
    residual analysis of the take itself)."""
    if len(take) < 10:
        return take
    fc = residual_cutoff(take, fps) if isinstance(cutoff, str) else np.broadcast_to(cutoff, take.shape[1:2])
    out = take.copy()
    for f in np.unique(fc[np.isfinite(fc) & (fc < 0.5 * fps)]):
        sel = fc == f
        out[:, sel] = butterworth(take[:, sel], fps, float(f))
    return out


def sure_cutoff(y, known, denoised, response, probe, noise: float, fps: float, groups: np.ndarray,
                grid=None) -> np.ndarray:
    """Low-pass cutoffs (Hz) for a denoiser's output chosen by Stein's unbiased risk estimate of the whole
    pipeline (denoiser then Butterworth) against the unseen clean take, from the data alone:
    SURE(f) = |L_f D(y) - y|^2 - n noise^2 + 2 noise^2 div(L_f D)(y) over the measured coordinates, the divergence
    by Hutchinson's estimator from the denoiser's response to one random probe (response = dD/dy . probe), which
    the linear filter passes on. One cutoff per group of joints (groups: (24,) labels), inf where leaving the
    output as is scores best."""
    grid = np.arange(0.5, 0.4 * fps, 0.5) if grid is None else np.asarray(grid, np.float64)
    w = known[..., None].astype(np.float64)
    n = w.sum(0)[:, 0] * 3

    def risk(out, resp):
        divergence = (probe * resp * w).sum((0, 2))
        return np.bincount(groups, ((out - y) ** 2 * w).sum((0, 2)) - n * noise ** 2 + 2 * noise ** 2 * divergence)

    best = risk(denoised, response)
    cutoff = np.full(best.shape, np.inf)
    for f in grid:
        r = risk(butterworth(denoised, fps, float(f)), butterworth(response, fps, float(f)))
        cutoff, best = np.where(r < best, f, cutoff), np.minimum(r, best)
    return cutoff[groups]


def smooth_between_keys(motion: np.ndarray, known: np.ndarray, fps: float, cutoff_hz: float) -> np.ndarray:
    """Keep of each joint's departure from the straight line between two of its keys only the slow part: its
    projection on the sine modes of the gap below cutoff_hz (each zero at both keys, so keys stay where they are
    and the path leaves and meets them without a kink). A few sampler steps leave frame-to-frame wobble that no
    animator keys; the arc, anticipation and overshoot the prior adds are slower than that. Frames before a
    joint's first key and after its last are left as they are."""
    out = motion.copy()
    line = fill_gaps(np.where(known[..., None], motion, np.nan))
    gaps: dict[int, list[tuple[int, int]]] = {}          # gaps of one length share their projection
    for j in range(motion.shape[1]):
        keys = np.flatnonzero(known[:, j])
        for a, n in zip(keys[:-1], np.diff(keys)):
            if n >= 2:
                gaps.setdefault(int(n), []).append((int(a), j))
    for n, where in gaps.items():
        modes = max(1, int(2 * n / fps * cutoff_hz))
        u = np.arange(1, n) / n
        basis = np.sin(np.pi * np.arange(1, modes + 1)[None] * u[:, None])          # (n-1, modes)
        project = basis @ np.linalg.pinv(basis)
        a, j = np.array(where).T
        frames = a[:, None] + np.arange(1, n)[None]                                # (G, n-1)
        joint = j[:, None]
        r = motion[frames, joint] - line[frames, joint]                            # (G, n-1, 3)
        out[frames, joint] = line[frames, joint] + np.einsum("fg,kgc->kfc", project, r)
    return out


# -- frame rates ----------------------------------------------------------------------------------------------
def from_rate(motion: np.ndarray, rate: float, fps: float, T: int) -> np.ndarray:
    """Back from the model's rate to T frames at `fps` (cubic spline through the model's frames)."""
    if abs(fps - rate) < 1e-6:
        return motion[:T]
    t_model = np.arange(len(motion)) / rate
    if len(motion) < 2:
        return np.repeat(motion[:1], T, 0)
    spline = CubicSpline(t_model, motion, axis=0)
    return spline(np.clip(np.arange(T) / fps, 0, t_model[-1]))


# -- the two tasks --------------------------------------------------------------------------------------------
def inbetween_take(engine, take: np.ndarray, known: np.ndarray, fps: float, *, sampler: str, steps: int,
                   generator, t_start: float | None = None, lock: bool = True, callback=None) -> np.ndarray:
    """Fill every unknown joint of every frame; known joints exact; bones keep the take's lengths; a foot that
    stays put between two keys on the ground stays put in between."""
    prior = engine.motion
    rate = prior.space.fps
    masked = np.where(known[..., None], take, np.nan)
    if abs(fps - rate) < 1e-6:
        at_rate, k_rate, key_of = masked, known, np.arange(len(take))
    else:
        # each key lands on the model frame nearest its time
        n = int(round((len(take) - 1) * rate / fps)) + 1
        key_of = np.minimum(np.round(np.arange(len(take)) * rate / fps).astype(int), n - 1)
        at_rate, k_rate = np.full((n,) + take.shape[1:], np.nan), np.zeros((n, take.shape[1]), bool)
        for f in np.flatnonzero(known.any(-1)):
            at_rate[key_of[f]] = np.where(known[f, :, None], take[f], at_rate[key_of[f]])
            k_rate[key_of[f]] |= known[f]
    scale = take_scale(at_rate, prior.space.reference_bones)
    out = fill(prior, at_rate, k_rate, scale, sampler=sampler, steps=steps, generator=generator,
               t_start=t_start, callback=callback)
    if SMOOTH_BETWEEN_HZ:
        out = smooth_between_keys(out, k_rate, rate, SMOOTH_BETWEEN_HZ)
    out = from_rate(out, rate, fps, len(take))
    lengths = np.repeat(take_bone_lengths(masked, prior.space.reference_bones * scale)[None], len(take), 0)
    out = fit_bone_lengths(np.where(known[..., None], take, out), lengths, known)
    if lock:
        out = lock_feet(out, key_contacts(take, known, fps, len(take)), fixed=known, lengths=lengths)
    return np.where(known[..., None], take, out)


def key_contacts(take: np.ndarray, known: np.ndarray, fps: float, T: int) -> np.ndarray:
    """Contacts the keys imply: a foot joint on the ground at two consecutive keys, in the same place, is planted
    on every frame between them."""
    from gfpose_core.motion.contacts import FOOT_JOINTS, HEIGHT_M, ground_height
    out = np.zeros((T, len(FOOT_JOINTS)), bool)
    masked = np.where(known[..., None], take, np.nan)
    ground = ground_height(masked)
    for k, j in enumerate(FOOT_JOINTS):
        keys = np.flatnonzero(known[:, j])
        for a, b in zip(keys, keys[1:]):
            pa, pb = take[a, j], take[b, j]
            if max(pa[2], pb[2]) <= ground + HEIGHT_M and np.linalg.norm(pa[:2] - pb[:2]) < 0.05:
                out[a:b + 1, k] = True
    return out


def denoise_motion(engine, take: np.ndarray, fps: float, strength, *, sampler: str, steps: int, generator,
                   fill_with: tuple[str, int], lock: bool = True, callback=None) -> np.ndarray:
    """Spikes and dropouts filled by the prior from the rest of the take (sampler and steps `fill_with`, as
    in-betweening), then jitter removed by it from a small noise level (`sampler`, `steps`)."""
    prior = engine.motion
    rate = prior.space.fps
    x = resample(take, fps, rate)   # linear; a joint unknown at either neighbour stays NaN
    finite = np.isfinite(x).all(-1)
    filled = fill_gaps(np.where(finite[..., None], x, np.nan))
    spikes = find_spikes(filled, jitter=estimate_jitter(filled)) if len(x) >= 3 else np.zeros(finite.shape, bool)
    known = finite & ~spikes
    scale = take_scale(np.where(known[..., None], x, np.nan), prior.space.reference_bones)
    if (~known).any():
        x = fill(prior, np.where(known[..., None], x, np.nan), known, scale, sampler=fill_with[0],
                 steps=fill_with[1], generator=generator)
    jitter = estimate_jitter(fill_gaps(np.where(known[..., None], x, np.nan)))
    if strength is None:
        ratio = NOISE_FRACTION * jitter / (scale * prior.space.std)
        t0 = prior.sde.t_for_noise_ratio(max(ratio, 1e-3))
    else:
        t0 = 0.5 * strength
    cutoff = np.inf if POST_CUTOFF_HZ == "sure" else POST_CUTOFF_HZ
    if t0 > 2e-3:
        y = x
        x = smooth_by_prior(prior, y, scale, t0, sampler=sampler, steps=steps, generator=generator,
                            callback=callback)
        if POST_CUTOFF_HZ == "sure" and jitter > 0:       # no measured jitter: nothing for a low-pass to remove
            # Hutchinson's probe: a random +-1 nudge of the measured coordinates, small against the jitter.
            probe = np.where(known[..., None], np.random.default_rng(0).choice([-1.0, 1.0], size=y.shape), 0.0)
            nudge = 0.1 * jitter
            moved = smooth_by_prior(prior, y + nudge * probe, scale, t0, sampler=sampler, steps=steps,
                                    generator=generator)
            cutoff = sure_cutoff(y, known, x, (moved - x) / nudge, probe, jitter, rate, CUTOFF_GROUPS)
            cutoff = np.minimum(cutoff, residual_cutoff(from_rate(x, rate, fps, len(take)), fps))
    out = post_filter(from_rate(x, rate, fps, len(take)), fps, cutoff)
    # A captured body keeps its bone lengths: the result is settled onto the lengths it has most of the time; a bone
    # the take never showed whole takes its mirror bone's, else the reference body's at the take's scale (the
    # network's own guess of it is only as good as its answer, centimetres off).
    lengths = take_bone_lengths(out, prior.space.reference_bones * scale)
    seen = (known[:, BONES[:, 0]] & known[:, BONES[:, 1]]).any(0)
    unseen_length = np.where(seen[BONE_MIRROR], lengths[BONE_MIRROR], prior.space.reference_bones * scale)
    out = settle_bone_lengths(out, np.where(seen, lengths, unseen_length))
    if lock:
        out = lock_feet(out, find_contacts(out, fps))
    return out


HOLD_SPAN = 0.05      # metres: keys whose joints differ by less are a hold, or nearly one


def held(take: np.ndarray, known: np.ndarray, out: np.ndarray) -> np.ndarray:
    """In-betweens with holds held: between two whole keys (every joint known) whose poses differ by d (the
    furthest a joint moves from one to the other), the frames are the straight blend of the keys plus d / HOLD_SPAN
    of the engine's own motion about it (all of it from HOLD_SPAN on). Identical keys give the key pose on every
    frame; keys a few millimetres apart, motion of a few millimetres."""
    whole = np.flatnonzero(known.all(-1))
    out = out.copy()
    for a, b in zip(whole[:-1], whole[1:]):
        if b - a < 2:
            continue
        d = float(np.linalg.norm(take[b] - take[a], axis=-1).max())
        w = min(d / HOLD_SPAN, 1.0)
        if w >= 1.0:
            continue
        s = (np.arange(a + 1, b) - a)[:, None, None] / (b - a)
        straight = (1 - s) * take[a] + s * take[b]
        gap = slice(a + 1, b)
        out[gap] = np.where(known[gap][..., None], out[gap], straight + w * (out[gap] - straight))
    return out
