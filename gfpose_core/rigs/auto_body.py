"""Where the body is in a skeleton's tree: the pelvis branch (two legs and the spine), the chest branch (two arms
and the neck), or a refusal that says what the skeleton has instead."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gfpose_core.rigs.auto_graph import Graph
from gfpose_core.rigs.rig_map import RigMapError


class NotHumanoidError(RigMapError):
    """The skeleton has no two arms and two legs; the message says what it has."""


def unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else v * 0.0


@dataclass
class _Body:
    pelvis: int
    chest: int
    head: int
    arms: list[int]
    legs: list[int]
    torso: list[int]   # pelvis node .. chest node


def find_body(g: Graph, name: str) -> _Body:
    s = g.extent
    best, best_score = None, -1.0
    for c in range(len(g.names)):
        big = [k for k in g.children[c] if g.via(c, k) >= 0.18 * s]
        if len(big) < 2:
            continue
        prev, a = c, int(g.parent[c])
        while a >= 0:
            legs = [k for k in g.children[a] if k != prev and g.via(a, k) >= 0.25 * s]
            if len(legs) >= 2:
                break
            prev, a = a, int(g.parent[a])
        if a < 0:
            continue
        u0 = unit(g.head[c] - g.head[a])
        if not np.any(u0):
            continue

        def rise(k, base):
            return max(float((g.head[d] - g.head[base]) @ u0) for d in g.subtree(k))

        head = max(g.children[c], key=lambda k: rise(k, c))
        arms = sorted((k for k in g.children[c] if k != head and g.via(c, k) >= 0.18 * s),
                      key=lambda k: -g.via(c, k))[:2]
        legs = sorted(legs, key=lambda k: float((g.head[g.deepest[k]] - g.head[a]) @ u0))[:2]
        if len(arms) < 2 or rise(head, c) < 0.04 * s:
            continue
        top = rise(head, a)
        low = [float((g.head[g.deepest[k]] - g.head[a]) @ u0) for k in legs]
        if max(low) > -0.6 * top:
            continue          # the "legs" do not hang below the pelvis: a quadruped's, or helper bones
        ra = [g.via(c, k) for k in arms]
        rl = [g.via(a, k) for k in legs]
        if max(ra) > 1.6 * min(ra) or max(rl) > 1.6 * min(rl):
            continue
        score = sum(ra) + sum(rl)
        if score > best_score:
            torso = [c] + [x for x in g.ancestors(c)[: g.ancestors(c).index(a) + 1]]
            best, best_score = _Body(a, c, head, arms, legs, torso[::-1]), score
    if best is None:
        raise NotHumanoidError(_refusal(g, name))
    return best


def _refusal(g: Graph, name: str) -> str:
    """What the skeleton has instead of two arms and two legs."""
    s = g.extent
    branch = {i for i in range(len(g.names)) if sum(g.via(i, k) >= 0.2 * s for k in g.children[i]) >= 2}
    vertical = 2 if g.kind == "armature" else 1
    floor = float(np.min(g.head[:, vertical]))
    legs = arms = 0
    for b in branch:
        limbs = [k for k in g.children[b] if g.via(b, k) >= 0.2 * s and not branch & set(g.subtree(k))]
        down = [k for k in limbs if g.head[g.deepest[k], vertical] - floor < 0.1 * s]
        legs += len(down)
        arms += 2 * ((len(limbs) - len(down)) // 2)
    return (f"'{name}' does not look like a humanoid: found {legs} leg(s) reaching the floor and {arms} arm(s); "
            "a humanoid mapping needs two arms and two legs")


