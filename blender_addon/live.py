"""Auto Pose's live requests, decided without Blender: which body24 joints each effector control drives, where a
moved control puts them, and the one-in-flight, newest-pending request slot that keeps the rig on the newest pose
("latest wins").

No bpy here (numpy, threads and the standard library only), so this is tested with plain pytest. The operator
(auto_pose.py) runs these same functions on Blender's main thread; only `send` runs on a worker thread.
"""
from __future__ import annotations

import queue
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import plan

# A Rigify rig's own effector controls: the IK hand and foot controls, the torso and the head.
RIGIFY_CONTROLS: dict[str, str] = {
    "torso": "pelvis", "head": "head",
    "hand_ik.L": "hand_l", "hand_ik.R": "hand_r", "foot_ik.L": "foot_l", "foot_ik.R": "foot_r",
}

LIMB_ENDS = frozenset({"wrist_l", "wrist_r", "ankle_l", "ankle_r"})     # hand and foot controls carry these
SUPERSEDED = "superseded"     # how the engine's 409 detail starts for a request a newer sequence replaced


def effector_groups(info: dict | None) -> dict[str, tuple[str, ...]]:
    """The engine's effector groups from its /info (the engine owns the contract; the add-on keeps no copy)."""
    got = (info or {}).get("effectors")
    if not isinstance(got, dict) or not got:
        raise ValueError("this engine has no live posing (its /info lists no effectors): update the engine")
    return {g: tuple(j) for g, j in got.items()}


def is_rigify(binding: dict, bone_names) -> bool:
    """A Rigify rig: bound with the rigify map and carrying every one of Rigify's effector controls."""
    names = set(bone_names)
    return binding.get("rig") == "rigify" and all(c in names for c in RIGIFY_CONTROLS)


def default_pins(write: dict, groups: dict, rigify: bool) -> list[str]:
    """The controls Auto Pose drags when the animator marked none: on Rigify its IK hand and foot controls, the
    torso and the head; on any other mapped rig the bones keyed for the effector joints (each group's first joint:
    the root for the pelvis, the head, hand and foot bones)."""
    if rigify:
        return list(RIGIFY_CONTROLS)
    firsts = {j[0] for j in groups.values()}
    return [b for b, j in write["bones"].items() if j in firsts or b == write["root"]]


def control_joints(bone: str, write: dict, groups: dict, parents: dict[str, str], rigify: bool) -> list[str]:
    """The body24 joints a control drives: Rigify's controls their effector group; a mapped bone the effector group
    of the joint it turns with (the root: the pelvis group), or else the segment it carries (its joint and the
    joints below it, e.g. a pinned forearm holds elbow and wrist).

    parents: {joint: parent joint} of the engine's skeleton."""
    if rigify and bone in RIGIFY_CONTROLS:
        return list(groups[RIGIFY_CONTROLS[bone]])
    joint = "pelvis" if bone == write["root"] else write["bones"].get(bone)
    if joint is None:
        raise ValueError(f"bone '{bone}' is not one the rig map keys, so it cannot pin a joint; pin a mapped bone")
    for g in groups.values():
        if joint in g:
            return list(g)
    return [joint] + [c for c, p in parents.items() if p == joint]


