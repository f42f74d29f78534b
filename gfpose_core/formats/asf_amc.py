"""Acclaim ASF/AMC (CMU's original format): skeleton + motion -> a clip that behaves like `bvh.BvhClip`.

Joints follow the CMU BVH files with ASF names (e.g. cmu/bvh/16_01): the root is "hip", a joint named after an ASF
bone sits at that bone's start, and a bone's end is its child's start or an End Site "<bone>:end". Positions stay
in the file's units (CMU: "ASF units", `:units length 0.45`) and axes (Y up); rig maps scale them.

Forward kinematics is the standard Acclaim one: bone b has axis rotation C (from `axis`, angles applied in the
written order, so "axis ax ay az XYZ" is C = Rz Ry Rx) and motion rotation M (its dofs, likewise applied in the
written order: "dof rx ry rz" is M = Rz Ry Rx); L = C M C^-1, G_b = G_parent L and end = start + G_b (direction *
length). `bvh_compatible=True` reproduces the CMU BVH conversions' geometry, which drop the length of every bone
with more than one child (thorax, the wrists): the rig maps for those BVH files (cmu_asf31, cmu_mb31) place the
neck at the thorax joint on that assumption.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from gfpose_core.body.rotations import euler_to_matrix
from gfpose_core.formats.bvh import BvhSkeleton, _open_text
from gfpose_core.formats.text import MAX_FRAMES, short_message

ROOT_NAME = "hip"          # as in the CMU BVH files with ASF names
DEFAULT_FPS = 120.0        # AMC files carry no frame rate; CMU captured at 120 Hz
_ROT_DOFS = ("rx", "ry", "rz")
_ROOT_DOFS = ("tx", "ty", "tz", "rx", "ry", "rz")


@dataclass
class AsfBone:
    name: str
    direction: np.ndarray      # (3,) unit vector, rest pose, global axes
    length: float
    axis: np.ndarray           # (3,) angles in degrees
    axis_order: str            # e.g. "XYZ", applied as written
    dofs: list[str]            # subset of rx ry rz, in file order
    line: int = 0


@dataclass
class AsfSkeleton:
    path: str
    bones: dict[str, AsfBone]
    children: dict[str, list[str]]          # "root" and bone names -> child bone names, in file order
    root_order: list[str]                    # e.g. ["tx", "ty", "tz", "rx", "ry", "rz"]
    root_axis: str = "XYZ"
    root_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    root_orientation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    length_unit: float = 1.0                 # `:units length` (informational: positions stay in file units)
    angles_in_radians: bool = False


def _fail(path, line, msg):
    raise ValueError(f"{path}:{line}: {short_message(msg)}")


def _floats(path, line, toks, n, what):
    if len(toks) != n:
        _fail(path, line, f"{what}: expected {n} numbers, found {len(toks)}")
    out = []
    for t in toks:
        try:
            v = float(t)
        except ValueError:
            _fail(path, line, f"{what}: not a number: '{t[:20]}'")
        if not np.isfinite(v):
            _fail(path, line, f"{what}: non-finite value '{t[:20]}'")
        out.append(v)
    return np.array(out)


def _order(path, line, tok, what):
    o = tok.upper()
    if not (1 <= len(o) <= 3 and set(o) <= set("XYZ") and len(set(o)) == len(o)):
        _fail(path, line, f"{what}: bad rotation order '{tok}'")
    return o


def read_asf(path: str | os.PathLike, text: str | None = None) -> AsfSkeleton:
    """Parse an `.asf` skeleton. Malformed input raises ValueError naming the file and line."""
    path = str(path)
    if text is None:
        text = _open_text(path)
    lines = [(i + 1, ln.split("#", 1)[0].split()) for i, ln in enumerate(text.splitlines())]
    lines = [(n, t) for n, t in lines if t]
    if not lines:
        _fail(path, 1, "empty file")
    last_line = lines[-1][0]
    section = None
    bones: dict[str, AsfBone] = {}
    cur: dict | None = None
    children: dict[str, list[str]] = {}
    parent_of: dict[str, str] = {}
    in_hier = False
    root = {"order": None, "axis": "XYZ", "position": np.zeros(3), "orientation": np.zeros(3)}
    length_unit, radians = 1.0, False
    seen = set()
    limits_open = False

    def finish_bone(n):
        nonlocal cur
        for key in ("name", "direction", "length"):
            if key not in cur:
                _fail(path, n, f"bone ending here has no '{key}'")
        if cur["name"] in bones or cur["name"] == "root":
            _fail(path, cur["name_line"], f"duplicate bone name '{cur['name']}'")
        norm = np.linalg.norm(cur["direction"])
        if norm == 0:
            _fail(path, cur["dir_line"], f"bone '{cur['name']}' has a zero direction")
        axis, order = cur.get("axis", (np.zeros(3), "XYZ"))
        bones[cur["name"]] = AsfBone(cur["name"], cur["direction"] / norm, cur["length"], axis, order,
                                     cur.get("dof", []), cur["name_line"])
        cur = None

    for n, toks in lines:
        key = toks[0]
        if key.startswith(":"):
            if cur is not None:
                _fail(path, n, f"section '{key}' starts inside a bone (missing 'end')")
            section = key[1:].lower()
            seen.add(section)
            in_hier = False
            if section in ("version", "name", "documentation"):
                continue
            toks = toks[1:]
            if not toks:
                continue
            key = toks[0]
        low = key.lower()
        if section == "units":
            if low == "length":
                length_unit = float(_floats(path, n, toks[1:2], 1, "length unit")[0])
            elif low == "angle":
                if len(toks) != 2 or toks[1].lower() not in ("deg", "rad"):
                    _fail(path, n, f"angle unit must be 'deg' or 'rad', found {' '.join(toks[1:])!r}")
                radians = toks[1].lower() == "rad"
        elif section == "root":
            if low == "order":
                order = [t.lower() for t in toks[1:]]
                bad = [t for t in order if t not in _ROOT_DOFS]
                if bad or len(set(order)) != len(order):
                    _fail(path, n, f"bad root order {' '.join(toks[1:])!r}")
                root["order"] = order
            elif low == "axis":
                if len(toks) != 2:
                    _fail(path, n, "root axis needs one rotation order")
                root["axis"] = _order(path, n, toks[1], "root axis")
            elif low in ("position", "orientation"):
                root[low] = _floats(path, n, toks[1:], 3, f"root {low}")
            else:
                _fail(path, n, f"unknown root keyword '{key}'")
        elif section == "bonedata":
            if low == "begin":
                if cur is not None:
                    _fail(path, n, "'begin' inside a bone (missing 'end')")
                cur, limits_open = {}, False
                continue
            if cur is None:
                _fail(path, n, f"'{key}' outside a bone's begin/end")
            if low == "end":
                finish_bone(n)
                continue
            if low == "limits" or (limits_open and key.startswith("(")):
                limits_open = True
                continue
            limits_open = False
            if low == "id":
                continue
            if low == "name":
                if len(toks) != 2:
                    _fail(path, n, "bone name must be one word")
                cur["name"], cur["name_line"] = toks[1], n
            elif low == "direction":
                cur["direction"], cur["dir_line"] = _floats(path, n, toks[1:], 3, "direction"), n
            elif low == "length":
                v = float(_floats(path, n, toks[1:], 1, "length")[0])
                if v < 0:
                    _fail(path, n, f"negative bone length {v}")
                cur["length"] = v
            elif low == "axis":
                if len(toks) != 5:
                    _fail(path, n, "axis needs three angles and an order (e.g. 'axis 0 0 20 XYZ')")
                cur["axis"] = (_floats(path, n, toks[1:4], 3, "axis"), _order(path, n, toks[4], "axis"))
            elif low == "dof":
                dofs = [t.lower() for t in toks[1:]]
                bad = [t for t in dofs if t not in _ROT_DOFS]
                if bad:
                    _fail(path, n, f"unsupported dof '{bad[0]}' (only rx ry rz are read)")
                if len(set(dofs)) != len(dofs):
                    _fail(path, n, "repeated dof")
                cur["dof"] = dofs
            elif low in ("bodymass", "cofmass"):
                continue
            else:
                _fail(path, n, f"unknown bone keyword '{key}'")
        elif section == "hierarchy":
            if low == "begin":
                in_hier = True
                continue
            if low == "end":
                in_hier = False
                continue
            if not in_hier:
                _fail(path, n, f"'{key}' outside the hierarchy's begin/end")
            if key != "root" and key not in bones:
                _fail(path, n, f"unknown bone '{key}' in the hierarchy")
            for c in toks[1:]:
                if c not in bones:
                    _fail(path, n, f"unknown bone '{c}' in the hierarchy")
                if c in parent_of:
                    _fail(path, n, f"bone '{c}' has two parents ('{parent_of[c]}' and '{key}')")
                parent_of[c] = key
                children.setdefault(key, []).append(c)
        elif section is None:
            _fail(path, n, f"'{key}' before any section")
        # other sections (:version, :name, :documentation, unknown ones) are skipped
    if cur is not None:
        _fail(path, last_line, "file ends inside a bone (missing 'end')")
    for s in ("root", "bonedata", "hierarchy"):
        if s not in seen:
            _fail(path, last_line, f"no :{s} section (file truncated?)")
    if in_hier:
        _fail(path, last_line, "file ends inside the hierarchy (missing 'end')")
    # Every bone must hang from the root, without cycles.
    reached, stack = set(), ["root"]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in reached:
                reached.add(c)
                stack.append(c)
    for b in bones.values():
        if b.name not in reached:
            _fail(path, b.line, f"bone '{b.name}' is not connected to the root in the hierarchy")
    return AsfSkeleton(path=path, bones=bones, children={k: list(v) for k, v in children.items()},
                       root_order=root["order"] or list(_ROOT_DOFS), root_axis=root["axis"],
                       root_position=root["position"], root_orientation=root["orientation"],
                       length_unit=length_unit, angles_in_radians=radians)


def _rotation(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Angles (..., K) for the axes in `order`, applied in that order (first one first): R = R_K ... R_1."""
    return euler_to_matrix(angles_deg[..., ::-1], order[::-1])


