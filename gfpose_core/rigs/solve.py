"""Retargeting between body24 joints and real armatures, in numpy only: the math behind "pose for rig".

An armature is plain arrays (`Armature`): bone names, parents, rest matrices in armature space (Blender's
`bone.matrix_local`: columns X, Y along the bone, Z; translation = the head), lengths, rotation modes and the
constraints that decide what follows what. A rig map binds to it (`bind`): every body24 joint becomes a weighted sum
of points fixed in bones, which reads poses (`joints_from_pose`) and is what `solve` aims at when writing.

Blender's pose-bone convention, which `solve` produces and `forward_kinematics` follows:
    pose[b] = pose[parent] @ inv(rest[parent]) @ rest[b] @ basis[b],   basis = translate(location) @ rotate(...)

Writing a pose (`solve`): every body24 joint with children is a *part* (the pelvis turns the hips bone, the
shoulder turns the upper arm ...). A part's rotation, from the rig's rest body to the wanted body, swings the part's
rest direction onto the wanted one starting from its parent part's rotation, then twists it about that direction
from a third point where body24 has one (hips and shoulders for pelvis, spine and chest; the bend plane for the
upper limbs, so elbows and knees stay hinges). Each keyed bone turns with its part, so it keeps the rig's own rest
roll. Where a rig map's joint spans several bones (an interpolated spine), a few sweeps of forward kinematics
correct the aim exactly. The root bone's location puts the pelvis where the take puts it, scaled by leg length.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from gfpose_core.body.rotations import (
    _unit,
    continuous_quaternions,
    matrix_to_blender_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from gfpose_core.body.skeleton import INDEX, JOINT_NAMES, two_bone
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.binding import Binding, bind, rest_joints
from gfpose_core.rigs.kinematics import axis_angle, cross, swing
from gfpose_core.rigs.plan import (
    PARTS,
    _aim_dirs,
    _fk,
    _fk_joints,
    _location_axes,
    _plan,
    _Posed,
    _runs,
    part_rotations,
)
from gfpose_core.rigs.rig_map import RigMap


@dataclass
class RigPose:
    """Keys for one armature: what `solve` returns and the add-on writes (`to_dict` for JSON)."""
    bones: list[str]                   # keyed bones (as the armature spells them)
    parts: list[str]                   # the body24 joint each keyed bone turns with
    rotation_modes: list[str]          # mode of each keyed bone's keys: "QUATERNION" or a Blender Euler order
    rotations: list[np.ndarray]        # per keyed bone (F, 4) quaternion (w, x, y, z) or (F, 3) Euler radians
    quaternions: np.ndarray            # (F, N, 4) the same rotations as quaternions, sign-continuous
    root: str
    location: np.ndarray               # (F, 3) the root bone's location keys
    rest: list[str]                    # bones keyed at rest
    rest_modes: list[str]
    properties: list[tuple[str, str, float]]  # (pose bone, custom property, value) to set before keying
    joints: np.ndarray                 # (F, 24, 3) where body24 lands on the rig (world), by forward kinematics
    root_scale: float
    aim_error: np.ndarray              # (F, 19) degrees between each part's aim on the rig and the wanted one
    warnings: list[str]

    def channels(self) -> list[tuple[str, str, np.ndarray]]:
        """(bone, data path property, values (F, n)) for every F-curve group to key."""
        f = self.location.shape[0]
        out = []
        for bone, mode, values in zip(self.bones, self.rotation_modes, self.rotations):
            out.append((bone, "rotation_quaternion" if mode == "QUATERNION" else "rotation_euler", values))
            if bone == self.root:
                out.append((bone, "location", self.location))
        for bone, mode in zip(self.rest, self.rest_modes):
            q = mode == "QUATERNION"
            out.append((bone, "rotation_quaternion" if q else "rotation_euler",
                        np.tile([1.0, 0, 0, 0] if q else [0.0, 0, 0], (f, 1))))
            out.append((bone, "location", np.zeros((f, 3))))
        return out

    def to_dict(self) -> dict:
        modes = dict(zip(self.bones, self.rotation_modes)) | dict(zip(self.rest, self.rest_modes))
        return {"frames": int(self.location.shape[0]), "root": self.root, "root_scale": self.root_scale,
                "rotation_modes": modes,
                "channels": [{"bone": b, "path": p, "values": np.asarray(v).tolist()} for b, p, v in self.channels()],
                "properties": [{"bone": b, "name": n, "value": v} for b, n, v in self.properties],
                "joints": self.joints.tolist(), "warnings": self.warnings}


def leg_length(joints: np.ndarray) -> float:
    """Hip to knee to ankle, averaged over both legs and (median) over frames; (..., 24, 3)."""
    j = np.asarray(joints, dtype=np.float64).reshape(-1, len(JOINT_NAMES), 3)
    total = 0.0
    for s in ("l", "r"):
        h, k, a = (j[:, INDEX[f"{n}_{s}"]] for n in ("hip", "knee", "ankle"))
        total = total + np.linalg.norm(k - h, axis=-1) + np.linalg.norm(a - k, axis=-1)
    return float(np.median(total / 2))


def check_joints(joints) -> np.ndarray:
    """Body24 poses as (F, 24, 3) float64, or a ValueError naming what is wrong."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim == 2:
        j = j[None]
    if j.ndim != 3 or j.shape[1:] != (len(JOINT_NAMES), 3) or j.shape[0] == 0:
        raise ValueError(f"joints must be (frames, 24, 3) or (24, 3) body24 positions, got shape {j.shape}")
    bad = ~np.isfinite(j).all(axis=(0, 2))
    if bad.any():
        raise ValueError("joints are not finite (NaN or inf) for "
                         f"{', '.join(n for n, b in zip(JOINT_NAMES, bad) if b)}: a pose for a rig needs every "
                         "joint (complete the pose first)")
    return j


