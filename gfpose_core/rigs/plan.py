"""The constraint-aware plan for writing a pose: which bones turn with which body24 part, in what order."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gfpose_core.body.rotations import _unit, axis_angle_matrix
from gfpose_core.body.skeleton import INDEX
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.binding import Binding, _points
from gfpose_core.rigs.kinematics import _Kinematics, _Posed, axis_angle, cross, swing
from gfpose_core.rigs.rig_map import PIVOTS, RigMapError


@dataclass
class _Structure:
    parent: np.ndarray        # effective parent (a single-target Armature constraint counts as a parent)
    copy_of: np.ndarray       # bone whose pose this bone copies (world-space Copy Transforms at full influence), -1
    stretched: np.ndarray     # a Stretch To after the copy: the head follows, the orientation does not
    issues: list[list[str]]   # constraints the retarget cannot follow, per bone


def _structure(arm: Armature, keyed: set[int]) -> _Structure:
    n = len(arm.bones)
    parent = arm.parents.copy()
    copy_of = np.full(n, -1)
    stretched = np.zeros(n, dtype=bool)
    issues: list[list[str]] = [[] for _ in range(n)]
    for b, cons in enumerate(arm.constraints):
        for c in cons:
            if not c.get("enabled", True) or c.get("influence", 1.0) <= 1e-6:
                continue  # muted, or switched off (Rigify's IK/FK and follow switches end up here)
            kind, sub = c.get("type", ""), c.get("subtarget") or ""
            target = arm.index.get(sub, -1) if c.get("own_armature", True) else -1
            spaces = (c.get("owner_space", "WORLD"), c.get("target_space", "WORLD"))
            if kind == "COPY_SCALE":
                continue  # poses carry no scale
            if kind in ("COPY_TRANSFORMS", "COPY_ROTATION", "COPY_LOCATION") and spaces == ("LOCAL", "LOCAL") \
                    and target >= 0 and target not in keyed:
                continue  # copies a local pose that the retarget leaves at rest: no effect
            if kind == "COPY_TRANSFORMS" and spaces == ("WORLD", "WORLD") and target >= 0 \
                    and c.get("influence", 1.0) >= 1 - 1e-6 and c.get("mix_mode", "REPLACE") == "REPLACE":
                copy_of[b], stretched[b], issues[b] = target, False, []
                continue  # replaces everything above it in the stack
            if kind == "STRETCH_TO":
                stretched[b] = True
                continue
            if kind == "ARMATURE":
                live = [(t, w) for t, w in c.get("targets", []) if w > 1e-6]
                if len(live) == 1 and abs(live[0][1] - 1) < 1e-6 and live[0][0] in arm.index:
                    parent[b] = arm.index[live[0][0]]
                    continue
            issues[b].append(f"{kind} '{c.get('name', kind)}'")
    return _Structure(parent=parent, copy_of=copy_of, stretched=stretched, issues=issues)


def _dependency_order(needed: set[int], st: _Structure) -> list[int]:
    """Topological order over parents and copy targets (a copy's target may come later in the bone list)."""
    order, state = [], {}

    def visit(b):
        stack = [(b, False)]
        while stack:
            x, done = stack.pop()
            if done:
                state[x] = 2
                order.append(x)
                continue
            if state.get(x) == 2:
                continue
            if state.get(x) == 1:
                raise RigMapError(f"bone dependencies form a loop at '{x}'")
            state[x] = 1
            stack.append((x, True))
            for d in _depends_on(x, st):
                if state.get(d) != 2:
                    stack.append((d, False))

    for b in sorted(needed):
        if state.get(b) != 2:
            visit(b)
    return order


def _closure(start: set[int], st: _Structure) -> set[int]:
    out, todo = set(), list(start)
    while todo:
        b = todo.pop()
        if b in out:
            continue
        out.add(b)
        todo += _depends_on(b, st)
    return out


def _depends_on(b: int, st: _Structure) -> list[int]:
    """The bones whose pose decides this one's: the copied bone for a full copy (its parent no longer matters)."""
    if st.copy_of[b] >= 0:
        return [int(st.copy_of[b])]
    return [int(st.parent[b])] if st.parent[b] >= 0 else []


# --- body parts: the rotation each body24 joint with children turns through ------------------------------------

# part: (aim from, aim to, twist rule, twist points, parent part). Twist rules: "side" aligns the listed right->left
# pairs; "bend" the limb's bend plane (root, middle, end, which way the middle joint points on a straight rest
# limb); "inherit" keeps the parent part's twist (hinges, and where body24 has no third point: head, hands, feet).
_PARTS = {
    "pelvis": ("pelvis", "spine", "side", (("hip_r", "hip_l"),), None),
    "spine": ("spine", "chest", "side", (("hip_r", "hip_l"), ("shoulder_r", "shoulder_l")), "pelvis"),
    "chest": ("chest", "neck", "side", (("shoulder_r", "shoulder_l"),), "spine"),
    "neck": ("neck", "head", "inherit", None, "chest"),
    "head": ("head", "head_end", "inherit", None, "neck"),
}
for _s in ("l", "r"):
    _PARTS.update({
        f"collar_{_s}": (f"collar_{_s}", f"shoulder_{_s}", "inherit", None, "chest"),
        f"shoulder_{_s}": (f"shoulder_{_s}", f"elbow_{_s}", "bend", (f"shoulder_{_s}", f"elbow_{_s}", f"wrist_{_s}",
                                                                     "back"), f"collar_{_s}"),
        f"elbow_{_s}": (f"elbow_{_s}", f"wrist_{_s}", "inherit", None, f"shoulder_{_s}"),
        f"wrist_{_s}": (f"wrist_{_s}", f"hand_end_{_s}", "inherit", None, f"elbow_{_s}"),
        f"hip_{_s}": (f"hip_{_s}", f"knee_{_s}", "bend", (f"hip_{_s}", f"knee_{_s}", f"ankle_{_s}", "front"),
                      "pelvis"),
        f"knee_{_s}": (f"knee_{_s}", f"ankle_{_s}", "inherit", None, f"hip_{_s}"),
        f"ankle_{_s}": (f"ankle_{_s}", f"toe_{_s}", "inherit", None, f"knee_{_s}"),
    })
PARTS = tuple(p for p in PIVOTS)            # body24 order: parents before children
assert set(PARTS) == set(_PARTS)
_PART_INDEX = {p: i for i, p in enumerate(PARTS)}
_AIM_FROM, _AIM_TO = (np.array([INDEX[_PARTS[p][k]] for p in PARTS]) for k in (0, 1))
# How much evidence (sine of the bend angle, or of the hips/shoulders line across the aim) the twist needs: none
# below the first value (the parent's twist is kept), full trust above the second, a smooth blend between.
_TRUST = {"side": (0.05, 0.3), "bend": (np.sin(np.radians(3.0)), np.sin(np.radians(15.0)))}


def _evidence(joints: np.ndarray, rule: str, pts) -> np.ndarray:
    """The vector whose part across the aim fixes the twist: (..., 24, 3) -> (..., 3)."""
    if rule == "side":
        acc = 0.0
        for r, l in pts:
            acc = acc + _unit(joints[..., INDEX[l], :] - joints[..., INDEX[r], :])[0]
        return acc / len(pts)
    a, m, e = pts if isinstance(pts[0], np.ndarray) else (joints[..., INDEX[n], :] for n in pts[:3])
    u, v = m - a, e - m
    # The bend normal, of length sin(bend angle): no evidence on a straight limb.
    return cross(u, v) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-300)[..., None]


