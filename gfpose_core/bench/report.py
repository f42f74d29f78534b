"""The benchmark's report.md: protocol, tables and targets."""
from __future__ import annotations

import os
from pathlib import Path

from gfpose_core.bench import effectors as bench_effectors
from gfpose_core.bench import load as bench_load
from gfpose_core.bench import takes as bench_takes
from gfpose_core.bench.common import (
    COMPLETION_LABEL,
    COMPLETION_METHODS,
    COMPLETION_SETTINGS,
    DATASET_LABEL,
    DENOISE_CONDITIONS,
    DENOISE_LABEL,
    DENOISE_METHODS,
    GENERATION_METHODS,
    GROUP_LABEL,
    METHOD_LABEL,
    SPEED_TASKS,
)
from gfpose_core.bench.targets import TARGETS, _ceiling_sentences, loss_sentences


def _fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}".rstrip("0").rstrip(".") if nd >= 3 else f"{v:.{nd}f}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


PROTOCOL = """\
- **Test data**: the CMU test subjects of the project's split (subjects 6, 13, 94) and the Bandai clips of the
  test split (a fixed four fifths of `../shared/data/bandai`, by a hash of the clip name), both read as body24 at
  30 fps through `gfpose_core.data`. Neither is used for training or model selection; the CMU validation
  subjects (8, 14) and the Bandai validation clips are used only to tune the filter baselines' parameters.
  Bandai data is read at run time; only aggregate numbers leave the run.
- **Sampling**: test poses, takes, masks, noise and cameras are drawn with fixed seeds (seed {seed}), so two runs of
  the same mode see the same inputs. Sizes of this run: {sizes}.
- **Completion**: the unknown joints are hidden (NaN, known = False) from every method. Unknown sets: one arm
  (collar to hand end, random side), one leg (hip to toe, random side), both legs, upper body (everything above the
  pelvis), 3 random joints. Scores are in world metres on the unknown joints: MPJPE; PA-MPJPE with the similarity
  fitted and measured on the unknown joints (nearly degenerate for 3 random joints); bone-length error over bones
  with an unknown end. Best of 10 = per pose the hypothesis with the lowest error (PA separately); bone error of a
  best-of-10 row is the mean over all 10 hypotheses. Baselines work in the engine's canonical frame (its
  root/facing/scale estimate from the known joints and its reference bones): training poses = the training split
  of every set the default weights are trained on (CMU's BVH and ASF/AMC clips, HDM05's training actors: what the
  engine saw) canonicalised on the reference body with mirror copies; *nearest neighbour* = the training pose closest on
  the known joints (best of 10 = the 10 nearest); *Gaussian* = conditional mean of a Gaussian fitted to the
  training poses (best of 10 = 10 conditional samples); *rest pose* = the engine's mean pose. Outputs are restored
  to world space with the same frame and the known joints pasted, so every method is scored on the same inputs.
- **Denoising**: clean test takes of {take_frames} frames; noise per coordinate: Gaussian jitter of 20, 40 or 100 mm;
  *spikes*: 20 mm jitter plus, on {spike_pct}% of frames of every joint, a jump of 20 cm in a random direction;
  *dropouts*: 20 mm jitter plus one dropout per 20 frames (a random joint missing, NaN, for 5-30 frames). Metrics
  against the clean take: MPJPE, acceleration error, bone-length error; foot skate = mean horizontal speed of the
  output's ankles and toes on the frames where the clean take has them in ground contact (the clean take's own
  value is the floor). *input* = the noisy take with gaps
  linearly interpolated. Filters (Butterworth order 2 zero-phase, Savitzky-Golay order 2, Gaussian) take the
  parameter with the lowest MPJPE on validation takes with the same noise (per dataset and condition), after
  the same gap filling. *Paper sampler per frame* = every frame canonicalised alone, sent to the engine's
  estimated noise time t0 and brought back by Euler-Maruyama at 1,000 steps per unit time, unconditioned, no
  temporal filter or spike handling.
- **Generation**: {n_generate} free samples from the engine (default sampler), against held-out test poses
  canonicalised and rebuilt on the reference body. Precision / recall / coverage by k-nearest-neighbour balls
  (k = 5) on flattened body24 poses; APD; Fréchet distance of Gaussians fitted to flattened body24 poses (m²);
  mean MPJPE from each generated pose to its nearest real pose. Baselines: training poses (a ceiling), samples
  of the Gaussian, and *noise* (the SDE's prior, N(0, I) in model units, mapped to poses).
- **Lifting**: canonical test poses seen by an orthographic camera at a random yaw (no pitch), projected to
  pixels (x right, y down, {px} px/m, arbitrary centre) and given to `Engine.lift`; ground truth in the camera frame
  (x right, y depth, z up, pelvis at the origin, unit body size). MPJPE after a least-squares scale per hypothesis
  (pelvis-centred), PA-MPJPE, and raw MPJPE; best of H = per pose the best of the first H hypotheses.
- **Speed**: wall time per call on this machine (median of repeats; the CPU run uses torch's default threads),
  on the GPU as well when there is one. The quality sections above run with one torch thread on the CPU (their
  numbers do not depend on it; a second thread competing with other processes stalls small operations).
  Quality versus steps: single-hypothesis completion on CMU test poses (the five unknown sets in turn), the same
  poses and seed for every sampler setting, timed with one CPU thread. Equal-quality ratio: CPU time of
  Euler-Maruyama at the step count (interpolated on the curve) that reaches the default sampler's MPJPE, divided
  by the default's time; when Euler-Maruyama never gets there, the ratio against its largest step count is given.
  FLOPs count 2 x in x out per sample for every Linear layer of one network evaluation; floor = FLOPs x network
  evaluations / measured fp32 matmul rate (2048 x 2048, best of three trials)."""


