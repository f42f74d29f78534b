"""Benchmark section: speed of every task, evaluations per completion and the speed/quality curve."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from gfpose_core.bench.common import (
    COMPLETION_SETTINGS,
    BenchData,
    Sizes,
    _log,
    _mm,
    _pick_takes,
    _r,
    _rng,
    _test_poses,
    _threads,
    _timed,
)
from gfpose_core.bench.completion import unknown_masks
from gfpose_core.bench.generation import project_random_yaw


def count_flops(net) -> int:
    """FLOPs of one network evaluation for one sample: 2 * in * out for every Linear layer actually called."""
    import torch
    total = [0]
    hooks = [m.register_forward_hook(lambda mod, i, o: total.__setitem__(0, total[0] + 2 * mod.in_features
                                                                         * mod.out_features))
             for m in net.modules() if isinstance(m, torch.nn.Linear)]
    try:
        p = next(net.parameters())
        d = net.cfg.pose_dim
        with torch.inference_mode():
            net(torch.zeros(1, d, device=p.device), torch.full((1,), 0.5, device=p.device),
                torch.zeros(1, net.cfg.cond_dim, device=p.device))
    finally:
        for h in hooks:
            h.remove()
    return int(total[0])


def machine_gflops(device) -> float:
    """Measured fp32 matmul rate (GFLOP/s) of a 2048 x 2048 product on the device (best of three trials, so that
    a moment of contention from other processes does not set the floor)."""
    import torch
    n = 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = 0.0
    for _ in range(3):
        sync()
        reps, t = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - t < 0.3:
            a @ b
            reps += 1
        sync()
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


EVALS_PER_STEP = {"em": 1, "mode": 1, "heun": 2, "sde_heun": 2, "tweedie": 1}


def _evals(sampler: str, steps: int) -> int:
    return EVALS_PER_STEP[sampler] * steps


def _best_guess_evals(engine) -> int:
    """Network evaluations of one default completion: the sampler's steps, and the passes of the mean's networks
    (the body-told one's count twice, mirrored, and each is about 1.6x the score network's FLOPs)."""
    from gfpose_core.engine import DEFAULTS
    steps = engine._best_guess_steps()
    if engine.body_mean is not None:
        passes = len(engine.body_mean.nets) * (2 if engine.body_mean.MIRROR_AVERAGE else 1)
    else:
        passes = 0 if engine.posterior_mean is None else len(engine.posterior_mean.nets)
    return EVALS_PER_STEP[DEFAULTS["complete"][0]] * steps + passes


def _latency(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls; with more than one, a first untimed call warms up (allocations, imports)."""
    if repeats > 1:
        fn()
    times = []
    for _ in range(repeats):
        _, dt = _timed(fn)
        times.append(dt)
    return float(np.median(times))


def _http_latency(engine, joints: np.ndarray, known: np.ndarray, repeats: int) -> float:
    """Median seconds of one /complete request to a real server on loopback (JSON both ways)."""
    import httpx

    from gfpose_core.service.server import ServerThread
    body = {"joints": np.where(known[..., None], joints, np.nan).tolist(), "seed": 0}
    body["joints"] = [[[None if v != v else v for v in j] for j in pose] for pose in body["joints"]]
    with ServerThread(engine) as url, httpx.Client(base_url=url, timeout=60) as client:
        return _latency(lambda: client.post("/complete", json=body).raise_for_status(), repeats)


