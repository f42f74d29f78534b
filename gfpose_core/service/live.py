"""POST /pose_from_effectors: live posing in one round trip. The animator drags effectors (pelvis, head, hands,
feet) and pins; the engine completes the body between on the rig's own bone lengths and answers the rig's bone
rotations, as /pose_for_rig would for the completed joints. Requests of one `session` are ordered by `sequence`,
and only the newest is worth work (sessions.py: latest wins).
"""
from __future__ import annotations

import numpy as np
from fastapi import HTTPException

from gfpose_core.body.skeleton import INDEX, PARENTS, bone_lengths, two_bone
from gfpose_core.prior.effector_guess import EFFECTOR_STEPS
from gfpose_core.prior.effectors import effector_body, effector_known, hold_lengths, out_of_reach
from gfpose_core.rigs.binding import rest_joints
from gfpose_core.rigs.holds import held_by_kept, kept_pose, rig_geometry
from gfpose_core.service import limits
from gfpose_core.service.cancel import SHORT_WORK, Gone, Stopper
from gfpose_core.service.rig_names import resolve_rig
from gfpose_core.service.sessions import Sessions, SessionStopper, Superseded


# An effector the rig puts further than RIG_MISS from where it was put is worth RIG_REFINE more passes (each one
# rig solve, about 6 ms here), while each pass brings it closer. The solve bends each dragged hand's and foot's limb to
# it from where the rig put the shoulder or hip (`reach`), and a torso the rig holds on a line is put on it first
# (`on_rig_lines`). Validation poses (`PYTHONPATH=. .venv/bin/python scripts/live_rig_miss.py`, 40 a rig), the rig's
# worst effector miss mm median / 95th percentile, request ms median: UE4 mannequin 1.4 / 3.4, 16; Mixamo 1.3 / 4.3,
# 20; CMU BVH 1.3 / 2.9, 16; Bandai BVH 0.3 / 3.3, 15 (what is left is mostly the hips: the rig's own pelvis fit).
# Before both: 1.8 / 3.3, 20; 3.4 / 7.2, 25; 14.2 / 60.8, 56; 10.2 / 62.2, 45. Without the line, CMU BVH 1.8 / 5.3 at
# 141 ms (the solve's sweeps fighting over a bent torso).
RIG_MISS = 0.002
RIG_REFINE = 2