SECTION_TITLE = {"effectors": "Posing from effectors"}


def write_report(results: dict, out: Path, plots: dict) -> str:
    meta = results["meta"]
    L = []
    L.append("# GFPose engine benchmark\n")
    L.append(f"Run: {meta['date']} · mode **{meta['mode']}** · {meta['elapsed_s']:.0f} s · "
             f"weights `{meta['weights']}` "
             f"(training steps run: {meta['weights_steps_run']}, best step {meta['weights_best_step']}, "
             f"{meta['weights_parameters']} parameters) · device {meta['device']} · {meta['machine']} · "
             f"load average at start / end: {meta['load_start']} / {meta['load_end']} · repository "
             f"{meta['git_commit']}\n")
    busy = meta["load_start"] is not None and meta["load_start"] > 0.5 * (os.cpu_count() or 1)
    if busy:
        L.append(f"**Note**: the machine was busy when this run started (load average {meta['load_start']} on "
                 f"{os.cpu_count()} cores): timings are slower than on an idle machine.\n")
    for m in meta.get("merged", []):
        L.append(f"Section(s) {', '.join(m['sections'])} from a later run merged in: {m['date']} · mode **{m['mode']}**"
                 f" · {m['elapsed_s']:.0f} s · load average at start / end: {m['load_start']} / {m['load_end']} · "
                 f"repository {m['git_commit']}\n")
    if meta.get("errors"):
        L.append("**Sections that failed**: " + "; ".join(f"{k}: {v}" for k, v in meta["errors"].items()) + "\n")
    L.append("## Protocol\n")
    L.append(results["protocol"]["text"] + "\n")

    L.append("## Targets\n")
    rows = []
    for k in TARGETS:
        t = results["targets"][k]
        state = "–" if t["pass"] is None else ("**pass**" if t["pass"] else "**FAIL**")
        rows.append([k, t["description"], _fmt(t["value"], 3) if not isinstance(t["value"], dict) else
                     ", ".join(f"{a} {_fmt(b, 3)}" for a, b in t["value"].items()),
                     _fmt(t["threshold"], 3) if not isinstance(t["threshold"], dict) else
                     ", ".join(f"{a} {b}" for a, b in t["threshold"].items()), state])
    L.append(_table(["target", "what", "value", "threshold", "result"], rows) + "\n")
    det = [f"- {k}: " + ", ".join(f"{a} {_fmt(b, 3)}" for a, b in results["targets"][k]["details"].items())
           for k in TARGETS if results["targets"][k]["details"]]
    if det:
        L.append("Per case (ratios):\n")
        L.extend(det)
        L.append("")

    cmp_ = results["comparisons"]
    L.append("## Where the engine loses\n")
    L.append(f"Each metric of each setting against each baseline is one comparison (lower error, or higher "
             f"precision / recall / coverage, wins). The engine wins {cmp_['engine_wins']} of {cmp_['total']} and "
             f"loses {len(cmp_['losses'])}.\n")
    for section in ("completion", "effectors", "denoising", "generation"):
        sents = loss_sentences([x for x in cmp_["losses"] if x["section"] == section])
        if results.get(section) is None:
            continue
        L.append(f"**{SECTION_TITLE.get(section, section.capitalize())}**" + ("" if sents else ": the engine loses no comparison.") + "\n")
        L.extend(f"- {x}" for x in sents)
        if sents:
            L.append("")
    L.append("")

    comp = results.get("completion")
    L.append("## 1. Completion\n")
    if comp:
        if "completion" in plots:
            L.append(f"![completion]({plots['completion']})\n")
        for ds in comp:
            L.append(f"### {DATASET_LABEL[ds]}\n")
            rows = []
            for s in COMPLETION_SETTINGS:
                for m in COMPLETION_METHODS:
                    r = comp[ds][s][m]
                    rows.append([COMPLETION_LABEL[s], METHOD_LABEL[m], r["n"], _fmt(r["mpjpe_mm"]),
                                 _fmt(r["pa_mpjpe_mm"]), _fmt(r["bone_err_mm"])])
            L.append(_table(["unknown", "method", "poses", "MPJPE (mm)", "PA-MPJPE (mm)", "bone error (mm)"], rows)
                     + "\n")
            split = [(s, g, r) for s in ("one_arm", "one_leg") for g, r in comp[ds][s].get("by_group", {}).items()]
            if split:
                L.append(f"One limb unknown, by test {GROUP_LABEL[ds]} (the same poses as above):\n")
                L.append(_table(["unknown", GROUP_LABEL[ds], "poses", "engine MPJPE (mm)", "nearest neighbour (mm)",
                                 "engine / NN"],
                                [[COMPLETION_LABEL[s], g, r["n"], _fmt(r["engine_mm"]), _fmt(r["nn_mm"]),
                                  _fmt(r["engine_mm"] / r["nn_mm"], 3)] for s, g, r in split]) + "\n")
    else:
        L.append("not run\n")

    L.extend(bench_effectors.report(results.get("effectors"), _fmt, _table))

    den = results.get("denoising")
    L.append("## 2. Denoising of takes\n")
    if den:
        if "denoise_sigma" in plots:
            L.append(f"![denoising]({plots['denoise_sigma']})\n")
        for ds in den:
            L.append(f"### {DATASET_LABEL[ds]}\n")
            rows = []
            for c in DENOISE_CONDITIONS:
                p = results["denoising_params"][ds][c]
                for m in DENOISE_METHODS:
                    r = den[ds][c][m]
                    extra = {"butterworth": f"cutoff {p['butterworth_cutoff_hz']} Hz",
                             "savgol": f"window {p['savgol_window']}",
                             "gaussian_smooth": f"sigma {p['gaussian_sigma_frames']} frames"}.get(m, "")
                    rows.append([DENOISE_LABEL[c], METHOD_LABEL[m], extra, _fmt(r["mpjpe_mm"]),
                                 _fmt(r["accel_err_m_s2"], 2), _fmt(r["bone_err_mm"]), _fmt(r["foot_skate_mm_s"]),
                                 _fmt(r["seconds"], 2)])
            L.append(_table(["noise", "method", "parameter (validation)", "MPJPE (mm)", "accel error (m/s²)",
                             "bone error (mm)", "foot skate (mm/s)", "time (s)"], rows) + "\n")
    else:
        L.append("not run\n")

    gen = results.get("generation")
    L.append("## 3. Generation\n")
    if gen:
        for ds in gen:
            L.append(f"### against {DATASET_LABEL[ds]}\n")
            rows = [[METHOD_LABEL[m], gen[ds][m].get("n"), _fmt(gen[ds][m]["precision"], 3),
                     _fmt(gen[ds][m]["recall"], 3), _fmt(gen[ds][m]["coverage"], 3), _fmt(gen[ds][m]["apd_mm"]),
                     _fmt(gen[ds][m]["fd_m2"], 4), _fmt(gen[ds][m]["nn_mpjpe_mm"])] for m in GENERATION_METHODS]
            L.append(_table(["samples", "n", "precision", "recall", "coverage", "APD (mm)", "Fréchet (m²)",
                             "to nearest real (mm)"], rows) + "\n")
        L.append("Against the ceiling (training poses):\n")
        L.extend(f"- {s}" for s in _ceiling_sentences(results))
        L.append("")
    else:
        L.append("not run\n")

    prop = results.get("proportions")
    L.append("## 3b. Other proportions\n")
    if prop and prop.get("cmu"):
        r = prop["cmu"]
        L.append(f"{r['n']} held-out CMU poses ({prop['split']} split), one arm hidden, put on the reference body and "
                 f"on bodies of other proportions; {r['straight_elbows']} of them have a real elbow over 140 degrees. "
                 f"Reference body: {_fmt(100 * r['reference']['bent_straight_elbow_share'])}% of those straight "
                 "elbows completed under 110 degrees.\n")
        rows = [[b, _fmt(v["median_arm_direction_deg"], 2), _fmt(v["p90_arm_direction_deg"], 2),
                 _fmt(100 * v["bent_straight_elbow_share"])] for b, v in r["bodies"].items()]
        L.append(_table(["body", "median arm direction vs reference body (deg)", "p90 (deg)",
                         "straight elbows completed < 110 deg (%)"], rows) + "\n")
    else:
        L.append("not run\n")

    lift = results.get("lifting")
    L.append("## 4. Lifting\n")
    if lift:
        rows = []
        for ds in lift:
            for h in ("best_of_1", "best_of_10", "best_of_200", "best_of_10_on_200_subset"):
                r = lift[ds][h]
                rows.append([DATASET_LABEL[ds], h.replace("_", " "), r["n"], _fmt(r["mpjpe_mm"]),
                             _fmt(r["pa_mpjpe_mm"]), _fmt(r["raw_mpjpe_mm"])])
        L.append(_table(["data", "hypotheses", "poses", "MPJPE, scale-normalised (mm)", "PA-MPJPE (mm)",
                         "raw MPJPE (mm)"], rows) + "\n")
        L.append("For orientation only (different data and joints): the paper reports Human3.6M best of 1 / 10 / 200 "
                 "about 51.9 / 45.1 / 35.6 mm.\n")
    else:
        L.append("not run\n")

    spd = results.get("speed")
    L.append("## 5. Speed\n")
    if spd:
        if "task_times" in plots:
            L.append(f"![task times]({plots['task_times']})\n")
        cpu, gpu = spd["cpu"], spd["gpu"]
        L.append(f"Network: {spd['parameters']} parameters, {spd['flops_per_eval'] / 1e6:.2f} MFLOP per evaluation "
                 f"per pose (network evaluations per step: "
                 + ", ".join(f"{k} {v}" for k, v in spd["evals_per_step"].items())
                 + f"). CPU: {cpu['threads']} torch threads, measured {cpu['gflops']:.1f} GFLOP/s (fp32 matmul)"
                 + (f"; GPU: {gpu['name']}, {gpu['gflops']:.0f} GFLOP/s" if gpu else "; no GPU on this machine")
                 + ".\n")
        rows = []
        for n in SPEED_TASKS:
            rows.append([n, cpu["sample_evals"][n], _fmt(cpu["seconds"][n] * 1000, 2),
                         _fmt((cpu["floor_seconds"][n] or 0) * 1000, 3),
                         _fmt(cpu["seconds"][n] / cpu["floor_seconds"][n], 1) if cpu["floor_seconds"][n] else "–",
                         _fmt(gpu["seconds"][n] * 1000, 2) if gpu else "–"])
        L.append(_table(["task", "network evals (poses x evals)", "CPU ms", "CPU FLOP floor ms", "CPU / floor",
                         "GPU ms"], rows) + "\n")
        L.append("Tasks: " + "; ".join(f"`{k}` = {v}" for k, v in cpu["tasks"].items()) + ".\n")
        b = spd["bvh_read_all"]
        if b["seconds"] is not None:
            L.append(f"Reading and converting every BVH clip cold (`load_take` on each of {b['files']} files, "
                     f"{b['frames']} frames): {b['seconds']:.1f} s.\n")
        if "sampler_curve" in plots:
            L.append(f"![sampler curve]({plots['sampler_curve']})\n")
        rows = [[c["sampler"] + (" (default)" if c["default"] else ""), c["steps"], c["evals_per_pose"],
                 _fmt(c["mpjpe_mm"]), _fmt(c["seconds_per_pose"] * 1000, 3)] for c in spd["curve"]]
        L.append(_table(["sampler", "steps", "network evals", "MPJPE (mm)", "CPU ms per pose (one thread)"], rows)
                 + "\n")
        eq = spd["equal_quality"]
        if eq["em_reaches_default_quality"]:
            L.append(f"Euler-Maruyama reaches the default sampler's quality ({eq['default_mpjpe_mm']:.1f} mm) at about "
                     f"{eq['em_steps_at_default_quality']:.0f} steps: at equal quality the default is "
                     f"{eq['speedup_at_equal_quality']:.1f}x faster.")
        else:
            L.append(f"Euler-Maruyama never reaches the default sampler's quality ({eq['default_mpjpe_mm']:.1f} mm; "
                     f"{eq['em_max_steps']} steps give {eq['em_max_mpjpe_mm']:.1f} mm): the default is at least "
                     f"{eq['speedup_at_equal_quality']:.1f}x faster at equal quality.")
        est = f"the mean of {eq.get('em_draws', 1)} draws" if eq.get("em_estimate") == "em_mean" else "one draw"
        L[-1] += (f" Both are point estimates: the default is complete() with no sampler named, EM's is {est}. "
                  f"Against {eq['em_max_steps']}-step EM: quality ratio {eq['quality_ratio_default_vs_em_max']:.3f} "
                  f"(default / EM MPJPE), speed-up {eq['speedup_vs_em_max']:.1f}x. FLOP floor per pose: default "
                  f"{spd['floor_default_complete_s_per_pose'] * 1000:.3f} ms, {eq['em_max_steps']}-step EM "
                  f"{spd['floor_em1000_s_per_pose'] * 1000:.2f} ms.\n")
    else:
        L.append("not run\n")
    L.extend(bench_takes.report(results.get("takes"), _fmt, _table))
    L.extend(bench_load.report(results.get("load"), _fmt, _table))
    L.append("## Section times\n")
    L.append(_table(["section", "seconds"], [[k, v] for k, v in meta["section_seconds"].items()]) + "\n")
    text = "\n".join(L)
    (out / "report.md").write_text(text)
    return text
