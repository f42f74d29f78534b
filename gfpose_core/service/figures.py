"""Stick-figure drawings of body24 poses (matplotlib, headless), for the demo."""
from __future__ import annotations

import numpy as np

from gfpose_core.body.skeleton import BONES, JOINT_NAMES

_SIDE_COLOURS = {"_l": "tab:blue", "_r": "tab:red"}


def _colour(joint: int) -> str:
    name = JOINT_NAMES[joint]
    return next((c for suffix, c in _SIDE_COLOURS.items() if name.endswith(suffix)), "0.2")


def draw_pose(ax, joints: np.ndarray, colour: str | None = None, alpha: float = 1.0, label: str | None = None,
              highlight: np.ndarray | None = None):
    """Front view (X right, Z up) of one pose on a matplotlib axis; `highlight` joints get dots."""
    for k, (child, parent) in enumerate(BONES):
        a, b = joints[parent], joints[child]
        ax.plot([a[0], b[0]], [a[2], b[2]], color=colour or _colour(child), alpha=alpha, lw=2,
                label=label if k == 0 else None)
    if highlight is not None and highlight.any():
        ax.scatter(joints[highlight, 0], joints[highlight, 2], s=18, color="k", zorder=3)
    ax.set_aspect("equal")
    ax.axis("off")


def save_figure(fig, path):
    fig.savefig(path, dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
