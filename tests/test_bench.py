"""Smoke test of `gfpose bench`: the whole machinery on a tiny configuration with the shipped weights."""
from __future__ import annotations

import json

import pytest

from gfpose_core.bench.command import run
from gfpose_core.bench.common import (
    COMPLETION_METHODS,
    COMPLETION_SETTINGS,
    DATASETS,
    DENOISE_CONDITIONS,
    DENOISE_METHODS,
    DENOISE_METRICS,
    GENERATION_METHODS,
    GENERATION_METRICS,
    LIFT_HYPOTHESES,
    SCHEMA,
    SPEED_TASKS,
    Sizes,
)
from gfpose_core.bench.run import run_bench
from gfpose_core.bench.speed import equal_quality
from gfpose_core.bench.targets import TARGETS, evaluate_targets
from gfpose_core.engine import WEIGHTS_DIR
from gfpose_core.service.cli import build_parser


@pytest.fixture(scope="module")
def engine():
    if not (WEIGHTS_DIR / "config.json").exists():
        pytest.skip(f"no shipped weights in {WEIGHTS_DIR} (config.json missing): train and ship weights first")
    from gfpose_core.engine import Engine
    return Engine.load(device="cpu")


def test_bench_parser_registered():
    args = build_parser().parse_args(["bench", "--quick", "--out", "somewhere", "--weights", "w", "--device", "cpu"])
    assert args.func is run and args.quick and args.out == "somewhere" and args.weights == "w"
    args = build_parser().parse_args(["bench"])
    assert args.out == "bench_out" and not args.quick and args.weights is None and args.device == "auto"


def test_equal_quality_interpolates_on_the_em_curve():
    curve = [{"sampler": "em", "steps": s, "mpjpe_mm": q, "seconds_per_pose": s * 1e-3, "default": False}
             for s, q in ((10, 100.0), (100, 60.0), (1000, 50.0))]
    curve.append({"sampler": "mode", "steps": 10, "mpjpe_mm": 80.0, "seconds_per_pose": 1e-2, "default": True})
    eq = equal_quality(curve)
    assert eq["em_reaches_default_quality"]
    assert 10 < eq["em_steps_at_default_quality"] < 100          # halfway in log steps: about 31.6
    assert eq["em_steps_at_default_quality"] == pytest.approx(31.6, abs=0.1)
    assert eq["speedup_vs_em_max"] == pytest.approx(100.0)
    curve[-1]["mpjpe_mm"] = 40.0                                 # better than any EM point
    eq = equal_quality(curve)
    assert not eq["em_reaches_default_quality"] and eq["speedup_at_equal_quality"] == pytest.approx(100.0)


def test_equal_quality_compares_point_estimate_with_point_estimate():
    # One EM draw is a sample, far from the truth; the default completion is an estimate. With EM's mean of draws
    # on the curve, the comparison must use it (and its cost), not the single draws.
    curve = [{"sampler": "em", "steps": 1000, "mpjpe_mm": 90.0, "seconds_per_pose": 1.0, "default": False},
             {"sampler": "em_mean", "steps": 1000, "mpjpe_mm": 60.0, "seconds_per_pose": 8.0, "draws": 8,
              "default": False},
             {"sampler": "mode", "steps": 10, "mpjpe_mm": 80.0, "seconds_per_pose": 0.01, "default": False},
             {"sampler": "complete()", "steps": 10, "mpjpe_mm": 66.0, "seconds_per_pose": 0.02, "evals_per_pose": 12,
              "default": True}]
    eq = equal_quality(curve)
    assert eq["em_estimate"] == "em_mean" and eq["em_draws"] == 8 and eq["default_sampler"] == "complete()"
    assert eq["quality_ratio_default_vs_em_max"] == pytest.approx(1.1)       # 66 / 60, not 66 / 90
    assert eq["speedup_vs_em_max"] == pytest.approx(400.0)
    assert eq["em_reaches_default_quality"]                                  # EM at 1000 steps: 60 <= 66
    targets = evaluate_targets({"speed": {"equal_quality": eq, "cpu": {"seconds": {"complete_1": 0.01,
                                                                                    "denoise_take": 1.0},
                                                                        "denoise_frames": 10000},
                                          "bvh_read_all": {"seconds": None, "files": 0}, "cli_help_s": 0.1}})
    assert targets["sampler_speed_quality"]["pass"] is False                 # worse than EM's estimate


