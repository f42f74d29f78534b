"""`gfpose bench`: run the sections, write OUT/report.md and OUT/results.json."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from gfpose_core.bench import takes as bench_takes
from gfpose_core.bench.common import (
    CAMERA_PX_PER_M,
    COMPLETION_SETTINGS,
    DATASET_LABEL,
    DATASETS,
    DENOISE_CONDITIONS,
    SCHEMA,
    SECTIONS,
    SEED,
    SPIKE_RATE,
    Sizes,
    _log,
    _r,
    _Stopwatch,
    _threads,
    load_data,
)


def _git_commit() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent.parent,
                           capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=5)
        return (r.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"




def run_bench(engine, out_dir, sizes: Sizes, weights=None, data_dir=None, sections=SECTIONS) -> dict:
    """Run the benchmark sections and write report.md, results.json and the plots to out_dir."""
    # the sections load here, not at import: `gfpose --help` builds this command's parser
    import torch

    from gfpose_core.bench.completion import run_completion
    from gfpose_core.bench.denoising import run_denoising
    from gfpose_core.bench.effectors import run_effectors
    from gfpose_core.bench.generation import run_generation, run_lifting
    from gfpose_core.bench.load import run_load
    from gfpose_core.bench.plots import make_plots
    from gfpose_core.bench.proportions import run_proportions
    from gfpose_core.bench.report import PROTOCOL, write_report
    from gfpose_core.bench.speed import run_speed
    from gfpose_core.bench.targets import compare, evaluate_targets, loss_sentences
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sw = _Stopwatch()
    load_start = _r(os.getloadavg()[0], 2)
    with sw.section("data"):
        data = load_data(engine, data_dir)
    results: dict = {k: None for k in ("completion", "effectors", "proportions", "denoising", "denoising_params",
                                       "generation", "lifting", "speed", "takes", "load")}
    errors = {}
    steps = {"completion": lambda: results.__setitem__("completion", run_completion(engine, data, sizes)),
             "effectors": lambda: results.__setitem__("effectors", run_effectors(engine, data, sizes)),
             "proportions": lambda: results.__setitem__("proportions", run_proportions(engine, data, sizes)),
             "denoising": lambda: results.update(zip(("denoising", "denoising_params"),
                                                     run_denoising(engine, data, sizes))),
             "generation": lambda: results.__setitem__("generation", run_generation(engine, data, sizes)),
             "lifting": lambda: results.__setitem__("lifting", run_lifting(engine, data, sizes)),
             "speed": lambda: results.__setitem__("speed", run_speed(engine, data, sizes, weights, data_dir)),
             "takes": lambda: results.__setitem__("takes", bench_takes.run_takes(engine, data, sizes)),
             "load": lambda: results.__setitem__("load", run_load(engine, sizes))}
    for name in SECTIONS:
        if name not in sections:
            continue
        timed = name in ("speed", "takes", "load")
        with sw.section(name), _threads(1 if not timed and engine.device.type == "cpu" else None):
            try:
                steps[name]()
            except (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError) as e:
                errors[name] = f"{type(e).__name__}: {e}"
                _log(f"{name} failed: {errors[name]}")
    cfg = engine.config.get("training", {})
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": sizes.name, "sizes": asdict(sizes), "seed": SEED,
        "weights": str(weights) if weights is not None else "shipped (gfpose_core/weights)",
        "weights_steps_run": cfg.get("steps_run"), "weights_best_step": cfg.get("best_step"),
        "weights_parameters": cfg.get("parameters"),
        "device": str(engine.device), "torch": torch.__version__, "python": platform.python_version(),
        "torch_threads_default": torch.get_num_threads(), "torch_threads_quality_sections": 1,
        "machine": f"{platform.machine()} {os.cpu_count()} cores" + (
            f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
        "git_commit": _git_commit(), "load_start": load_start, "load_end": _r(os.getloadavg()[0], 2),
        "elapsed_s": round(time.perf_counter() - sw.t0, 1), "section_seconds": sw.sections, "errors": errors,
    }
    results = {"schema": SCHEMA, "meta": meta,
               "protocol": {"text": PROTOCOL.format(
                   seed=SEED, take_frames=sizes.take_frames, spike_pct=round(SPIKE_RATE * 100, 2),
                   n_generate=sizes.n_generate, px=CAMERA_PX_PER_M,
                   sizes=", ".join(f"{k} {v}" for k, v in asdict(sizes).items() if k != "name")),
                   "datasets": {ds: DATASET_LABEL[ds] for ds in DATASETS},
                   "completion_settings": list(COMPLETION_SETTINGS), "denoise_conditions": list(DENOISE_CONDITIONS),
                   "units": "mm for *_mm, m/s² for accel_err_m_s2, mm/s for foot_skate_mm_s, m² for fd_m2, "
                            "seconds elsewhere"},
               **results}
    results["targets"] = evaluate_targets(results)
    losses, wins, total = compare(results)
    results["comparisons"] = {"engine_wins": wins, "total": total, "losses": losses,
                              "sentences": loss_sentences(losses)}
    plots = make_plots(results, out)
    results["plots"] = plots
    results["meta"]["elapsed_s"] = round(time.perf_counter() - sw.t0, 1)
    write_report(results, out, plots)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    return results


def merge_into(report_dir, new: dict, sections) -> dict:
    """Put the named sections of a new run into the report in report_dir (its results.json), keep every other
    section as it was, grade the targets and comparisons again and render report.md from the merged results (the
    earlier run's plots kept). Returns the merged results."""
    from gfpose_core.bench.report import write_report
    from gfpose_core.bench.targets import compare, evaluate_targets, loss_sentences
    folder = Path(report_dir)
    path = folder / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json in {folder} to merge into")
    old = json.loads(path.read_text())
    if old.get("schema") != SCHEMA:
        raise ValueError(f"{path} has schema {old.get('schema')!r}, this bench writes {SCHEMA!r}")
    keys = [k for s in sections for k in ((s, "denoising_params") if s == "denoising" else (s,))]
    for k in keys:
        old[k] = new.get(k)
    nm, om = new["meta"], old["meta"]
    for s in sections:
        if s in nm["section_seconds"]:
            om["section_seconds"][s] = nm["section_seconds"][s]
        om["errors"].pop(s, None)
        if s in nm["errors"]:
            om["errors"][s] = nm["errors"][s]
    om.setdefault("merged", []).append({"sections": list(sections), **{k: nm[k] for k in (
        "date", "mode", "sizes", "git_commit", "elapsed_s", "load_start", "load_end", "device")}})
    old["targets"] = evaluate_targets(old)
    losses, wins, total = compare(old)
    old["comparisons"] = {"engine_wins": wins, "total": total, "losses": losses, "sentences": loss_sentences(losses)}
    write_report(old, folder, old.get("plots") or {})
    path.write_text(json.dumps(old, indent=1, default=_json_default))
    return old


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