@dataclass
class AmcClip:
    """Duck-types `bvh.BvhClip` for reading (skeleton, motion, frame_time, fps, name, forward_kinematics); the
    motion columns are AMC dof values, not BVH channels, so do not pass it to `write_bvh`."""
    skeleton: BvhSkeleton
    motion: np.ndarray   # (F, C) dof values as in the file (one column per skeleton.channels entry)
    frame_time: float
    name: str
    asf: AsfSkeleton
    bvh_compatible: bool = False
    _bone: list = field(default_factory=list, repr=False)  # per joint: AsfBone, "root" or None (End Site)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def forward_kinematics(self) -> tuple[np.ndarray, np.ndarray]:
        """Global joint positions (F, J, 3) and rotations (F, J, 3, 3), in the file's units and axes."""
        sk, asf = self.skeleton, self.asf
        n_frames, n_joints = self.motion.shape[0], len(sk.names)
        scale = 180.0 / np.pi if asf.angles_in_radians else 1.0
        pos = np.zeros((n_frames, n_joints, 3))
        rot = np.zeros((n_frames, n_joints, 3, 3))
        col = 0
        for j in range(n_joints):
            chans = sk.channels[j]
            values = self.motion[:, col:col + len(chans)]
            col += len(chans)
            bone, p = self._bone[j], sk.parents[j]
            if bone == "root":
                t = np.broadcast_to(asf.root_position, (n_frames, 3)).copy()
                rot_cols, rot_order = [], ""
                for c, name in enumerate(chans):
                    if name[0] == "t":
                        t[:, "xyz".index(name[1])] += values[:, c]
                    else:
                        rot_cols.append(values[:, c] * scale)
                        rot_order += name[1].upper()
                o = _rotation(asf.root_orientation * scale, asf.root_axis)
                m = _rotation(np.stack(rot_cols, -1), rot_order) if rot_order else np.eye(3)
                pos[:, j], rot[:, j] = t, o @ m
                continue
            if bone is not None and chans:
                c = _rotation(bone.axis * scale, bone.axis_order)
                m = _rotation(values * scale, "".join(d[1].upper() for d in chans))
                local = c @ m @ c.T
            else:
                local = np.eye(3)
            pos[:, j] = pos[:, p] + np.einsum("fij,j->fi", rot[:, p], sk.offsets[j])
            rot[:, j] = rot[:, p] @ local
        return pos, rot


