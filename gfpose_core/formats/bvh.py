"""BVH reading, forward kinematics and writing, vectorised over frames.

End Sites become channel-less joints named `<parent>:end`, so that mapping files can point at them.
Joints with position channels use them in place of their OFFSET (the Bandai files rely on this).
"""
from __future__ import annotations

import gzip
import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from gfpose_core.body.rotations import euler_to_matrix
from gfpose_core.formats.text import MAX_FRAMES, bvh_check, read_text, short_message

_CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
_MAX_DEPTH = 512  # deeper nesting is refused (a ValueError, not a RecursionError); real rigs nest < 50 deep


@dataclass
class BvhSkeleton:
    names: list[str]
    parents: np.ndarray            # (J,) -1 for roots
    offsets: np.ndarray            # (J, 3) source units
    channels: list[list[str]]      # per joint, empty for End Sites
    is_end: np.ndarray = field(default=None)  # (J,) bool

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def n_channels(self) -> int:
        return sum(len(c) for c in self.channels)


@dataclass
class BvhClip:
    skeleton: BvhSkeleton
    motion: np.ndarray   # (F, C) channel values as in the file (degrees, source units)
    frame_time: float
    name: str = ""

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def forward_kinematics(self) -> tuple[np.ndarray, np.ndarray]:
        """Global joint positions (F, J, 3) and rotations (F, J, 3, 3), in the file's units and axes."""
        sk = self.skeleton
        n_frames, n_joints = self.motion.shape[0], len(sk.names)
        pos = np.zeros((n_frames, n_joints, 3))
        rot = np.zeros((n_frames, n_joints, 3, 3))
        col = 0
        for j in range(n_joints):
            chans = sk.channels[j]
            local_t = np.broadcast_to(sk.offsets[j], (n_frames, 3)).copy()
            local_r = np.broadcast_to(np.eye(3), (n_frames, 3, 3))
            rot_order, rot_cols = "", []
            for c, name in enumerate(chans):
                values = self.motion[:, col + c]
                if name.endswith("position"):
                    local_t[:, "XYZ".index(name[0])] = values
                else:
                    rot_order += name[0]
                    rot_cols.append(values)
            col += len(chans)
            if rot_order:
                local_r = euler_to_matrix(np.stack(rot_cols, axis=-1), rot_order)
            p = sk.parents[j]
            if p < 0:
                pos[:, j], rot[:, j] = local_t, local_r
            else:
                pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", rot[:, p], local_t)
                rot[:, j] = rot[:, p] @ local_r
        return pos, rot


def _open_text(path: str | os.PathLike, check=None) -> str:
    return read_text(path, check)


def read_bvh(path: str | os.PathLike, text: str | None = None) -> BvhClip:
    """Parse a `.bvh` or `.bvh.gz` file. Malformed input raises ValueError naming the file and line."""
    path = str(path)
    if text is None:
        text = _open_text(path, bvh_check(path))
    return _Parser(path, text).parse()


