"""Rig mapping files (`rigs/*.toml`): where each body24 joint sits on a source skeleton or armature.

A joint entry is one of
    "Name"                                   the joint's (or bone's) head; "Name:end" a BVH End Site, which on an
                                             armature is the bone's tail; "Name:tail" a bone's tail
    { joint = "Name", offset = [x, y, z] }   a point fixed in that joint's local frame: for a BVH map the joint's
                                             frame (source units and axes, which at rest are the file's axes); for
                                             an armature map the bone's own frame (Blender: Y along the bone)
    { joint = "Name", rest_offset = [...] }  armature maps: a point fixed to the bone, given in the armature's axes
                                             at rest (Z up, -Y front), so that it does not depend on bone rolls
    { lerp = ["A", "B"], t = 0.25 }          a point between two others; "@body24name" names a body24
                                             joint already defined above it in body24 order
An optional [write] table says how to put poses back on an armature: which bone turns with which body24 joint
(`bones`), which bone carries the root translation (`root`), which bones to hold at rest (`rest`) and which custom
properties to set first (`properties`, e.g. Rigify's IK/FK switches).
The loader validates a file on its own (`load_rig_map`) and against a skeleton (`RigMap.check_names`),
naming every problem it finds at once.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gfpose_core.body.rotations import y_up_to_z_up
from gfpose_core.body.skeleton import INDEX, JOINT_NAMES, PARENTS

RIGS_DIR = Path(__file__).resolve().parent / "maps"
_KEYS = {"name", "kind", "description", "up_axis", "unit_scale", "aliases", "joints", "keyed_bones", "prefixes",
         "write", "options"}
_WRITE_KEYS = {"root", "bones", "rest", "properties"}
# The body24 joints a bone can turn with: every joint that has a child (end points have nothing to turn).
PIVOTS = tuple(n for j, n in enumerate(JOINT_NAMES) if j in set(PARENTS.tolist()))
_END_SUFFIXES = (":end", ":tail")


class RigMapError(ValueError):
    pass


@dataclass
class JointSpec:
    kind: str                 # "joint" | "offset" | "rest_offset" | "lerp"
    refs: tuple[str, ...]     # source names or "@body24"
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    t: float = 0.0


@dataclass
class WriteSpec:
    """How to key poses onto an armature of this family."""
    root: str                            # bone whose location carries the root translation
    bones: dict[str, str]                # keyed bone -> the body24 joint it turns with (a PIVOTS name)
    rest: list[str] = field(default_factory=list)                    # bones keyed at their rest pose
    properties: dict[str, dict[str, float]] = field(default_factory=dict)  # pose bone -> {custom property: value}

    def bone_names(self) -> set[str]:
        return set(self.bones) | set(self.rest) | set(self.properties) | {self.root}


def bone_of(ref: str) -> str:
    """The bone a reference lives on: "Head:end" and "Head:tail" are points on the bone "Head"."""
    for suffix in _END_SUFFIXES:
        if ref.endswith(suffix):
            return ref[: -len(suffix)]
    return ref


@dataclass
class RigMap:
    name: str
    kind: str                  # "bvh" | "armature"
    up_axis: str
    unit_scale: float
    joints: dict[str, JointSpec]
    aliases: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    write: WriteSpec | None = None
    path: str = ""
    raw: dict = field(default_factory=dict)

    def source_names(self) -> set[str]:
        return {r for s in self.joints.values() for r in s.refs if not r.startswith("@")}

    def bone_names(self) -> set[str]:
        """Every armature bone this map names: joint references (End Sites become their bones) and [write] bones."""
        names = {bone_of(r) for r in self.source_names()}
        return names | (self.write.bone_names() if self.write else set())

    def check_names(self, available: set[str] | list[str]) -> None:
        """Raise naming every source joint this map refers to that the skeleton lacks."""
        missing = sorted(n for n in self.source_names() if n not in set(available))
        if missing:
            raise RigMapError(f"{self.path or self.name}: the skeleton has no joint(s) {', '.join(missing)}")

    def joints_using(self, names: set[str]) -> list[str]:
        """body24 joints whose entry depends (directly or through '@' references) on any of these source names."""
        hit: list[str] = []
        for body_name in JOINT_NAMES:
            spec = self.joints[body_name]
            if any((r[1:] in hit) if r.startswith("@") else (r in names or bone_of(r) in names) for r in spec.refs):
                hit.append(body_name)
        return hit

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
            elif spec.kind in ("offset", "rest_offset"):
                # A BVH joint's local frame is the file's axes at rest, so both offset forms read the same here.
                k = index[spec.refs[0]]
                out[:, j] = positions[:, k] + np.einsum("fij,j->fi", rotations[:, k], np.array(spec.offset))
            else:
                a, b = point(spec.refs[0]), point(spec.refs[1])
                out[:, j] = a + spec.t * (b - a)
        out *= self.unit_scale
        if self.up_axis == "Y":
            out = y_up_to_z_up(out)
        return out


def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
    unknown = set(entry) - {"joint", "offset", "rest_offset", "lerp", "t"}
    if unknown:
        problems.append(f"{body_name}: unknown key(s) {', '.join(sorted(unknown))}")
        return None
    if "lerp" in entry:
        refs, t = entry["lerp"], entry.get("t", 0.5)
        if not (isinstance(refs, list) and len(refs) == 2):
            problems.append(f"{body_name}: lerp needs two names")
            return None
        if not _finite_number(t):
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
        if "offset" in entry and "rest_offset" in entry:
            problems.append(f"{body_name}: give 'offset' or 'rest_offset', not both")
            return None
        key = "rest_offset" if "rest_offset" in entry else "offset"
        off = entry.get(key, [0.0, 0.0, 0.0])
        if not (isinstance(off, list) and len(off) == 3 and all(_finite_number(v) for v in off)):
            problems.append(f"{body_name}: bad {key} {off!r} (need three finite numbers)")
            return None
        return JointSpec(key, (entry["joint"],), offset=tuple(float(v) for v in off))
    problems.append(f"{body_name}: table needs 'joint' or 'lerp'")
    return None


def _parse_write(raw, problems: list[str]) -> WriteSpec | None:
    if not isinstance(raw, dict):
        problems.append("[write] must be a table")
        return None
    unknown = set(raw) - _WRITE_KEYS
    if unknown:
        problems.append(f"[write]: unknown key(s) {', '.join(sorted(unknown))}")
    bones = raw.get("bones")
    if not isinstance(bones, dict) or not bones:
        problems.append("[write]: needs a [write.bones] table (bone = the body24 joint it turns with)")
        bones = {}
    for bone, pivot in bones.items():
        if pivot not in PIVOTS:
            problems.append(f"[write.bones]: {bone} = {pivot!r} is not a body24 joint a bone can turn with "
                            f"(one of {', '.join(PIVOTS)})")
    root = raw.get("root")
    if not isinstance(root, str) or not root:
        problems.append("[write]: root = the bone that carries the root translation is missing")
    elif root not in bones:
        problems.append(f"[write]: root bone '{root}' must also be listed in [write.bones]")
    rest = raw.get("rest", [])
    if not (isinstance(rest, list) and all(isinstance(r, str) and r for r in rest)):
        problems.append(f"[write]: rest = {rest!r} (expected a list of bone names)")
        rest = []
    both = sorted(set(rest) & set(bones))
    if both:
        problems.append(f"[write]: bone(s) {', '.join(both)} are both keyed and held at rest")
    props = raw.get("properties", {})
    clean: dict[str, dict[str, float]] = {}
    if not isinstance(props, dict):
        problems.append("[write.properties] must be a table of bone = { property = value }")
        props = {}
    for bone, values in props.items():
        if not isinstance(values, dict) or not values:
            problems.append(f"[write.properties]: {bone} needs a table of property = number")
            continue
        bad = [k for k, v in values.items() if not (_finite_number(v) or isinstance(v, bool))]
        if bad:
            problems.append(f"[write.properties]: {bone}: {', '.join(bad)} must be numbers")
            continue
        clean[bone] = {k: float(v) for k, v in values.items()}
    return WriteSpec(root=root if isinstance(root, str) else "", bones=dict(bones), rest=list(rest),
                     properties=clean)


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
    for key in ("aliases", "prefixes"):
        value = data.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append(f"{key} = {value!r} (expected a list of names)")
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
            if spec.kind == "rest_offset" and kind == "bvh":
                problems.append(f"{body_name}: rest_offset is for armature maps (a BVH offset is already in the "
                                "file's axes at rest)")
            joints[body_name] = spec
        defined.add(body_name)
    write = _parse_write(data["write"], problems) if "write" in data else None
    if problems:
        raise RigMapError(f"{path or name}: " + "; ".join(problems))
    return RigMap(name=name, kind=kind, up_axis=up_axis, unit_scale=float(scale), joints=joints,
                  aliases=list(data.get("aliases", [])), prefixes=list(data.get("prefixes", [])),
                  write=write, path=path, raw=data)


def user_rig_dir() -> Path:
    """The animator's own rig maps, outside the engine and the add-on: $GFPOSE_RIG_MAPS, else the platform's user
    configuration folder (~/.config/gfpose/rigs, ~/Library/Application Support/gfpose/rigs, %APPDATA%/gfpose/rigs).
    The add-on saves reviewed mappings there; the engine loads them by name like the shipped ones."""
    env = os.environ.get("GFPOSE_RIG_MAPS")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "gfpose" / "rigs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "gfpose" / "rigs"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "gfpose" / "rigs"


def _map_files() -> list[Path]:
    """Shipped maps, then the user's (a user file named like a shipped map does not replace it)."""
    shipped = sorted(RIGS_DIR.glob("*.toml"))
    taken = {p.stem.lower() for p in shipped}
    user_dir = user_rig_dir()
    user = sorted(p for p in user_dir.glob("*.toml") if p.stem.lower() not in taken) if user_dir.is_dir() else []
    return shipped + user