def _build_skeleton(asf: AsfSkeleton, bvh_compatible: bool) -> tuple[BvhSkeleton, list]:
    names, parents, offsets, channels, is_end, bone_of = [], [], [], [], [], []

    def vector(b: str) -> np.ndarray:
        bone = asf.bones[b]
        if bvh_compatible and len(asf.children.get(b, [])) > 1:
            return np.zeros(3)
        return bone.direction * bone.length

    names.append(ROOT_NAME), parents.append(-1), offsets.append(np.zeros(3))
    channels.append(list(asf.root_order)), is_end.append(False), bone_of.append("root")
    stack = [(c, 0, np.zeros(3)) for c in reversed(asf.children.get("root", []))]
    while stack:
        b, parent, off = stack.pop()
        me = len(names)
        names.append(b), parents.append(parent), offsets.append(off)
        channels.append(list(asf.bones[b].dofs)), is_end.append(False), bone_of.append(asf.bones[b])
        kids = asf.children.get(b, [])
        if not kids:
            names.append(b + ":end"), parents.append(me), offsets.append(vector(b))
            channels.append([]), is_end.append(True), bone_of.append(None)
        stack.extend((c, me, vector(b)) for c in reversed(kids))
    return (BvhSkeleton(names, np.array(parents, dtype=int), np.array(offsets, dtype=float), channels,
                        np.array(is_end, dtype=bool)), bone_of)


