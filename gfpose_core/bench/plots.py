"""The benchmark's plots (matplotlib, an optional dependency: `pip install gfpose-core[bench]`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gfpose_core.bench.common import (
    COMPLETION_LABEL,
    COMPLETION_SETTINGS,
    DATASET_LABEL,
    DENOISE_METHODS,
    METHOD_LABEL,
    SPEED_TASKS,
)


def make_plots(results: dict, out: Path) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    plots = {}
    spd = results.get("speed")
    if spd:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        names = {"em": "em (one draw)", "em_mean": "em (mean of draws)"}
        for sampler, style in (("em", "o-"), ("em_mean", "o--"), ("mode", "s-"), ("sde_heun", "^-")):
            pts = sorted((c for c in spd["curve"] if c["sampler"] == sampler), key=lambda c: c["steps"])
            if not pts:
                continue
            label = names.get(sampler, sampler)
            axes[0].plot([c["steps"] for c in pts], [c["mpjpe_mm"] for c in pts], style, label=label)
            axes[1].plot([c["seconds_per_pose"] * 1000 for c in pts], [c["mpjpe_mm"] for c in pts], style,
                         label=label)
        d = next(c for c in spd["curve"] if c["default"])
        axes[0].plot([d["steps"]], [d["mpjpe_mm"]], "k*", ms=14, label="default completion (complete())")
        axes[1].plot([d["seconds_per_pose"] * 1000], [d["mpjpe_mm"]], "k*", ms=14,
                     label="default completion (complete())")
        for ax, xl in ((axes[0], "sampler steps"), (axes[1], "CPU time per pose, one thread (ms)")):
            ax.set_xscale("log")
            ax.set_xlabel(xl)
            ax.set_ylabel("completion MPJPE on unknown joints (mm)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        fig.suptitle("Sampler quality versus steps (CMU test, completion)")
        fig.tight_layout()
        fig.savefig(out / "sampler_curve.png", dpi=110)
        plt.close(fig)
        plots["sampler_curve"] = "sampler_curve.png"

        fig, ax = plt.subplots(figsize=(9, 4))
        names = list(SPEED_TASKS)
        x = np.arange(len(names))
        cpu = [spd["cpu"]["seconds"][n] * 1000 for n in names]
        ax.bar(x - 0.2 if spd["gpu"] else x, cpu, 0.4, label="CPU")
        if spd["gpu"]:
            ax.bar(x + 0.2, [spd["gpu"]["seconds"][n] * 1000 for n in names], 0.4, label="GPU")
        floor = [(spd["cpu"]["floor_seconds"][n] or 0) * 1000 for n in names]
        ax.scatter(x - 0.2 if spd["gpu"] else x, floor, marker="_", s=400, c="k", label="CPU FLOP floor", zorder=3)
        ax.set_xticks(x, names, rotation=20)
        ax.set_yscale("log")
        ax.set_ylabel("time per call (ms)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend()
        ax.set_title("Time per task")
        fig.tight_layout()
        fig.savefig(out / "task_times.png", dpi=110)
        plt.close(fig)
        plots["task_times"] = "task_times.png"
    den = results.get("denoising")
    if den:
        fig, axes = plt.subplots(1, len(den), figsize=(5.5 * len(den), 4), squeeze=False)
        sig = [20, 40, 100]
        for ax, ds in zip(axes[0], den):
            for m in DENOISE_METHODS[1:]:
                ax.plot(sig, [den[ds][f"jitter{s}"][m]["mpjpe_mm"] for s in sig], "o-", label=METHOD_LABEL[m])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(sig, [str(s) for s in sig])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(ScalarFormatter())
            ax.set_xlabel("jitter sigma (mm)")
            ax.set_ylabel("MPJPE to the clean take (mm)")
            ax.set_title(DATASET_LABEL[ds])
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "denoise_sigma.png", dpi=110)
        plt.close(fig)
        plots["denoise_sigma"] = "denoise_sigma.png"
    comp = results.get("completion")
    if comp:
        fig, axes = plt.subplots(1, len(comp), figsize=(6 * len(comp), 4), squeeze=False)
        meths = ("engine", "nn", "gaussian", "rest_pose", "engine_best10", "nn_best10")
        for ax, ds in zip(axes[0], comp):
            x = np.arange(len(COMPLETION_SETTINGS))
            w = 0.8 / len(meths)
            for k, m in enumerate(meths):
                ax.bar(x + (k - len(meths) / 2 + 0.5) * w, [comp[ds][s][m]["mpjpe_mm"] for s in COMPLETION_SETTINGS],
                       w, label=METHOD_LABEL[m])
            ax.set_xticks(x, [COMPLETION_LABEL[s] for s in COMPLETION_SETTINGS], rotation=15)
            ax.set_ylabel("MPJPE on unknown joints (mm)")
            ax.set_title(DATASET_LABEL[ds])
            ax.grid(True, axis="y", alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(meths), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        fig.savefig(out / "completion.png", dpi=110)
        plt.close(fig)
        plots["completion"] = "completion.png"
    return plots
