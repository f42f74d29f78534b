"""What bone names say, where they say anything: the side a bone is on, and which finger it is.

Names only confirm or break ties in the automatic mapping (`auto_map`), which works from topology and rest geometry;
a rig with meaningless names (Node_0 ...) maps the same way.
"""
from __future__ import annotations

import re

# Body words that follow a bare one-letter side in Daz-style names written in lower case (lshldr, rcollar).
_BODY_WORDS = ("shldr", "collar", "forearm", "hand", "thigh", "shin", "foot", "buttock", "thumb", "index", "mid",
               "ring", "pinky", "uparm", "loarm", "hip", "knee", "ankle", "toe", "arm", "leg", "elbow", "wrist",
               "clavicle", "shoulder", "femur", "tibia", "humerus", "radius", "finger", "upleg", "calf", "ball",
               "heel", "eye", "ear", "breast")
_SEP = r"[._\-\s]"


def base_name(name: str) -> str:
    """The name without a namespace prefix ("mixamorig:LeftArm" -> "LeftArm") or an End Site suffix."""
    for suffix in (":end", ":tail"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.rsplit(":", 1)[-1].rsplit("|", 1)[-1]


def side_hint(name: str) -> str | None:
    """'l', 'r' or None: the side a name claims, in any of the common conventions (Left, left, L_, .L, _l, lShldr,
    lshldr ...)."""
    n = base_name(name)
    low = n.lower()
    if "left" in low:
        return "l"
    if "right" in low:
        return "r"
    for s in ("l", "r"):
        if re.search(rf"(^|{_SEP}){s}($|{_SEP}|\d)", low):
            return s
        if re.match(rf"{s}[A-Z]", n) or re.search(rf"[a-z]{s.upper()}$", n):
            return s
        if any(low.startswith(s + w) for w in _BODY_WORDS):
            return s
    return None


def is_middle_finger(name: str) -> bool:
    low = base_name(name).lower()
    return "middle" in low or bool(re.search(r"(^|[^a-z])mid|[lr]mid", low))


def is_end_name(name: str) -> bool:
    low = name.lower()
    return low.endswith(":end") or any(w in low for w in ("end", "top", "nub", "tip"))
