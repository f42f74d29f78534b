"""`rig` over HTTP is a map name the engine knows or a map sent inline, never a path on the server's disk."""
import json
import time

import pytest
from service_app import client
from test_retarget import build_armature, random_poses

from gfpose_core.rigs.rig_map import RIGS_DIR


@pytest.fixture(scope="module")
def api():
    return client()


@pytest.fixture(scope="module")
def armature():
    return json.loads(json.dumps(build_armature("ue4_mannequin").to_dict()))


@pytest.mark.parametrize("rig", ["/dev/zero", "/etc", "/etc/passwd", str(RIGS_DIR / "mixamo.toml"), "../maps/smpl",
                                 "x" * 10_000, ".hidden", "a/b", "", "nul\x00l"])
def test_paths_folders_and_long_names_are_refused_at_once(api, armature, rig):
    for path, extra in (("/bind", {}), ("/pose_for_rig", {"joints": random_poses(1).tolist()})):
        t = time.monotonic()
        r = api.post(path, json={"armature": armature, "rig": rig, **extra})
        assert r.status_code == 422, (path, rig[:50], r.status_code, r.text[:300])
        assert time.monotonic() - t < 5          # not reading /dev/zero until memory runs out
        assert len(r.text) < 1000                # a 10,000-character name is not echoed back
        assert "root:" not in r.text              # nothing of the file's content leaks


def test_known_name_and_inline_map_bind(api, armature):
    r = api.post("/bind", json={"armature": armature, "rig": "ue4_mannequin"})
    assert r.status_code == 200, r.text
    assert r.json()["rig"] == "ue4_mannequin" and r.json()["write"] is not None
    import tomllib
    inline = tomllib.loads((RIGS_DIR / "ue4_mannequin.toml").read_text())
    inline["name"] = "my_mannequin"
    r = api.post("/bind", json={"armature": armature, "rig": inline})
    assert r.status_code == 200, r.text
    assert r.json()["rig"] == "my_mannequin"
    r = api.post("/pose_for_rig", json={"armature": armature, "rig": inline, "joints": random_poses(2).tolist()})
    assert r.status_code == 200, r.text
    again = api.post("/pose_for_rig", json={"binding_id": r.json()["binding_id"], "joints": random_poses(2).tolist()})
    assert again.status_code == 200, again.text
    bad = dict(inline, joints={"pelvis": 3})
    r = api.post("/bind", json={"armature": armature, "rig": bad})
    assert r.status_code == 422 and "pelvis" in r.text


def test_user_map_folder_is_searched_by_name(api, armature, tmp_path, monkeypatch):
    # named differently inside: the file's name is what finds it, and what the answers call it
    (tmp_path / "studio_rig.toml").write_text((RIGS_DIR / "ue4_mannequin.toml").read_text()
                                              .replace('name = "ue4_mannequin"', 'name = "Studio Rig v2"'))
    (tmp_path / "huge.toml").write_bytes(b"#" * 300_000)
    monkeypatch.setenv("GFPOSE_RIG_MAPS", str(tmp_path))
    r = api.post("/bind", json={"armature": armature, "rig": "studio_rig"})
    assert r.status_code == 200 and r.json()["rig"] == "studio_rig", r.text
    assert "studio_rig" in api.get("/info").json()["rig_maps"]
    again = api.post("/pose_for_rig", json={"armature": armature, "rig": r.json()["rig"],
                                            "joints": random_poses(1).tolist()})
    assert again.status_code == 200, again.text
    r = api.post("/bind", json={"armature": armature, "rig": "huge"})
    assert r.status_code == 422 and "bytes" in r.text
