"""Auto Pose's live logic without Blender (blender_addon/live.py): the latest-wins request slot driven by a fake
engine on real threads, and the rule by which a control carries its joints."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from blender_addon import live
from blender_addon.engine_client import EngineError


class FakeEngine:
    """send() for LatestWins: records every request; a request blocks until the test releases its sequence."""

    def __init__(self, hold=()):
        self.calls: list[tuple] = []
        self.gates = {s: threading.Event() for s in hold}
        self.fail: dict[int, BaseException] = {}

    def sent(self, n, timeout=5.0):
        """The sequences sent so far, once at least n requests reached the engine (they go out on a worker)."""
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            time.sleep(0.001)
        return [c[2] for c in self.calls]

    def __call__(self, target, session, sequence):
        self.calls.append((target, session, sequence))
        if sequence in self.gates:
            assert self.gates[sequence].wait(5)
        if sequence in self.fail:
            raise self.fail[sequence]
        return {"pose for": target}


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _poll_until(slot, done, timeout=5.0):
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        a = slot.poll()
        if a is not None:
            got.append(a)
        if done(got):
            return got
        time.sleep(0.002)
    raise AssertionError(f"slot never got there: {got}")


def test_one_in_flight_and_only_the_newest_target_waits():
    engine = FakeEngine(hold=[1])
    slot = live.LatestWins(engine, session="s1", clock=Clock())
    slot.offer("a")
    for t in ("b", "c", "d"):          # the animator drags on while the engine works on "a"
        slot.offer(t)
    assert engine.sent(1) == [1] and slot.pending == "d" and slot.busy
    engine.gates[1].set()
    got = _poll_until(slot, lambda g: slot.settled())
    # "a" is shown, then "d"; "b" and "c" were never sent (no queue of old poses).
    assert [a.reply["pose for"] for a in got] == ["a", "d"]
    assert [(c[0], c[1], c[2]) for c in engine.calls] == [("a", "s1", 1), ("d", "s1", 2)]
    assert slot.applied == 2 and not slot.busy and slot.dropped == 0


def test_a_stale_answer_never_overwrites_a_newer_one():
    clock = Clock()
    engine = FakeEngine(hold=[1])
    slot = live.LatestWins(engine, session="s2", min_patience=0.25, clock=clock)
    slot.offer("old")
    slot.offer("new")
    assert slot.poll() is None and engine.sent(1) == [1]     # not stale yet: "new" waits
    clock.t += 0.3                                           # the engine is held up past patience
    slot.pump()
    assert engine.sent(2) == [1, 2] and slot.superseded == 1
    got = _poll_until(slot, lambda g: bool(g))
    assert [a.sequence for a in got] == [2] and slot.applied == 2
    engine.gates[1].set()                                    # the stale answer arrives after the newer one
    engine_threads_done(slot)
    assert slot.poll() is None and slot.applied == 2 and slot.dropped == 1


def engine_threads_done(slot, timeout=5.0):
    for f in list(slot._flights.values()):
        assert f.done.wait(timeout)


def test_superseded_refusals_are_dropped_and_a_superseding_request_lands():
    clock = Clock()
    engine = FakeEngine(hold=[1, 2])
    engine.fail[1] = EngineError("engine refused /pose_from_effectors (409): superseded by sequence 2", 409)
    slot = live.LatestWins(engine, clock=clock)
    slot.offer("a")
    slot.offer("b")
    clock.t += 1.0
    slot.pump()                                   # "b" supersedes "a"
    slot.offer("c")
    clock.t += 1.0
    slot.pump()                                   # "b" itself is never superseded: "c" waits for it
    assert engine.sent(2) == [1, 2] and slot.pending == "c"
    engine.gates[1].set()
    engine_threads_done_for(slot, 1)
    assert slot.poll() is None and slot.dropped == 1          # the engine's 409: dropped, not an error
    engine.gates[2].set()
    got = _poll_until(slot, lambda g: slot.settled())
    assert [a.reply["pose for"] for a in got] == ["b", "c"] and all(a.error is None for a in got)


def engine_threads_done_for(slot, seq, timeout=5.0):
    assert slot._flights[seq].done.wait(timeout)


def test_an_error_of_the_newest_request_is_reported():
    engine = FakeEngine()
    engine.fail[1] = EngineError("no engine at http://127.0.0.1:1", None)
    slot = live.LatestWins(engine)
    slot.offer("a")
    (a,) = _poll_until(slot, lambda g: bool(g))
    assert isinstance(a.error, EngineError) and slot.applied == 0
    assert not live.is_superseded(a.error)
    assert live.is_superseded(EngineError("engine refused /x (409): superseded by 3", 409))
    assert not live.is_superseded(EngineError("engine refused /x (409): binding_id b is not held", 409))


def test_patience_follows_the_engines_usual_answer_time():
    slot = live.LatestWins(FakeEngine(), min_patience=0.05)
    assert slot.patience() == 0.05
    slot._times[:] = [0.04, 0.05, 0.06]
    assert slot.patience() == pytest.approx(0.15)


def _workers() -> int:
    return sum(t.name == "gfpose-live" for t in threading.enumerate())


def test_closed_slot_sends_nothing_and_its_workers_end():
    engine = FakeEngine()
    before = _workers()
    slot = live.LatestWins(engine)
    slot.offer("a")
    _poll_until(slot, lambda g: slot.settled())
    slot.close()                                  # its worker ends
    slot.offer("b")
    assert len(engine.calls) == 1 and slot.poll() is None
    deadline = time.monotonic() + 5
    while _workers() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _workers() == before


# --- controls and their joints ---------------------------------------------------------------------------------

def _rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_a_control_carries_its_joints_rigidly_and_can_be_moved_onto_a_goal():
    m = np.eye(4)
    m[:3, :3] = 0.5 * _rotation([1, 2, 3], 0.7)              # a scaled control (object scale)
    m[:3, 3] = [0.3, -0.2, 1.1]
    joints = np.array([[0.5, 0.0, 1.2], [0.6, 0.05, 1.15]])
    local = live.offsets(m, joints)
    np.testing.assert_allclose(live.carried(m, local), joints, atol=1e-12)
    moved = m.copy()
    moved[:3, 3] += [0.1, 0.0, -0.2]
    np.testing.assert_allclose(live.carried(moved, local), joints + [0.1, 0.0, -0.2], atol=1e-12)
    # Onto a goal of the same spread, turned and shifted: the joints land exactly.
    turn = _rotation([0, 0, 1], 1.0)
    goal = (joints - joints.mean(0)) @ turn.T + [0.2, 0.4, 0.9]
    to = live.control_to_move(m, local, goal)
    np.testing.assert_allclose(live.carried(to, local), goal, atol=1e-9)
    assert live.moved(m, to) and not live.moved(m, m + 1e-9)
    # Three points on a line (the pelvis between the hips): the line turned onto the goal's, no twist about it.
    hips = np.array([[0.1, 0.0, 1.0], [0.0, 0.0, 1.0], [-0.1, 0.0, 1.0]])
    line_goal = hips @ _rotation([0, 0, 1], 0.5).T + [0.0, 0.2, -0.1]
    local_h = live.offsets(np.eye(4), hips)
    to_h = live.control_to_move(np.eye(4), local_h, line_goal)
    np.testing.assert_allclose(live.carried(to_h, local_h), line_goal, atol=1e-9)
    np.testing.assert_allclose(to_h[:3, :3], _rotation([0, 0, 1], 0.5), atol=1e-9)     # a yaw, not a tumble
    three = np.array([[0.0, 0, 1], [0.2, 0, 1], [0.0, 0.1, 1.1]])
    goal3 = three @ _rotation([1, 1, 0], 0.4).T + 0.3
    local3 = live.offsets(m, three)
    np.testing.assert_allclose(live.carried(live.control_to_move(m, local3, goal3), local3), goal3, atol=1e-9)


WRITE = {"root": "Hips", "bones": {"Hips": "pelvis", "LeftArm": "shoulder_l", "LeftForeArm": "elbow_l",
                                   "LeftHand": "wrist_l", "LeftFoot": "ankle_l", "Head": "head",
                                   "Spine": "spine"}}
PARENTS = {"spine": "pelvis", "elbow_l": "shoulder_l", "wrist_l": "elbow_l", "hand_end_l": "wrist_l",
           "chest": "spine"}


def test_which_joints_a_control_drives():
    from gfpose_core.prior.effectors import EFFECTORS
    g = live.effector_groups({"effectors": {k: list(v) for k, v in EFFECTORS.items()}})     # as /info sends them
    assert live.control_joints("hand_ik.L", WRITE, g, PARENTS, rigify=True) == ["wrist_l", "hand_end_l"]
    assert live.control_joints("torso", WRITE, g, PARENTS, rigify=True) == ["pelvis", "hip_l", "hip_r"]
    assert live.control_joints("Hips", WRITE, g, PARENTS, rigify=False) == ["pelvis", "hip_l", "hip_r"]
    assert live.control_joints("LeftHand", WRITE, g, PARENTS, rigify=False) == ["wrist_l", "hand_end_l"]
    assert live.control_joints("LeftFoot", WRITE, g, PARENTS, rigify=False) == ["ankle_l", "toe_l"]
    assert live.control_joints("LeftForeArm", WRITE, g, PARENTS, rigify=False) == ["elbow_l", "wrist_l"]
    with pytest.raises(ValueError, match="'LeftThumb' is not one the rig map keys"):
        live.control_joints("LeftThumb", WRITE, g, PARENTS, rigify=False)
    assert live.default_pins(WRITE, g, rigify=False) == ["Hips", "LeftHand", "LeftFoot", "Head"]
    assert live.default_pins(WRITE, g, rigify=True) == list(live.RIGIFY_CONTROLS)
    assert live.effector_groups({"effectors": {"hand_l": ["wrist_l"]}}) == {"hand_l": ("wrist_l",)}
    with pytest.raises(ValueError, match="no live posing"):
        live.effector_groups({})          # an engine without /pose_from_effectors: said, not guessed
    rows, known = live.payload_joints({"pelvis": np.zeros(3)}, ["pelvis", "spine"])
    assert rows == [[0.0, 0.0, 0.0], [None, None, None]] and known == [True, False]
