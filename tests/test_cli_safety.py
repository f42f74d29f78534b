"""`gfpose denoise` and friends never lose a take: no writing over inputs, collisions refused before any work,
bad files in a folder named and skipped, a summary that counts what was written."""
import gzip
import json
import os
import re

import pytest

from gfpose_core.formats.bvh import read_bvh
from gfpose_core.service.cli import main


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    """A short body24 BVH take (generated poses, one a frame), made once."""
    path = tmp_path_factory.mktemp("take") / "walk.bvh"
    assert main(["generate", "-n", "12", "-o", str(path), "--seed", "0", "--device", "cpu"]) == 0
    return path


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def _run(capsys, *args):
    code = main([*map(str, args), "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("how", ["same", "dot-slash", "suffix"])
def test_output_equal_to_the_input_is_refused_and_the_original_untouched(take, tmp_path, capsys, monkeypatch, how):
    src = _copy(take, tmp_path / "mine.bvh")
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    args = {"same": ["denoise", src, "-o", src], "dot-slash": ["denoise", "mine.bvh", "-o", "./mine.bvh"],
            "suffix": ["denoise", tmp_path, "--suffix", ""]}[how]
    code, out, err = _run(capsys, *args)
    assert code == 2 and "over the input" in err and "nothing was written" in err, (out, err)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.bvh"]


def test_name_collisions_are_refused_before_any_work(take, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _copy(take, a / "walk.bvh")
    (a / "walk.bvh.gz").write_bytes(gzip.compress(take.read_bytes()))
    _copy(take, b / "walk.bvh")
    out_dir = tmp_path / "clean"
    code, out, err = _run(capsys, "denoise", a, b, "-o", out_dir)
    assert code == 2 and "would all be written to" in err and "walk.bvh.gz" in err, err
    assert not out_dir.exists()             # not even the folder: nothing started
    code, out, err = _run(capsys, "denoise", str(a / "*.bvh*"), "--suffix", "")
    assert code == 2 and ("over the input" in err or "would all be written" in err)


def test_output_folder_is_checked_before_the_work(take, tmp_path, capsys):
    code, out, err = _run(capsys, "denoise", take, "-o", tmp_path / "missing" / "clean.bvh")
    assert code == 2 and "does not exist" in err
    (tmp_path / "pose.json").write_text(json.dumps({"joints": [[[0, 0, 0]] * 24]}))
    code, out, err = _run(capsys, "complete", tmp_path / "pose.json", "-o", tmp_path / "nope" / "out.json")
    assert code == 2 and "does not exist" in err
    code, out, err = _run(capsys, "complete", tmp_path / "pose.json", "-o", tmp_path / "pose.json")
    assert code == 2 and "is the input" in err
    assert json.loads((tmp_path / "pose.json").read_text()) == {"joints": [[[0, 0, 0]] * 24]}


def test_deeply_nested_json_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = _run(capsys, "complete", tmp_path / "deep.json", "-o", tmp_path / "o.json")
    assert code == 2 and "nested too deeply" in err and "Traceback" not in err


def test_a_folder_with_a_corrupt_gz_and_a_slide_show_is_skipped_and_listed_the_rest_written(take, tmp_path, capsys):
    folder = tmp_path / "takes"
    folder.mkdir()
    _copy(take, folder / "a.bvh")
    good = gzip.compress(take.read_bytes())
    (folder / "b_corrupt.bvh.gz").write_bytes(good[:40] + b"\xff" * 50 + good[90:])
    # one frame per 10 s: 300 frames of work per frame at the models' 30 fps
    (folder / "c_slow.bvh").write_text(re.sub(r"Frame Time: \S+", "Frame Time: 10", take.read_text()))
    _copy(take, folder / "d.bvh")
    code, out, err = _run(capsys, "denoise", folder, "-o", tmp_path / "clean")
    assert code == 0, err
    assert "denoised 2 of 4 take(s), wrote 2 file(s); skipped 2:" in out, out
    assert "b_corrupt.bvh.gz" in out and "gzip" in out and "c_slow.bvh" in out and "capture rates" in out
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == ["a.bvh", "d.bvh"]
    assert read_bvh(tmp_path / "clean" / "d.bvh").motion.shape == read_bvh(take).motion.shape
    assert not [p for p in os.listdir(tmp_path / "clean") if p.endswith(".part")]


def test_inbetween_json_below_capture_rates_is_refused_before_the_work(tmp_path, capsys):
    take = [[[0.0, 0.0, 1.0]] * 24] + [[[None] * 3] * 24] * 8 + [[[0.1, 0.0, 1.0]] * 24]
    (tmp_path / "keys.json").write_text(json.dumps({"take": take, "fps": 0.001}))
    code, out, err = _run(capsys, "inbetween", tmp_path / "keys.json", "-o", tmp_path / "out.json")
    assert code == 2 and "capture rates" in err and not (tmp_path / "out.json").exists()
    (tmp_path / "keys.json").write_text(json.dumps({"take": take, "fps": "fast"}))
    code, out, err = _run(capsys, "inbetween", tmp_path / "keys.json", "-o", tmp_path / "out.json")
    assert code == 2 and "fps" in err


def test_a_result_that_is_not_finite_is_an_error_not_a_file_with_nan(tmp_path, capsys):
    pose = [[1e300 * (j % 3), 1e300, 0.0] if j not in (7, 8, 9, 10) else [None] * 3 for j in range(24)]
    (tmp_path / "huge.json").write_text(json.dumps({"joints": [pose]}))
    code, out, err = _run(capsys, "complete", tmp_path / "huge.json", "-o", tmp_path / "o.json")
    assert code == 2 and "not finite" in err and len(err.strip().splitlines()) == 1, (out, err)
    assert not (tmp_path / "o.json").exists()
