"""The file readers the CLI and the data sets use, under hostile files: bombs, huge headers, long tokens."""
import gzip
import time
import tracemalloc

import numpy as np
import pytest

from gfpose_core.data import load_take
from gfpose_core.formats.asf_amc import read_asf
from gfpose_core.formats.bvh import read_bvh, write_bvh

HIERARCHY = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 10 0
    }
  }
}
"""


def _refused_quickly_and_small(path, words):
    tracemalloc.start()
    t = time.monotonic()
    with pytest.raises(ValueError, match=words) as e:
        read_bvh(path)
    took = time.monotonic() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert took < 1.0, took
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB"
    assert str(path) in str(e.value) and len(str(e.value)) < 400
    return str(e.value)


def test_a_gzip_bomb_is_refused_within_a_second_and_a_few_mb(tmp_path):
    # gzip members end to end: one 16 MB member of zeros made once, repeated, is a 1 GB file of about 1 MB
    zeros = gzip.compress(b"\x00" * (1 << 24), compresslevel=9)
    bomb = _write(tmp_path / "bomb.bvh.gz", gzip.compress(HIERARCHY.encode()) + zeros * 64)
    assert bomb.stat().st_size < 2 * 2**20
    _refused_quickly_and_small(bomb, "not a text file")
    spaces = gzip.compress(b" " * (1 << 24), compresslevel=9)   # a bomb of text: caught by what its header allows
    head = gzip.compress((HIERARCHY + "MOTION\nFrames: 2\nFrame Time: 0.033\n").encode())
    spaces = _write(tmp_path / "spaces.bvh.gz", head + spaces * 64)
    _refused_quickly_and_small(spaces, "more data than the frames")


def test_a_header_declaring_5m_frames_is_refused_before_reading_them(tmp_path):
    path = tmp_path / "huge.bvh.gz"
    row = b"0 0 0 0 0 0 0 0 0\n"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write((HIERARCHY + "MOTION\nFrames: 5000000\nFrame Time: 0.0083333\n").encode())
        f.write(row * 5_000_000)
    msg = _refused_quickly_and_small(path, "over the limit")
    assert "5000000 frames" in msg


def test_corrupt_and_truncated_gzip_are_value_errors_naming_the_file(tmp_path):
    good = gzip.compress((HIERARCHY + "MOTION\nFrames: 1\nFrame Time: 0.1\n" + "0 " * 9 + "\n").encode())
    assert read_bvh(_write(tmp_path / "ok.bvh.gz", good)).motion.shape == (1, 9)
    flipped = bytearray(good)
    flipped[30:40] = b"\xff" * 10
    for name, data in (("corrupt.bvh.gz", bytes(flipped)), ("cut.bvh.gz", good[: len(good) // 2])):
        path = _write(tmp_path / name, data)
        with pytest.raises(ValueError, match="gzip") as e:
            read_bvh(path)
        assert name in str(e.value)
        with pytest.raises(ValueError, match=name):
            load_take(path)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("text", [
    HIERARCHY.replace("JOINT Spine", "JOINT Spine" + "x" * 50_000 + " junk"),
    HIERARCHY.replace("CHANNELS 3", "CHANNELS " + "9" * 40_000),
    HIERARCHY.replace("Zrotation Xrotation Yrotation\n    End", "Zrotation Xrotation " + "Q" * 60_000 + "\n    End"),
    HIERARCHY + "MOTION\nFrames: " + "7" * 30_000 + "\nFrame Time: 0.1\n",
    HIERARCHY + "MOTION\nFrames: 1\nFrame Time: 0.1\n" + "0 " * 8 + "z" * 50_000 + "\n",
])
def test_messages_cut_bad_tokens_to_a_few_dozen_characters(tmp_path, text):
    path = tmp_path / "mutated.bvh"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        read_bvh(path)
    assert len(str(e.value)) < 300, str(e.value)[:400]
    assert "mutated.bvh:" in str(e.value)


def test_asf_messages_are_short_too(tmp_path):
    path = tmp_path / "bad.asf"
    path.write_text(":version 1.10\n:name x\n:" + "k" * 20_000 + "\n")
    with pytest.raises(ValueError) as e:
        read_asf(path)
    assert len(str(e.value)) < 300


def test_ordinary_files_still_read_the_same(tmp_path):
    text = HIERARCHY + "MOTION\nFrames: 3\nFrame Time: 0.0333333\n" + ("1 2 3 4 5 6 7 8 9\n" * 3)
    plain = tmp_path / "a.bvh"
    plain.write_text(text)
    clip = read_bvh(plain)
    write_bvh(tmp_path / "b.bvh.gz", clip)
    again = read_bvh(tmp_path / "b.bvh.gz")
    np.testing.assert_array_equal(again.motion, clip.motion)
    two = tmp_path / "two_members.bvh.gz"     # gzip files may be several members end to end
    two.write_bytes(gzip.compress(text[:100].encode()) + gzip.compress(text[100:].encode()))
    np.testing.assert_array_equal(read_bvh(two).motion, clip.motion)
