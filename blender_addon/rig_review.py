"""Reviewing the rig mapping in use and saving a fixed one, without Blender: the table of body24 joints and the
bones they come from (read off the engine's /bind reply), a changed joint, and the whole mapping written as a rig
map file into the animator's own folder, where the engine finds it by name.

The saved file is the binding the engine made (shipped map, automatic mapping or a file), joint by joint, with the
animator's picks in place: a picked bone gives the joint at its head.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np

_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def user_rig_dir(info: dict | None = None) -> Path:
    """Where the animator's own maps live: the folder the engine reports in /info (`user_rig_maps`), else the same
    rule the engine uses ($GFPOSE_RIG_MAPS, else the platform's user configuration folder)."""
    if info and info.get("user_rig_maps"):
        return Path(info["user_rig_maps"])
    env = os.environ.get("GFPOSE_RIG_MAPS")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "gfpose" / "rigs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "gfpose" / "rigs"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "gfpose" / "rigs"


def source_of(binding: dict) -> str:
    """How the mapping in use was found, in words for the panel."""
    rig = binding.get("rig", "")
    if rig.startswith("auto:"):
        return "automatic (no map file fits)"
    return f"map '{rig}'"


def joint_table(binding: dict, joint_names: list[str], overrides: dict | None = None) -> list[tuple[str, str, bool]]:
    """(joint, bone, picked by the animator) for every body24 joint: the bone that weighs most in the joint."""
    w = np.asarray(binding["weights"], dtype=float)
    bones = binding["bones"]
    overrides = overrides or {}
    out = []
    for j, name in enumerate(joint_names):
        if name in overrides:
            out.append((name, overrides[name], True))
        else:
            out.append((name, bones[int(np.argmax(np.abs(w[j])))], False))
    return out


def _point_entry(bone: str, point, length: float, world_scale: float):
    """A column of the binding (a point fixed in a bone) as a rig map reference, or an offset in the bone's frame
    (metres, as armature maps give them)."""
    p = np.asarray(point, dtype=float)
    tol = 1e-6 * max(length, 1e-3)
    if np.linalg.norm(p) <= tol:
        return bone
    if np.linalg.norm(p - [0.0, length, 0.0]) <= tol:
        return f"{bone}:tail"
    return {"joint": bone, "offset": [float(v) * world_scale for v in p]}


def _row_entry(j: int, rows: np.ndarray, refs: list, joint_names: list[str]):
    row = rows[j]
    cols = [c for c in np.flatnonzero(np.abs(row) > 1e-9)]
    if len(cols) == 1 and abs(row[cols[0]] - 1) < 1e-9:
        return refs[cols[0]]
    if len(cols) == 2 and all(isinstance(refs[c], str) for c in cols):
        a, b = cols
        return {"lerp": [refs[a], refs[b]], "t": float(row[b])}
    # A point between an earlier body24 joint and one bone point (the spine between the pelvis and the neck).
    for k in range(j):
        for c in range(len(row)):
            if not isinstance(refs[c], str):
                continue
            basis = np.stack([rows[k], np.eye(len(row))[c]], axis=1)
            coef, *_ = np.linalg.lstsq(basis, row, rcond=None)
            if np.abs(basis @ coef - row).max() < 1e-9 and abs(coef.sum() - 1) < 1e-9:
                return {"lerp": [f"@{joint_names[k]}", refs[c]], "t": float(coef[1])}
    raise ValueError(f"joint {joint_names[j]}: this mapping mixes {len(cols)} bone points, which a map file cannot "
                     "say; pick a bone for it")


def map_from_binding(binding: dict, joint_names: list[str], lengths: dict[str, float], world_scale: float,
                     overrides: dict[str, str], name: str) -> dict:
    """The mapping the binding stands for, with the picked bones in place, as rig map file data."""
    if not _NAME.match(name):
        raise ValueError(f"map name {name!r}: use letters, digits, '_' or '-' (up to 64)")
    unknown = sorted(set(overrides) - set(joint_names))
    if unknown:
        raise ValueError(f"not body24 joints: {', '.join(unknown)}")
    missing = sorted(b for b in overrides.values() if b not in lengths)
    if missing:
        raise ValueError(f"the armature has no bone(s) {', '.join(missing)}")
    refs = [_point_entry(b, p, lengths[b], world_scale) for b, p in zip(binding["bones"], binding["points"])]
    w = np.asarray(binding["weights"], dtype=float)
    n = len(refs)
    rows = np.zeros((len(joint_names), n + len(overrides)))
    rows[:, :n] = w
    joints = {}
    for j, jn in enumerate(joint_names):
        if jn in overrides:
            refs.append(overrides[jn])
            rows[j] = 0.0
            rows[j, len(refs) - 1] = 1.0
            joints[jn] = overrides[jn]
        else:
            joints[jn] = _row_entry(j, rows[:, : len(refs)], refs, joint_names)
    raw = {"name": name, "kind": "armature", "up_axis": "Z", "unit_scale": 1.0,
           "description": f"saved from the GFPose add-on's review of {source_of(binding)}", "joints": joints}
    write = binding.get("write")
    if write:
        raw["write"] = {"root": write["root"], "bones": dict(write["bones"])}
        if write.get("rest"):
            raw["write"]["rest"] = list(write["rest"])
        props: dict[str, dict[str, float]] = {}
        for p in binding.get("properties") or []:
            props.setdefault(p["bone"], {})[p["name"]] = float(p["value"])
        if props:
            raw["write"]["properties"] = props
    return raw


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)          # a JSON string is a valid TOML basic string
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v))
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to a rig map")


def _toml_key(k: str) -> str:
    return k if re.match(r"^[A-Za-z0-9_\-]+$", k) else json.dumps(k)


def to_toml(raw: dict) -> str:
    lines = ["# Saved by the GFPose add-on (Rig Mapping review). The engine loads it by its name."]
    for key in ("name", "kind", "description", "up_axis", "unit_scale"):
        lines.append(f"{key} = {_toml_value(raw[key])}")
    lines += ["", "[joints]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in raw["joints"].items()]
    write = raw.get("write")
    if write:
        lines += ["", "[write]", f"root = {_toml_value(write['root'])}"]
        if write.get("rest"):
            lines.append(f"rest = {_toml_value(write['rest'])}")
        lines += ["", "[write.bones]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in write["bones"].items()]
        if write.get("properties"):
            lines += ["", "[write.properties]"] + [f"{_toml_key(k)} = {_toml_value(v)}"
                                                  for k, v in write["properties"].items()]
    return "\n".join(lines) + "\n"


def save_map(raw: dict, folder: Path, shipped: list[str] = ()) -> Path:
    """Write the map as <folder>/<name>.toml (the folder made if needed); a shipped map's name is refused, since
    the engine would keep loading the shipped one."""
    if raw["name"].lower() in {s.lower() for s in shipped}:
        raise ValueError(f"'{raw['name']}' is the name of a map the engine ships: choose another name")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{raw['name']}.toml"
    path.write_text(to_toml(raw), encoding="utf-8")
    return path