class LivePosing:
    """The endpoint's work, given the server's device lock, binding cache and its rig error mapping (rig_call)."""

    def __init__(self, engine, lock, bindings, rig_call, sessions: Sessions | None = None):
        self.engine, self.lock, self.bindings, self.rig_call = engine, lock, bindings, rig_call
        self.sessions = sessions if sessions is not None else Sessions()
        self._geometry: dict[str, tuple] = {}      # binding_id -> rig_geometry: rigid joint pairs, joints on lines
        self._held_cache: dict[tuple, np.ndarray] = {}     # (binding_id, kept bones) -> held_by_kept

    def answer(self, req, joints: np.ndarray, known, current, stop: Stopper) -> dict:
        """`req` the request model; joints (N, 24, 3) with NaN unknown, known (N, 24) or None, current as
        /pose_for_rig takes it (or None). Superseded requests are answered 409 with a detail starting "superseded"."""
        ticket = None
        if req.session is not None:
            if req.sequence is None:
                raise HTTPException(422, "sequence is needed with session (latest wins orders a session by it)")
            try:
                ticket = self.sessions.enter(req.session, req.sequence)
            except Superseded as e:
                raise HTTPException(409, str(e)) from None
        try:
            return self._answer(req, joints, known, current, SessionStopper(stop, ticket))
        except Superseded as e:
            raise HTTPException(409, str(e)) from None
        finally:
            if ticket is not None:
                self.sessions.leave(ticket)

    def _answer(self, req, joints, known, current, stop: SessionStopper) -> dict:
        try:
            known_mask = effector_known(joints, known, req.pins)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        binding_id, binding = self._binding(req)
        rest = None if binding is None else rest_joints(binding, world=True)     # the rig's own bones and chest
        try:
            lengths, _ = effector_body(req.lengths, rest, np.ones((len(joints), 23)))
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        if req.lengths is None and rest is None:
            lengths = None          # the engine's own estimate
        elif req.lengths is None and current is not None:
            # A segment that spans several of the rig's bones (a spine read between bones) is not of its rest length
            # once the rig bends: the rig as it stands now says what the pins about it can reach.
            now = bone_lengths(current["joints"])
            lengths = np.where(np.isfinite(now) & (now > 0), now, lengths)
        if binding is not None and current is not None:
            # Joints the animator's kept controls carry (Rigify's lower spine on its torso) go where the rig has
            # them: no solve could put them anywhere else, and a body built on them is one the rig can take.
            pairs = self._held(binding_id, binding, current)
            if pairs.any():
                held, at = _carried(pairs, known_mask, joints, self.rig_call(kept_pose, binding, current, len(joints)))
                joints = np.where(held[..., None], at, joints)
                known_mask = known_mask | held
        work = limits.work(len(joints), EFFECTOR_STEPS + 1, "joints")
        stop.acquire(self.lock, short=work <= SHORT_WORK)
        try:
            out = self.engine.pose_from_effectors(joints, known_mask, lengths, seed=req.seed, callback=stop.step,
                                                  rest=rest)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        except Gone:
            raise HTTPException(400, "the client went away; the work was stopped") from None
        finally:
            self.lock.release()
        stop.check()              # a newer request came during the last steps: this answer is already stale
        rig, missed = None, None
        if binding is not None:
            try:
                out, rig, missed = self._on_rig(out, joints, known_mask, lengths, rest, req, binding_id, binding,
                                                current)
            except ValueError as e:
                raise HTTPException(422, f"the completion could not be held on this rig: {e}") from None
        elif lengths is not None:
            missed = out_of_reach(out, known_mask, lengths)
        reach = None if missed is None else _names(missed)
        answer = {"joints": limits.answer(out, "the completion"), "out_of_reach": reach}
        if rig is not None:
            rig["rig_joints"] = rig.pop("joints")     # where body24 lands on the rig; `joints` is the completion
            answer.update(rig)
        return answer

    def _on_rig(self, out, joints, known, lengths, rest, req, binding_id, binding, current):
        """The completion posed on the rig; where the rig's bones leave an effector more than RIG_MISS from where
        it was put, the body is held again at the distances the rig has in the pose it reached, and posed again (at
        most RIG_REFINE times, while the miss shrinks; the closest is answered): a rig's spine, spanning several
        bones, is not of one length as it bends, and a chest bone carries the neck and both collars at fixed
        distances (rig_geometry). Also returns the known joints out of reach of the character's bones (the first
        holding's: the rig's lines move spine and chest off those lengths afterwards, on purpose)."""
        rigid, lines = self._rig_geometry(binding_id, binding)
        spans = np.unique(np.concatenate([rigid, lines[:, 1:3].astype(int)]), axis=0)
        held = hold_lengths(out, known, lengths, rest, rigid)
        out = on_rig_lines(held.joints, known, lines)
        # An effector out of reach of its chain is missed by as much however often the rig is posed: not a reason
        # to pose it again (the animator dragging a hand beyond the arm's reach would pay two more solves a move).
        aimed = known & ~_carried_on(held.out_of_reach, known)
        # root_scale 1 by default: the effectors were placed on this rig, so its root goes where the pelvis is.
        scale = 1.0 if req.root_scale is None else req.root_scale
        best = None
        for attempt in range(RIG_REFINE + 1):
            rig = limits.finite_tree(self.rig_call(self.bindings.pose_for_rig, out, None, None, binding_id, scale,
                                                   current, known), "the rig pose")
            landed = np.asarray(rig["joints"], np.float64)
            miss = _miss(landed, out, aimed)
            if best is not None and miss >= best[0]:
                return best[1], best[2], held.out_of_reach
            best = (miss, out, rig)
            if attempt == RIG_REFINE or miss <= RIG_MISS or not _limbs_as_at_rest(landed, rest):
                return out, rig, held.out_of_reach
            # Held again at what the rig reached: its bones' lengths, and the ends of each line it holds joints on
            # at the distance it has them (with the joints between at their lengths, that line stays straight).
            lengths = bone_lengths(landed)
            out = hold_lengths(np.where(known[..., None], joints, landed), known, lengths, landed, spans).joints
            out = on_rig_lines(_limbs_to_targets(out, landed, known, lengths), known, lines)

    def _held(self, binding_id: str, binding, current) -> np.ndarray:
        """held_by_kept for the bones `current` keeps (the animator's controls the map keys), each joint's pair with
        itself left out, cached per binding."""
        keep = (current or {}).get("keep") or []
        keep = tuple(sorted(keep if isinstance(keep, (list, tuple)) else
                            (b for b, flags in keep.items() if all(flags))))
        key = (binding_id, keep)
        held = self._held_cache.get(key)
        if held is None:
            held = self.rig_call(held_by_kept, binding, keep) & ~np.eye(len(INDEX), dtype=bool)
            self._held_cache[key] = held
            while len(self._held_cache) > 4 * self.bindings.size:
                self._held_cache.pop(next(iter(self._held_cache)))
        return held

    def _rig_geometry(self, binding_id: str, binding) -> tuple[np.ndarray, np.ndarray]:
        """rig_geometry of a binding, cached as the binding cache holds bindings."""
        got = self._geometry.pop(binding_id, None)
        if got is None:
            got = self.rig_call(rig_geometry, binding)
        self._geometry[binding_id] = got          # newest last; as many as the binding cache holds
        while len(self._geometry) > self.bindings.size:
            self._geometry.pop(next(iter(self._geometry)))
        return got

    def _binding(self, req):
        """(binding_id, Binding) of the armature sent, or of an earlier answer's binding_id; (None, None) without."""
        if req.armature is not None:
            rig = self.rig_call(resolve_rig, req.rig)
            return self.rig_call(self.bindings.bind, req.armature, rig)
        if req.binding_id is not None:
            binding = self.bindings.get(req.binding_id)
            if binding is None:
                raise HTTPException(409, f"binding_id {req.binding_id} is not held by this engine: send the armature")
            return req.binding_id, binding
        if req.rig is not None or req.current is not None or req.root_scale is not None:
            raise HTTPException(422, "rig, current and root_scale need an armature (or the binding_id of an "
                                     "earlier answer)")
        return None, None


