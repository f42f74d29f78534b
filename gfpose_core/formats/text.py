"""Reading mocap text files (plain or gzip) with caps, and error messages that stay short.

A file is read before anything is known about it: a 1 MB gzip of zeros is gigabytes once inflated, and a header
can declare millions of frames. So the text is inflated in pieces and refused as soon as it is not text, is over
the size cap, or (for BVH, through `check`) holds more than its header allows — before the whole is in memory.
"""
from __future__ import annotations

import os
import re
import zlib

MAX_TEXT_BYTES = 256 * 1024 * 1024   # the largest clip of the shared sets is about 20 MB inflated
MAX_FRAMES = 200_000                 # 28 minutes at 120 fps, nearly 2 hours at 30 fps
CHUNK = 1 << 20
_LONG_QUOTE = re.compile(r"'([^'\n]{33,})'")
MAX_MESSAGE = 240


def short_message(msg: str) -> str:
    """A bad token quoted in a message is cut to a few dozen characters, and the message to a few lines' worth
    (a mutated file can hold a 50 kB token; its message is read on a status line)."""
    msg = _LONG_QUOTE.sub(lambda m: f"'{m.group(1)[:32]}...' ({len(m.group(1))} characters)", msg)
    return msg if len(msg) <= MAX_MESSAGE else msg[:MAX_MESSAGE] + "..."


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(path: str | os.PathLike, check=None, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The file's text, inflated if it is gzip. `check(head: bytes, total: int)` is called after each piece and
    raises ValueError to stop early. Errors are ValueError naming the file."""
    path = str(path)
    pieces, total = [], 0

    def take(piece: bytes):
        nonlocal total
        if b"\x00" in piece:
            raise ValueError(f"{path}:1: not a text file (it holds NUL bytes)")
        total += len(piece)
        if total > max_bytes:
            raise ValueError(f"{path}:1: over {max_bytes // (1 << 20)} MB of text: larger than any mocap take "
                             "this engine reads (a damaged or hostile file?)")
        pieces.append(piece)
        if check is not None:
            check(pieces[0] if len(pieces) == 1 else b"".join(pieces[:4]), total)  # the header is in front

    with open(path, "rb") as f:
        first = f.read(CHUNK)
        if first[:2] != b"\x1f\x8b":
            piece = first
            while piece:
                take(piece)
                piece = f.read(CHUNK)
            return _decode(b"".join(pieces))
        inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        buf = first
        try:
            while True:
                # max_length bounds what one call inflates: a bomb is stopped a megabyte in, not gigabytes in
                out = inflate.decompress(buf, CHUNK)
                if out:
                    take(out)
                if inflate.eof:
                    rest = inflate.unused_data or f.read(CHUNK)
                    if not rest.strip(b"\x00"):
                        break
                    inflate, buf = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16), rest  # gzip allows members
                    continue
                buf = inflate.unconsumed_tail or f.read(CHUNK)
                if not buf:
                    raise ValueError(f"{path}:1: not a readable gzip file (it ends early: truncated?)")
        except zlib.error as e:
            raise ValueError(f"{path}:1: not a readable gzip file ({e})") from None
    return _decode(b"".join(pieces))


_FRAMES = re.compile(rb"\n\s*MOTION\s*\n\s*Frames:\s*(\S+)", re.IGNORECASE)
_CHANNELS = re.compile(rb"CHANNELS\s+(\d{1,2})\b", re.IGNORECASE)


def bvh_check(path: str, max_frames: int = MAX_FRAMES):
    """For `read_text`: refuse a BVH whose header declares more frames than the cap, or whose text outgrows
    what its declared frames can hold (a number is at most a few dozen characters)."""
    state = {"budget": None}

    def check(head: bytes, total: int):
        if state["budget"] is None:
            m = _FRAMES.search(head)
            if m is None:
                if total > 64 * CHUNK:
                    raise ValueError(f"{path}:1: no MOTION section in the first 64 MB")
                return
            try:
                frames = int(m.group(1)) if len(m.group(1)) <= 18 else max_frames + 1
            except ValueError:
                return    # the parser names the bad value with its line
            if frames > max_frames:
                line = head[:m.start(1)].count(b"\n") + 1
                raise ValueError(f"{path}:{line}: {frames} frames is over the limit of {max_frames} per take")
            channels = sum(int(c) for c in _CHANNELS.findall(head[:m.start()]))
            state["budget"] = m.end() + max(frames, 1) * (max(channels, 1) * 40 + 8) + CHUNK
        if total > state["budget"]:
            raise ValueError(f"{path}: more data than the frames its header declares can hold")
    return check
