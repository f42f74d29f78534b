"""Build the installable Blender extension zip: `python build_addon.py [--out dist]`.

The zip holds blender_addon/ (manifest at its root) and the rig mapping files under rigs/.
"""
from __future__ import annotations

import argparse
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
        for path in sorted((ROOT / "gfpose_core" / "rigs" / "maps").glob("*.toml")):
            z.write(path, f"rigs/{path.name}")
    return target


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(ROOT / "dist"))
    print(build(p.parse_args().out))
