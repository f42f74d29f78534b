"""Where `gfpose denoise` writes, decided for every take before any work: never over an input, never two takes
into one file, into a folder that exists. A batch that would lose a take stops before it starts."""
from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

TAKE_ENDINGS = (".bvh", ".bvh.gz")


class PlanError(ValueError):
    pass


def take_files(patterns: list[str]) -> list[Path]:
    """Files named, found in folders (not recursing) or matched by globs; each file once, in the order given."""
    files, seen = [], set()
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.name.lower().endswith(TAKE_ENDINGS) and q.is_file())
        elif any(ch in pat for ch in "*?["):
            found = [Path(q) for q in sorted(glob.glob(pat, recursive=True)) if Path(q).is_file()]
        else:
            found = [p]
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    if not files:
        raise PlanError(f"no BVH takes in {' '.join(patterns)}")
    return files


def _stem(src: Path) -> str:
    name = src.name
    for ending in (".gz", ".bvh"):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
    return name


def plan_outputs(files: list[Path], output: str | None, suffix: str, many: bool) -> list[Path]:
    """The file each take is written to, in the order of `files`; PlanError names every problem at once."""
    if not many:
        if not output:
            raise PlanError("give -o CLEAN.bvh (or a folder)")
        out = Path(output)
        targets = [out / f"{_stem(files[0])}.bvh" if out.is_dir() else out]
    else:
        folder = Path(output) if output else None
        if folder is not None and folder.exists() and not folder.is_dir():
            raise PlanError(f"-o {output} is a file: several takes need a folder")
        targets = []
        for src in files:
            beside = folder is None or _same(folder, src.parent)
            targets.append((src.parent if folder is None else folder)
                           / (f"{_stem(src)}{suffix}.bvh" if beside else f"{_stem(src)}.bvh"))
    problems = []
    inputs = {os.path.realpath(f): f for f in files}
    for src, target in zip(files, targets):
        if os.path.realpath(target) in inputs:
            hint = "; give another -o" if not many else " (an empty --suffix beside the takes); give a --suffix or -o"
            problems.append(f"{src} -> {target} would write over the input {inputs[os.path.realpath(target)]}"
                            + hint)
    by_target: dict[str, list[Path]] = {}
    for src, target in zip(files, targets):
        by_target.setdefault(os.path.realpath(target), []).append(src)
    for target, srcs in by_target.items():
        if len(srcs) > 1:
            problems.append(f"{', '.join(map(str, srcs))} would all be written to {target}")
    for folder in sorted({str(t.parent) for t in targets}):
        if not many and not Path(folder).is_dir():
            problems.append(f"the output folder {folder} does not exist")
    if problems:
        raise PlanError("; ".join(problems) + " (nothing was written)")
    return targets


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def write_replacing(path: Path, write) -> None:
    """`write(tmp)` then a rename over `path`: a take is written whole or not at all (no half file on a crash)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