def read_amc(path_amc: str | os.PathLike, skeleton: AsfSkeleton | str | os.PathLike, fps: float = DEFAULT_FPS,
             bvh_compatible: bool = False) -> AmcClip:
    """Parse an `.amc` or `.amc.gz` motion for `skeleton` (an AsfSkeleton or an .asf path)."""
    path = str(path_amc)
    asf = skeleton if isinstance(skeleton, AsfSkeleton) else read_asf(skeleton)
    sk, bone_of = _build_skeleton(asf, bvh_compatible)
    col_of, n_dof = {}, {}
    col = 0
    for j, name in enumerate(sk.names):
        if not sk.is_end[j]:
            key = "root" if j == 0 else name
            col_of[key], n_dof[key] = col, len(sk.channels[j])
        col += len(sk.channels[j])
    n_cols = col
    expected = {k for k, v in n_dof.items() if v > 0}
    text = _open_text(path)
    rows: list[np.ndarray] = []
    row, seen, frame_line, frame_no = None, set(), 0, None
    last = 0

    def close_frame(at_line):
        missing = expected - seen
        if missing:
            _fail(path, at_line, f"frame {frame_no} (line {frame_line}) lacks {', '.join(sorted(missing))} "
                                 "(file truncated?)")
        rows.append(row)

    for i, raw in enumerate(text.splitlines()):
        n = i + 1
        toks = raw.split("#", 1)[0].split()
        if not toks:
            continue
        last = n
        if toks[0].startswith(":"):
            if rows or row is not None:
                _fail(path, n, f"header line '{toks[0]}' after the first frame")
            if toks[0].upper() == ":RADIANS" and not asf.angles_in_radians:
                _fail(path, n, ":RADIANS motion for a skeleton in degrees is not supported")
            continue
        if len(toks) == 1 and toks[0].isdigit():
            if row is not None:
                close_frame(n)
            no = int(toks[0])
            if len(rows) >= MAX_FRAMES:
                _fail(path, n, f"more than {MAX_FRAMES} frames: over the limit per take")
            if frame_no is not None and no != frame_no + 1:
                _fail(path, n, f"frame {no} follows frame {frame_no}")
            frame_no, frame_line, seen = no, n, set()
            row = np.zeros(n_cols)
            continue
        if row is None:
            _fail(path, n, f"'{toks[0][:20]}' before the first frame number")
        name = toks[0]
        if name not in n_dof:
            _fail(path, n, f"unknown bone '{name[:40]}'")
        if name in seen:
            _fail(path, n, f"bone '{name}' given twice in frame {frame_no}")
        seen.add(name)
        vals = _floats(path, n, toks[1:], n_dof[name], f"bone '{name}' (its dofs: "
                       f"{' '.join(asf.root_order if name == 'root' else asf.bones[name].dofs) or 'none'})")
        row[col_of[name]:col_of[name] + n_dof[name]] = vals
    if row is None:
        _fail(path, max(last, 1), "no frames")
    close_frame(last)
    clip_name = os.path.basename(path)
    for ext in (".gz", ".amc"):
        clip_name = clip_name[: -len(ext)] if clip_name.lower().endswith(ext) else clip_name
    return AmcClip(skeleton=sk, motion=np.stack(rows), frame_time=1.0 / fps, name=clip_name, asf=asf,
                   bvh_compatible=bvh_compatible, _bone=bone_of)


def asf_path_for(path_amc: str | os.PathLike) -> str:
    """CMU naming: SS_TT.amc(.gz) uses SS.asf in the same folder (falls back to the only .asf there)."""
    path_amc = str(path_amc)
    folder, base = os.path.split(path_amc)
    cand = os.path.join(folder, base.split("_")[0] + ".asf")
    if os.path.exists(cand):
        return cand
    asfs = [f for f in os.listdir(folder or ".") if f.lower().endswith(".asf")]
    if len(asfs) == 1:
        return os.path.join(folder, asfs[0])
    raise FileNotFoundError(f"{path_amc}: no skeleton {cand} beside it")