def test_bench_tiny_run(engine, DATA, tmp_path):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # a smoke test on a shared machine: one thread avoids oversubscription stalls
    try:
        results = run_bench(engine, tmp_path, Sizes.tiny(), data_dir=DATA)
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["schema"] == SCHEMA
    assert not saved["meta"]["errors"], saved["meta"]["errors"]
    for key in ("meta", "protocol", "completion", "denoising", "denoising_params", "generation", "lifting", "speed",
                "targets", "comparisons", "plots"):
        assert key in saved, key
    for ds in DATASETS:
        for s in COMPLETION_SETTINGS:
            for m in COMPLETION_METHODS:
                r = saved["completion"][ds][s][m]
                assert {"mpjpe_mm", "pa_mpjpe_mm", "bone_err_mm", "n"} <= set(r)
                assert r["mpjpe_mm"] > 0
        for c in DENOISE_CONDITIONS:
            for m in DENOISE_METHODS:
                assert set(DENOISE_METRICS) <= set(saved["denoising"][ds][c][m])
            assert saved["denoising"][ds][c]["clean"]["mpjpe_mm"] == 0
        for m in GENERATION_METHODS:
            assert set(GENERATION_METRICS) <= set(saved["generation"][ds][m])
        for h in LIFT_HYPOTHESES:
            assert saved["lifting"][ds][f"best_of_{h}"]["mpjpe_mm"] > 0
    for ds in DATASETS:            # the split by subject or motion covers the same poses as the whole table
        for s in ("one_arm", "one_leg"):
            r = saved["completion"][ds][s]
            split = r["by_group"].values()
            assert sum(x["n"] for x in split) == r["engine"]["n"]
            mean = sum(x["n"] * x["engine_mm"] for x in split) / r["engine"]["n"]
            assert mean == pytest.approx(r["engine"]["mpjpe_mm"], abs=0.2)
    report = (tmp_path / "report.md").read_text()
    assert "by test subject" in report and "by test motion" in report
    from gfpose_core.bench import takes as bench_takes
    for ds in DATASETS:
        for m in bench_takes.DENOISE_METHODS + ("clean",):
            assert saved["takes"]["denoise"][ds][m]["mpjpe_mm"] >= 0
        for k in bench_takes.KEY_SPACINGS:
            for m in bench_takes.INBETWEEN_METHODS:
                assert saved["takes"]["inbetween"][ds][str(k)][m]["mpjpe_mm"] > 0
    assert saved["takes"]["speed"]["inbetween_60_s"] > 0
    assert set(SPEED_TASKS) == set(saved["speed"]["cpu"]["seconds"])
    assert saved["speed"]["flops_per_eval"] > 1e6
    assert set(TARGETS) == set(saved["targets"])
    assert saved["targets"]["proportion_directions"]["value"] == saved["proportions"]["cmu"][
        "worst_median_arm_direction_deg"]
    assert all({"description", "value", "threshold", "pass"} <= set(v) for v in saved["targets"].values())
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Protocol", "## Targets", "## Where the engine loses", "## 1. Completion",
                    "## 2. Denoising", "## 3. Generation", "## 3b. Other proportions", "## 4. Lifting", "## 5. Speed",
                    "## 6. Takes"):
        assert heading in report, heading
    for png in saved["plots"].values():
        assert (tmp_path / png).stat().st_size > 1000
    # Sentences come from the numbers: every recorded loss is one the numbers show.
    for x in saved["comparisons"]["losses"]:
        lower = x["metric"] not in ("precision", "recall", "coverage")
        assert (x["engine_value"] > x["baseline_value"]) if lower else (x["engine_value"] < x["baseline_value"])
    assert results["meta"]["mode"] == "tiny"
