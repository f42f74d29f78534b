"""Hypothesis against the app in this process, over every endpoint and field: NaN, Infinity, denormals, huge and
negative numbers, wrong types and wrong shapes. No answer is a 5xx, and no 2xx holds a non-finite number or a null
where a number was promised. Bounded (a few hundred requests, small work each) to stay within seconds."""
import copy
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_app import client, engine
from test_retarget import build_armature

from gfpose_core.prior.samplers import SAMPLERS
from gfpose_core.service.schema import ERRORS, GONE, PosesResponse, Problem

# GFPOSE_FUZZ_EXAMPLES=300 for a longer hunt; the suite's default keeps the whole file near 15 s
FUZZ = settings(max_examples=int(os.environ.get("GFPOSE_FUZZ_EXAMPLES", 10)), deadline=None, suppress_health_check=list(HealthCheck), database=None)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),             # denormals, ±1e308, NaN, ±inf among them
    st.sampled_from([0.0, -0.0, 5e-324, -1e-300, 1e300, 1e39, -3.0, 0.5, 1.0, 1000.0, 1e6]),
    st.integers(-2**70, 2**70), st.none(), st.booleans(), st.sampled_from(["1", "", [], {}]))
small_counts = st.one_of(st.sampled_from([None, -1, 0, 1, 2, 3, 1001, 20001, 10**9, 2**63, 1.5, "2", True]),
                         st.integers(-3, 3))
steps = st.one_of(st.sampled_from([None, 0, 1, 2, 3, -1, 1001, 10**12, 2.5, "3"]))
samplers = st.sampled_from([None, "x", "", 7] + list(SAMPLERS))


@pytest.fixture(scope="module")
def api():
    return client()


def _base_pose():
    return engine().generate(1, seed=11)[0]


@st.composite
def poses(draw, width=3):
    """A real pose a few frames long, with a few numbers replaced by fuzz, and sometimes a broken shape."""
    frames = draw(st.integers(0, 3))
    base = _base_pose()[:, :width] if width == 2 else _base_pose()
    arr = [[list(map(float, j)) for j in base] for _ in range(frames)]
    for f, j, c, v in draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 23), st.integers(0, width - 1),
                                              numbers), max_size=4)):
        if f < len(arr):
            arr[f][j][c] = v
    shape = draw(st.sampled_from([None, None, None, "drop_joint", "extra_coord", "ragged", "flat", "scalar",
                                  "unknown_joint"]))
    if arr and shape == "drop_joint":
        arr[0] = arr[0][:23]
    elif arr and shape == "extra_coord":
        arr[0][0] = arr[0][0] + [0.0]
    elif arr and shape == "ragged":
        arr[0][5] = [0.0]
    elif shape == "flat":
        return [0.0] * 72
    elif shape == "scalar":
        return draw(numbers)
    elif arr and shape == "unknown_joint":
        for frame in arr:
            frame[9] = [None] * width
    return arr


def _send(api, path, body):
    raw = json.dumps(body, allow_nan=True)         # NaN and Infinity as Python's json writes them
    return api.post(path, content=raw, headers={"content-type": "application/json"})


def _non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


DOCUMENTED = set(ERRORS) | set(GONE) | {200, 404, 405}   # 404/405: paths and methods the schema does not list


def _check(r):
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert r.status_code in DOCUMENTED, (r.status_code, r.text[:300])
    data = json.loads(r.text, parse_constant=lambda c: float(c))   # NaN/Infinity tokens become floats
    if r.status_code >= 400:
        Problem.model_validate(data)           # the body the schema states for every error
        return r
    assert not _non_finite(data), r.text[:300]
    if r.request.url.path in ("/complete", "/denoise", "/inbetween", "/generate", "/lift"):
        PosesResponse.model_validate(data)
        arr = np.array(data["joints"], dtype=object)
        assert not any(v is None for v in arr.flat), "a null joint in a 2xx answer"
    return r


def _maybe(draw_dict):
    return {k: v for k, v in draw_dict.items() if v != "<absent>"}


absent = st.just("<absent>")


@FUZZ
@given(joints=poses(), known=st.one_of(absent, st.none(), st.lists(st.lists(st.booleans(), min_size=23, max_size=25),
                                                                    max_size=3)),
       n_hypotheses=st.one_of(absent, small_counts), seed=st.one_of(absent, small_counts), sampler=samplers,
       steps=steps)
def test_complete(api, joints, known, n_hypotheses, seed, sampler, steps):
    _check(_send(api, "/complete", _maybe(dict(joints=joints, known=known, n_hypotheses=n_hypotheses, seed=seed,
                                               sampler=sampler, steps=steps))))


@FUZZ
@given(take=poses(), fps=st.one_of(absent, numbers), strength=st.one_of(absent, numbers),
       temporal=st.sampled_from(["<absent>", None, True, False, "yes"]), sampler=samplers, steps=steps)
def test_denoise(api, take, fps, strength, temporal, sampler, steps):
    _check(_send(api, "/denoise", _maybe(dict(take=take, fps=fps, strength=strength, temporal=temporal,
                                              sampler=sampler, steps=steps))))


@FUZZ
@given(take=poses(), fps=st.one_of(absent, numbers), lock_feet=st.sampled_from(["<absent>", True, False, 3]),
       known=st.one_of(absent, st.none(), st.lists(st.lists(st.booleans(), min_size=24, max_size=24), max_size=3)),
       seed=st.one_of(absent, small_counts), steps=steps)