def solve(armature: Armature, joints, rig: RigMap | str | None = None, binding: Binding | None = None,
          root_scale: float | None = None, sweeps: int = 32, current: dict | None = None,
          reach: np.ndarray | None = None) -> RigPose:
    """Body24 poses (F, 24, 3) world space -> keys for the armature's mapped bones (Blender's pose-bone
    convention) and the root bone's location.

    root_scale: how much the root translation is scaled; None = the rig's leg length over the take's.
    current: the pose the rig has now, to edit rather than solve afresh: {"joints": (F, 24, 3) world, read off
    the rig as it stands, "rotations": {bone: (F, 3, 3) armature-space orientation now}} for keyed bones that
    have a twist to keep (see `edit_rotations`); bones left out are solved from their rest pose. "keep": bones
    (any of the armature's, with a rotation given) that stay exactly as they are: the animator's posed bones, and
    unmapped bones posed off their rest. The other bones are solved under them, so their keys are right under the
    rig's real parents and the add-on keys them as they come.
    reach: (F, 24) bool, the wrists and ankles to land exactly where `joints` has them (live posing's dragged hands
    and feet) rather than only pointing each bone as `joints` does: their arm or leg bent to them from where the rig
    put its shoulder or hip (`_reach_limbs`).
    """
    j_world = check_joints(joints)
    binding = binding or bind(armature, rig)
    plan = _plan(binding)
    arm = armature
    f = j_world.shape[0]
    targets = arm.to_armature_space(j_world)
    rest = rest_joints(binding)
    part_rot = part_rotations(rest, targets, {PARTS[p] for p in plan.parts})   # (F, 19, 3, 3)
    keyed_rot = {int(b): part_rot[:, p] @ arm.rest[b, :3, :3] for b, p in zip(plan.keyed, plan.parts)}
    kept: dict[int, np.ndarray] = {}      # bone -> frames on which it stays as it is
    if current is not None:
        keyed_rot.update(edit_rotations(plan, rest, targets, current, keyed_rot, part_rot))
        for b, (rot, mask) in kept_rotations(arm, current, f).items():
            if b not in keyed_rot:           # a bone the map does not key: as it is on every frame
                mask = np.ones(f, bool)
            keyed_rot[b] = np.where(mask[:, None, None], rot, keyed_rot.get(b, rot))
            kept[b] = mask
    want_dir, want_len = _aim_dirs(targets)
    posed = _sweep(plan, keyed_rot, kept, want_dir, want_len, f, sweeps)
    # Root translation: the pelvis goes where the take puts it, scaled about the world origin by leg length.
    scale = root_scale if root_scale is not None else (
        leg_length(rest) * arm.world_scale / max(leg_length(j_world), 1e-9))
    want_root = arm.to_armature_space(j_world[:, INDEX["pelvis"]] * scale)
    if reach is not None:
        posed = _reach_limbs(plan, posed, kept, targets, np.asarray(reach, bool), want_dir, want_len, f,
                             sweeps)
    heads, rots = posed.full()
    predicted = _fk_joints(plan, heads, rots)
    delta = want_root - predicted[:, INDEX["pelvis"]]
    axes = _location_axes(plan, plan.root, posed.pre[:, posed.col[plan.root]], rots)
    location = np.einsum("fji,fj->fi", axes, delta)   # axes are orthonormal: their transpose inverts them
    predicted = predicted + delta[:, None]
    got_dir, _ = _aim_dirs(predicted)
    aim_error = np.degrees(np.arccos(np.clip(np.sum(got_dir * want_dir, -1), -1, 1)))
    # Local rotations in each bone's own mode, all bones at once (one mode at a time for Euler keys).
    cols = [posed.col[int(b)] for b in plan.keyed]
    basis = np.swapaxes(posed.pre[:, cols], -1, -2) @ posed.rot[:, cols]         # (F, N, 3, 3)
    quats = continuous_quaternions(matrix_to_quaternion(basis))
    warnings = list(plan.warnings)
    modes = []
    for b in plan.keyed:
        mode = arm.rotation_modes[b]
        if mode == "AXIS_ANGLE":
            warnings.append(f"bone '{arm.bones[b]}' uses axis-angle rotation; it is keyed as a quaternion")
            mode = "QUATERNION"
        modes.append(mode)
    values = [quats[:, i] for i in range(len(cols))]
    for mode in set(modes) - {"QUATERNION"}:
        which = [i for i, m in enumerate(modes) if m == mode]
        for i, e in zip(which, np.moveaxis(matrix_to_blender_euler(basis[:, which], mode), 1, 0)):
            values[i] = e
    bones, parts = [arm.bones[b] for b in plan.keyed], [PARTS[p] for p in plan.parts]
    rest_modes = ["QUATERNION" if arm.rotation_modes[b] in ("QUATERNION", "AXIS_ANGLE") else arm.rotation_modes[b]
                  for b in plan.rest_bones]
    return RigPose(bones=bones, parts=parts, rotation_modes=modes, rotations=values,
                   quaternions=quats, root=arm.bones[plan.root], location=location,
                   rest=[arm.bones[b] for b in plan.rest_bones], rest_modes=rest_modes,
                   properties=plan.properties, joints=arm.to_world(predicted), root_scale=float(scale),
                   aim_error=aim_error, warnings=warnings)


