"""What an operator will do, decided without Blender: which body24 joints the animator's bones fix, which bones to
key, whether keys are close enough for the motion model, and the JSON the engine is sent.

No bpy here (numpy and the standard library only), so these decisions are tested with plain pytest. The joint set
and the motion model's rate and key gap come from the engine's /info, never from a copy kept here.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np

_BONE_PATH = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.(\w+)$')


@dataclass(frozen=True)
class Skeleton:
    """The engine's joint set as /info states it: names in order and each joint's parent (-1 for the root)."""
    names: tuple[str, ...]
    parents: tuple[int, ...]

    @classmethod
    def from_info(cls, info: dict) -> "Skeleton":
        names, parents = info.get("joints"), info.get("parents")
        if not names or not parents or len(names) != len(parents):
            raise ValueError("the engine's /info does not state its joints and their parents: update the engine")
        return cls(tuple(names), tuple(int(p) for p in parents))

    @property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def children(self, j: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == j]


@dataclass(frozen=True)
class MotionLimits:
    """The motion model's frame rate and the most frames it fills from one key to the next (/info)."""
    fps: float
    max_gap: int

    @classmethod
    def from_info(cls, info: dict) -> "MotionLimits | None":
        m = info.get("motion_model")
        return None if not m else cls(float(m["fps"]), int(m["max_gap_frames"]))


def bone_of_path(path: str) -> tuple[str, str] | None:
    """('bone', 'property') of an F-curve data path on a pose bone, or None for any other path."""
    m = _BONE_PATH.match(path)
    if not m:
        return None
    return m.group(1).replace('\\"', '"').replace("\\\\", "\\"), m.group(2)