def _rest_evidence(rest: np.ndarray, rule: str, pts, aim: np.ndarray) -> np.ndarray:
    ev = _evidence(rest, rule, pts)
    if rule == "bend" and np.linalg.norm(ev) < 1e-3:
        # A straight rest limb (T-pose, BVH rest): the knee points to the rig's front, the elbow to its back.
        up = _unit(rest[INDEX["neck"]] - rest[INDEX["pelvis"]])[0]
        left = _unit(rest[INDEX["hip_l"]] - rest[INDEX["hip_r"]])[0]
        front = _unit(np.cross(left, up))[0]
        pole = front if pts[3] == "front" else -front
        ev = np.cross(pole, aim)
        if np.linalg.norm(ev) < 0.1:        # the limb points along the front axis at rest: use up instead
            ev = np.cross(up if pts[3] == "front" else -up, aim)
    return _unit(ev)[0]


def _batches() -> list[tuple[np.ndarray, np.ndarray | None, str, bool]]:
    """PARTS in batches that part_rotations turns at once: one depth of the part tree, one twist rule each."""
    depth, groups = {}, {}
    for i, part in enumerate(PARTS):                    # parents first
        _, _, rule, pts, parent = _PARTS[part]
        depth[part] = 0 if parent is None else depth[parent] + 1
        front = rule == "bend" and pts[3] == "front"
        groups.setdefault((depth[part], rule, front), []).append(i)
    return [(np.array(idx), None if d == 0 else np.array([_PART_INDEX[_PARTS[PARTS[i]][4]] for i in idx]), rule,
             front) for (d, rule, front), idx in sorted(groups.items(), key=lambda kv: kv[0][0])]