def on_rig_lines(out: np.ndarray, known: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Each unknown joint the rig holds on a line between two others (rig_geometry) put there: a bent torso read
    on a rig whose spine and chest are points between its pelvis and neck would leave every aim of the solve at odds
    with the others, and the neck, and the arms on it, centimetres off where the body has them."""
    out = out.copy()
    todo = [(int(j), int(a), int(b), t) for j, a, b, t in lines]
    while todo:
        # a line whose end is itself on a line waits for that joint (spine and chest on pelvis - neck need none)
        pending = {j for j, _, _, _ in todo}
        ready = [line for line in todo if line[1] not in pending and line[2] not in pending] or todo
        for j, a, b, t in ready:
            rows = ~known[:, j]
            out[rows, j] = out[rows, a] + t * (out[rows, b] - out[rows, a])
        todo = [line for line in todo if line not in ready]
    return out


_LIMBS = np.array([INDEX[n] - 1 for n in ("elbow_l", "wrist_l", "elbow_r", "wrist_r", "knee_l", "ankle_l", "knee_r",
                                          "ankle_r")])       # bone index = child joint - 1 (BONES order)


_LIMB_CHAINS = [tuple(INDEX[f"{n}_{s}"] for n in names) for s in ("l", "r")
                for names in (("shoulder", "elbow", "wrist", "hand_end"), ("hip", "knee", "ankle", "toe"))]


def _limbs_to_targets(out: np.ndarray, landed: np.ndarray, known: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each arm and leg whose end the animator placed, bent to reach it from where the rig put its shoulder or hip
    (two bones, the held elbow or knee as the side to bend to): the rig's spine and chest differ a little from the
    held body's, and the limb's root moves with them, so a limb held to the body's shoulder misses by that much."""
    out = out.copy()
    for root, mid, end, tip in _LIMB_CHAINS:
        rows = known[:, end] & ~known[:, mid] & ~known[:, root]      # a placed hip stays where it was placed
        if not rows.any():
            continue
        start = landed[rows, root]
        out[rows, root] = start
        out[rows, mid] = two_bone(start, out[rows, end], lengths[rows, mid - 1], lengths[rows, end - 1],
                                  out[rows, mid])
    return out


def _carried(pairs: np.ndarray, known: np.ndarray, joints: np.ndarray, landed: np.ndarray):
    """The unknown joints the kept bones hold at a fixed offset from a known one (`pairs`, held_by_kept without each
    joint's pair with itself), and where that puts them: (N, 24) bool, (N, 24, 3) the known joint plus the offset
    `landed` (the rig) has."""
    held = np.zeros(known.shape, bool)
    at = np.array(landed, np.float64)
    for j in np.flatnonzero(pairs.any(1)):
        for k in np.flatnonzero(pairs[j]):
            rows = known[:, k] & ~known[:, j] & ~held[:, j]
            at[rows, j] = joints[rows, k] + landed[rows, j] - landed[rows, k]
            held[rows, j] = True
    return held, at


def _carried_on(flagged: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`flagged` (N, 24) with every known joint below a flagged one flagged too (a hand's end with its wrist)."""
    out = flagged.copy()
    for j in range(1, len(PARENTS)):          # parents come first
        out[:, j] |= out[:, PARENTS[j]] & known[:, j]
    return out


def _miss(landed: np.ndarray, out: np.ndarray, which: np.ndarray) -> float:
    """How far (m) the rig put the furthest of the joints `which` from where the body has them."""
    far = np.linalg.norm(landed - out, axis=-1)
    return float(np.max(far, where=which, initial=0.0))


def _limbs_as_at_rest(landed: np.ndarray, rest: np.ndarray) -> bool:
    """Whether the rig pose's body24 (the solve's own forward kinematics) has the rest pose's arms and legs. It has
    not when the armature was described with the map's switches unset (Rigify's limbs in IK, which the solve then
    warns about): its wrists and ankles are off by decimetres, and holding the body to them would be worse than not."""
    now, then = bone_lengths(landed)[..., _LIMBS], bone_lengths(rest)[_LIMBS]
    return bool((np.abs(now - then) <= 0.02 * then + 1e-4).all())


def _names(mask: np.ndarray) -> list[list[str]]:
    from gfpose_core.body.skeleton import JOINT_NAMES
    return [[JOINT_NAMES[j] for j in np.flatnonzero(row)] for row in mask]
