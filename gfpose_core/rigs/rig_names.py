"""Shipped maps for files that spell the names in another letter case (a Daz BVH written all in lower case):
the map's names respelled as the file has them, when each has exactly one case-insensitive match."""
from __future__ import annotations

import copy

from gfpose_core.rigs.rig_map import RigMap, all_rig_maps, parse_rig_map


def _respell(entry, spelling: dict[str, str]):
    if isinstance(entry, str):
        return entry if entry.startswith("@") else spelling.get(entry, entry)
    if isinstance(entry, dict):
        out = dict(entry)
        if "joint" in out:
            out["joint"] = _respell(out["joint"], spelling)
        if "lerp" in out:
            out["lerp"] = [_respell(r, spelling) for r in out["lerp"]]
        return out
    return entry


def respelled(rig: RigMap, names) -> RigMap | None:
    """This map with its source names as `names` spells them, or None where a name has no single match."""
    by_fold: dict[str, list[str]] = {}
    for n in names:
        by_fold.setdefault(n.casefold(), []).append(n)
    spelling = {}
    for src in rig.source_names():
        found = by_fold.get(src.casefold(), [])
        if len(found) != 1:
            return None
        spelling[src] = found[0]
    raw = copy.deepcopy(rig.raw)
    raw["joints"] = {k: _respell(v, spelling) for k, v in raw["joints"].items()}
    raw.pop("write", None)      # keying names armature bones, which a respelled file does not give
    return parse_rig_map(raw, rig.path)


def detect_any_case(names, kind: str = "bvh") -> RigMap | None:
    """The first shipped or user map of this kind that fits the names in any letter case."""
    for rig in all_rig_maps():
        if rig.kind == kind:
            fitted = respelled(rig, names)
            if fitted is not None:
                return fitted
    return None
