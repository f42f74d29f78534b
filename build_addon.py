"""Build the installable Blender extension zip and the engine's wheel: `python build_addon.py [--out dist]`.

The zip holds blender_addon/ (manifest at its root). Rig maps are not in it: they are the engine's package data,
one copy, which the add-on learns from the engine (/info, /bind).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"


def build(out_dir: str | Path = ROOT / "dist") -> Path:
    manifest = tomllib.loads((ADDON / "blender_manifest.toml").read_text())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(ADDON.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".toml"):
                z.write(path, path.relative_to(ADDON).as_posix())
    return target


def build_wheel(out_dir: str | Path = ROOT / "dist") -> Path:
    """The engine package (gfpose_core with its weights and rig maps) as a wheel, what Install Engine installs
    from a file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("gfpose_core-*.whl"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir),
                           str(ROOT)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"building the engine wheel failed:\n{done.stdout}{done.stderr}")
    made = sorted(set(out_dir.glob("gfpose_core-*.whl")) - before) or sorted(out_dir.glob("gfpose_core-*.whl"))
    return made[-1]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(ROOT / "dist"))
    p.add_argument("--no-wheel", action="store_true", help="only the extension zip")
    args = p.parse_args()
    print(build(args.out))
    if not args.no_wheel:
        print(build_wheel(args.out))