class _Parser:
    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.tokens: list[tuple[str, int]] = []
        self.pos = 0
        self.end_flags: list[bool] = []   # End Sites are told by the file's structure, not by their names

    def fail(self, line: int, msg: str):
        raise ValueError(f"{self.path}:{line}: {short_message(msg)}")

    def parse(self) -> BvhClip:
        if not any(line.strip() for line in self.lines):
            self.fail(1, "empty file")
        motion_line = None
        for i, line in enumerate(self.lines):
            if line.strip().upper().startswith("MOTION"):
                motion_line = i
                break
        header_end = motion_line if motion_line is not None else len(self.lines)
        for i in range(header_end):
            for tok in self.lines[i].split():
                self.tokens.append((tok, i + 1))
        skeleton = self.parse_hierarchy()
        if motion_line is None:
            self.fail(len(self.lines), "no MOTION section")
        motion, frame_time = self.parse_motion(motion_line, skeleton.n_channels)
        name = os.path.basename(self.path)
        for ext in (".gz", ".bvh"):
            name = name[: -len(ext)] if name.lower().endswith(ext) else name
        return BvhClip(skeleton, motion, frame_time, name)

    def next(self, expect: str | None = None) -> tuple[str, int]:
        if self.pos >= len(self.tokens):
            last = self.tokens[-1][1] if self.tokens else 1
            self.fail(last, f"hierarchy ends early (expected {expect or 'more'})")
        tok, line = self.tokens[self.pos]
        self.pos += 1
        if expect is not None and tok.upper() != expect.upper():
            self.fail(line, f"expected '{expect}', found '{tok}'")
        return tok, line

    def number(self) -> float:
        tok, line = self.next()
        try:
            v = float(tok)
        except ValueError:
            self.fail(line, f"expected a number, found '{tok}'")
        if not np.isfinite(v):
            self.fail(line, f"non-finite number '{tok}'")
        return v

    def parse_hierarchy(self) -> BvhSkeleton:
        self.next("HIERARCHY")
        names, parents, offsets, channels = [], [], [], []
        tok, line = self.next("ROOT")
        self.parse_joint(-1, names, parents, offsets, channels)
        while self.pos < len(self.tokens):
            tok, line = self.next()
            if tok.upper() != "ROOT":
                self.fail(line, f"unexpected '{tok}' after the hierarchy")
            self.parse_joint(-1, names, parents, offsets, channels)
        is_end = np.array(self.end_flags, dtype=bool)
        return BvhSkeleton(names, np.array(parents, dtype=int), np.array(offsets, dtype=float).reshape(-1, 3),
                           channels, is_end)

    def parse_joint(self, parent, names, parents, offsets, channels, end_site=False, depth=0):
        if end_site:
            name = names[parent] + ":end"
            tok, line = self.next("Site")
        else:
            name, line = self.next()
            if name in ("{", "}"):
                self.fail(line, "joint without a name")
        if name in names:
            self.fail(line, f"duplicate joint name '{name}'")
        if depth > _MAX_DEPTH:
            self.fail(line, f"hierarchy nested too deeply (more than {_MAX_DEPTH} levels)")
        me = len(names)
        names.append(name)
        parents.append(parent)
        self.end_flags.append(end_site)
        self.next("{")
        self.next("OFFSET")
        offsets.append([self.number(), self.number(), self.number()])
        chans: list[str] = []
        if not end_site:
            self.next("CHANNELS")
            tok, cline = self.next()
            if not (tok.isascii() and tok.isdigit() and len(tok) <= 2) or not 0 <= int(tok) <= 6:
                self.fail(cline, f"bad channel count '{tok}'")
            for _ in range(int(tok)):
                c, cl = self.next()
                if c not in _CHANNELS:
                    self.fail(cl, f"unknown channel '{c}' (channel count {tok} may be wrong)")
                if c in chans:
                    self.fail(cl, f"channel '{c}' repeated")
                chans.append(c)
        channels.append(chans)
        while True:
            tok, line = self.next()
            up = tok.upper()
            if up == "}":
                return
            if end_site:
                self.fail(line, f"unexpected '{tok}' in End Site")
            if up == "JOINT":
                self.parse_joint(me, names, parents, offsets, channels, depth=depth + 1)
            elif up == "END":
                self.parse_joint(me, names, parents, offsets, channels, end_site=True, depth=depth + 1)
            else:
                self.fail(line, f"unexpected '{tok}' in joint '{name}'")

    def parse_motion(self, motion_line: int, n_channels: int) -> tuple[np.ndarray, float]:
        i = motion_line + 1
        fields = {}
        for key in ("frames:", "frame time:"):
            while i < len(self.lines) and not self.lines[i].strip():
                i += 1
            if i >= len(self.lines):
                self.fail(i, f"MOTION section ends before '{key}'")
            line = self.lines[i].strip()
            if not line.lower().startswith(key):
                self.fail(i + 1, f"expected '{key}', found '{line[:40]}'")
            value = line[len(key):].strip()
            try:
                fields[key] = float(value) if key == "frame time:" else int(value)
            except ValueError:
                self.fail(i + 1, f"bad value for '{key}': '{value}'")
            i += 1
        n_frames, frame_time = fields["frames:"], fields["frame time:"]
        if n_frames < 1:
            self.fail(motion_line + 2, f"frame count {n_frames} (need at least one frame)")
        if n_frames > MAX_FRAMES:    # text given directly skips read_text's early check
            self.fail(motion_line + 2, f"{n_frames} frames is over the limit of {MAX_FRAMES} per take")
        if not np.isfinite(frame_time) or frame_time <= 0:
            self.fail(motion_line + 3, f"frame time {frame_time} is not positive")
        rows = [line for line in self.lines[i:] if line.strip()]
        first_row_line = i + 1
        if len(rows) < n_frames:
            self.fail(len(self.lines), f"MOTION truncated: header says {n_frames} frames, file has {len(rows)}")
        rows = rows[:n_frames]
        # Every row must hold exactly one value per channel (a short row next to a long one is not a valid file).
        if any(len(r.split()) != n_channels for r in rows):
            self.locate_bad_row(first_row_line, n_channels)
        try:
            with warnings.catch_warnings():   # numpy < 2 warns (and will raise) where a value is not a number
                warnings.simplefilter("ignore", DeprecationWarning)
                flat = np.fromstring(" ".join(rows), sep=" ") if rows else np.zeros(0)
        except ValueError:
            flat = np.zeros(0)
        if flat.size != n_frames * n_channels or not np.isfinite(flat).all():
            self.locate_bad_row(first_row_line, n_channels)
        return flat.reshape(n_frames, n_channels), frame_time

    def locate_bad_row(self, first_line: int, n_channels: int):
        for k in range(first_line - 1, len(self.lines)):
            parts = self.lines[k].split()
            if not parts:
                continue
            if len(parts) != n_channels:
                self.fail(k + 1, f"frame has {len(parts)} values, the hierarchy has {n_channels} channels")
            for p in parts:
                try:
                    v = float(p)
                except ValueError:
                    self.fail(k + 1, f"not a number: '{p[:20]}'")
                if not np.isfinite(v):
                    self.fail(k + 1, f"non-finite value '{p[:20]}'")
        self.fail(first_line, "malformed MOTION data")