_BATCHES = _batches()
_BEND = tuple(np.array([INDEX[_PARTS[p][3][k]] if _PARTS[p][2] == "bend" else 0 for p in PARTS]) for k in range(3))
_REST: dict[bytes, tuple] = {}


def _rest_parts(rest: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per part the rest aim (19, 3), its length (19,) and the unit twist evidence (19, 3); worked out once per rig."""
    key = np.ascontiguousarray(rest, dtype=np.float64).tobytes()
    got = _REST.get(key)              # the server's threads share it: read once, never index it after a clear
    if got is None:
        aim, length = _unit(rest[_AIM_TO] - rest[_AIM_FROM])
        ev = np.zeros((len(PARTS), 3))
        for p, part in enumerate(PARTS):
            _, _, rule, pts, _ = _PARTS[part]
            if rule != "inherit" and length[p] >= 1e-9:
                ev[p] = _rest_evidence(rest, rule, pts, aim[p])
        if len(_REST) > 64:
            _REST.clear()
        got = _REST[key] = (aim, length, ev)
    return got


def part_rotations(rest: np.ndarray, joints: np.ndarray, keyed: set[str] | None = None) -> np.ndarray:
    """For each part, the rotation (F, 19, 3, 3) taking the rig's rest body (24, 3) to each pose (F, 24, 3); both in
    the same space. See the module note; parts follow PARTS order. A part without a rest direction (its two
    joints on one spot) keeps its parent's rotation, or is an error where bones turn with it (`keyed`)."""
    joints = np.asarray(joints, dtype=np.float64)
    f = joints.shape[0]
    aim_r, len_r, ev_r = _rest_parts(np.asarray(rest, dtype=np.float64))
    for p, part in enumerate(PARTS):
        if len_r[p] < 1e-9 and (keyed is None or part in keyed):
            a, c = _PARTS[part][:2]
            raise RigMapError(f"the rig's rest pose puts body24 joints '{a}' and '{c}' at the same place, so the "
                              f"part '{part}' has no direction: map '{c}' to a point away from '{a}'")
    all_aim, all_len = _unit(joints[:, _AIM_TO] - joints[:, _AIM_FROM])
    out = np.zeros((f, len(PARTS), 3, 3))
    # One batch of parts at a time (a depth of the part tree, one twist rule): each turns from its parent's turn.
    for idx, parents, rule, front in _BATCHES:
        base = np.broadcast_to(np.eye(3), (f, len(idx), 3, 3)) if parents is None else out[:, parents]
        flat = len_r[idx] < 1e-9                 # no rest direction: the parent's rotation (a part not keyed)
        if flat.any():
            out[:, idx[flat]] = base[:, flat]
            idx, base = idx[~flat], base[:, ~flat]
            if not len(idx):
                continue
        aim_t, len_t = all_aim[:, idx], all_len[:, idx]
        carried = (base @ aim_r[idx][..., None])[..., 0]
        # Where the wanted direction is undefined (joints on top of each other) keep the parent's.
        aim_t = np.where((len_t > 1e-9)[..., None], aim_t, carried)
        rot = swing(carried, aim_t) @ base
        if rule != "inherit":
            p_vec = (rot @ ev_r[idx][..., None])[..., 0]
            if rule == "side":
                q_vec = np.stack([_evidence(joints, rule, _PARTS[PARTS[i]][3]) for i in idx], 1)
            else:
                q_vec = _evidence(joints, rule, tuple(joints[:, k[idx]] for k in _BEND))
            p_perp = p_vec - np.sum(p_vec * aim_t, -1, keepdims=True) * aim_t
            q_perp = q_vec - np.sum(q_vec * aim_t, -1, keepdims=True) * aim_t
            w = np.linalg.norm(p_perp, axis=-1) * np.linalg.norm(q_perp, axis=-1)
            sin = np.sum(aim_t * cross(p_perp, q_perp), -1) / np.maximum(w, 1e-300)
            cos = np.sum(p_perp * q_perp, -1) / np.maximum(w, 1e-300)
            lo, hi = _TRUST[rule]
            if front:
                # A knee bending backwards: hyperextension (or mocap noise), not a thigh turned half round, which
                # hips cannot do; only a strong bend the other way may turn the thigh.
                back = np.clip(-cos, 0.0, 1.0)
                lo = lo + back * (np.sin(np.radians(20.0)) - lo)
                hi = hi + back * (np.sin(np.radians(40.0)) - hi)
            x = np.clip((w - lo) / (hi - lo), 0.0, 1.0)
            trust = x * x * (3 - 2 * x)
            phi = np.arctan2(trust * sin, trust * cos + (1.0 - trust))
            rot = axis_angle(aim_t, phi) @ rot
        out[:, idx] = rot
    return out


# --- writing: plan, forward kinematics, solve ---------------------------------------------------------------------

@dataclass
class _Plan:
    binding: Binding
    keyed: np.ndarray            # (N,) armature bone indices keyed with a part's rotation
    parts: np.ndarray            # (N,) part index per keyed bone
    rest_bones: np.ndarray       # bones keyed at rest
    root: int
    structure: _Structure
    order: list[int]             # needed bones in dependency order
    slot: dict[int, int]         # armature bone index -> position in `order`
    offsets: np.ndarray          # (M, 3) head relative to the effective parent, in the parent's rest frame
    rel: np.ndarray              # (M, 3, 3) rest orientation relative to the effective parent
    corrector: dict[int, list[tuple[np.ndarray, float]]]  # part -> [(group of keyed bones, sensitivity)]
    properties: list[tuple[str, str, float]]
    warnings: list[str]
    kin: _Kinematics | None = field(default=None, repr=False)      # `_fk` compiled, on first use
    runs: list[list[int]] | None = field(default=None, repr=False)  # the sweeps' runs of parts (`_runs`)


def _plan(binding: Binding) -> _Plan:
    if binding.plan is None:
        binding.plan = _make_plan(binding)
    return binding.plan


def _make_plan(binding: Binding) -> _Plan:
    arm, rig = binding.armature, binding.rig
    if rig.write is None:
        raise RigMapError(f"{rig.path or rig.name}: this map has no [write] table, so it can read poses but not key "
                          "them; add [write] root, bones (and rest, properties) as in rigs/mixamo.toml")
    w = rig.write
    missing = sorted(b for b in w.bone_names() if binding.resolve(b) not in arm.index)
    if missing:
        raise RigMapError(f"{rig.path or rig.name}: cannot key armature '{arm.name}': it has no bone(s) "
                          f"{', '.join(binding.resolve(b) for b in missing)} (named in [write])")
    keyed = np.array([arm.index[binding.resolve(b)] for b in w.bones], dtype=int)
    parts = np.array([_PART_INDEX[p] for p in w.bones.values()], dtype=int)
    rest_bones = np.array([arm.index[binding.resolve(b)] for b in w.rest], dtype=int)
    root = arm.index[binding.resolve(w.root)]
    st = _structure(arm, set(keyed.tolist()))
    needed = _closure(set(binding.bones.tolist()) | set(keyed.tolist()), st)
    order = _dependency_order(needed, st)
    slot = {b: i for i, b in enumerate(order)}
    warnings = []
    for b in order:
        if st.issues[b]:
            warnings.append(f"bone '{arm.bones[b]}' has constraint(s) {', '.join(st.issues[b])} that the retarget "
                            "does not follow; keys may not land exactly")
    if warnings and w.properties:
        # Rigify described with its limbs in IK: the keyed FK chain does not reach the mapped bones as described.
        switches = ", ".join(f"{binding.resolve(b)} {k} = {v:g}" for b, vals in w.properties.items()
                             for k, v in vals.items())
        warnings.insert(0, f"the bones the map reads hang on constraints the retarget does not follow (below); "
                        f"this map keys '{arm.name}' with switches set ({switches}): describe the armature after "
                        "setting them (bind_for_rig's properties), or keys and joints are solved for the rig as it "
                        "stood (e.g. limbs in IK), not as it shows them keyed")
    for k, b in enumerate(binding.bones):
        if st.stretched[b] and np.linalg.norm(binding.points[k]) > 1e-9:
            warnings.append(f"bone '{arm.bones[b]}' is stretched by a constraint; a point along it may drift")
    # The pelvis must move with the root bone, or the root translation cannot place it.
    pelvis_bones = binding.bones[np.abs(binding.weights[INDEX["pelvis"]]) > 1e-12]
    for b in pelvis_bones:
        if root not in _closure({int(b)}, st):
            raise RigMapError(f"{rig.path or rig.name}: root bone '{arm.bones[root]}' does not carry the pelvis "
                              f"(bone '{arm.bones[b]}' is not below it)")
    rest = arm.rest
    offsets = np.zeros((len(order), 3))
    rel = np.tile(np.eye(3), (len(order), 1, 1))
    for i, b in enumerate(order):
        p = st.parent[b]
        if st.copy_of[b] < 0:
            if p >= 0:
                offsets[i] = rest[p, :3, :3].T @ (rest[b, :3, 3] - rest[p, :3, 3])
                rel[i] = rest[p, :3, :3].T @ rest[b, :3, :3]
            else:
                offsets[i] = rest[b, :3, 3]
                rel[i] = rest[b, :3, :3]
    props = [(binding.resolve(bone), prop, value) for bone, values in w.properties.items()
             for prop, value in values.items()]
    plan = _Plan(binding=binding, keyed=keyed, parts=parts, rest_bones=rest_bones, root=root, structure=st,
                 order=order, slot=slot, offsets=offsets, rel=rel, corrector={}, properties=props,
                 warnings=warnings)
    plan.corrector = _correctors(plan)
    return plan


def _fk(plan: _Plan, keyed_rot: dict[int, np.ndarray], n_frames: int, local: bool = False,
        root_location: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Forward kinematics of the needed bones, every bone not in `keyed_rot` at its rest basis.

    keyed_rot: armature-space orientations (F, 3, 3) of keyed bones, or with `local` their basis rotations (Blender's
    pose-bone convention). Returns heads (F, M, 3) and orientations (F, M, 3, 3) in `order`, and for keyed bones the
    orientation their basis applies to (basis = pre.T @ orientation)."""
    posed = _Posed(plan, keyed_rot, n_frames, local, root_location)
    heads, rots = posed.full()
    return heads, rots, {b: posed.pre[:, i] for i, b in enumerate(posed.bones)}


def _runs(plan: _Plan) -> list[list[int]]:
    """The corrected parts (positions in `plan.corrector`) in runs, each part's aim one that no earlier part of
    its run turns: correcting a run at once does what correcting its parts one after the other does.

    A keyed bone keeps its armature-space orientation when a bone above it turns (so do bones that do not
    inherit rotation): it and what hangs from it only shift. An aim stays as it is under a turn where every
    point it is read from (weights of its two joints, summing to zero) shifts alike, or stays."""
    if plan.runs is not None:
        return plan.runs
    kin = plan.kin = plan.kin or _Kinematics(plan)
    fixed = ~kin.inherit
    fixed[[plan.slot[int(b)] for b in plan.keyed]] = True
    paths = []
    for x in kin.cols:                      # each point's bone and the bones above it
        path = [int(x)]
        while kin.par[path[-1]] >= 0:
            path.append(int(kin.par[path[-1]]))
        paths.append(path)

    def shift(m: int) -> list[int]:
        """Per point under a turn of slot m: -2 stays, -1 turns, else the keyed bone whose shift it takes."""
        out = []
        for path in paths:
            below = [y for y in path[:path.index(m)] if fixed[y]] if m in path else None
            out.append(-2 if below is None else below[-1] if below else -1)
        return out

    parts = list(plan.corrector)
    movers = [{plan.slot[int(b)] for bones, _ in plan.corrector[p] for b in bones} for p in parts]
    shifts = {m: shift(m) for ms in movers for m in ms}
    w = plan.binding.weights[_AIM_TO] - plan.binding.weights[_AIM_FROM]          # (19, K)

    def still(q: int, m: int) -> bool:
        kinds = {k for k, u in zip(shifts[m], np.abs(w[parts[q]]) > 1e-12) if u}
        return abs(w[parts[q]].sum()) < 1e-9 and len(kinds) == 1 and kinds != {-1}

    runs: list[list[int]] = []
    for q in range(len(parts)):
        if runs and all(not (movers[q] & movers[p]) and all(still(q, m) for m in movers[p]) for p in runs[-1]):
            runs[-1].append(q)
        else:
            runs.append([q])
    plan.runs = runs
    return runs


def _location_axes(plan: _Plan, b: int, pre: np.ndarray, rots: np.ndarray) -> np.ndarray:
    """The axes a bone's location keys move it along: its own rest axes, or with Blender's "Local Location" off
    its parent's (the armature's for a root bone)."""
    arm = plan.binding.armature
    if arm.local_location[b]:
        return pre
    p = plan.structure.parent[b]
    if p < 0:
        return np.broadcast_to(np.eye(3), pre.shape)
    return rots[:, plan.slot[p]] @ arm.rest[p, :3, :3].T


def _fk_joints(plan: _Plan, heads: np.ndarray, rots: np.ndarray) -> np.ndarray:
    cols = (plan.kin or _Kinematics(plan)).cols
    return _points(plan.binding, heads[:, cols], rots[:, cols])


def _aim_dirs(joints: np.ndarray, parts=slice(None)) -> np.ndarray:
    """(F, 24, 3) -> unit aim direction of every part (F, 19, 3) (or of `parts`) and its length."""
    return _unit(joints[:, _AIM_TO[parts]] - joints[:, _AIM_FROM[parts]])


def _correctors(plan: _Plan) -> dict[int, list[tuple[np.ndarray, float]]]:
    """For each part, the groups of keyed bones (all bones of one part) that turn the part's aim, with how much
    (measured at rest, each group turned alone, the other bones keeping their orientations). Sensitivity 1: the
    aim turns with the group (both ends rigid in it); then that group alone corrects it. An aim spread over several
    groups (an interpolated spine) is corrected by all of them, each in proportion to its sensitivity."""
    arm = plan.binding.armature
    rest_rot = {int(b): arm.rest[b, :3, :3][None] for b in plan.keyed}
    heads, rots, _ = _fk(plan, rest_rot, 1)
    base_dir, base_len = _aim_dirs(_fk_joints(plan, heads, rots))
    groups = {int(p): plan.keyed[plan.parts == p] for p in np.unique(plan.parts)}
    eps = 1e-3
    # Every group turned alone, about two axes across its own part's aim (any axis serves to measure), each turn
    # one frame of a single forward kinematics.
    perturbed = {b: np.repeat(r, 2 * len(groups), 0) for b, r in rest_rot.items()}
    for i, (g, bones) in enumerate(groups.items()):
        for axis_pick in (0, 1):
            helper = np.eye(3)[np.argsort(np.abs(base_dir[0, g]))[axis_pick]]
            axis = _unit(np.cross(base_dir[0, g], helper))[0]
            turn = axis_angle_matrix(axis, np.array(eps))
            for b in bones:
                perturbed[int(b)][2 * i + axis_pick] = turn @ rest_rot[int(b)][0]
    h, r, _ = _fk(plan, perturbed, 2 * len(groups))
    d, _ = _aim_dirs(_fk_joints(plan, h, r))
    response = np.arccos(np.clip(np.sum(d * base_dir, -1), -1, 1)) / eps                # (2G, 19)
    sens = {g: np.maximum(response[2 * i], response[2 * i + 1]) for i, g in enumerate(groups)}
    out = {}
    for p in range(len(PARTS)):
        if base_len[0, p] < 1e-9:
            continue
        own = sens.get(p)
        if own is not None and own[p] > 0.9:
            out[p] = [(groups[p], float(own[p]))]      # the part's own bones carry its whole aim
            continue
        movers = [(groups[g], float(s[p])) for g, s in sens.items() if s[p] > 0.05]
        if movers:
            out[p] = movers
    return out
