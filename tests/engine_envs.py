"""Fresh engine environments for the install tests, without network: the wheel `build_addon.py` builds, and a
venv that sees this environment's packages (a .pth), as a wheelhouse of the dependencies would provide them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


def build_wheel(out: Path) -> Path:
    sys.path.insert(0, str(REPO_ROOT))
    import build_addon
    return build_addon.build_wheel(out)


def seeded_env(path: Path, python: str = sys.executable) -> Path:
    """A venv at `path` whose packages include those of `python`'s environment (so the wheel's dependencies are
    there)."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True)
    py = path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    ours = subprocess.run([python, "-c", "import site, sysconfig; print(*site.getsitepackages(), "
                           "sysconfig.get_paths()['purelib'], sep='\\n')"], capture_output=True, text=True,
                          check=True).stdout.split("\n")
    ours = [p for p in ours if p and Path(p).is_dir()]
    (purelib / "_gfpose_test_deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    return path
