"""Takes and training sets: mocap files -> body24 arrays in metres (Z up), split reproducibly.

Caches go to ~/.cache/gfpose (or $GFPOSE_CACHE), never inside the repository: arrays derived from the
Bandai-Namco set may not be committed or shared.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gfpose_core.body.filters import resample
from gfpose_core.formats.asf_amc import asf_path_for, read_amc
from gfpose_core.formats.bvh import read_bvh
from gfpose_core.rigs.auto_map import auto_bvh_map
from gfpose_core.rigs.rig_map import RigMap, RigMapError, detect_rig_map, load_rig_map
from gfpose_core.rigs.rig_names import detect_any_case

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CACHE_VERSION = 2

# CMU subjects held out by the project's split (never used for training or model selection on `test`).
CMU_TEST_SUBJECTS = frozenset({6, 13, 94})
CMU_VAL_SUBJECTS = frozenset({8, 14})
# HDM05 is split by actor: `mm` validates (model selection only), the other three train. mm has the fewest frames
# (12.0k of 56.7k at 120 fps), so training keeps the most, and performs all 11 motion classes the others do, so
# validation sees every kind of motion. No HDM05 actor is a test subject: the project's test split stays CMU's
# subjects and Bandai.
HDM05_VAL_ACTORS = frozenset({"mm"})

# What each set may do once weights are trained on it (written into the weights' config: see training_takes).
LICENCES = {
    "cmu": "CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu): free for research and commercial "
           "products, the data itself may not be resold; created with funding from NSF EIA-0196217",
    "hdm05": "HDM05 (MPI Informatik / Universitaet Bonn), CC BY-SA 3.0: weights trained on it ship under CC BY-SA 3.0 "
             "with the attribution \"The data used in this project was obtained from HDM05.\"",
}


@dataclass
class Take:
    joints: np.ndarray  # (T, 24, 3) float32 metres, Z up, body24 order
    fps: float
    name: str


def cache_dir() -> Path:
    d = Path(os.environ.get("GFPOSE_CACHE", Path.home() / ".cache" / "gfpose"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _clip_name(path: str | os.PathLike) -> str:
    name = os.path.basename(str(path))
    for ext in (".gz", ".bvh", ".amc"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def _manifest_row(path: Path) -> dict | None:
    """The row describing this clip in a `manifest.csv` of its folder or the folder above."""
    for folder in (path.parent, path.parent.parent):
        m = folder / "manifest.csv"
        if m.exists():
            rows = _read_manifest(str(m))
            return rows.get(_clip_name(path))
    return None


_MANIFESTS: dict[str, dict] = {}


def _read_manifest(path: str) -> dict:
    if path not in _MANIFESTS:
        with open(path, newline="") as f:
            _MANIFESTS[path] = {r["clip"]: r for r in csv.DictReader(f)}
    return _MANIFESTS[path]


def is_amc(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith((".amc", ".amc.gz"))


def load_take(path: str | os.PathLike, rig: str | RigMap | None = None) -> Take:
    """A BVH clip, or an ASF/AMC one (`SS_TT.amc[.gz]` beside its `SS.asf`), as body24 joints; `rig` is a
    rigs/*.toml path or name, or None to detect it (a shipped map, else the automatic mapping). AMC clips take the CMU BVH conversions' geometry (the thorax
    and wrist lengths dropped, see asf_amc) so that they match the BVH clips and the cmu_asf31 map."""
    path = Path(path)
    clip = read_amc(path, asf_path_for(path), bvh_compatible=True) if is_amc(path) else read_bvh(path)
    if rig is None:
        try:
            rig_map = detect_rig_map(clip.skeleton.names, kind="bvh")
        except RigMapError:
            if is_amc(path):
                raise
            # A map that fits in another letter case, else the skeleton's own topology and rest pose.
            rig_map = detect_any_case(clip.skeleton.names) or auto_bvh_map(clip).rig
    elif isinstance(rig, RigMap):
        rig_map = rig
    else:
        rig_map = load_rig_map(rig)
    positions, rotations = clip.forward_kinematics()
    joints = rig_map.body24_positions(clip.skeleton.names, positions, rotations).astype(np.float32)
    fps = clip.fps
    row = _manifest_row(path)
    if row and row.get("fps_true"):
        fps = float(row["fps_true"])
    return Take(joints=joints, fps=fps, name=clip.name)


def cmu_subject(clip: str) -> int:
    return int(clip.split("_")[0])


def cmu_split(clip: str) -> str:
    s = cmu_subject(clip)
    return "test" if s in CMU_TEST_SUBJECTS else "val" if s in CMU_VAL_SUBJECTS else "train"


def hdm05_actor(clip: str) -> str:
    """`HDM_bd_squat1Reps_001_120` -> `bd` (HDM05's file names; the actor is also the clip's folder)."""
    parts = clip.split("_")
    if len(parts) < 3 or parts[0] != "HDM":
        raise ValueError(f"{clip}: not an HDM05 clip name (HDM_<actor>_<motion>_<take>_<fps>)")
    return parts[1]


def hdm05_split(clip: str) -> str:
    return "val" if hdm05_actor(clip) in HDM05_VAL_ACTORS else "train"


def bandai_split(clip: str) -> str:
    """Bandai clips are for evaluation only: a fixed fifth (by a hash of the name) validates, the rest test."""
    return "val" if zlib.crc32(clip.encode()) % 5 == 0 else "test"


def _cached(key: dict, build):
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{key['name']}-{digest}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # several ranks may build at once
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def _files_key(files: list[Path]) -> list:
    return [(str(f), f.stat().st_size, int(f.stat().st_mtime)) for f in files]


def _rigs_key() -> str:
    from gfpose_core.rigs.rig_map import RIGS_DIR
    h = hashlib.sha1()
    for p in sorted(RIGS_DIR.glob("*.toml")):
        h.update(p.read_bytes())
    return h.hexdigest()


def build_takes(files: list[Path], split_of, fps: float = 30.0, drop_first: bool = False,
                name: str = "takes", progress=None) -> dict[str, np.ndarray]:
    """Clips -> {"joints": (N,24,3), "clip": (N,) clip index, "split": (N,) str, "names": clip names}, cached."""
    files = sorted(files)

    def build():
        joints, clip_idx, splits, names = [], [], [], []
        for k, f in enumerate(files):
            take = load_take(f)
            # drop_first removes the T-pose the CMU BVH conversions add; AMC files have none.
            j = take.joints[1:] if drop_first and not is_amc(f) and len(take.joints) > 1 else take.joints
            j = resample(j, take.fps, fps)
            joints.append(j)
            clip_idx.append(np.full(len(j), k))
            splits.append(np.full(len(j), split_of(take.name)))
            names.append(take.name)
            if progress:
                progress(k + 1, len(files))
        return {"joints": np.concatenate(joints).astype(np.float32), "clip": np.concatenate(clip_idx),
                "split": np.concatenate(splits), "names": np.array(names)}

    key = {"name": name, "v": CACHE_VERSION, "fps": fps, "drop_first": drop_first, "files": _files_key(files),
           "rigs": _rigs_key()}
    return _cached(key, build)


def cmu_takes(data_dir: Path = DATA_DIR, fps: float = 30.0, progress=None,
              include_amc: bool = False) -> dict[str, np.ndarray]:
    """CMU clips at `fps`, split by subject: the BVH clips (both conventions; frame 0, an added T-pose, dropped)
    and, with `include_amc`, the ASF/AMC clips of cmu/amc (subjects and motions the BVH files lack). Off by
    default because the bench's test and nearest-neighbour sets must be what the shipped weights saw; training
    takes every clip (training_takes)."""
    files = sorted((Path(data_dir) / "cmu" / "bvh").glob("*.bvh*"))
    if not files:
        raise FileNotFoundError(f"no CMU BVH files under {data_dir}/cmu/bvh")
    if include_amc:
        files += sorted((Path(data_dir) / "cmu" / "amc").glob("*.amc*"))
    return build_takes(files, cmu_split, fps, drop_first=True, name="cmu", progress=progress)


def hdm05_takes(data_dir: Path = DATA_DIR, fps: float = 30.0, progress=None) -> dict[str, np.ndarray]:
    """Every HDM05 clip (ACTOR/*.amc.gz beside ACTOR/HDM_ACTOR.asf, 120 fps per the manifest) at `fps`, split by
    actor. CC BY-SA 3.0: weights trained on it are share-alike (see LICENCES)."""
    files = sorted((Path(data_dir) / "hdm05").glob("*/*.amc*"))
    if not files:
        raise FileNotFoundError(f"no HDM05 ASF/AMC files under {data_dir}/hdm05/<actor>/")
    return build_takes(files, hdm05_split, fps, drop_first=False, name="hdm05", progress=progress)