def _sweep(plan, keyed_rot: dict[int, np.ndarray], kept: dict[int, np.ndarray], want_dir: np.ndarray,
           want_len: np.ndarray, f: int, sweeps: int) -> _Posed:
    """The keyed bones posed (`_Posed`: heads, orientations, the keys' own rotations in `rot`), with every aim that
    spans several groups (a spine, chest or collar read between bones, as the rig maps do to put them at the
    training data's landmarks) corrected by sweeps of forward kinematics until every aim is within 1e-6 rad. One
    sweep ends it where every part is rigid in its bones; interpolated landmarks take 8-24 on extreme poses.

    Each turn moves what hangs from the turned bone as forward kinematics would (`_Posed.turn`), without evaluating
    the rig again; parts whose aims no earlier part of their run turns are corrected from one reading (`_runs`). A
    part whose movers are all kept (on every frame where it is off) cannot turn: it is passed over, and sweeps stop
    once one turns nothing (the ones after would repeat it). What a sweep does is what it did one part at a time
    with the whole rig evaluated after each turn, to rounding (tests/test_solve_fast.py)."""
    posed = _Posed(plan, keyed_rot, f)
    parts = np.array(list(plan.corrector), dtype=int)    # PARTS order, as the sweeps go
    movers = [[int(b) for bones, _ in m for b in bones] for m in plan.corrector.values()]
    stuck = np.ones((len(parts), f), dtype=bool)         # frames on which no mover of a part may turn
    for i, bones in enumerate(movers):
        for b in bones:
            stuck[i] &= kept[b] if b in kept else False
    want_dir, aimed = want_dir[:, parts], want_len[:, parts] > 1e-9

    def off() -> tuple[np.ndarray, np.ndarray, list[float]]:
        """How far each part's aim is off the wanted one now: axes (F, P, 3), angles (F, P), worst per part."""
        got_dir = _aim_dirs(posed.joints(), parts)[0]
        axis, s = _unit(cross(got_dir, want_dir))
        angle = np.where(aimed, np.arctan2(s, np.sum(got_dir * want_dir, -1)), 0.0)
        return axis, angle, angle.max(0).tolist()

    axis, angle, most = off()
    groups = list(plan.corrector.values())
    for _ in range(sweeps):
        worst, turned = 0.0, False
        for run in _runs(plan):
            moved = False
            for i in run:
                if most[i] < 1e-7:
                    continue
                worst = max(worst, most[i])
                if (stuck[i] | (angle[:, i] == 0)).all():
                    continue
                # The least turning that corrects the aim to first order: group g turns by angle * k_g / sum(k^2).
                norm = sum(k * k for _, k in groups[i])
                for bones, k in groups[i]:
                    turn = axis_angle(axis[:, i], np.minimum(angle[:, i] * k / norm, np.pi / 2))
                    for b in bones:
                        still = kept.get(int(b))
                        posed.turn(int(b), turn if still is None else np.where(still[:, None, None], np.eye(3), turn))
                turned = moved = True
            if moved:
                axis, angle, most = off()
        if worst < 1e-6 or not turned:
            break
    posed.update()           # the last word: every bone from its parent, as the keys will pose it
    return posed


