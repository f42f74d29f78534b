"""The engine as an animator gets it: the wheel `python build_addon.py` builds, installed by Install Engine's
installer (blender_addon/engine_install.py, no Blender needed) into a fresh environment, then used there: a
completion and a rig-map detection from outside the repository. No network: the wheel is installed from a local
folder, its dependencies seen through the project's own environment (a .pth in the new one), as a wheelhouse
would provide them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from engine_envs import build_wheel, seeded_env

from blender_addon import engine_install


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build_wheel(out)
    return out


def test_the_wheel_installs_offline_and_completes_and_detects_a_rig(wheel_dir, tmp_path):
    env = seeded_env(tmp_path / "engine env")
    wheel = next(wheel_dir.glob("gfpose_core-*.whl"))
    job = engine_install.Installer(engine_install.Plan(env, sys.executable, str(wheel))).start()
    assert job.wait(600) and job.error is None, "\n".join(job.log[-20:])
    py = job.python
    assert Path(py) == engine_install.env_python(env) and job.progress == 1.0
    # The installed package, not the checkout: run from an empty folder.
    where = subprocess.run([py, "-c", "import gfpose_core, sys; print(gfpose_core.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert str(env) in where and str(REPO_ROOT) not in where
    code = ("import json, sys, numpy as np; from gfpose_core import Engine; "
            "from gfpose_core.rigs.rig_map import detect_rig_map; "
            "e = Engine.load(device='cpu'); p = e.generate(1, seed=3)[0]; k = np.zeros(24, bool); k[:7] = True; "
            "q = p.copy(); q[~k] = np.nan; out = e.complete(q[None], k[None])[0]; "
            "names = ['mixamorig:' + n for n in ('Hips','Spine','Spine1','Spine2','Neck','Head','HeadTop_End',"
            "'LeftShoulder','LeftArm','LeftForeArm','LeftHand','LeftHandMiddle1','RightShoulder','RightArm',"
            "'RightForeArm','RightHand','RightHandMiddle1','LeftUpLeg','LeftLeg','LeftFoot','LeftToeBase',"
            "'LeftToe_End','RightUpLeg','RightLeg','RightFoot','RightToeBase','RightToe_End')]; "
            "print(json.dumps({'finite': bool(np.isfinite(out).all()), 'kept': float(abs(out[k]-p[k]).max()), "
            "'rig': detect_rig_map(names, kind='armature').name}))")
    ran = subprocess.run([py, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    got = json.loads(ran.stdout.splitlines()[-1])
    assert got["finite"] and got["kept"] < 1e-5 and got["rig"] == "mixamo"
    helped = subprocess.run([py, "-m", "gfpose_core", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert helped.returncode == 0 and "serve" in helped.stdout


def test_a_cancelled_install_leaves_nothing_half_made(tmp_path):
    env = tmp_path / "env"
    slow = tmp_path / "slow_python"
    # A base Python whose venv step takes long: cancel lands in the middle of it.
    slow.write_text(f"#!/bin/sh\nsleep 30\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    job = engine_install.Installer(engine_install.Plan(env, str(slow), str(tmp_path))).start()
    env.mkdir()                  # as a venv step would have begun to make it
    job.cancel()
    assert job.wait(20) and job.error == "cancelled" and job.python is None
    assert not env.exists()


def test_bad_sources_pythons_and_no_network_are_named(tmp_path):
    with pytest.raises(engine_install.InstallError, match="does not exist"):
        engine_install.Plan(tmp_path / "e", sys.executable, str(tmp_path / "nope.whl")).steps()
    with pytest.raises(engine_install.InstallError, match="not a Python that runs"):
        engine_install.find_python(str(tmp_path / "no-python"))
    old = tmp_path / "python2"
    old.write_text("#!/bin/sh\necho 2 7\n")
    old.chmod(0o755)
    with pytest.raises(engine_install.InstallError, match="Python 2.7; the engine needs Python 3.11"):
        engine_install.find_python(str(old))
    assert engine_install.python_version(engine_install.find_python()) >= (3, 11)
    # The package index unreachable: a clear message, and the environment it made is gone again.
    env = seeded_env(tmp_path / "env")
    plan = engine_install.Plan(env, sys.executable)
    steps = plan.steps()
    assert [s[0] for s in steps][:2] == ["Installing torch (CPU)", "Installing the engine"]
    offline = engine_install.Installer(plan)
    # (a version this environment does not already satisfy, so pip must ask the index)
    offline._steps = [(label, cmd[:-1] + ["gfpose-core==99.0", "--index-url", "http://127.0.0.1:9/simple",
                                          "--no-cache-dir", "--retries", "0", "--timeout", "2"])
                      for label, cmd in steps[1:2]]
    offline._thread.start()
    assert offline.wait(120) and "cannot be reached (no network?)" in offline.error
    assert env.exists()          # an environment the user already had is never removed


def test_a_folder_without_the_dependencies_names_what_is_missing(wheel_dir, tmp_path):
    env = tmp_path / "bare"
    job = engine_install.Installer(engine_install.Plan(env, sys.executable, str(wheel_dir))).start()
    assert job.wait(300) and job.error is not None
    assert "lacks" in job.error and "which the engine needs" in job.error, job.error
    assert not env.exists()      # it made the environment, so it took it away again
