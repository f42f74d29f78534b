"""Every field finite and in range, work counted after resampling, and no 2xx answer with a non-finite number."""
import time

import numpy as np
import pytest
from service_app import client, engine


@pytest.fixture(scope="module")
def api():
    return client()


@pytest.fixture(scope="module")
def pose():
    return engine().generate(1, seed=5)[0]


def _post_raw(api, path, raw):
    return api.post(path, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize("path, field, base", [
    ("/denoise", "fps", '"take": [[[0, 0, 0]' + ', [0, 0, 0]' * 23 + ']]'),
    ("/denoise", "strength", '"take": [[[0, 0, 0]' + ', [0, 0, 0]' * 23 + ']]'),
    ("/generate", "diversity", '"n": 1'),
    ("/inbetween", "fps", '"take": [[[0, 0, 0]' + ', [0, 0, 0]' * 23 + ']]'),
    ("/complete", "joints", None),
])
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_are_422_naming_the_field_never_500(api, path, field, base, bad):
    if base is None:
        raw = '{"joints": [[[%s, 0, 0]' % bad + ', [0, 0, 0]' * 23 + ']]}'
    else:
        raw = '{%s, "%s": %s}' % (base, field, bad)
    r = _post_raw(api, path, raw)
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert field in r.text
    assert "NaN" not in r.text and "Infinity" not in r.text   # the bad value is not echoed (it cannot be JSON)


@pytest.mark.parametrize("fps", [0.02, 5e-324, 1e-9, 0.999])
def test_frame_rates_below_capture_rates_are_refused_at_once(api, pose, fps):
    take = np.repeat(pose[None], 60, 0).tolist()
    for path in ("/denoise", "/inbetween"):
        t = time.monotonic()
        r = api.post(path, json={"take": take, "fps": fps})
        assert r.status_code == 422 and "fps" in r.text, r.text
        assert time.monotonic() - t < 2


def test_work_after_resampling_is_limited_with_413_naming_the_limit(api, pose):
    # 2,000 frames at 1 fps are 59,971 frames at the models' 30 fps: over the 20,000-frame limit
    take = np.repeat(pose[None], 2000, 0).round(4).tolist()
    r = api.post("/denoise", json={"take": take, "fps": 1})
    assert r.status_code == 413 and "resampled to 30 fps" in r.text and "20,000" in r.text, r.text
    r = api.post("/generate", json={"n": 20000, "steps": 1000, "sampler": "em"})
    assert r.status_code == 413 and "pose-steps" in r.text, r.text
    r = api.post("/complete", json={"joints": [pose.tolist()] * 100, "n_hypotheses": 50, "steps": 1000,
                                    "seed": 1})
    assert r.status_code == 413 and "limit" in r.text
    info = api.get("/info").json()["limits"]
    assert info["pose_steps_per_request"] == 1_000_000 and info["fps"] == [1.0, 1000.0]


def test_denoise_with_a_joint_never_seen_places_it_and_never_answers_nan(api, pose):
    take = pose[None] + np.random.default_rng(0).normal(0, 0.01, (20, 24, 3))
    body = np.where(np.isnan(take), None, take).astype(object)
    body[:, 9] = None
    for temporal in (False, True):
        r = api.post("/denoise", json={"take": body.tolist(), "temporal": temporal})
        assert r.status_code == 200, r.text
        out = np.array(r.json()["joints"], dtype=float)
        assert np.isfinite(out).all()
        # the wrist placed by the prior: at the forearm's length from the elbow, not anywhere
        forearm = np.linalg.norm(pose[9] - pose[8])
        assert np.abs(np.linalg.norm(out[:, 9] - out[:, 8], axis=-1) - forearm).max() < 0.05


@pytest.mark.parametrize("scale", [1e300, 1e6, 1e-300])
def test_extreme_magnitudes_are_422_not_200_with_nulls(api, pose, scale):
    r = api.post("/complete", json={"joints": [(pose * scale).tolist()]})
    if r.status_code == 200:
        assert np.isfinite(np.array(r.json()["joints"], dtype=float)).all()
    else:
        assert r.status_code == 422, r.text


def test_answers_are_checked_finite_before_they_are_sent():
    from fastapi import HTTPException

    from gfpose_core.service import limits
    assert limits.answer(np.ones((1, 24, 3)), "x") == np.ones((1, 24, 3)).tolist()
    with pytest.raises(HTTPException) as e:
        limits.answer(np.array([[0.0, np.nan]]), "the completion")
    assert e.value.status_code == 422 and "the completion" in e.value.detail
    with pytest.raises(HTTPException) as e:
        limits.finite_tree({"bones": {"arm": [[1.0, float("inf")]]}}, "the rig pose")
    assert "the rig pose.bones.arm[0][1]" in e.value.detail