def write_bvh(path: str | os.PathLike, clip: BvhClip) -> None:
    """Write a clip; `.gz` paths are compressed. Values keep 9 significant digits."""
    sk = clip.skeleton
    out = io.StringIO()
    out.write("HIERARCHY\n")
    children: dict[int, list[int]] = {j: [] for j in range(len(sk.names))}
    roots = []
    for j, p in enumerate(sk.parents):
        (children[p] if p >= 0 else roots).append(j)

    def emit(j: int, depth: int):
        pad = "\t" * depth
        off = " ".join(f"{v:.9g}" for v in sk.offsets[j])
        if sk.is_end[j]:
            out.write(f"{pad}End Site\n{pad}{{\n{pad}\tOFFSET {off}\n{pad}}}\n")
            return
        kind = "ROOT" if sk.parents[j] < 0 else "JOINT"
        out.write(f"{pad}{kind} {sk.names[j]}\n{pad}{{\n{pad}\tOFFSET {off}\n")
        out.write(f"{pad}\tCHANNELS {len(sk.channels[j])} {' '.join(sk.channels[j])}\n")
        for c in children[j]:
            emit(c, depth + 1)
        out.write(f"{pad}}}\n")

    for r in roots:
        emit(r, 0)
    out.write(f"MOTION\nFrames: {clip.motion.shape[0]}\nFrame Time: {clip.frame_time:.9g}\n")
    np.savetxt(out, clip.motion, fmt="%.9g", delimiter=" ")
    data = out.getvalue().encode()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6)
    with open(path, "wb") as f:
        f.write(data)
