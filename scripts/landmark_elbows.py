"""Complete Pose on real characters' skeletons, arms hidden: the completed elbow angles with two sets of rig maps.

Real standing poses with hanging arms from CMU validation subjects 8 and 14 are put on the Mixamo, UE4 and UE5
skeletons of tests/test_auto_map.py (solved onto the rig, as keys), read back off the rig through each rig map (as
the add-on reads a posed rig), both arms hidden (collar to hand end), completed by the shipped engine, and the
completed elbow angles compared with the pose's own (issue 16: hanging arms are 140-156 degrees; Complete Pose gave
about 90 on Mixamo/UE4 when `spine` sat 0.27-0.32 m above the pelvis).

    python scripts/landmark_elbows.py --before OLD_MAPS_DIR [--after gfpose_core/rigs/maps]

OLD_MAPS_DIR holds the maps to compare against, e.g. `git archive <commit> gfpose_core/rigs/maps | tar -x -C /tmp/old`
then /tmp/old/gfpose_core/rigs/maps. Validation subjects only: nothing here is tuned on test subjects.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_auto_map import ARMATURES  # noqa: E402

from gfpose_core.body.skeleton import BODY_PARTS, INDEX  # noqa: E402
from gfpose_core.body.rotations import quaternion_to_matrix  # noqa: E402
from gfpose_core.data import CMU_VAL_SUBJECTS, cmu_subject, cmu_takes  # noqa: E402
from gfpose_core.bench.metrics import joint_angle_deg  # noqa: E402
from gfpose_core.rigs.binding import bind, joints_from_pose, rest_joints  # noqa: E402
from gfpose_core.rigs.rig_map import load_rig_map  # noqa: E402
from gfpose_core.rigs.solve import solve  # noqa: E402

RIGS = ("mixamo", "ue4_mannequin", "ue5_mannequin")


def elbows(j) -> np.ndarray:
    return np.stack([joint_angle_deg(j, f"shoulder_{s}", f"elbow_{s}", f"wrist_{s}") for s in "lr"], -1)


def hanging_poses(n: int) -> np.ndarray:
    """Up to n standing frames with hanging arms from the validation subjects (spread over their clips)."""
    takes = cmu_takes(ROOT.parent / "shared" / "data", include_amc=True)
    subject = np.array([cmu_subject(takes["names"][c]) for c in takes["clip"]])
    j = takes["joints"].astype(np.float64)
    up = j[:, INDEX["neck"]] - j[:, INDEX["pelvis"]]
    upright = up[:, 2] / np.linalg.norm(up, axis=-1) > np.cos(np.radians(10))
    knees = np.stack([joint_angle_deg(j, f"hip_{s}", f"knee_{s}", f"ankle_{s}") for s in "lr"], -1)
    hang = np.all(elbows(j) > 140, -1) & np.all(
        j[:, [INDEX["shoulder_l"], INDEX["shoulder_r"]], 2] - j[:, [INDEX["wrist_l"], INDEX["wrist_r"]], 2] > 0.3, -1)
    pick = np.flatnonzero(np.isin(subject, list(CMU_VAL_SUBJECTS)) & upright & np.all(knees > 150, -1) & hang)
    if len(pick) == 0:
        raise SystemExit("no standing frames with hanging arms in the validation subjects")
    return j[pick[np.linspace(0, len(pick) - 1, min(n, len(pick))).astype(int)]]


def pose_matrices(arm, pose) -> np.ndarray:
    """Every bone's armature-space pose matrix (F, B, 4, 4) from a RigPose's keys (Blender's convention)."""
    f = pose.location.shape[0]
    basis = np.tile(np.eye(4), (f, len(arm.bones), 1, 1))
    for k, b in enumerate(pose.bones):
        basis[:, arm.index[b], :3, :3] = quaternion_to_matrix(pose.quaternions[:, k])
    basis[:, arm.index[pose.root], :3, 3] = pose.location
    out = np.zeros_like(basis)
    for b in range(len(arm.bones)):          # parents come before children in an armature's bone list
        p = arm.parents[b]
        local = arm.rest[b] if p < 0 else np.linalg.inv(arm.rest[p]) @ arm.rest[b]
        out[:, b] = (local if p < 0 else out[:, p] @ local) @ basis[:, b]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="folder of the rig maps to compare against")
    ap.add_argument("--after", default=str(ROOT / "gfpose_core" / "rigs" / "maps"))
    ap.add_argument("--poses", type=int, default=24)
    args = ap.parse_args(argv)
    from gfpose_core.engine import Engine
    engine = Engine.load(device="cpu")
    poses = hanging_poses(args.poses)
    hidden = np.zeros(24, bool)
    hidden[BODY_PARTS["arm_l"] + BODY_PARTS["arm_r"]] = True
    print(f"{len(poses)} validation poses (CMU subjects {sorted(CMU_VAL_SUBJECTS)}), pose's own elbows "
          f"median {np.median(elbows(poses)):.0f} deg")
    print(f"{'rig':15s} {'maps':7s} {'spine m':>8s} {'median':>7s} {'p10':>5s} {'min':>5s} {'<110':>5s} "
          f"{'|err| med':>9s}")
    # The same poses on the body they were captured on (no rig): what the model does on its training body.
    own = elbows(engine.complete(poses, np.broadcast_to(~hidden, poses.shape[:2]), seed=0))
    truth = elbows(poses)
    spine = np.median(np.linalg.norm(poses[:, INDEX["spine"]] - poses[:, INDEX["pelvis"]], axis=-1))
    print(f"{'(CMU itself)':15s} {'':7s} {spine:8.3f} "
          f"{np.median(own):7.0f} {np.percentile(own, 10):5.0f} {own.min():5.0f} {np.mean(own < 110):5.0%} "
          f"{np.median(np.abs(own - truth)):9.0f}")
    for rig in RIGS:
        arm = ARMATURES[rig]()
        after = bind(arm, load_rig_map(Path(args.after) / f"{rig}.toml"))
        # The pose goes onto the rig through the new map (its keys are the rig's pose; both maps then read it).
        pose = solve(arm, poses, binding=after, sweeps=32)
        mats = pose_matrices(arm, pose)
        for label, folder in (("before", args.before), ("after", args.after)):
            b = bind(arm, load_rig_map(Path(folder) / f"{rig}.toml"))
            read = joints_from_pose(b, mats)
            truth = elbows(read)
            done = engine.complete(read, np.broadcast_to(~hidden, read.shape[:2]), seed=0)
            got = elbows(done)
            spine = np.median(np.linalg.norm(read[:, INDEX["spine"]] - read[:, INDEX["pelvis"]], axis=-1))
            print(f"{rig:15s} {label:7s} {spine:8.3f} {np.median(got):7.0f} {np.percentile(got, 10):5.0f} "
                  f"{got.min():5.0f} {np.mean(got < 110):5.0%} {np.median(np.abs(got - truth)):9.0f}")
    # The character standing in its own rest pose (T- or A-pose), both arms hidden: the default completion and the
    # mode (issue 16 compared the two), elbows left / right.
    print("rest pose, both arms hidden: completed elbows (left, right), default | sampler='mode'")
    for rig in RIGS:
        arm = ARMATURES[rig]()
        for label, folder in (("before", args.before), ("after", args.after)):
            rest = rest_joints(bind(arm, load_rig_map(Path(folder) / f"{rig}.toml")), world=True)[None]
            default = elbows(engine.complete(rest, ~hidden[None], seed=0))[0]
            mode = elbows(engine.complete(rest, ~hidden[None], seed=0, sampler="mode"))[0]
            print(f"{rig:15s} {label:7s} {default[0]:5.0f} {default[1]:5.0f} | {mode[0]:5.0f} {mode[1]:5.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