def offsets(control_matrix: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Each joint (k, 3) in the control's own frame (4x4 world matrix, scale included): the rigid rule by which a
    control carries its joints, recorded once when the mode starts."""
    inv = np.linalg.inv(np.asarray(control_matrix, np.float64))
    pts = np.asarray(joints, np.float64)
    return pts @ inv[:3, :3].T + inv[:3, 3]


def carried(control_matrix: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Where a control (4x4 world matrix now) puts the joints recorded in its frame (offsets)."""
    m = np.asarray(control_matrix, np.float64)
    return np.asarray(local, np.float64) @ m[:3, :3].T + m[:3, 3]


def moved(before: np.ndarray, now: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether a control's matrix changed (an animator's move; float noise below tol ignored)."""
    return not np.allclose(np.asarray(before), np.asarray(now), rtol=0.0, atol=tol)


def payload_joints(targets: dict[str, np.ndarray], names) -> tuple[list, list[bool]]:
    """One pose as the engine's JSON (null = unknown) and its known flags, from {joint: position}."""
    known = [targets.get(n) is not None for n in names]
    pose = [targets[n] if k else (0.0, 0.0, 0.0) for n, k in zip(names, known)]
    return plan.joints_payload([pose], [known])[0], known


def control_to_move(control_matrix: np.ndarray, local: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The control matrix (4x4 world) that carries its joints (offsets `local`, k x 3) onto `goal` (k x 3): the
    least rotation that turns the joints' spread onto the goal's (Kabsch; one joint: a translation), then the
    shift of their centre. Scripts and the benchmark drag controls with it, as an animator would."""
    m = np.asarray(control_matrix, np.float64)
    now = carried(m, local)
    goal = np.asarray(goal, np.float64)
    turn = np.eye(3)
    if len(now) > 1:
        a, b = now - now.mean(0), goal - goal.mean(0)
        spread = np.linalg.svd(a, compute_uv=False)
        if len(now) == 2 or spread[1] < 1e-6 * spread[0]:
            # Points on a line (a hand's wrist and end, the pelvis between the hips): the least rotation taking
            # the line onto the goal's; the turn about it stays as it is.
            far = int(np.argmax(np.linalg.norm(a, axis=1)))
            turn = _least_rotation(a[far], b[far])
        else:
            u, _, vt = np.linalg.svd(b.T @ a)
            d = np.sign(np.linalg.det(u @ vt))
            turn = u @ np.diag([1.0, 1.0, d]) @ vt
    out = m.copy()
    out[:3, :3] = turn @ m[:3, :3]
    out[:3, 3] = goal.mean(0) - turn @ now.mean(0) + turn @ m[:3, 3]
    return out


def _least_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-12:                       # opposite: a half turn about any axis across a
        axis = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


# --- latest wins ---------------------------------------------------------------------------------------------------

@dataclass
class Answer:
    """A request's outcome as poll() hands it over: the reply (or the error) for `sequence`, and its timing."""
    sequence: int
    target: Any
    reply: Any = None
    error: BaseException | None = None
    sent_at: float = 0.0
    answered_at: float = 0.0


@dataclass
class _Flight:
    sequence: int
    target: Any
    sent_at: float
    superseding: bool
    done: threading.Event = field(default_factory=threading.Event, repr=False)


def is_superseded(error: BaseException | None) -> bool:
    """The engine's 409 for a request a newer sequence of the same session replaced (it stopped that work)."""
    return error is not None and getattr(error, "status", None) == 409 and f"(409): {SUPERSEDED}" in str(error)


class LatestWins:
    """One request in flight, one pending slot that holds only the newest target, answers never older than what
    the rig shows.

    `send(target, session, sequence)` runs on a worker thread and returns the engine's reply (or raises). Every
    request carries this slot's `session` and a sequence that only increases. A target offered while a request is
    in flight waits in the slot, replacing any older one; it is sent when the answer comes, so the rig keeps
    showing poses while the animator drags faster than the engine answers (a request cancelled at every mouse move
    would never finish). When the request in flight is older than `patience` (the engine held up: three times its
    usual answer time, at least `min_patience` seconds) the newest target is sent at once: its newer sequence tells
    the engine to stop the stale one (which answers 409 "superseded", or late, and is dropped either way). A
    request sent that way is not itself superseded, so something always lands.

    `poll()` (main thread) returns the newest answer not older than anything sent or applied before it, or None;
    every older answer is dropped and counted."""

    def __init__(self, send: Callable[[Any, str, int], Any], session: str | None = None,
                 min_patience: float = 0.25, clock: Callable[[], float] = time.monotonic):
        self.send, self.clock = send, clock
        self.session = session or uuid.uuid4().hex
        self.min_patience = min_patience
        self.sequence = 0                 # the last sequence given to a request
        self.applied = 0                  # the sequence of the answer the rig shows
        self.pending: Any = None
        self.has_pending = False
        self.dropped = 0                  # answers that came too late (older than one sent or applied after them)
        self.superseded = 0               # requests sent past an older one still in flight
        self._flights: dict[int, _Flight] = {}
        self._done: list[Answer] = []
        self._lock = threading.Lock()
        self._times: list[float] = []     # recent answer times, seconds
        self._last_sent = 0
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = 0
        self._idle = 0                    # workers waiting for a request (threads are kept: starting one per
        self.closed = False               # request would hold Blender's main thread ~10 ms each time)

    # --- main thread -----------------------------------------------------------------------------------------

    def offer(self, target) -> None:
        """The newest target: sent now when nothing is in flight, else kept (replacing an older one) for later."""
        self.pending, self.has_pending = target, True
        self.pump()

    @property
    def newest_sent(self) -> int:
        return self._last_sent

    @property
    def busy(self) -> bool:
        """Something is in flight or waiting: the rig does not show the newest target yet."""
        return bool(self._flights) or self.has_pending

    def patience(self) -> float:
        usual = statistics.median(self._times[-20:]) if self._times else 0.0
        return max(self.min_patience, 3.0 * usual)

    def pump(self) -> None:
        """Send the pending target when the slot allows it."""
        if self.closed or not self.has_pending:
            return
        newest = self._flights.get(max(self._flights)) if self._flights else None
        if newest is not None:
            stale = self.clock() - newest.sent_at > self.patience()
            if not stale or newest.superseding:
                return
        self._launch(superseding=newest is not None)

    def poll(self) -> Answer | None:
        """The newest answer to show (or an error to report), or None. Answers of requests older than the newest
        sent or applied are dropped, as are "superseded" refusals."""
        with self._lock:
            done, self._done = self._done, []
        best = None
        for a in sorted(done, key=lambda a: a.sequence):
            self._flights.pop(a.sequence, None)
            if a.error is None:
                self._times.append(a.answered_at - a.sent_at)
                del self._times[:-50]
            if a.sequence < self._last_sent or a.sequence <= self.applied or is_superseded(a.error):
                self.dropped += 1
                continue
            best = a
        if best is not None and best.error is None:
            self.applied = best.sequence
        self.pump()
        return best

    def settled(self) -> bool:
        """The rig shows the answer to the newest target (nothing in flight for it, nothing pending)."""
        return not self.has_pending and self.applied == self._last_sent and self._last_sent > 0

    def close(self) -> None:
        """Stop: nothing more is sent; answers still on their way are ignored; the workers end."""
        self.closed = True
        self.has_pending, self.pending = False, None
        for _ in range(self._workers):
            self._jobs.put(None)
        self._workers = 0

    # --- worker threads ------------------------------------------------------------------------------------------

    def _launch(self, superseding: bool) -> None:
        self.sequence += 1
        seq, target = self.sequence, self.pending
        self.pending, self.has_pending = None, False
        if superseding:
            self.superseded += 1
        flight = _Flight(seq, target, self.clock(), superseding)
        self._flights[seq] = flight
        self._last_sent = seq
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        if start:
            self._workers += 1
            threading.Thread(target=self._work, name="gfpose-live", daemon=True).start()
        self._jobs.put(flight)

    def _work(self) -> None:
        while True:
            flight = self._jobs.get()
            if flight is None:
                return
            answer = Answer(flight.sequence, flight.target, sent_at=flight.sent_at)
            try:
                answer.reply = self.send(flight.target, self.session, flight.sequence)
            except BaseException as e:      # handed to the main thread, which decides whether it matters
                answer.error = e
            answer.answered_at = self.clock()
            with self._lock:
                self._done.append(answer)
                self._idle += 1
            flight.done.set()

    def wait_any(self, timeout: float) -> None:
        """Block up to `timeout` s for a request in flight to end (scripts, Enter waiting for the newest answer)."""
        flights = list(self._flights.values())
        if flights:
            flights[-1].done.wait(timeout)