def _bones_by_joint(write: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for bone, joint in write["bones"].items():
        out.setdefault(joint, []).append(bone)
    return out


def known_joints(sk: Skeleton, write: dict, posed: set[str]) -> list[bool]:
    """A joint is known when the animator's bones alone fix it: the root bone carries the pelvis, and a joint is
    known when its parent joint is and a posed bone turns with that parent (a joint no bone turns with follows its
    parent)."""
    by_joint = _bones_by_joint(write)
    known = [False] * len(sk.names)
    known[0] = write["root"] in posed
    for c in range(1, len(sk.names)):
        a = sk.parents[c]
        turners = by_joint.get(sk.names[a], [])
        known[c] = known[a] and (not turners or any(b in posed for b in turners))
    return known


def with_root(write: dict, posed: set[str], move_root: bool) -> set[str]:
    """The bones that count as posed for a completion: the animator's, and the root bone where it is not posed and
    may not move (an animator expects the character to stay where it stands, at the root's current transform).
    With no mapped bone posed there is nothing to complete around, and the root alone does not make one."""
    if move_root or not set(posed) & set(write["bones"]):
        return set(posed)
    return set(posed) | {write["root"]}


def bones_to_key(sk: Skeleton, write: dict, posed: set[str], known: list[bool]) -> list[str]:
    """The mapped bones the animator did not pose that turn with a joint whose children are not known (and the
    root when the pelvis is not known)."""
    index = sk.index
    out = []
    for bone, joint in write["bones"].items():
        if bone in posed:
            continue
        j = index[joint]
        if any(not known[c] for c in sk.children(j)) or (bone == write["root"] and not known[0]):
            out.append(bone)
    if write["root"] not in posed and not known[0] and write["root"] not in out:
        out.append(write["root"])
    return out


def joints_from_posed_bones(sk: Skeleton, write: dict, posed: set[str]) -> list[str]:
    """The joints the given bones hold (Generate's pinned joints): the joint each turns with and that joint's
    children (the root bone holds the pelvis)."""
    index = sk.index
    names: set[str] = set()
    for bone, joint in write["bones"].items():
        if bone in posed:
            names.add(joint)
            names.update(sk.names[c] for c in sk.children(index[joint]))
    if write["root"] in posed:
        names.add(sk.names[0])
    return [n for n in sk.names if n in names]


def check_key_gaps(frames: list[int], fps: float, limits: MotionLimits | None) -> None:
    """Refuse keys too far apart for the motion model, naming the scene's frames (the engine's own message counts
    frames of the take it was sent, at its own rate)."""
    if limits is None:
        raise ValueError("the engine has no motion model to fill in-betweens with")
    at_rate = [round((f - frames[0]) * limits.fps / fps) for f in frames]
    for (a, b), (ra, rb) in zip(zip(frames, frames[1:]), zip(at_rate, at_rate[1:])):
        if rb - ra > limits.max_gap:
            raise ValueError(f"keys on frames {a} and {b} are {(b - a) / fps:.2f} s apart: the motion model fills "
                             f"at most {limits.max_gap / limits.fps:.1f} s ({limits.max_gap - 1} frames at "
                             f"{limits.fps:.0f} fps) between keys; select a key between them")


def check_fill_frames(frames: list[int], mapped: bool) -> None:
    """The selected keys' frames must be at least two, and (once the map is known) leave a frame to fill."""
    whose = "of the mapped bones " if mapped else ""
    if len(frames) < 2:
        found = f"only frame {frames[0]} has one" if frames else "none are selected"
        raise ValueError(f"select keyframes {whose}on at least two frames to fill between them ({found})")
    if mapped and frames[-1] - frames[0] + 1 == len(frames):
        raise ValueError(f"nothing to fill: the selected keyframes are on every frame {frames[0]}..{frames[-1]}")


def joints_payload(joints: np.ndarray, known) -> list:
    """Poses as the engine's JSON: unknown joints as [null, null, null]."""
    out = []
    for pose, kn in zip(joints, known):
        out.append([[float(x) for x in p] if k else [None, None, None] for p, k in zip(pose, kn)])
    return out


def jitter_mm(take: np.ndarray) -> float:
    """Mean size of the second difference of every joint, mm per frame^2 (what jitter adds to a smooth take)."""
    t = np.asarray(take, dtype=np.float64)
    if len(t) < 3:
        return 0.0
    return float(np.linalg.norm(t[2:] - 2 * t[1:-1] + t[:-2], axis=-1).mean() * 1000)


def armature_signature(desc: dict) -> str:
    """A digest of everything an armature description holds (bones, parents, rest matrices, rotation modes,
    constraints as evaluated, the object's placement): a binding or a plan stays valid while it is unchanged."""
    return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def keys_of_pose(pose: dict, k: int, bones: list[str], root: str, now: dict | None = None) -> dict:
    """One frame (k) of the engine's solve (a /pose_for_rig answer) as a write_keys pose for `bones` only: their
    rotation channels, and the root's location when the root is among them. The engine solved these bones under
    the rig's real parents (the posed bones kept as they are), so the values are keyed as they come.

    now: {(bone, path): values} the bones hold now; a quaternion is keyed with the sign nearest it and an Euler
    angle a whole turn nearest it, so the curve from the key before does not spin the long way round."""
    want = set(bones)
    channels = []
    for c in pose["channels"]:
        b, path = c["bone"], c["path"]
        if b not in want or (path == "location" and b != root):
            continue
        v = [float(x) for x in c["values"][k]]
        if now is not None and (b, path) in now:
            v = nearest_rotation(path, v, now[(b, path)])
        channels.append({"bone": b, "path": path, "values": [v]})
    modes = {b: m for b, m in pose.get("rotation_modes", {}).items() if b in want}
    return {"frames": 1, "channels": channels, "rotation_modes": modes, "properties": pose.get("properties", [])}


def nearest_rotation(path: str, values: list[float], before) -> list[float]:
    """The same rotation written nearest the value a channel had: the quaternion's sign, each Euler angle plus the
    whole turns that bring it closest (other paths as they are)."""
    v = np.asarray(values, dtype=np.float64)
    b = np.asarray(before, dtype=np.float64)
    if b.shape != v.shape or not np.isfinite(b).all():
        return [float(x) for x in v]
    if path == "rotation_quaternion" and float(v @ b) < 0:
        v = -v
    elif path == "rotation_euler":
        v = v + 2 * np.pi * np.round((b - v) / (2 * np.pi))
    return [float(x) for x in v]
