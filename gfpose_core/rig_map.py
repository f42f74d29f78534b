"""Rig mapping files (`rigs/*.toml`): where each body24 joint sits on a source skeleton.

A joint entry is one of
    "Name"                                   the joint's (or bone's) head; "Name:end" a BVH End Site
    { joint = "Name", offset = [x, y, z] }   a point fixed in that joint's local frame (source units)
    { lerp = ["A", "B"], t = 0.25 }          a point between two others; "@body24name" names a body24
                                             joint already defined above it in body24 order
The loader validates a file on its own (`load_rig_map`) and against a skeleton (`RigMap.check_names`),
naming every problem it finds at once.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .rotations import y_up_to_z_up
from .skeleton import INDEX, JOINT_NAMES

RIGS_DIR = Path(__file__).resolve().parent.parent / "rigs"
_KEYS = {"name", "kind", "description", "up_axis", "unit_scale", "aliases", "joints", "keyed_bones", "prefixes",
         "write", "options"}


class RigMapError(ValueError):
    pass


@dataclass
class JointSpec:
    kind: str                 # "joint" | "offset" | "lerp"
    refs: tuple[str, ...]     # source names or "@body24"
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    t: float = 0.0


@dataclass
class RigMap:
    name: str
    kind: str                  # "bvh" | "armature"
    up_axis: str
    unit_scale: float
    joints: dict[str, JointSpec]
    aliases: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    path: str = ""
    raw: dict = field(default_factory=dict)

    def source_names(self) -> set[str]:
        return {r for s in self.joints.values() for r in s.refs if not r.startswith("@")}

    def check_names(self, available: set[str] | list[str]) -> None:
        """Raise naming every source joint this map refers to that the skeleton lacks."""
        missing = sorted(n for n in self.source_names() if n not in set(available))
        if missing:
            raise RigMapError(f"{self.path or self.name}: the skeleton has no joint(s) {', '.join(missing)}")

    def body24_positions(self, names: list[str], positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """Source joint positions (F, J, 3) and global rotations (F, J, 3, 3), file units and axes -> body24 metres.

        Output is Z up (converted from Y up where the map says so).
        """
        self.check_names(names)
        index = {n: i for i, n in enumerate(names)}
        out = np.zeros(positions.shape[:1] + (len(JOINT_NAMES), 3))

        def point(ref: str) -> np.ndarray:
            if ref.startswith("@"):
                return out[:, INDEX[ref[1:]]]
            return positions[:, index[ref]]

        for body_name in JOINT_NAMES:
            spec = self.joints[body_name]
            j = INDEX[body_name]
            if spec.kind == "joint":
                out[:, j] = point(spec.refs[0])
            elif spec.kind == "offset":
                k = index[spec.refs[0]]
                out[:, j] = positions[:, k] + np.einsum("fij,j->fi", rotations[:, k], np.array(spec.offset))
            else:
                a, b = point(spec.refs[0]), point(spec.refs[1])
                out[:, j] = a + spec.t * (b - a)
        out *= self.unit_scale
        if self.up_axis == "Y":
            out = y_up_to_z_up(out)
        return out


def _parse_joint(body_name: str, entry, problems: list[str], defined: set[str]) -> JointSpec | None:
    def check_ref(ref):
        if not isinstance(ref, str) or not ref:
            problems.append(f"{body_name}: joint reference {ref!r} is not a name")
            return False
        if ref.startswith("@"):
            if ref[1:] not in INDEX:
                problems.append(f"{body_name}: '{ref}' is not a body24 joint")
                return False
            if ref[1:] not in defined:
                problems.append(f"{body_name}: '{ref}' must be defined before {body_name} (body24 order)")
                return False
        return True

    if isinstance(entry, str):
        return JointSpec("joint", (entry,)) if check_ref(entry) else None
    if not isinstance(entry, dict):
        problems.append(f"{body_name}: expected a name or a table, found {type(entry).__name__}")
        return None
    unknown = set(entry) - {"joint", "offset", "lerp", "t"}
    if unknown:
        problems.append(f"{body_name}: unknown key(s) {', '.join(sorted(unknown))}")
        return None
    if "lerp" in entry:
        refs, t = entry["lerp"], entry.get("t", 0.5)
        if not (isinstance(refs, list) and len(refs) == 2):
            problems.append(f"{body_name}: lerp needs two names")
            return None
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
            problems.append(f"{body_name}: t = {t!r} is not a finite number")
            return None
        if all(check_ref(r) for r in refs):
            return JointSpec("lerp", tuple(refs), t=float(t))
        return None
    if "joint" in entry:
        if not check_ref(entry["joint"]) or entry["joint"].startswith("@"):
            if str(entry["joint"]).startswith("@"):
                problems.append(f"{body_name}: an offset needs a source joint, not '{entry['joint']}'")
            return None
        off = entry.get("offset", [0.0, 0.0, 0.0])
        if not (isinstance(off, list) and len(off) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in off)):
            problems.append(f"{body_name}: bad offset {off!r} (need three finite numbers)")
            return None
        return JointSpec("offset", (entry["joint"],), offset=tuple(float(v) for v in off))
    problems.append(f"{body_name}: table needs 'joint' or 'lerp'")
    return None


def parse_rig_map(data: dict, path: str = "") -> RigMap:
    problems: list[str] = []
    unknown = set(data) - _KEYS
    if unknown:
        problems.append(f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    name = data.get("name", Path(path).stem)
    kind = data.get("kind", "bvh")
    if kind not in ("bvh", "armature"):
        problems.append(f"kind = {kind!r} (expected 'bvh' or 'armature')")
    up_axis = data.get("up_axis", "Z")
    if up_axis not in ("Y", "Z"):
        problems.append(f"up_axis = {up_axis!r} (expected 'Y' or 'Z')")
    scale = data.get("unit_scale", 1.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not (math.isfinite(scale) and scale > 0):
        problems.append(f"unit_scale = {scale!r} (expected a positive number)")
        scale = 1.0
    joints_raw = data.get("joints")
    joints: dict[str, JointSpec] = {}
    if not isinstance(joints_raw, dict):
        problems.append("no [joints] table")
        joints_raw = {}
    for key in joints_raw:
        if key not in INDEX:
            problems.append(f"'{key}' is not a body24 joint")
    defined: set[str] = set()
    for body_name in JOINT_NAMES:
        if body_name not in joints_raw:
            problems.append(f"missing body24 joint '{body_name}'")
            continue
        spec = _parse_joint(body_name, joints_raw[body_name], problems, defined)
        if spec is not None:
            joints[body_name] = spec
        defined.add(body_name)
    if problems:
        raise RigMapError(f"{path or name}: " + "; ".join(problems))
    return RigMap(name=name, kind=kind, up_axis=up_axis, unit_scale=float(scale), joints=joints,
                  aliases=list(data.get("aliases", [])), prefixes=list(data.get("prefixes", [])),
                  path=path, raw=data)


def load_rig_map(path_or_name: str | os.PathLike) -> RigMap:
    """A rig map from a path or a name in `rigs/` (with or without `.toml`)."""
    p = Path(path_or_name)
    if not p.exists():
        cand = RIGS_DIR / (p.name if p.suffix == ".toml" else p.name + ".toml")
        if not cand.exists():
            known = ", ".join(sorted(q.stem for q in RIGS_DIR.glob("*.toml")))
            raise RigMapError(f"no rig map '{path_or_name}' (known: {known})")
        p = cand
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RigMapError(f"{p}: not valid TOML ({e})") from None
    return parse_rig_map(data, str(p))


def all_rig_maps() -> list[RigMap]:
    return [load_rig_map(p) for p in sorted(RIGS_DIR.glob("*.toml"))]


def detect_rig_map(names: list[str], kind: str | None = None) -> RigMap:
    """The mapping whose source names the skeleton has most completely; an error naming what is unmapped."""
    available = set(names)
    best, best_score, best_missing = None, -1.0, []
    for rig in all_rig_maps():
        if kind is not None and rig.kind != kind:
            continue
        wanted = rig.source_names()
        missing = sorted(n for n in wanted if n not in available)
        score = 1.0 - len(missing) / max(len(wanted), 1)
        if score > best_score:
            best, best_score, best_missing = rig, score, missing
    if best is None or best_missing:
        unmapped = [b for b, s in (best.joints.items() if best else [])
                    if any(r in best_missing for r in s.refs)]
        raise RigMapError(
            "no rig map fits this skeleton"
            + (f"; closest is '{best.name}', which lacks {', '.join(best_missing)} "
               f"(body24 joints unmapped: {', '.join(unmapped)})" if best else "")
            + f". Write a mapping: copy {RIGS_DIR / 'TEMPLATE.toml.txt'} to rigs/<name>.toml and name a joint for "
              "every body24 entry")
    return best
