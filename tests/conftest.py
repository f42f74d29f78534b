"""Shared fixtures. Mocap data lives in ../shared/data from the repository root (never inside the repo)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT.parent / "shared" / "data"

# Real clips used by several tests, one per skeleton convention (paths relative to DATA_DIR).
CMU_MB31 = "cmu/bvh/01_01.bvh.gz"
CMU_DAZ43 = "cmu/bvh/10_04.bvh.gz"
CMU_ASF31 = "cmu/bvh/16_01.bvh.gz"
BANDAI = "bandai/data/dataset-2_walk-turn-left_elderly_008.bvh.gz"  # 170 frames: walks and turns


# The Python that runs the engine in Blender tests: this one, or (in the Blender version matrix, whose venvs have
# bpy but no torch) the project's .venv, named by scripts/test_blender_matrix.
ENGINE_PYTHON = os.environ.get("GFPOSE_ENGINE_PYTHON") or sys.executable


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


def pytest_unconfigure(config):
    """Rigify under bpy 4.2 crashes at interpreter exit and under 4.5 hangs there, add-on or not: where the Blender
    module is older than 5.0, leave once pytest has reported everything, with its exit status."""
    bpy = sys.modules.get("bpy")
    if bpy is not None and tuple(bpy.app.version[:2]) < (5, 0) and _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


@pytest.fixture(scope="session")
def DATA() -> Path:
    """The shared mocap folder; tests that use it are skipped on machines without it."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"mocap data folder {DATA_DIR} not present (tests needing real clips are skipped)")
    return DATA_DIR


@pytest.fixture(scope="session")
def data_file(DATA):
    """data_file(rel) -> absolute path of a clip under DATA, skipping when that clip is missing."""
    def get(rel: str) -> Path:
        p = DATA / rel
        if not p.exists():
            pytest.skip(f"mocap clip {p} not present")
        return p
    return get


@pytest.fixture(scope="session")
def rigify_blend(tmp_path_factory) -> Path:
    """A Rigify rig generated once per session from the human metarig and saved (object "rig"), so that Blender
    tests can open it in a second instead of generating it again."""
    bpy = pytest.importorskip("bpy", reason="Blender's Python module (bpy==5.0.1) is not installed")
    from blender_rigs import make_rigify_blend
    return make_rigify_blend(bpy, tmp_path_factory.mktemp("rigify") / "rigify.blend")
