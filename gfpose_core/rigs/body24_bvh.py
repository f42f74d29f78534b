"""Poses as a BVH file on a body24 skeleton (centimetres, Y up), e.g. for `gfpose generate -o poses.bvh`.

The caller gives the rest pose (the engine's `rest_pose()`: its mean pose on the reference body); `rigs/body24.toml` reads such files back.
"""
from __future__ import annotations

import numpy as np

from gfpose_core.body.skeleton import JOINT_NAMES, PARENTS
from gfpose_core.formats.bvh import BvhClip, BvhSkeleton, write_bvh
from gfpose_core.rigs.bvh_skeleton import _z_up_to_y_up, apply_body24
from gfpose_core.rigs.rig_map import load_rig_map

_END_CM = 3.0  # End Sites continue each leaf bone a little, as BVH readers expect a tip on every chain


def body24_skeleton(rest: np.ndarray) -> BvhSkeleton:
    """A BVH skeleton whose rest pose is `rest` (24, 3) metres, Z up."""
    pts = _z_up_to_y_up(rest) * 100.0
    names, parents, offsets, channels = [], [], [], []
    leaves = set(range(len(JOINT_NAMES))) - set(PARENTS.tolist())
    index = {}
    for j, name in enumerate(JOINT_NAMES):
        p = PARENTS[j]
        index[j] = len(names)
        names.append(name)
        parents.append(-1 if p < 0 else index[p])
        offsets.append(pts[j] if p < 0 else pts[j] - pts[p])
        channels.append((["Xposition", "Yposition", "Zposition"] if p < 0 else []) +
                        ["Zrotation", "Xrotation", "Yrotation"])
        if j in leaves:
            bone = pts[j] - pts[p]
            names.append(name + ":end")
            parents.append(index[j])
            offsets.append(bone / max(np.linalg.norm(bone), 1e-9) * _END_CM)
            channels.append([])
    # body24 order lists a joint's children after it, but BVH nests them: reorder depth-first.
    order = _depth_first(parents)
    remap = {old: new for new, old in enumerate(order)}
    return BvhSkeleton([names[o] for o in order], np.array([remap[parents[o]] if parents[o] >= 0 else -1
                                                            for o in order]),
                       np.array([offsets[o] for o in order], float), [channels[o] for o in order],
                       np.array([names[o].endswith(":end") for o in order]))


def _depth_first(parents: list[int]) -> list[int]:
    kids: dict[int, list[int]] = {}
    for j, p in enumerate(parents):
        kids.setdefault(p, []).append(j)
    out, stack = [], list(reversed(kids[-1]))
    while stack:
        j = stack.pop()
        out.append(j)
        stack.extend(reversed(kids.get(j, [])))
    return out


def write_body24_bvh(path, poses: np.ndarray, rest: np.ndarray, fps: float = 30.0) -> None:
    """Poses (F, 24, 3) metres, Z up, one per frame -> a BVH file whose rest pose is `rest` (24, 3)."""
    sk = body24_skeleton(rest)
    clip = BvhClip(sk, np.zeros((len(poses), sk.n_channels)), 1.0 / fps, "poses")
    rig = load_rig_map("body24")
    pos, rot = clip.forward_kinematics()
    before = rig.body24_positions(sk.names, pos, rot)
    write_bvh(path, apply_body24(clip, rig, before, poses))
