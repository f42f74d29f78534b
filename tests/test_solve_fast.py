"""The rig solve's fast path against a straightforward evaluation, on a Rigify-like rig built here (no Blender).

The fast path (rigs.kinematics and rigs.solve._sweep) evaluates forward kinematics a level of the bone tree at a
time, moves what hangs from a turned bone without evaluating the rig again, corrects parts whose aims do not depend
on each other from one reading, stops sweeping once a sweep turns nothing and works out the part rotations a depth
of the part tree at a time. The reference here does it the plain way: every bone from its parent with 4x4 matrices
in Blender's pose-bone convention, constraints read off the description, one part corrected at a time with the
whole rig evaluated after each turn, 32 sweeps unless every aim is within 1e-6 rad. Both must key the same
rotations to rounding. No timing here: speed is measured by scripts/bench_rig_solve.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_retarget import _point, random_poses

from gfpose_core.body.rotations import _unit, axis_angle_matrix, quaternion_to_matrix, swing
from gfpose_core.body.skeleton import INDEX
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.binding import bind, joints_from_pose, rest_joints
from gfpose_core.rigs.plan import _PARTS, _TRUST, PARTS, _evidence, _fk, _plan, _rest_evidence, part_rotations
from gfpose_core.rigs.holds import held_by_kept
from gfpose_core.rigs.solve import edit_rotations, kept_rotations, solve


def _copy(target: str, influence: float = 1.0, space: str = "WORLD") -> dict:
    return {"type": "COPY_TRANSFORMS", "subtarget": target, "influence": influence, "owner_space": space,
            "target_space": space, "mix_mode": "REPLACE"}


P, Q, S, N, H = (("pelvis", "spine", 0.3), ("spine", "chest", 0.3), ("chest", "neck", 0.5), ("neck", "head", 0.5),
                 ("wrist_", "hand_end_", 0.7))
ROT0 = {"type": "COPY_ROTATION", "subtarget": "torso", "influence": 0.0}     # Rigify's follow switches, set off
# (name, parent, head, tail, constraints, inherit rotation) as Rigify builds them from the human metarig: FK
# controls under MCH bones, ORG bones copying the FK chain (the IK copy switched off), the spine read off ORG bones.
_TRUNK = [
    ("root", None, ("pelvis", (0, 0, -0.97)), ("pelvis", (0, -0.3, -0.97)), [], True),
    ("MCH-torso.parent", None, P, (P, (0, 0.25, 0)), [{"type": "ARMATURE", "targets": [["root", 1.0]]}], True),
    ("torso", "MCH-torso.parent", P, (P, (0, 0.25, 0)), [], True),
    ("hips", "torso", P, "pelvis", [], True), ("chest", "torso", "spine", "chest", [], True),
    ("MCH-spine.001", "torso", P, "pelvis", [_copy("hips", 0.5, "LOCAL")], True),
    ("spine_fk.001", "MCH-spine.001", P, "pelvis", [], True),
    ("MCH-spine", "spine_fk.001", "pelvis", ("pelvis", (0, 0, -0.05)), [_copy("hips", 0.5, "LOCAL")], True),
    ("spine_fk", "MCH-spine", "pelvis", ("pelvis", (0, 0, -0.05)), [], True),
    ("tweak_spine", "spine_fk", "pelvis", P, [], True), ("ORG-spine", "tweak_spine", "pelvis", P, [], True),
    ("tweak_spine.001", "spine_fk", P, Q, [], True), ("ORG-spine.001", "tweak_spine.001", P, Q, [], True),
    ("MCH-spine.002", "torso", Q, "chest", [_copy("chest", 0.5, "LOCAL")], True),
    ("spine_fk.002", "MCH-spine.002", Q, "chest", [], True),
    ("MCH-spine.003", "spine_fk.002", "chest", S, [_copy("chest", 0.5, "LOCAL")], True),
    ("spine_fk.003", "MCH-spine.003", "chest", S, [], True),
    ("tweak_spine.003", "spine_fk.003", "chest", S, [], True),
    ("ORG-spine.003", "tweak_spine.003", "chest", S, [], True),
    ("MCH-ROT-neck", "spine_fk.003", "neck", "head", [ROT0], True), ("neck", "MCH-ROT-neck", "neck", "head", [], True),
    ("tweak_spine.004", "neck", "neck", N, [], True), ("tweak_spine.005", "neck", N, "head", [], True),
    ("ORG-spine.004", "spine_fk.003", "neck", N,
     [_copy("tweak_spine.004"), {"type": "STRETCH_TO", "subtarget": "tweak_spine.005", "influence": 1.0}], True),
    ("ORG-spine.005", "ORG-spine.004", N, "head", [], True),
    ("MCH-ROT-head", "neck", "head", "head_end", [ROT0], True), ("head", "MCH-ROT-head", "head", "head_end", [], True),
    ("ORG-spine.006", "ORG-spine.005", "head", "head_end", [_copy("head")], True),
]
_SIDE = [
    ("shoulder.{S}", "ORG-spine.003", "collar_", "shoulder_", [], True),
    ("ORG-shoulder.{S}", "ORG-spine.003", "collar_", "shoulder_", [_copy("shoulder.{S}")], True),
    # One MCH parent that does not inherit rotation (the left arm's), as some rigs have.
    ("MCH-upper_arm_parent.{S}", "ORG-shoulder.{S}", "shoulder_", "elbow_", [ROT0], "R"),
    ("upper_arm_parent.{S}", "ORG-shoulder.{S}", "shoulder_", ("shoulder_", (0, 0.1, 0)), [], True),
    ("upper_arm_fk.{S}", "MCH-upper_arm_parent.{S}", "shoulder_", "elbow_", [], True),
    ("upper_arm_ik.{S}", "MCH-upper_arm_parent.{S}", "shoulder_", "elbow_", [], True),
    ("ORG-upper_arm.{S}", "ORG-shoulder.{S}", "shoulder_", "elbow_",
     [_copy("upper_arm_fk.{S}"), _copy("upper_arm_ik.{S}", 0.0)], True),
    ("forearm_fk.{S}", "upper_arm_fk.{S}", "elbow_", "wrist_", [], True),
    ("MCH-forearm_ik.{S}", "upper_arm_ik.{S}", "elbow_", "wrist_",
     [{"type": "IK", "subtarget": "hand_ik.{S}", "influence": 1.0}], True),
    ("hand_ik.{S}", "root", "wrist_", H, [], True),
    ("ORG-forearm.{S}", "ORG-upper_arm.{S}", "elbow_", "wrist_",
     [_copy("forearm_fk.{S}"), _copy("MCH-forearm_ik.{S}", 0.0)], True),
    ("MCH-hand_fk.{S}", "forearm_fk.{S}", "wrist_", H, [{"type": "COPY_SCALE", "subtarget": "root"}], True),
    ("hand_fk.{S}", "MCH-hand_fk.{S}", "wrist_", H, [], True),
    ("ORG-hand.{S}", "ORG-forearm.{S}", "wrist_", H, [_copy("hand_fk.{S}"), _copy("hand_ik.{S}", 0.0)], True),
    ("MCH-thigh_parent.{S}", "ORG-spine", "hip_", "knee_", [ROT0], True),
    ("thigh_parent.{S}", "ORG-spine", "hip_", ("hip_", (0, 0.1, 0)), [], True),
    ("thigh_fk.{S}", "MCH-thigh_parent.{S}", "hip_", "knee_", [], True),
    ("thigh_ik.{S}", "MCH-thigh_parent.{S}", "hip_", "knee_", [], True),
    ("ORG-thigh.{S}", "ORG-spine", "hip_", "knee_", [_copy("thigh_fk.{S}"), _copy("thigh_ik.{S}", 0.0)], True),
    ("shin_fk.{S}", "thigh_fk.{S}", "knee_", "ankle_", [], True),
    ("ORG-shin.{S}", "ORG-thigh.{S}", "knee_", "ankle_", [_copy("shin_fk.{S}")], True),
    ("MCH-foot_fk.{S}", "shin_fk.{S}", "ankle_", "toe_", [], True),
    ("foot_fk.{S}", "MCH-foot_fk.{S}", "ankle_", "toe_", [], True),
    ("ORG-foot.{S}", "ORG-shin.{S}", "ankle_", "toe_", [_copy("foot_fk.{S}")], True),
    ("MCH-toe_fk.{S}", "foot_fk.{S}", "toe_", ("toe_", (0, -0.05, 0)), [], True),
    ("toe_fk.{S}", "MCH-toe_fk.{S}", "toe_", ("toe_", (0, -0.05, 0)), [], True),
    ("ORG-toe.{S}", "ORG-foot.{S}", "toe_", ("toe_", (0, -0.05, 0)), [_copy("toe_fk.{S}")], True),
]


def rigify_like(extra: int = 640, seed: int = 0) -> Armature:
    """A Rigify-sized armature: the bones above, random rolls and rotation modes, and `extra` bones (fingers, face,
    deform bones) hanging anywhere, which the retarget never needs."""
    rng = np.random.default_rng(seed)
    bones = []
    for name, parent, head, tail, cons, inherit in _TRUNK:
        bones.append((name, parent, _point(head, ""), _point(tail, ""), cons, inherit))
    for side, s in (("l", "L"), ("r", "R")):
        for name, parent, head, tail, cons, inherit in _SIDE:
            fill = [{k: (v.format(S=s) if isinstance(v, str) else v) for k, v in c.items()} for c in cons]
            bones.append((name.format(S=s), parent.format(S=s), _point(head, side), _point(tail, side), fill,
                          inherit is True or inherit != s))
    for i in range(extra):
        parent = bones[rng.integers(len(bones))]
        head = parent[2] + rng.normal(0, 0.05, 3)
        cons = [_copy(parent[0])] if i % 7 == 0 else []
        bones.append((f"DEF-extra.{i:03d}", parent[0], head, head + rng.normal(0, 0.03, 3) + [0, 0, 0.01], cons, True))
    names = [b[0] for b in bones]
    modes = ["QUATERNION", "XYZ", "YZX", "QUATERNION", "ZXY"]
    desc = {"name": "rig", "bones": [
        {"name": n, "parent": p, "head": list(h), "tail": list(t), "roll": float(rng.uniform(-np.pi, np.pi)),
         "rotation_mode": modes[i % len(modes)], "use_inherit_rotation": bool(inh), "constraints": cons}
        for i, (n, p, h, t, cons, inh) in enumerate(bones)]}
    assert len(set(names)) == len(names)
    return Armature.from_dict(desc)


# --- the reference: plain evaluation ------------------------------------------------------------------------------

def reference_fk(arm: Armature, given: dict[int, np.ndarray], f: int, local: bool = False, root: int = -1,
                 root_location: np.ndarray | None = None) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Pose matrices (F, 4, 4) of the bones asked for, each from its parent: pose = parent @ inv(parent rest) @ rest
    (@ basis); a full world Copy Transforms takes the target's pose, a one-target Armature constraint is the parent,
    a bone not inheriting rotation keeps its rest orientation. `given`: armature-space orientations, or bases with
    `local`. Also the orientation each given bone's basis applies to."""
    memo, pre = {}, {}

    def pose(b: int) -> np.ndarray:
        if b in memo:
            return memo[b]
        parent, copied = arm.parents[b], None
        for c in arm.constraints[b]:
            if c.get("influence", 1.0) <= 1e-6:
                continue
            if c["type"] == "COPY_TRANSFORMS" and c.get("owner_space", "WORLD") == "WORLD" and c["influence"] >= 1:
                copied = arm.index[c["subtarget"]]
            if c["type"] == "ARMATURE" and len(c["targets"]) == 1:
                parent = arm.index[c["targets"][0][0]]
        if copied is not None:
            memo[b] = pose(copied)
            return memo[b]
        m = np.repeat(arm.rest[b][None], f, 0) if parent < 0 else \
            pose(parent) @ np.linalg.inv(arm.rest[parent]) @ arm.rest[b]
        if not arm.inherit_rotation[b]:
            m[:, :3, :3] = arm.rest[b, :3, :3]
        if b == root and root_location is not None:
            m[:, :3, 3] += np.einsum("fij,fj->fi", m[:, :3, :3], root_location)
        if b in given:
            pre[b] = m[:, :3, :3].copy()
            m[:, :3, :3] = m[:, :3, :3] @ given[b] if local else given[b]
        memo[b] = m
        return m

    for b in range(len(arm.bones)):
        if b in given or arm.bones[b].startswith("ORG-"):
            pose(b)
    return memo, pre