_LIMBS = [tuple(INDEX[f"{n}_{s}"] for n in names) for s in ("l", "r")
          for names in (("shoulder", "elbow", "wrist"), ("hip", "knee", "ankle"))]
_PART_OF = {p: i for i, p in enumerate(PARTS)}


def _reach_limbs(plan, posed, kept, targets, reach, want_dir, want_len, f: int, sweeps: int):
    """`posed` with each arm and leg whose end `reach` marks (and whose elbow or knee it does not) bent to put that
    end where `targets` has it from the pelvis, from where the rig put the limb's root: the elbow or knee placed at
    the rig's own bone lengths from both (on the side the rig has it now), the two parts aimed at it and the sweeps
    run again (by the least turn that aims each part, so the bend may leave a hinge's plane by a few degrees).
    A rig's shoulder need not land where the body has it (a clavicle turning about a point that is no body24 joint,
    a chest twisted by where the shoulders are), and a hand aimed only by its bones' directions misses by as much."""
    rows = [(root, mid, end) for root, mid, end in _LIMBS if reach[:, end].any()]
    if not rows:
        return posed
    now = posed.joints()
    pelvis = INDEX["pelvis"]
    want = want_dir.copy()
    for root, mid, end in rows:
        on = reach[:, end] & ~reach[:, mid]               # a pinned elbow or knee stays where the aims put it
        # where the body has the end from its pelvis (the root translation, scaled by root_scale, comes after)
        goal = targets[:, end] - targets[:, pelvis] + now[:, pelvis]
        l1 = np.linalg.norm(now[:, mid] - now[:, root], axis=-1)
        l2 = np.linalg.norm(now[:, end] - now[:, mid], axis=-1)
        knee = two_bone(now[:, root], goal, l1, l2, now[:, mid])
        for part, a, b in ((root, now[:, root], knee), (mid, knee, goal)):
            d = _unit(b - a)[0]
            i = _PART_OF[JOINT_NAMES[part]]
            want[:, i] = np.where((on & (want_len[:, i] > 1e-9))[:, None], d, want[:, i])
    again = {b: posed.rot[:, c].copy() for b, c in posed.col.items()}
    return _sweep(plan, again, kept, want, want_len, f, sweeps)


# Parts whose turn body24 fixes whole (aim and twist, from the hips and shoulders lines): an edit turns them by the
# change of that whole orientation. Every other part keeps its own twist: its bones turn by the swing of its aim.
_WHOLE = ("pelvis", "spine", "chest")
_AGREE_DEG = 5.0    # a current bone whose aim is further than this from the current joints is solved afresh


