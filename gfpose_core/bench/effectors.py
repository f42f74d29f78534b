"""Benchmark section "effectors" (issue 20): posing from the hands, feet, head and pelvis, against Blender's own IK
and nearest-neighbour retrieval.

Held-out real poses (CMU test subjects, Bandai test clips) are put on a Rigify rig's proportions by
scripts/blender_ik_baseline.py, run once per bench in a subprocess (the engine never imports bpy). The effectors of
each pose on that body go to (a) the engine's posing from effectors, with the body's bone lengths and the rig's rest
pose (as the server gives it), (b) the rig's IK controls (the script's `ik`) and (c) the training pose nearest on the
effectors, placed on them. All three are scored on the joints between the effectors (spine, chest, neck, collars,
shoulders, elbows, knees).

Also the Auto Pose latency line: scripts/bench_auto_pose.py (a moved control to the updated pose on the rig, through
the add-on and HTTP) in a subprocess, when it is there.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gfpose_core.bench.common import DATASETS, BenchData, Sizes, _log, _mm, _r, _rng, _test_rows
from gfpose_core.body.skeleton import BONES, INDEX, JOINT_NAMES, bone_lengths

REPO = Path(__file__).resolve().parents[2]
IK_SCRIPT = REPO / "scripts" / "blender_ik_baseline.py"
AUTO_POSE_SCRIPT = REPO / "scripts" / "bench_auto_pose.py"

# The engine's contract (gfpose_core/prior/effectors.py EFFECTOR_JOINTS): positions of the pelvis and hips, and of
# the head, hands and feet with the joint beyond each, which carries its orientation.
EFFECTORS = ("pelvis", "hip_l", "hip_r", "head", "head_end", "wrist_l", "hand_end_l", "wrist_r", "hand_end_r",
             "ankle_l", "toe_l", "ankle_r", "toe_r")
EFFECTOR_MASK = np.isin(np.arange(len(JOINT_NAMES)), [INDEX[j] for j in EFFECTORS])
METHODS = ("engine", "blender_ik", "nn")
METHOD_LABEL = {"engine": "engine (posing from effectors)", "blender_ik": "Blender IK (Rigify)",
                "nn": "nearest neighbour on the effectors"}
PARTS = {"spine": ("spine", "chest", "neck"), "collars": ("collar_l", "collar_r"),
         "shoulders": ("shoulder_l", "shoulder_r"), "elbows": ("elbow_l", "elbow_r"), "knees": ("knee_l", "knee_r")}
ANGLES = {"elbow": (("shoulder_l", "elbow_l", "wrist_l"), ("shoulder_r", "elbow_r", "wrist_r")),
          "knee": (("hip_l", "knee_l", "ankle_l"), ("hip_r", "knee_r", "ankle_r"))}
IK_RATIO_TARGET = 0.7
AUTO_POSE_TARGET_MS = {"median": 50.0, "p95": 100.0}
SCRIPT_TIMEOUT_S = 1800


# ------------------------------------------------------------------------------------------------- scoring

def effector_scores(pred: np.ndarray, gt: np.ndarray, unknown: np.ndarray = ~EFFECTOR_MASK) -> dict:
    """Scores of one method's poses (N, 24, 3) against the truth on the unknown joints (24,) bool: MPJPE and
    PA-MPJPE (the similarity fitted on those joints), MPJPE per body part, elbow and knee angle error (degrees, mean
    over both sides), bone-length error over bones with an unknown end (mm)."""
    from gfpose_core.bench.metrics import joint_angle_deg, per_sample_mpjpe, procrustes_align
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    mask = np.broadcast_to(np.asarray(unknown, bool), gt.shape[:2])
    err = per_sample_mpjpe(pred, gt, mask)
    pa = per_sample_mpjpe(procrustes_align(pred, gt, mask), gt, mask)
    out = {"mpjpe_mm": _mm(err.mean()), "pa_mpjpe_mm": _mm(pa.mean()), "n": int(len(gt))}
    for part, names in PARTS.items():
        sel = np.isin(np.arange(len(JOINT_NAMES)), [INDEX[j] for j in names]) & mask[0]
        out[f"{part}_mm"] = _mm(per_sample_mpjpe(pred, gt, np.broadcast_to(sel, mask.shape)).mean()) \
            if sel.any() else None
    for name, triples in ANGLES.items():
        d = [np.abs(joint_angle_deg(pred, *t) - joint_angle_deg(gt, *t)) for t in triples]
        out[f"{name}_angle_deg"] = _r(np.mean(d), 2)
    with_unknown = mask[:, BONES[:, 0]] | mask[:, BONES[:, 1]]
    out["bone_err_mm"] = _mm(np.abs(bone_lengths(pred) - bone_lengths(gt))[with_unknown].mean())
    return out


# ------------------------------------------------------------------------------------------------- methods

def effector_query(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What every method is given: the effectors of each pose, the other joints NaN; and the (N, 24) known mask."""
    known = np.broadcast_to(EFFECTOR_MASK, gt.shape[:2]).copy()
    return np.where(known[..., None], gt, np.nan), known