def reference_joints(binding, poses: dict[int, np.ndarray], f: int) -> np.ndarray:
    m = np.zeros((f, len(binding.armature.bones), 4, 4))
    for b in binding.bones:
        m[:, b] = poses[int(b)]
    return joints_from_pose(binding, m, world=False)


def reference_part_rotations(rest: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """part_rotations one part at a time, as it was written first."""
    f = joints.shape[0]
    out = np.zeros((f, len(PARTS), 3, 3))
    for p, part in enumerate(PARTS):
        a, c, rule, pts, parent = _PARTS[part]
        base = out[:, PARTS.index(parent)] if parent else np.broadcast_to(np.eye(3), (f, 3, 3))
        aim_r, _ = _unit(rest[INDEX[c]] - rest[INDEX[a]])
        aim_t, _ = _unit(joints[:, INDEX[c]] - joints[:, INDEX[a]])
        carried = base @ aim_r
        rot = swing(carried, aim_t) @ base
        if rule != "inherit":
            p_vec, q_vec = rot @ _rest_evidence(rest, rule, pts, aim_r), _evidence(joints, rule, pts)
            p_perp = p_vec - np.sum(p_vec * aim_t, -1, keepdims=True) * aim_t
            q_perp = q_vec - np.sum(q_vec * aim_t, -1, keepdims=True) * aim_t
            w = np.linalg.norm(p_perp, axis=-1) * np.linalg.norm(q_perp, axis=-1)
            sin = np.sum(aim_t * np.cross(p_perp, q_perp), -1) / np.maximum(w, 1e-300)
            cos = np.sum(p_perp * q_perp, -1) / np.maximum(w, 1e-300)
            lo, hi = _TRUST[rule]
            if rule == "bend" and pts[3] == "front":
                back = np.clip(-cos, 0.0, 1.0)
                lo, hi = lo + back * (np.sin(np.radians(20.0)) - lo), hi + back * (np.sin(np.radians(40.0)) - hi)
            x = np.clip((w - lo) / (hi - lo), 0.0, 1.0)
            trust = x * x * (3 - 2 * x)
            rot = axis_angle_matrix(aim_t, np.arctan2(trust * sin, trust * cos + (1.0 - trust))) @ rot
        out[:, p] = rot
    return out


def _aims(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _unit(joints[:, [INDEX[_PARTS[p][1]] for p in PARTS]] - joints[:, [INDEX[_PARTS[p][0]] for p in PARTS]])


def reference_solve(arm: Armature, joints: np.ndarray, binding, current: dict | None = None) -> dict[str, np.ndarray]:
    """The keyed bones' bases (F, N, 3, 3) as `solve` worked them out before it was made fast."""
    plan, f = _plan(binding), len(joints)
    targets, rest = arm.to_armature_space(joints), rest_joints(binding)
    part_rot = reference_part_rotations(rest, targets)
    keyed = {int(b): part_rot[:, p] @ arm.rest[b, :3, :3] for b, p in zip(plan.keyed, plan.parts)}
    kept = {}
    if current is not None:
        keyed.update(edit_rotations(plan, rest, targets, current, keyed))
        for b, (rot, mask) in kept_rotations(arm, current, f).items():
            mask = mask if b in keyed else np.ones(f, bool)
            keyed[b] = np.where(mask[:, None, None], rot, keyed.get(b, rot))
            kept[b] = mask
    want, want_len = _aims(targets)
    got, _ = _aims(reference_joints(binding, reference_fk(arm, keyed, f)[0], f))
    for _ in range(32):
        worst = 0.0
        for p in range(len(PARTS)):
            if p not in plan.corrector:
                continue
            axis, s = _unit(np.cross(got[:, p], want[:, p]))
            angle = np.where(want_len[:, p] > 1e-9, np.arctan2(s, np.sum(got[:, p] * want[:, p], -1)), 0.0)
            if angle.max() < 1e-7:
                continue
            worst = max(worst, float(angle.max()))
            norm = sum(k * k for _, k in plan.corrector[p])
            for bones, k in plan.corrector[p]:
                turn = axis_angle_matrix(axis, np.minimum(angle * k / norm, np.pi / 2))
                for b in bones:
                    still = kept.get(int(b))
                    keyed[int(b)] = (turn if still is None else np.where(still[:, None, None], np.eye(3), turn)) \
                        @ keyed[int(b)]
            got, _ = _aims(reference_joints(binding, reference_fk(arm, keyed, f)[0], f))
        if worst < 1e-6:
            break
    _, pre = reference_fk(arm, keyed, f)
    return {arm.bones[b]: np.swapaxes(pre[int(b)], -1, -2) @ keyed[int(b)] for b in plan.keyed}


# --- tests ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rig():
    arm = rigify_like()
    binding = bind(arm, "rigify")
    return arm, binding


def test_compiled_forward_kinematics_is_the_plain_one(rig):
    arm, binding = rig
    plan = _plan(binding)
    assert len(arm.bones) > 700 and len(plan.order) < 90          # only the chains to the mapped bones are posed
    rng = np.random.default_rng(3)
    f = 5
    local = {int(b): axis_angle_matrix(_unit(rng.normal(size=(f, 3)))[0], rng.uniform(0, 2, f)) for b in plan.keyed}
    loc = rng.normal(0, 0.3, (f, 3))
    heads, rots, pre = _fk(plan, local, f, local=True, root_location=loc)
    poses, ref_pre = reference_fk(arm, local, f, local=True, root=plan.root, root_location=loc)
    for b, i in plan.slot.items():
        np.testing.assert_allclose(heads[:, i], poses[b][:, :3, 3], atol=1e-12, err_msg=arm.bones[b])
        np.testing.assert_allclose(rots[:, i], poses[b][:, :3, :3], atol=1e-12, err_msg=arm.bones[b])
    for b in plan.keyed:
        np.testing.assert_allclose(pre[int(b)], ref_pre[int(b)], atol=1e-12, err_msg=arm.bones[b])


def test_part_rotations_a_depth_at_a_time_are_one_at_a_time(rig):
    _, binding = rig
    targets = random_poses(20, seed=4, max_angle=1.5)
    rest = rest_joints(binding)
    np.testing.assert_allclose(part_rotations(rest, targets), reference_part_rotations(rest, targets), atol=1e-12)


def _bases(arm, pose) -> dict[str, np.ndarray]:
    return dict(zip(pose.bones, np.moveaxis(quaternion_to_matrix(pose.quaternions), 1, 0)))


def test_solve_keys_what_the_plain_sweeps_key(rig):
    arm, binding = rig
    poses = random_poses(4, seed=7, max_angle=0.8)
    pose = solve(arm, poses, binding=binding)
    assert not pose.warnings
    ref = reference_solve(arm, poses, binding)
    got = _bases(arm, pose)
    for b in ref:
        np.testing.assert_allclose(got[b], ref[b], atol=1e-7, err_msg=b)
    # ... and the joints it reads back are where its own keys put the rig, evaluated the plain way.
    plan = _plan(binding)
    local = {arm.index[b]: r for b, r in got.items()}
    poses_fk, _ = reference_fk(arm, local, len(poses), local=True, root=plan.root, root_location=pose.location)
    np.testing.assert_allclose(arm.to_world(reference_joints(binding, poses_fk, len(poses))), pose.joints, atol=1e-9)


def test_editing_with_kept_bones_keys_what_the_plain_sweeps_key(rig):
    """Auto Pose's request: the torso kept as the animator turned it (on some frames), the head's twist kept. The
    pelvis cannot be corrected where the torso is kept: the plain sweeps ran all 32, the fast ones stop when a
    sweep turns nothing; the keys are the same."""
    arm, binding = rig
    before = random_poses(4, seed=8, max_angle=0.6)
    first = solve(arm, before, binding=binding)
    now = {arm.index[b]: r for b, r in _bases(arm, first).items()}
    plan = _plan(binding)
    poses, _ = reference_fk(arm, now, len(before), local=True, root=plan.root, root_location=first.location)
    turn = axis_angle_matrix(np.array([0.0, 0.0, 1.0]), np.array(0.3))
    rotations = {b: poses[arm.index[b]][:, :3, :3] for b in ("torso", "head")}
    rotations["torso"] = turn @ rotations["torso"]
    current = {"joints": first.joints, "rotations": rotations, "keep": {"torso": [True, False, True, True]}}
    after = first.joints + np.random.default_rng(9).normal(0, 0.03, first.joints.shape)
    pose = solve(arm, after, binding=binding, root_scale=1.0, current=current)
    ref = reference_solve(arm, after, binding, current)
    got = _bases(arm, pose)
    for b in ref:
        np.testing.assert_allclose(got[b], ref[b], atol=1e-7, err_msg=b)
    # The kept torso is exactly as given on its frames.
    torso = arm.index["torso"]
    kept_poses, _ = reference_fk(arm, {arm.index[b]: r for b, r in got.items()}, 4, local=True, root=plan.root,
                                 root_location=pose.location)
    np.testing.assert_allclose(kept_poses[torso][[0, 2, 3], :3, :3], rotations["torso"][[0, 2, 3]], atol=1e-12)


def test_held_by_kept_finds_the_joints_a_kept_control_carries(rig):
    """Rigify's torso kept (as Auto Pose keeps a control the animator dragged): the lower spine point rides on it,
    the map keying the hips and lower spine FK at rest, so no solve can move it off the pelvis; the chest can. With
    nothing kept the solve may turn every part, so only each joint with itself is held."""
    _, binding = rig
    held = held_by_kept(binding, ["torso"])
    for a, b in (("spine", "pelvis"), ("spine", "hip_l"), ("hip_r", "pelvis")):
        assert held[INDEX[a], INDEX[b]] and held[INDEX[b], INDEX[a]], (a, b)
    for a in ("chest", "neck", "collar_l", "shoulder_l", "wrist_l", "knee_l"):
        assert not held[INDEX[a], INDEX["pelvis"]], a
    assert np.array_equal(held_by_kept(binding, []), np.eye(24, dtype=bool))