def edit_rotations(plan, rest: np.ndarray, targets: np.ndarray, current: dict,
                   fresh: dict[int, np.ndarray], rot_new: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Armature-space orientations (F, 3, 3) of the keyed bones given in `current`, edited rather than solved: each
    turned from its orientation now by the least rotation that takes its part's aim now (the joints read off the
    rig) onto the wanted aim (`targets`, armature space), so that the twist the animator gave it stays; pelvis,
    spine and chest by the change of their whole orientation, which body24 holds. Head, hands and feet aim at
    head_end, hand_end and toe as every part does; the twist about a forearm (pronation) is what the bone has now.

    A part is edited only where every bone of it is given, and only on frames where those bones agree with the
    joints now (their aim within _AGREE_DEG: the rig was read through the same bones, not e.g. in IK while its FK
    controls are keyed); elsewhere the fresh solve (`fresh`) stands. rot_new: part_rotations(rest, targets) of
    the keyed parts where the caller has them already."""
    arm = plan.binding.armature
    f = targets.shape[0]
    cur_world = check_joints(current["joints"])
    if cur_world.shape[0] != f:
        raise ValueError(f"current joints have {cur_world.shape[0]} frames, the poses {f}")
    given = {}
    for name, rot in (current.get("rotations") or {}).items():
        if name not in arm.index:
            raise ValueError(f"current rotation for bone '{name}', which the armature does not have")
        r = np.asarray(rot, dtype=np.float64)
        if r.shape != (f, 3, 3) or not np.isfinite(r).all():
            raise ValueError(f"current rotation of bone '{name}' must be finite ({f}, 3, 3), got {r.shape}")
        given[arm.index[name]] = _orthonormal(r)
    keyed = [(int(b), int(p)) for b, p in zip(plan.keyed, plan.parts)]
    parts = {p for b, p in keyed if b in given} - {p for b, p in keyed if b not in given}
    if not parts:
        return {}
    cur = arm.to_armature_space(cur_world)
    cur_dir, _ = _aim_dirs(cur)
    want_dir, want_len = _aim_dirs(targets)
    want_dir = np.where((want_len > 1e-9)[..., None], want_dir, cur_dir)
    names = {PARTS[p] for _, p in keyed}
    rot_now = _rotations_now(rest, cur, names)
    rot_new = part_rotations(rest, targets, names) if rot_new is None else rot_new
    # Where the given bones aim each part now (the other keyed bones as the fresh solve has them).
    heads, rots, _ = _fk(plan, fresh | given, f)
    fk_dir, _ = _aim_dirs(_fk_joints(plan, heads, rots))
    agree = np.degrees(np.arccos(np.clip(np.sum(fk_dir * cur_dir, -1), -1, 1))) < _AGREE_DEG   # (F, 19)
    swung = sorted(p for p in parts if PARTS[p] not in _WHOLE)
    turns = dict(zip(swung, np.moveaxis(swing(cur_dir[:, swung], want_dir[:, swung]), 1, 0)))
    turns.update({p: rot_new[:, p] @ np.swapaxes(rot_now[:, p], -1, -2) for p in parts if PARTS[p] in _WHOLE})
    out = {}
    for b, p in keyed:
        if p in parts:
            out[b] = np.where(agree[:, p][:, None, None], turns[p] @ given[b], fresh[b])
    return out


_NOW: dict[bytes, np.ndarray] = {}
_NOW_FRAMES = 8


def _rotations_now(rest: np.ndarray, cur: np.ndarray, names: set[str]) -> np.ndarray:
    """part_rotations of the pose the rig has now, kept for the next call: Auto Pose sends the same `current` with
    every request of a drag (a part_rotations is about a fifth of a one-pose solve). Takes of many frames are not
    kept (each would hold megabytes, and a take is not sent again and again)."""
    if len(cur) > _NOW_FRAMES:
        return part_rotations(rest, cur, names)
    key = b"".join([np.ascontiguousarray(rest).tobytes(), np.ascontiguousarray(cur).tobytes(),
                    ",".join(sorted(names)).encode()])
    got = _NOW.get(key)               # the server's threads share it: read once, never index it after a clear
    if got is None:
        if len(_NOW) > 16:
            _NOW.clear()
        got = part_rotations(rest, cur, names)
        got.flags.writeable = False                          # shared between calls: nobody may edit it
        _NOW[key] = got
    return got


def kept_rotations(arm: Armature, current: dict, f: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{bone index: (orientation (F, 3, 3), frames kept (F,))} of the bones `current` asks to keep as they are:
    "keep" is a list of bone names (kept on every frame) or {bone name: one flag per frame}."""
    keep = current.get("keep") or []
    if isinstance(keep, (list, tuple)) and all(isinstance(b, str) for b in keep):
        keep = {b: [True] * f for b in keep}
    if not isinstance(keep, dict):
        raise ValueError("current keep must be a list of bone names or {bone: [one flag per frame]}")
    rotations = current.get("rotations") or {}
    out = {}
    for name, flags in keep.items():
        if name not in arm.index:
            raise ValueError(f"current keeps bone '{name}', which the armature does not have")
        if name not in rotations:
            raise ValueError(f"current keeps bone '{name}' but gives no rotation for it")
        mask = np.asarray(flags)
        if mask.shape != (f,) or mask.dtype != bool:
            raise ValueError(f"current keep of bone '{name}' must be {f} true/false flags, one per frame")
        r = np.asarray(rotations[name], dtype=np.float64)
        if r.shape != (f, 3, 3) or not np.isfinite(r).all():
            raise ValueError(f"current rotation of bone '{name}' must be finite ({f}, 3, 3), got {r.shape}")
        if mask.any():
            out[arm.index[name]] = (_orthonormal(r), mask)
    return out