# Maps made at run time (the automatic mapping), by name, so that a name in a reply can be loaded back.
_GENERATED: dict[str, RigMap] = {}


def remember_rig_map(rig: RigMap) -> RigMap:
    _GENERATED[rig.name] = rig
    while len(_GENERATED) > 64:
        _GENERATED.pop(next(iter(_GENERATED)))
    return rig


def generated_map(name: str) -> RigMap | None:
    """An automatic mapping made earlier in this process, by its `auto:` name (None when it is not held)."""
    return _GENERATED.get(name)


def load_rig_map(path_or_name: str | os.PathLike) -> RigMap:
    """A rig map from a path, or by name (with or without `.toml`, any letter case): shipped maps, the user's
    folder (`user_rig_dir`), or an automatic mapping made earlier in this process."""
    if isinstance(path_or_name, str) and path_or_name in _GENERATED:
        return _GENERATED[path_or_name]
    p = Path(path_or_name)
    if not p.exists():
        stem = p.name[:-5] if p.name.lower().endswith(".toml") else p.name
        found = [q for q in _map_files() if q.stem.lower() == stem.lower()]
        if not found:
            known = ", ".join(rig_map_names())
            raise RigMapError(f"no rig map '{path_or_name}' (known: {known}; your own maps go in {user_rig_dir()})")
        p = found[0]
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RigMapError(f"{p}: not valid TOML ({e})") from None
    return parse_rig_map(data, str(p))


