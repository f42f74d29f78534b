"""HDM05 and the default training sets, read from the real files of ../shared/data (skipped where absent).

A small copy of the data folder (links to a few real clips, the real manifests) keeps these tests to seconds
while going through the same readers, manifests, resampling, splits and cache that `gfpose train` uses.
"""
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from gfpose_core import data as D
from gfpose_core.body.skeleton import INDEX
from gfpose_core.service.cli import main

HDM = D.DATA_DIR / "hdm05"
CMU = D.DATA_DIR / "cmu"
pytestmark = pytest.mark.skipif(not (HDM / "manifest.csv").exists() or not (CMU / "manifest.csv").exists(),
                                reason=f"mocap data not found at {D.DATA_DIR} (HDM05 and CMU manifests)")


def manifest(folder: Path) -> dict:
    with open(folder / "manifest.csv", newline="") as f:
        return {r["clip"]: r for r in csv.DictReader(f)}


def shortest(rows: dict, pred) -> str:
    return min((r for r in rows.values() if pred(r)), key=lambda r: int(r["frames"]))["clip"]


@pytest.fixture()
def small_data(tmp_path, monkeypatch):
    """../shared/data cut down to: one CMU BVH clip, one CMU AMC clip, the shortest clip of each HDM05 actor."""
    monkeypatch.setenv("GFPOSE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    cmu = manifest(CMU)
    (root / "cmu" / "bvh").mkdir(parents=True)
    (root / "cmu" / "amc").mkdir()
    shutil.copy(CMU / "manifest.csv", root / "cmu")
    bvh = shortest(cmu, lambda r: r["format"] == "bvh" and D.cmu_split(r["clip"]) == "train")
    os.symlink(CMU / "bvh" / f"{bvh}.bvh.gz", root / "cmu" / "bvh" / f"{bvh}.bvh.gz")
    amc = shortest(cmu, lambda r: r["format"] != "bvh" and D.cmu_split(r["clip"]) == "train")
    os.symlink(CMU / "amc" / f"{amc}.amc.gz", root / "cmu" / "amc" / f"{amc}.amc.gz")
    asf = f"{amc.split('_')[0]}.asf"
    os.symlink(CMU / "amc" / asf, root / "cmu" / "amc" / asf)
    hdm = manifest(HDM)
    (root / "hdm05").mkdir()
    shutil.copy(HDM / "manifest.csv", root / "hdm05")
    picked = {}
    for actor in ("bd", "bk", "dg", "mm"):
        clip = shortest(hdm, lambda r, a=actor: r["subject"] == f"hdm05_{a}")
        (root / "hdm05" / actor).mkdir()
        for name in (f"{clip}.amc.gz", f"HDM_{actor}.asf"):
            os.symlink(HDM / actor / name, root / "hdm05" / actor / name)
        picked[clip] = int(hdm[clip]["frames"])
    return root, picked


def test_split_by_actor_is_fixed_and_covers_every_actor():
    actors = {D.hdm05_actor(c) for c in manifest(HDM)}
    assert actors == {"bd", "bk", "dg", "mm"}
    assert {a: D.hdm05_split(f"HDM_{a}_squat1Reps_001_120") for a in sorted(actors)} == {
        "bd": "train", "bk": "train", "dg": "train", "mm": "val"}
    with pytest.raises(ValueError, match="not an HDM05 clip name"):
        D.hdm05_split("01_01")


def test_hdm05_clip_reads_as_a_standing_person_at_its_capture_rate():
    rows = manifest(HDM)
    clip = shortest(rows, lambda r: r["subject"] == "hdm05_dg")
    take = D.load_take(HDM / "dg" / f"{clip}.amc.gz")
    assert take.fps == 120.0 and take.joints.shape == (int(rows[clip]["frames"]), 24, 3)
    assert np.isfinite(take.joints).all()
    height = np.ptp(take.joints[:, :, 2], axis=1).max()       # tallest frame: a clip may start crouched
    assert 1.4 < height < 2.0, f"{height:.2f} m tall: units or up axis wrong"
    tall = np.ptp(take.joints[:, :, 2], axis=1).argmax()
    head, feet = take.joints[tall, INDEX["head"], 2], take.joints[tall, [INDEX["ankle_l"], INDEX["ankle_r"]], 2]
    assert (head > feet + 1.0).all(), "Z is not up"


def test_hdm05_takes_resample_120_to_30_and_split_by_actor(small_data):
    root, picked = small_data
    takes = D.hdm05_takes(root)
    assert sorted(takes["names"]) == sorted(picked)
    for k, name in enumerate(takes["names"]):
        n = int((takes["clip"] == k).sum())
        assert abs(n - picked[name] / 4) <= 2, f"{name}: {n} frames at 30 fps from {picked[name]} at 120"
        assert set(takes["split"][takes["clip"] == k]) == {D.hdm05_split(name)}
    assert (takes["split"] == "val").any() and (takes["split"] == "train").any()


def test_training_takes_hold_every_shippable_set_and_share_alike_can_be_left_out(small_data):
    root, picked = small_data
    takes, sets = D.training_takes(root)
    assert [s["name"] for s in sets] == ["cmu", "hdm05"]
    assert "CC BY-SA 3.0" in sets[1]["licence"] and "CC BY-SA" not in sets[0]["licence"]
    assert sets[0]["clips"] == 2 and sets[1]["clips"] == 4          # CMU: the BVH clip and the AMC clip
    assert set(takes["source"]) == {"cmu", "hdm05"}
    assert len(np.unique(takes["clip"])) == 6                         # clips stay distinct after merging
    assert sum(s["frames"]["train"] + s["frames"]["val"] for s in sets) == len(takes["joints"])
    assert not any(str(n).startswith("HDM") for n in takes["names"][:2])

    cmu_only, sets = D.training_takes(root, share_alike=False)
    assert [s["name"] for s in sets] == ["cmu"]
    assert set(cmu_only["source"]) == {"cmu"} and not any(str(n).startswith("HDM") for n in cmu_only["names"])


@pytest.mark.parametrize("flag,expect", [([], ["cmu", "hdm05"]), (["--no-share-alike"], ["cmu"]),
                                         (["--motion", "--frames", "8", "--blocks", "1", "--no-share-alike"], ["cmu"]),
                                         (["--posterior-mean", "--no-share-alike"], ["cmu"])])
def test_train_records_its_sets_and_licences_in_the_weights(small_data, monkeypatch, tmp_path, flag, expect):
    root, _ = small_data
    monkeypatch.setattr(D, "DATA_DIR", root)
    out = tmp_path / "run"
    rc = main(["train", "--out", str(out), "--steps", "2", "--hidden", "32", "--embed", "16", "--batch", "16",
               "--device", "cpu"] + flag)
    assert rc == 0
    training = json.loads((out / "config.json").read_text())["training"]
    assert [s["name"] for s in training["datasets"]] == expect
    assert ("HDM05" in training["data"]) == ("CC BY-SA 3.0" in training["data"]) == ("hdm05" in expect)


def test_no_share_alike_with_explicit_files_is_refused(capsys):
    assert main(["train", "--out", "x", "--data", "a.bvh", "--no-share-alike"]) == 2
    assert "--no-share-alike" in capsys.readouterr().err