def time_tasks(engine, data: BenchData, sizes: Sizes) -> dict:
    """Seconds per task call on this engine's device (median of repeats for the short ones)."""
    from gfpose_core.engine import DEFAULTS
    cmu = data.sets["cmu"]
    poses = _test_poses(cmu, sizes.speed_batch, _rng("speed"))
    unknown = unknown_masks("one_leg", len(poses), _rng("speed-mask"))
    query = np.where(unknown[..., None], np.nan, poses)
    clean = _pick_takes(cmu, "test", 1, min(300, sizes.denoise_timing_frames), _rng("speed-take"))[0]
    reps = int(math.ceil(sizes.denoise_timing_frames / len(clean)))
    long = np.concatenate([clean if k % 2 == 0 else clean[::-1] for k in range(reps)])[:sizes.denoise_timing_frames]
    long = long + _rng("speed-noise").normal(0, 0.02, long.shape)
    canon, _ = engine._canonical(poses[:1])
    kp, _ = project_random_yaw(canon, _rng("speed-camera"))
    r = sizes.latency_repeats
    t = {
        "complete_1": _latency(lambda: engine.complete(query[:1], ~unknown[:1], seed=0), max(2, r)),
        "complete_1_h10": _latency(lambda: engine.complete(query[:1], ~unknown[:1], n_hypotheses=10, seed=0), r),
        "complete_batch": _latency(lambda: engine.complete(query, ~unknown, seed=0), 1),
        "denoise_take": _latency(lambda: engine.denoise(long, fps=30.0, temporal=False), 1),  # one-off
        "generate_batch": _latency(lambda: engine.generate(sizes.speed_generate, seed=0), max(1, r // 3)),
        "lift_1_h10": _latency(lambda: engine.lift(kp, n_hypotheses=10, seed=0), r),
        "lift_1_hmany": _latency(lambda: engine.lift(kp, n_hypotheses=sizes.speed_hypotheses, seed=0),
                                 max(1, r // 3)),
        "complete_1_http": _http_latency(engine, query[:1], ~unknown[:1], max(5, r)),
    }
    single = _best_guess_evals(engine)
    n_eval = {
        "complete_1": single,
        "complete_1_h10": 10 * _evals(*DEFAULTS["hypotheses"]),
        "complete_batch": len(poses) * single,
        # the default denoising sampler runs its full step count from the estimated t0, once per frame
        "denoise_take": len(long) * _evals(*DEFAULTS["denoise"]),
        "generate_batch": sizes.speed_generate * _evals(*DEFAULTS["generate"]),
        "lift_1_h10": 10 * _evals(*DEFAULTS["lift"]),
        "lift_1_hmany": sizes.speed_hypotheses * _evals(*DEFAULTS["lift"]),
        "complete_1_http": single,
    }
    what = {"complete_1": "complete 1 keyframe (one leg unknown)",
            "complete_1_h10": "complete 1 keyframe, 10 hypotheses",
            "complete_batch": f"complete {len(poses)} keyframes in one call",
            "denoise_take": f"denoise one take of {len(long)} frames (20 mm jitter), per-frame engine",
            "generate_batch": f"generate {sizes.speed_generate} free poses",
            "lift_1_h10": "lift 1 pose, 10 hypotheses",
            "lift_1_hmany": f"lift 1 pose, {sizes.speed_hypotheses} hypotheses",
            "complete_1_http": "complete 1 keyframe through `gfpose serve` (HTTP on loopback, one request at a time)"}
    return {"seconds": {k: _r(v, 5) for k, v in t.items()}, "sample_evals": n_eval, "tasks": what,
            "denoise_frames": int(len(long))}


def bvh_read_all(data_dir=None) -> dict:
    """Cold read + conversion of every BVH clip (no cache): gfpose_core.data.load_take on each file."""
    from gfpose_core.data import DATA_DIR, load_take
    d = Path(data_dir) if data_dir is not None else DATA_DIR
    files = sorted((d / "cmu" / "bvh").glob("*.bvh*")) + sorted((d / "bandai" / "data").glob("*.bvh*"))
    t = time.perf_counter()
    frames = 0
    for f in files:
        frames += len(load_take(f).joints)
    return {"seconds": _r(time.perf_counter() - t, 3), "files": len(files), "frames": int(frames)}


EM_POINT = "em_mean"     # the curve's label for Euler-Maruyama's point estimate: the mean of several draws


def quality_curve(engine, data: BenchData, sizes: Sizes) -> list[dict]:
    """Completion MPJPE on the unknown joints (CMU test, the five unknown sets in turn) against sampler steps.

    Like is compared with like: complete() with no sampler named returns one point estimate (the "default" row),
    so Euler-Maruyama, whose single draw is a sample and not an estimate, is also scored by the mean of
    `sizes.em_point_draws` draws (EM_POINT rows, timed for all of them); its single draws ("em" rows, the mean
    MPJPE of one draw) come from the same run. The samplers' rows are the named sampler's own answer.
    """
    from gfpose_core.bench.metrics import mpjpe
    from gfpose_core.engine import DEFAULTS
    gt = _test_poses(data.sets["cmu"], sizes.n_curve, _rng("curve"))
    rng = _rng("curve-masks")
    unknown = np.concatenate([unknown_masks(COMPLETION_SETTINGS[i % 5], 1, rng) for i in range(len(gt))])
    query = np.where(unknown[..., None], np.nan, gt)
    k = sizes.em_point_draws
    out = []

    def row(sampler, steps, pred, dt, evals, default=False):
        return {"sampler": sampler, "steps": int(steps), "mpjpe_mm": _mm(mpjpe(pred, gt, unknown)),
                "seconds_per_pose": _r(dt / len(gt), 7), "evals_per_pose": evals, "default": default}

    engine.complete(query[:2], ~unknown[:2], seed=0, sampler="em", steps=2)     # warm-up
    for steps in sizes.em_curve:
        draws, dt = _timed(engine.complete, query, ~unknown, n_hypotheses=k, seed=6, sampler="em", steps=steps)
        draws = draws.reshape(len(gt), k, *gt.shape[1:])
        one = float(np.mean([mpjpe(draws[:, h], gt, unknown) for h in range(k)]))
        out.append({**row("em", steps, draws[:, 0], dt / k, _evals("em", steps)), "mpjpe_mm": _mm(one)})
        out.append({**row(EM_POINT, steps, draws.mean(1), dt, k * _evals("em", steps)), "draws": k})
    for sampler, steps in [("mode", s) for s in sizes.mode_curve] + [("sde_heun", s) for s in sizes.sde_heun_curve]:
        pred, dt = _timed(engine.complete, query, ~unknown, seed=6, sampler=sampler, steps=steps)
        out.append(row(sampler, steps, pred, dt, _evals(sampler, steps)))
    # What a user gets: complete() with no sampler named (the best guess, posterior-mean networks included).
    pred, dt = _timed(engine.complete, query, ~unknown, seed=6)
    out.append(row("complete()", DEFAULTS["complete"][1], pred, dt, _best_guess_evals(engine), default=True))
    return out


def equal_quality(curve: list[dict]) -> dict:
    """The default completion against Euler-Maruyama's point estimate (EM_POINT rows; plain "em" rows where a
    curve has none): quality and time against the most EM steps, and the EM time needed to match the default."""
    default = next(c for c in curve if c["default"])
    kind = EM_POINT if any(c["sampler"] == EM_POINT for c in curve) else "em"
    em = sorted((c for c in curve if c["sampler"] == kind), key=lambda c: c["steps"])
    em_max = em[-1]
    res = {"default_sampler": default["sampler"], "default_steps": default["steps"],
           "default_mpjpe_mm": default["mpjpe_mm"], "default_s_per_pose": default["seconds_per_pose"],
           "default_evals_per_pose": default.get("evals_per_pose"), "em_estimate": kind, "em_draws": em_max.get("draws", 1),
           "em_max_steps": em_max["steps"], "em_max_mpjpe_mm": em_max["mpjpe_mm"],
           "em_max_s_per_pose": em_max["seconds_per_pose"],
           "quality_ratio_default_vs_em_max": _r(default["mpjpe_mm"] / em_max["mpjpe_mm"], 4),
           "speedup_vs_em_max": _r(em_max["seconds_per_pose"] / default["seconds_per_pose"], 2)}
    # Fewest EM steps reaching the default's quality, interpolated in log(steps) between curve points.
    match = None
    ok = [c for c in em if c["mpjpe_mm"] <= default["mpjpe_mm"]]
    if ok:
        first = min(ok, key=lambda c: c["steps"])
        below = [c for c in em if c["steps"] < first["steps"]]
        if below:
            prev = max(below, key=lambda c: c["steps"])
            q0, q1 = prev["mpjpe_mm"], first["mpjpe_mm"]
            w = (q0 - default["mpjpe_mm"]) / (q0 - q1) if q0 != q1 else 1.0
            ls = math.log(prev["steps"]) + w * (math.log(first["steps"]) - math.log(prev["steps"]))
            lt = math.log(prev["seconds_per_pose"]) + w * (math.log(first["seconds_per_pose"])
                                                           - math.log(prev["seconds_per_pose"]))
            match = {"steps": math.exp(ls), "seconds_per_pose": math.exp(lt)}
        else:
            match = {"steps": first["steps"], "seconds_per_pose": first["seconds_per_pose"]}
    if match:
        res.update({"em_steps_at_default_quality": _r(match["steps"], 1), "em_reaches_default_quality": True,
                    "speedup_at_equal_quality": _r(match["seconds_per_pose"] / default["seconds_per_pose"], 2)})
    else:
        res.update({"em_steps_at_default_quality": None, "em_reaches_default_quality": False,
                    # EM never gets as good: the ratio is at least the one against its largest step count.
                    "speedup_at_equal_quality": res["speedup_vs_em_max"]})
    return res


def run_speed(engine, data: BenchData, sizes: Sizes, weights, data_dir=None) -> dict:
    import torch

    from gfpose_core.engine import DEFAULTS, Engine
    cpu = engine if engine.device.type == "cpu" else Engine.load(weights, device="cpu")
    flops = count_flops(cpu.net)
    res = {"flops_per_eval": flops, "evals_per_step": dict(EVALS_PER_STEP),
           "parameters": int(sum(p.numel() for p in cpu.net.parameters())),
           "defaults": {k: list(v) for k, v in DEFAULTS.items()},
           "cpu": {"threads": torch.get_num_threads(), "gflops": _r(machine_gflops(torch.device("cpu")), 2)},
           "gpu": None}
    _log("  timing tasks on the CPU")
    res["cpu"].update(time_tasks(cpu, data, sizes))
    res["cpu"]["floor_seconds"] = {k: (_r(v * flops / (res["cpu"]["gflops"] * 1e9), 6) if v else None)
                                   for k, v in res["cpu"]["sample_evals"].items()}
    if torch.cuda.is_available():
        _log("  timing tasks on the GPU")
        gpu = engine if engine.device.type == "cuda" else Engine.load(weights, device="cuda")
        g = {"name": torch.cuda.get_device_name(0), "gflops": _r(machine_gflops(gpu.device), 1)}
        g.update(time_tasks(gpu, data, sizes))
        g["floor_seconds"] = {k: (_r(v * flops / (g["gflops"] * 1e9), 7) if v else None)
                              for k, v in g["sample_evals"].items()}
        res["gpu"] = g
    _log("  sampler quality versus steps (CPU, one thread)")
    with _threads(1):
        res["curve"] = quality_curve(cpu, data, sizes)
    res["curve_threads"] = 1
    res["equal_quality"] = equal_quality(res["curve"])
    eq = res["equal_quality"]
    res["floor_default_complete_s_per_pose"] = _r(eq["default_evals_per_pose"] * flops
                                                  / (res["cpu"]["gflops"] * 1e9), 7)
    # the estimate compared against: em_draws draws of em_max_steps steps
    res["floor_em1000_s_per_pose"] = _r(eq["em_draws"] * eq["em_max_steps"] * flops / (res["cpu"]["gflops"] * 1e9), 7)
    if sizes.bvh_timing:
        _log("  reading every BVH clip cold")
        res["bvh_read_all"] = bvh_read_all(data_dir)
    else:
        res["bvh_read_all"] = {"seconds": None, "files": 0, "frames": 0}
    res["cli_help_s"] = cli_start_seconds()
    return res


def cli_start_seconds(repeats: int = 5) -> float:
    """Median wall time of `gfpose --help` in a fresh interpreter: what a user waits for before any command."""
    import statistics
    import subprocess
    import sys
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gfpose_core", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return _r(statistics.median(times), 3)