def rig_map_names() -> list[str]:
    """Names of the rig maps this engine knows, shipped and the user's (what `load_rig_map` and the servers' `rig`
    field accept)."""
    return [p.stem for p in _map_files()]


def all_rig_maps() -> list[RigMap]:
    """Every loadable map: shipped, then the user's; a broken user file is skipped (`check` names its problems)."""
    out = []
    for p in _map_files():
        try:
            out.append(load_rig_map(p))
        except RigMapError:
            if p.parent == RIGS_DIR:
                raise
    return out


# --- matching names ---------------------------------------------------------------------------------------------

@dataclass
class NameMatch:
    """How well one map's names fit a skeleton: the prefix in front of every name, what is there and what is not."""
    rig: RigMap
    prefix: str
    missing: list[str]       # names the map needs for body24 joints (without the prefix), not found
    missing_write: list[str]  # [write] bones not found (reading still works; writing does not)
    score: float             # fraction of the map's names (joints, [write] bones, aliases) found
    found: int

    @property
    def fits(self) -> bool:
        return not self.missing

    def unmapped_joints(self) -> list[str]:
        return self.rig.joints_using(set(self.missing))


def match_names(rig: RigMap, names, armature: bool = True) -> NameMatch:
    """Fit one map to a skeleton's names. On an armature, names may carry one common prefix ("mixamorig:", "ORG-"
    ...) and End Sites are bone tails; a BVH file's joints must match exactly."""
    available = set(names)
    needed = sorted({bone_of(r) for r in rig.source_names()} if armature else rig.source_names())
    writing = sorted(rig.write.bone_names()) if (armature and rig.write) else []
    wanted = sorted(set(needed) | set(writing) | set(rig.aliases))
    prefixes = {""}
    if armature:
        # Any text in front of a wanted name on some bone is a candidate prefix; the best one is kept.
        by_suffix = {w: len(w) for w in wanted}
        for n in available:
            for w, k in by_suffix.items():
                if len(n) > k and n.endswith(w):
                    prefixes.add(n[:-k])
        prefixes.update(p for p in rig.prefixes)
    best = None
    for prefix in sorted(prefixes, key=lambda p: (len(p), p)):
        found = sum(prefix + w in available for w in wanted)
        if best is None or found > best[1]:
            best = (prefix, found)
    prefix, found = best
    missing = [w for w in needed if prefix + w not in available]
    missing_write = [w for w in writing if prefix + w not in available]
    return NameMatch(rig=rig, prefix=prefix, missing=missing, missing_write=missing_write,
                     score=found / max(len(wanted), 1), found=found)