def test_inbetween(api, take, fps, lock_feet, known, seed, steps):
    if isinstance(take, list) and len(take) >= 2:   # keys at both ends, the frames between to fill
        take = copy.deepcopy(take)
        for frame in take[1:-1]:
            if isinstance(frame, list):
                frame[:] = [[None] * 3 for _ in frame]
    _check(_send(api, "/inbetween", _maybe(dict(take=take, fps=fps, lock_feet=lock_feet, known=known, seed=seed,
                                                steps=steps))))


@FUZZ
@given(n=st.one_of(absent, small_counts), around=st.one_of(absent, st.none(), poses().map(
           lambda p: p[0] if isinstance(p, list) and p else p)),
       pinned=st.one_of(absent, st.none(), st.lists(st.sampled_from(["pelvis", "wrist_l", "nope", ""]), max_size=3)),
       diversity=st.one_of(absent, numbers), seed=st.one_of(absent, small_counts), sampler=samplers, steps=steps)
def test_generate(api, n, around, pinned, diversity, seed, sampler, steps):
    _check(_send(api, "/generate", _maybe(dict(n=n, around=around, pinned=pinned, diversity=diversity, seed=seed,
                                               sampler=sampler, steps=steps))))


@FUZZ
@given(kp=poses(width=2), n_hypotheses=st.one_of(absent, small_counts), seed=st.one_of(absent, small_counts),
       sampler=samplers, steps=steps)
def test_lift(api, kp, n_hypotheses, seed, sampler, steps):
    _check(_send(api, "/lift", _maybe(dict(keypoints2d=kp, n_hypotheses=n_hypotheses, seed=seed, sampler=sampler,
                                           steps=steps))))


ARMATURE = json.loads(json.dumps(build_armature("ue4_mannequin").to_dict()))


@st.composite
def armatures(draw):
    arm = copy.deepcopy(ARMATURE)
    for b, r, c, v in draw(st.lists(st.tuples(st.integers(0, len(arm["bones"]) - 1), st.integers(0, 3),
                                              st.integers(0, 3), numbers), max_size=3)):
        arm["bones"][b]["matrix_local"][r][c] = v
    for b, key, v in draw(st.lists(st.tuples(st.integers(0, len(arm["bones"]) - 1),
                                             st.sampled_from(["length", "parent", "name", "rotation_mode"]),
                                             numbers), max_size=2)):
        arm["bones"][b][key] = v
    if draw(st.booleans()):
        arm["matrix_world"][draw(st.integers(0, 3))][draw(st.integers(0, 3))] = draw(numbers)
    return arm


rigs = st.one_of(absent, st.sampled_from([None, "ue4_mannequin", "mixamo", "/dev/zero", "/etc", "x" * 300, "..",
                                          "", 5, [], {}, {"joints": 1}, {"name": "x", "joints": {}}]))


@FUZZ
@given(armature=armatures(), rig=rigs)
def test_bind(api, armature, rig):
    _check(_send(api, "/bind", _maybe(dict(armature=armature, rig=rig))))


@FUZZ
@given(armature=st.one_of(armatures(), st.none(), absent), rig=rigs, joints=poses(),
       binding_id=st.one_of(absent, st.none(), st.sampled_from(["0" * 40, "x" * 65, ""])),
       root_scale=st.one_of(absent, numbers),
       current=st.one_of(absent, st.none(), st.sampled_from([{}, {"joints": 3}, {"joints": [], "rotations": 5}, {"joints": [], "rotations": []},
                                                  {"joints": "<same>", "rotations": []},
                                                  {"joints": "<same>", "rotations": {"pelvis": "<eye>"}},
                                                  {"joints": "<same>", "rotations": {"pelvis": "<eye>"},
                                                   "keep": ["pelvis"]},
                                                  {"joints": "<same>", "keep": 7},
                                                  {"joints": "<same>", "keep": ["pelvis", "nope"]},
                                                  {"joints": "<same>", "rotations": {"pelvis": [[1.0]]},
                                                   "keep": {"pelvis": [True]}}])))
def test_pose_for_rig(api, armature, rig, joints, binding_id, root_scale, current):
    if isinstance(current, dict) and current.get("joints") == "<same>":   # the rig's pose now, frame for frame
        frames = len(joints) if isinstance(joints, list) else 1
        current = dict(current, joints=joints)
        if isinstance(current.get("rotations"), dict):
            current["rotations"] = {b: [np.eye(3).tolist()] * frames if r == "<eye>" else r
                                    for b, r in current["rotations"].items()}
    _check(_send(api, "/pose_for_rig", _maybe(dict(armature=armature, rig=rig, joints=joints, binding_id=binding_id,
                                                   root_scale=root_scale, current=current))))


@FUZZ
@given(path=st.sampled_from(["/health", "/info", "/openapi.json", "/complete", "/nope"]),
       raw=st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"[]", b"null", b"{", b"[" * 5000 + b"]" * 5000,
                                                              b'{"joints": NaN}', b'\xff\xfe{}'])))
def test_raw_bodies_and_gets(api, path, raw):
    _check(api.get(path))
    _check(api.post(path, content=raw, headers={"content-type": "application/json"}))
