"""The network for posing from effectors (prior/effector_net.py): trained on the masks Auto Pose sends and on bodies
far from the reference one, told the character's body, and with the shipped weights nearer the truth on such a body
than the posterior-mean network it replaces there (its training: tests/test_train.py)."""

import numpy as np
import pytest
import torch
from service_app import engine as shipped_engine

from gfpose_core.body.skeleton import BONE_MIRROR, BONES, INDEX, N_JOINTS, bone_lengths, with_bone_lengths
from gfpose_core.prior.effector_net import (
    BODY_RANGE,
    EFFECTOR_GROUPS,
    EffectorMaskConfig,
    body_code,
    body_factors,
    effector_training_mask,
)
from gfpose_core.prior.effectors import effector_mask

VALIDATION_CLIPS = ("cmu/bvh/14_07.bvh.gz", "cmu/bvh/08_01.bvh.gz")   # validation subjects, never test

# A Rigify rig's bones over the CMU reference body's (the bench's rig body): collar to shoulder 1.84x, head 1.57x,
# thigh 1.46x, the spine 1.17x, the rest within 1.0-1.2x.
RIGIFY_LIKE = {"spine": 1.17, "chest": 1.18, "neck": 1.15, "head": 1.57, "shoulder_l": 1.84, "wrist_l": 1.11,
               "hand_end_l": 1.22, "hip_l": 1.12, "knee_l": 1.46}


def test_training_masks_are_what_auto_pose_sends():
    """Whole effector groups known (a hand is its wrist and knuckles together), all six in most masks, never none,
    and pins among the joints between in some."""
    known = effector_training_mask(20000, EffectorMaskConfig(), torch.Generator().manual_seed(0)).numpy()
    groups = [[INDEX[j] for j in g] for g in EFFECTOR_GROUPS]
    effectors = effector_mask()
    for g in groups:
        pinned_alone = known[:, g].any(1) & ~known[:, g].all(1)
        assert pinned_alone.mean() < 0.05       # only a pin can give a group's joint without the rest of it
    assert (known[:, effectors].all(1)).mean() > 0.75
    assert all(known[:, g].all(1).any() for g in groups)
    assert (known[:, effectors].reshape(len(known), -1).any(1)).all()
    between = known[:, ~effectors].any(1).mean()
    assert 0.1 < between < 0.3


def test_training_bodies_draw_one_factor_per_bone_pair_within_range():
    f = body_factors(5000, torch.Generator().manual_seed(1), jitter=0.0).numpy()
    assert np.allclose(f, f[:, BONE_MIRROR])
    assert f.min() >= BODY_RANGE[0] - 1e-6 and f.max() <= BODY_RANGE[1] + 1e-6
    # independent parts: the shoulder's factor says nothing of the thigh's
    s, t = f[:, list(BONES[:, 0]).index(INDEX["shoulder_l"])], f[:, list(BONES[:, 0]).index(INDEX["knee_l"])]
    assert abs(np.corrcoef(s, t)[0, 1]) < 0.05


@pytest.fixture(scope="module")
def engine():
    return shipped_engine()


@pytest.fixture(scope="module")
def rig_bodied(data_file):
    """Validation poses on a Rigify-like body: every bone pointing as captured, at the rig body's lengths."""
    from gfpose_core import load_take
    truth = np.concatenate([load_take(data_file(c)).joints[::20][:60] for c in VALIDATION_CLIPS]).astype(float)
    factors = np.ones(len(BONES))
    child = list(BONES[:, 0])
    for name, f in RIGIFY_LIKE.items():
        factors[child.index(INDEX[name])] = f
        factors[BONE_MIRROR[child.index(INDEX[name])]] = f
    return with_bone_lengths(truth, bone_lengths(truth) * factors)


def _unknown_error(out, truth, known):
    return np.linalg.norm(out - truth, axis=-1)[~known].mean()


def test_the_shipped_weights_have_the_effector_network(engine):
    assert engine.effector_mean is not None


def test_the_network_is_told_the_body(engine, rig_bodied):
    """The same effectors with the body's true bone lengths come nearer the truth than with the reference body's
    (fails if the network ignores what it is told)."""
    known = np.broadcast_to(effector_mask(), rig_bodied.shape[:2])
    query = np.where(known[..., None], rig_bodied, np.nan)
    canon, frame = engine._canonical(query)
    obs = np.nan_to_num(engine.space.to_model(canon))
    cmask = engine._coord_mask(known)
    told = body_code(bone_lengths(rig_bodied), engine.space.reference_bones, frame.scale)
    errs = []
    for body in (told, np.zeros_like(told)):
        x = engine.effector_mean(obs, cmask, body)
        from gfpose_core.body.skeleton import restore
        out = restore(engine.space.from_model(x).reshape(len(x), N_JOINTS, 3), frame)
        errs.append(_unknown_error(out, rig_bodied, known))
    assert errs[0] < 0.8 * errs[1], errs


def test_on_a_rig_body_the_effector_network_beats_the_posterior_mean(engine, rig_bodied, monkeypatch):
    """Posing from effectors on the Rigify-like body, the same lengths given: the unknown joints nearer the truth
    with the effector network than with the posterior-mean network's answer refined (what posed before it)."""
    known = np.broadcast_to(effector_mask(), rig_bodied.shape[:2])
    query = np.where(known[..., None], rig_bodied, np.nan)
    lengths = bone_lengths(rig_bodied)
    with_net = engine.pose_from_effectors(query, lengths=lengths, seed=0)
    monkeypatch.setattr(engine, "effector_mean", None)
    without = engine.pose_from_effectors(query, lengths=lengths, seed=0)
    e_net, e_pm = _unknown_error(with_net, rig_bodied, known), _unknown_error(without, rig_bodied, known)
    print(f"\nunknown joints on the Rigify-like body: effector network {1000 * e_net:.1f} mm, "
          f"posterior mean {1000 * e_pm:.1f} mm")
    assert np.array_equal(with_net[known], rig_bodied[known])
    assert e_net < 0.9 * e_pm