def _template_hint(name: str = "my_rig", like: str | None = None) -> str:
    like_arg = f" --like {like}" if like else ""
    target = user_rig_dir() / f"{name}.toml"
    return (f"Write a mapping: python -m gfpose_core.rigs.rig_map template {name}{like_arg} > {target} "
            f"(or copy {RIGS_DIR / 'TEMPLATE.toml.txt'} there) and name a joint for every body24 entry")


def rank_rig_maps(names, kind: str | None = None) -> list[NameMatch]:
    """Every map scored against these names, best first (fitting maps, then score, then names found, then the
    shorter prefix)."""
    armature = kind == "armature"
    matches = [match_names(rig, names, armature=armature) for rig in all_rig_maps()
               if kind in (None, "armature") or rig.kind == kind]
    matches.sort(key=lambda m: (not m.fits, -m.score, -m.found, len(m.prefix), m.rig.name))
    return matches


def detect_rig_map(names: list[str], kind: str | None = None) -> RigMap:
    """The mapping whose source names the skeleton has most completely; an error naming what is unmapped.

    kind "bvh": a BVH file's joints, BVH maps only, exact names. kind "armature": an armature's bone names, every
    map (BVH maps read armatures imported from their files), prefix-tolerant. None: every map, exact names.
    """
    return detect_rig_match(names, kind).rig


def detect_rig_match(names: list[str], kind: str | None = None) -> NameMatch:
    """As `detect_rig_map`, also giving the prefix in front of the bone names."""
    ranked = rank_rig_maps(names, kind)
    best = ranked[0] if ranked else None
    if best is None or not best.fits:
        raise RigMapError(
            "no rig map fits this skeleton"
            + (f"; closest is '{best.rig.name}', which lacks {', '.join(best.prefix + m for m in best.missing)} "
               f"(body24 joints unmapped: {', '.join(best.unmapped_joints())})" if best else "")
            + ". " + _template_hint(like=best.rig.name if best and best.score > 0 else None))
    return best


# --- a template for a new mapping ---------------------------------------------------------------------------------

def template_text(name: str, like: str | None = None, kind: str = "armature") -> str:
    """A new mapping file's text: the TEMPLATE, or an existing map's entries to edit (`like`)."""
    if like is None:
        text = (RIGS_DIR / "TEMPLATE.toml.txt").read_text()
        return text.replace('name = "my_rig"', f'name = "{name}"').replace('kind = "bvh" ', f'kind = "{kind}"')
    src = Path(load_rig_map(like).path).read_text()
    lines = [f"# New mapping '{name}', started from rigs/{like}.toml: rename the bones to this rig's own."]
    for line in src.splitlines():
        lines.append(f'name = "{name}"' if line.startswith("name = ") else line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gfpose_core.rigs.rig_map", description="rig mapping files")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("template", help="print a new mapping file to fill in")
    t.add_argument("name")
    t.add_argument("--like", help="start from this existing map (e.g. mixamo)")
    t.add_argument("--kind", default="armature", choices=("armature", "bvh"))
    c = sub.add_parser("check", help="validate mapping files")
    c.add_argument("paths", nargs="*")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "template":
            sys.stdout.write(template_text(args.name, args.like, args.kind))
        else:
            for p in args.paths or _map_files():
                print(f"ok  {load_rig_map(p).name}")
    except RigMapError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