def _orthonormal(r: np.ndarray) -> np.ndarray:
    """The rotation nearest each matrix (a pose matrix's scale and shear taken out)."""
    u, _, vt = np.linalg.svd(r)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return u @ vt


def forward_kinematics(pose: RigPose, binding: Binding) -> np.ndarray:
    """Where a RigPose's own keys put body24 on the armature (F, 24, 3) world space: Blender's pose-bone
    convention applied to the local rotations and root location, independently of how `solve` got them."""
    plan = _plan(binding)
    arm = binding.armature
    f = pose.location.shape[0]
    local = {arm.index[b]: quaternion_to_matrix(q) for b, q in zip(pose.bones, np.moveaxis(pose.quaternions, 1, 0))}
    heads, rots, _ = _fk(plan, local, f, local=True, root_location=pose.location)
    return arm.to_world(_fk_joints(plan, heads, rots))


# --- JSON entry points for the engine server ("pose for rig") ---------------------------------------------------

def bind_for_rig(description: dict, rig: str | None = None) -> dict:
    """Server helper: armature description -> the binding the add-on reads body24 with, plus what writing needs
    first (custom properties to set before the armature is described again for `pose_for_rig`)."""
    arm = Armature.from_dict(description)
    binding = bind(arm, rig)
    out = binding.to_dict()
    w = binding.rig.write
    out["properties"] = [{"bone": binding.resolve(b), "name": k, "value": v}
                         for b, vals in (w.properties.items() if w else []) for k, v in vals.items()]
    out["can_write"] = w is not None
    return out


def pose_for_rig(description: dict, joints, rig: str | None = None, root_scale: float | None = None,
                 current: dict | None = None) -> dict:
    """Server helper: armature description + body24 poses (+ the pose the rig has now, to edit) -> keys to write
    (RigPose.to_dict)."""
    arm = Armature.from_dict(description)
    return solve(arm, joints, rig=rig, root_scale=root_scale, current=current).to_dict()


class UnknownBinding(Exception):
    """A binding_id the cache does not hold (never made, or dropped as the oldest)."""


class BindingCache:
    """Bindings (with their FK plans) the server keeps between calls, by the digest of the armature description and
    rig map they were made from: a client sends an armature once and names it by `binding_id` after that. The
    oldest go first beyond `size`."""

    def __init__(self, size: int = 32):
        self.size = size
        self._held: dict[str, Binding] = {}

    @staticmethod
    def digest(description: dict, rig: str | None) -> str:
        return hashlib.sha1(json.dumps([description, rig], sort_keys=True).encode()).hexdigest()

    def bind(self, description: dict, rig: str | None) -> tuple[str, Binding]:
        key = self.digest(description, rig)
        binding = self._held.pop(key, None) or bind(Armature.from_dict(description), rig)
        self._held[key] = binding                      # newest last
        while len(self._held) > self.size:
            self._held.pop(next(iter(self._held)))
        return key, binding

    def get(self, binding_id: str) -> Binding | None:
        return self._held.get(binding_id)

    def pose_for_rig(self, joints, description: dict | None = None, rig: str | None = None,
                     binding_id: str | None = None, root_scale: float | None = None,
                     current: dict | None = None, reach: np.ndarray | None = None) -> dict:
        """Keys for the armature sent now, or for one sent before (binding_id; UnknownBinding when it is not held)."""
        if description is not None:
            binding_id, binding = self.bind(description, rig)
        else:
            binding = self.get(binding_id)
            if binding is None:
                raise UnknownBinding(binding_id)
        out = solve(binding.armature, joints, binding=binding, root_scale=root_scale, current=current,
                    reach=reach).to_dict()
        out["binding_id"] = binding_id
        return out