def merge_takes(parts: dict[str, dict]) -> dict[str, np.ndarray]:
    """Several sets' takes as one (clip indices renumbered so clips stay distinct); `source` names each frame's set."""
    out = {"joints": [], "clip": [], "split": [], "names": [], "source": []}
    offset = 0
    for source, t in parts.items():
        out["joints"].append(t["joints"])
        out["clip"].append(t["clip"] + offset)
        out["split"].append(t["split"])
        out["names"].append(t["names"])
        out["source"].append(np.full(len(t["joints"]), source))
        offset += len(t["names"])
    return {k: np.concatenate(v) for k, v in out.items()}


def training_takes(data_dir: Path = DATA_DIR, share_alike: bool = True, fps: float = 30.0,
                   progress=None) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The default training data: every shippable set (every CMU clip, BVH and ASF/AMC; HDM05 unless
    `share_alike` is False). Returns the merged takes and, per set, what the weights' config records: its name,
    licence, clip and frame counts by split, so each weight file's licence can be stated."""
    parts = {"cmu": cmu_takes(data_dir, fps, progress, include_amc=True)}
    if share_alike:
        parts["hdm05"] = hdm05_takes(data_dir, fps, progress)
    sets = []
    for name, t in parts.items():
        frames = {s: int((t["split"] == s).sum()) for s in ("train", "val", "test")}
        sets.append({"name": name, "licence": LICENCES[name], "clips": int(len(t["names"])), "frames": frames})
    return merge_takes(parts), sets


def bandai_takes(data_dir: Path = DATA_DIR, fps: float = 30.0, progress=None) -> dict[str, np.ndarray]:
    """Bandai clips for evaluation (cached outside the repository; never ship or commit these arrays)."""
    files = sorted((Path(data_dir) / "bandai" / "data").glob("*.bvh*"))
    if not files:
        raise FileNotFoundError(f"no Bandai BVH files under {data_dir}/bandai/data")
    return build_takes(files, bandai_split, fps, drop_first=False, name="bandai", progress=progress)

