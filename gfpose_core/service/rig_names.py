"""The `rig` field of the HTTP API: a map *name* the engine knows, or a map sent inline — never a path.

A path would let any client make the server open any file on its disk (`/dev/zero` grows the process until it
dies; a TOML file's keys leak in the error), so a name is checked against a strict pattern and looked up only in
the shipped maps and in the user's map folder (`rig_map.user_rig_dir`: `GFPOSE_RIG_MAPS`, else the platform's user
configuration folder). An automatic mapping (`auto:...`) is named by what the engine made for an armature, never
read from a file.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from gfpose_core.rigs.rig_map import RIGS_DIR, RigMap, RigMapError, generated_map, parse_rig_map, user_rig_dir
from gfpose_core.rigs.solve import BindingCache

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_MAP_BYTES = 256 * 1024   # the largest shipped map is a few kB; a bigger file is not a rig map


def _folders() -> list[Path]:
    return [RIGS_DIR, user_rig_dir()]


def known_names() -> list[str]:
    names = set()
    for folder in _folders():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml") if NAME.fullmatch(p.stem) and p.is_file())
    return sorted(names)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


def map_by_name(name: str) -> RigMap:
    """A shipped map (first) or one in the user's folder, by its file stem; anything else is a RigMapError."""
    if name.startswith("auto:"):
        rig = generated_map(name) if len(name) <= 200 else None
        if rig is None:
            raise RigMapError(f"no automatic mapping {_short(name)!r} in this engine: send the armature with no rig "
                              "to map it again")
        return rig
    stem = name[:-5] if name.endswith(".toml") else name
    if not NAME.fullmatch(stem) or stem.endswith("."):
        raise RigMapError(f"rig {_short(name)!r} is not a rig map name (letters, digits, '_', '-', '.'; "
                          f"at most 64): the engine reads maps by name, never by path")
    for folder in _folders():
        p = folder / f"{stem}.toml"
        # is_file() refuses folders, devices and fifos; the size cap refuses a huge file before reading it.
        if p.is_file():
            if p.stat().st_size > MAX_MAP_BYTES:
                raise RigMapError(f"rig map '{stem}' is over {MAX_MAP_BYTES} bytes")
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise RigMapError(f"rig map '{stem}' is not valid TOML ({_short(str(e), 80)})") from None
            rig = parse_rig_map(data, stem)
            # answers name the map by what finds it again: a binding's `rig` comes back in /pose_for_rig
            rig.name = stem
            return rig
    raise RigMapError(f"no rig map '{stem}' (known: {', '.join(known_names())})")


def resolve_rig(rig) -> RigMap | None:
    """The request's `rig`: None (detect from the bone names), a known name, or a map as a JSON object."""
    if rig is None:
        return None
    if isinstance(rig, dict):
        if len(json.dumps(rig, default=str)) > MAX_MAP_BYTES:
            raise RigMapError(f"the inline rig map is over {MAX_MAP_BYTES} bytes")
        return parse_rig_map(rig, str(rig.get("name", "inline map"))[:64])
    if isinstance(rig, str):
        if rig.startswith("auto:"):
            return None     # made for an armature: the armature sent (or the binding held) maps again the same
        return map_by_name(rig)
    raise RigMapError("rig must be a rig map name or a rig map object")


class NamedBindingCache(BindingCache):
    """The server's cache: its keys also cover maps given as objects (the base class digests names only)."""

    @staticmethod
    def digest(description: dict, rig) -> str:
        import hashlib
        key = rig.raw if isinstance(rig, RigMap) else rig
        return hashlib.sha1(json.dumps([description, key], sort_keys=True, default=str).encode()).hexdigest()