def engine_from_effectors(engine, query: np.ndarray, known: np.ndarray, lengths: np.ndarray,
                          rest: np.ndarray | None = None) -> np.ndarray:
    """The engine's answer: Engine.pose_from_effectors with the body's bone lengths and, on a rig, the rig's rest
    pose (as the server gives it for Auto Pose: the chest bone's shape)."""
    return engine.pose_from_effectors(query, known, lengths=lengths, seed=1, rest=rest)


def nn_on_effectors(engine, nn, query: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The training pose nearest on the effectors in the engine's canonical frame, put back in the world with that
    frame and the effectors pasted in (the completion section's nearest neighbour, on this mask)."""
    from gfpose_core.body.skeleton import restore
    canon, frame = engine._canonical(query)
    world = restore(nn.complete(canon, known), frame)
    return np.where(known[..., None], query, world)


# ------------------------------------------------------------------------------------------------- subprocesses

def _tail(text: str, n: int = 400) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return (" | ".join(lines[-3:]))[-n:]


def blender_ik(poses: np.ndarray, script: Path = IK_SCRIPT, python: str = sys.executable,
               timeout: float = SCRIPT_TIMEOUT_S) -> tuple[dict | None, str | None]:
    """Run the Blender IK script on the poses: ({gt, ik, reach_error_m, rest} arrays, None), or (None, why not)."""
    if not Path(script).exists():
        return None, f"{script} not found"
    if python == sys.executable and importlib.util.find_spec("bpy") is None:
        return None, "Blender's bpy module is not installed in this Python"
    with tempfile.TemporaryDirectory(prefix="gfpose_ik_") as tmp:   # Bandai poses never leave this folder
        src, dst = Path(tmp) / "poses.npz", Path(tmp) / "ik.npz"
        np.savez(src, joints=poses)
        try:
            r = subprocess.run([python, str(script), "--poses", str(src), "--out", str(dst)], cwd=REPO,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"{Path(script).name} ran past {timeout:.0f} s"
        if r.returncode != 0 or not dst.exists():
            return None, f"{Path(script).name} failed (exit {r.returncode}): {_tail(r.stderr)}"
        with np.load(dst) as z:
            out = {k: np.asarray(z[k], np.float64) for k in ("gt", "ik", "reach_error_m", "rest") if k in z}
    if out["gt"].shape != poses.shape or out["ik"].shape != poses.shape:
        return None, f"{Path(script).name} answered shapes {out['gt'].shape}, {out['ik'].shape} for {poses.shape}"
    return out, None


def auto_pose_latency(script: Path = AUTO_POSE_SCRIPT, python: str = sys.executable, timeout: float = 900) -> dict:
    """scripts/bench_auto_pose.py's latency (a moved control to the updated pose on the rig), or why it was not
    run."""
    if not Path(script).exists():
        return {"skipped": f"{Path(script).name} not found (Auto Pose's latency benchmark)"}
    if python == sys.executable and importlib.util.find_spec("bpy") is None:
        return {"skipped": "Blender's bpy module is not installed in this Python"}
    with tempfile.TemporaryDirectory(prefix="gfpose_autopose_") as tmp:
        out = Path(tmp) / "auto_pose.json"
        try:
            r = subprocess.run([python, str(script), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"skipped": f"{Path(script).name} ran past {timeout:.0f} s"}
        if r.returncode != 0 or not out.exists():
            return {"skipped": f"{Path(script).name} failed (exit {r.returncode}): {_tail(r.stderr)}"}
        try:
            got = json.loads(out.read_text())
            lat = got["latency_ms"]
            res = {"median_ms": _r(float(lat["median"]), 2), "p95_ms": _r(float(lat["p95"]), 2), "n": int(lat["n"])}
        except (ValueError, KeyError, TypeError) as e:
            return {"skipped": f"{Path(script).name} wrote no latency_ms {{median, p95, n}}: {e}"}
    res["details"] = {k: v for k, v in got.items() if k != "latency_ms"}
    return res


# ------------------------------------------------------------------------------------------------- the section

def run_effectors(engine, data: BenchData, sizes: Sizes) -> dict:
    from gfpose_core.bench.baselines import NearestNeighbourCompletion
    nn = NearestNeighbourCompletion(data.train_canon)
    real = {ds: data.sets[ds]["joints"][_test_rows(data.sets[ds], sizes.n_effectors, _rng("effectors", ds))]
            .astype(np.float64) for ds in DATASETS}
    counts = [len(real[ds]) for ds in DATASETS]
    ik, skipped = None, "not run at these sizes (the Blender subprocesses run in quick and full runs)"
    if sizes.effector_subprocesses:
        t0 = time.perf_counter()
        ik, skipped = blender_ik(np.concatenate([real[ds] for ds in DATASETS]))
        _log(f"  effectors: Blender IK {'skipped: ' + skipped if ik is None else 'done'} "
             f"({time.perf_counter() - t0:.1f} s)")
    out: dict = {"effectors": list(EFFECTORS), "unknown": [j for j in JOINT_NAMES if j not in EFFECTORS],
                 "body": "Rigify rig from Blender's human metarig" if ik is not None else
                 "the real poses' own proportions (no Blender IK in this run)",
                 "blender_ik_skipped": skipped if ik is None else None}
    splits = np.cumsum([0] + counts)
    for k, ds in enumerate(DATASETS):
        rows = slice(splits[k], splits[k + 1])
        gt = ik["gt"][rows] if ik is not None else real[ds]
        query, known = effector_query(gt)
        t0 = time.perf_counter()
        pred = engine_from_effectors(engine, query, known, bone_lengths(gt), None if ik is None else ik.get("rest"))
        seconds = time.perf_counter() - t0
        res = {"engine": effector_scores(pred, gt), "nn": effector_scores(nn_on_effectors(engine, nn, query, known),
                                                                          gt)}
        res["engine"]["ms_per_pose_one_thread"] = _r(seconds / len(gt) * 1000, 3)
        res["engine"]["effector_err_mm"] = _mm(np.linalg.norm(pred - gt, axis=-1)[:, EFFECTOR_MASK].max())
        if ik is not None:
            # for reference, the same poses on the mocap's own bodies (no rig, no IK): what the rig's proportions cost
            q_own, k_own = effector_query(real[ds])
            res["own_body"] = {
                "engine": effector_scores(engine_from_effectors(engine, q_own, k_own, bone_lengths(real[ds])),
                                          real[ds]),
                "nn": effector_scores(nn_on_effectors(engine, nn, q_own, k_own), real[ds])}
            res["blender_ik"] = effector_scores(ik["ik"][rows], gt)
            reach = ik["reach_error_m"][rows]
            res["blender_ik"].update({"reach_median_mm": _mm(np.median(reach)), "reach_p95_mm": _mm(
                np.percentile(reach, 95)), "unreached_share": _r(float((reach.max(1) > 0.005).mean()), 3)})
        out[ds] = res
        _log(f"  effectors {ds}: engine {res['engine']['mpjpe_mm']:.1f} mm, nn {res['nn']['mpjpe_mm']:.1f} mm"
             + (f", Blender IK {res['blender_ik']['mpjpe_mm']:.1f} mm" if "blender_ik" in res else ""))
    out["auto_pose"] = (auto_pose_latency() if sizes.effector_subprocesses else
                        {"skipped": "not run at these sizes (the Blender subprocesses run in quick and full runs)"})
    return out


# ------------------------------------------------------------------------------------------------- targets, report

def targets(eff: dict | None, entry) -> dict:
    """The section's graded targets (engine vs Blender IK, engine vs nearest neighbour, Auto Pose latency)."""
    t = {}
    if not eff:
        return t
    have = [ds for ds in DATASETS if ds in eff]
    if all("blender_ik" in eff[ds] for ds in have) and have:
        r = {ds: _r(eff[ds]["engine"]["mpjpe_mm"] / eff[ds]["blender_ik"]["mpjpe_mm"], 3) for ds in have}
        worst = max(r.values())
        t["effectors_vs_blender_ik"] = entry(
            "posing from effectors (pelvis, hands, feet, head known) on a Rigify body: engine MPJPE on the joints "
            "between / Blender IK's (Rigify IK controls on the same effectors), worst of CMU and Bandai",
            worst, IK_RATIO_TARGET, worst <= IK_RATIO_TARGET, r)
    else:
        t["effectors_vs_blender_ik"] = entry("posing from effectors: engine / Blender IK MPJPE (Blender IK not run: "
                                             f"{eff.get('blender_ik_skipped')})", None, IK_RATIO_TARGET, None)
    if have:
        r = {ds: _r(eff[ds]["engine"]["mpjpe_mm"] / eff[ds]["nn"]["mpjpe_mm"], 3) for ds in have}
        worst = max(r.values())
        t["effectors_vs_nn"] = entry("posing from effectors: engine MPJPE / nearest neighbour on the effectors, "
                                     "worst of CMU and Bandai (below 1)", worst, 1.0, worst < 1.0, r)
    ap = eff.get("auto_pose") or {}
    if "median_ms" in ap:
        ok = ap["median_ms"] <= AUTO_POSE_TARGET_MS["median"] and ap["p95_ms"] <= AUTO_POSE_TARGET_MS["p95"]
        t["auto_pose_latency"] = entry(
            f"Auto Pose: a moved control to the updated pose on the rig (add-on code path and HTTP, engine on this "
            f"CPU; {ap['n']} moves), ms", {"median": ap["median_ms"], "p95": ap["p95_ms"]},
            dict(AUTO_POSE_TARGET_MS), ok)
    else:
        t["auto_pose_latency"] = entry(f"Auto Pose latency ({ap.get('skipped', 'not run')})", None,
                                       dict(AUTO_POSE_TARGET_MS), None)
    return t


TARGETS = ("effectors_vs_blender_ik", "effectors_vs_nn", "auto_pose_latency")
COMPARED = ("mpjpe_mm", "pa_mpjpe_mm", "elbow_angle_deg", "knee_angle_deg")


def comparisons(eff: dict | None, check) -> None:
    for ds in DATASETS:
        r = (eff or {}).get(ds)
        if not r:
            continue
        for base in ("blender_ik", "nn"):
            if base in r:
                for met in COMPARED:
                    check("effectors", ds, "effectors", "engine", base, met, r["engine"][met], r[base][met])


def _scores_table(r: dict, fmt, table) -> str:
    rows = [[METHOD_LABEL[m], r[m]["n"], fmt(r[m]["mpjpe_mm"]), fmt(r[m]["pa_mpjpe_mm"]),
             *(fmt(r[m][f"{p}_mm"]) for p in PARTS), fmt(r[m]["elbow_angle_deg"]), fmt(r[m]["knee_angle_deg"]),
             fmt(r[m]["bone_err_mm"])] for m in METHODS if m in r]
    return table(["method", "poses", "MPJPE (mm)", "PA-MPJPE (mm)", "spine, chest, neck (mm)", "collars (mm)",
                  "shoulders (mm)", "elbows (mm)", "knees (mm)", "elbow angle error (deg)", "knee angle error (deg)",
                  "bone error (mm)"], rows)


def _where_time_goes(d: dict, fmt) -> str:
    """The script's own breakdown, where it gives one (medians)."""
    parts = [(label, d[k]["median"]) for k, label in (
        ("round_trip_ms", "the request (HTTP, the engine's completion and rig solve)"),
        ("engine_ms", "the same completion called directly"), ("tick_show_ms", "putting the answer on the rig"))
        if isinstance(d.get(k), dict) and d[k].get("median") is not None]
    return (" Medians: " + "; ".join(f"{label} {fmt(float(v))} ms" for label, v in parts) + ".") if parts else ""


def report(eff: dict | None, fmt, table) -> list[str]:
    from gfpose_core.bench.common import DATASET_LABEL
    L = ["## 1b. Posing from effectors\n"]
    if not eff:
        return L + ["Not run.\n"]
    L.append(f"Known: {', '.join(eff['effectors'])}; scored on the joints between: {', '.join(eff['unknown'])}. "
             f"Body: {eff['body']}"
             + (f" (Blender IK skipped: {eff['blender_ik_skipped']})" if eff.get("blender_ik_skipped") else "")
             + ". Held-out poses are retargeted onto the rig's FK controls and read back (the truth on that body); "
             "the engine gets the effectors, the body's bone lengths and the rig's rest pose (as the server gives it "
             "in Auto Pose; with no rig in the run, no rest pose); Blender IK gets the Rigify IK controls "
             "(hand_ik, foot_ik) at the true hands and feet, position and orientation, torso at the true pelvis, "
             "poles at Rigify's defaults, spine, neck and head controls at rest, IK stretch off; nearest neighbour "
             "is the CMU training pose closest on the effectors in the engine's canonical frame, effectors pasted. "
             "PA-MPJPE fits the similarity on the scored joints; angle errors are of the inner elbow and knee "
             "angles, both sides.\n")
    for ds in DATASETS:
        r = eff.get(ds)
        if not r:
            continue
        L.append(f"### {DATASET_LABEL[ds]}\n")
        L.append(_scores_table(r, fmt, table) + "\n")
        e = r["engine"]
        line = (f"Engine: `Engine.pose_from_effectors`, {fmt(e['ms_per_pose_one_thread'], 3)} ms per pose in a batch "
                f"(one thread); largest effector error {fmt(e['effector_err_mm'], 3)} mm.")
        if "blender_ik" in r:
            b = r["blender_ik"]
            line += (f" Blender IK's wrists and ankles from their targets: median {fmt(b['reach_median_mm'], 2)} mm, "
                     f"p95 {fmt(b['reach_p95_mm'])} mm; poses with a hand or foot out of reach (over 5 mm): "
                     f"{fmt(100 * b['unreached_share'])}%.")
        L.append(line + "\n")
        if "own_body" in r:
            L.append("For reference, the same poses on the mocap's own bodies (no rig: the bone lengths and joint "
                     "placement the data has):\n")
            L.append(_scores_table(r["own_body"], fmt, table) + "\n")
    ap = eff.get("auto_pose") or {}
    if "median_ms" in ap:
        L.append(f"Auto Pose latency (scripts/bench_auto_pose.py, {ap['n']} moves): median {fmt(ap['median_ms'])} ms, "
                 f"p95 {fmt(ap['p95_ms'])} ms (targets {AUTO_POSE_TARGET_MS['median']:.0f} / "
                 f"{AUTO_POSE_TARGET_MS['p95']:.0f} ms)." + _where_time_goes(ap.get("details") or {}, fmt) + "\n")
    else:
        L.append(f"Auto Pose latency: skipped ({ap.get('skipped', 'not run')}).\n")
    return L
