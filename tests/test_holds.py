"""Holds and clean takes through the engine (issue 17): in-betweening between identical keys returns the key pose,
near-identical keys give near-still motion, and denoising a still or clean take gives it back essentially as it
was, while a noisy take is still cleaned."""
import numpy as np
import pytest
from conftest import CMU_MB31

from gfpose_core.data import load_take
from gfpose_core.engine import Engine


@pytest.fixture(scope="module")
def engine():
    return Engine.load(device="cpu")


@pytest.fixture(scope="module")
def clean(data_file):
    take = load_take(data_file(CMU_MB31))
    step = int(round(take.fps / 30))
    return take.joints[400:400 + step * 61:step].astype(np.float64)     # 61 frames at 30 fps


def _keys(pose_a, pose_b, pose_c, n=61):
    take = np.full((n, 24, 3), np.nan)
    take[0], take[30], take[60] = pose_a, pose_b, pose_c
    return take


def test_identical_keys_are_held_and_near_identical_keys_barely_move(engine, clean):
    key = clean[0]
    out = engine.inbetween(_keys(key, key, key), fps=30.0, seed=1)
    assert np.linalg.norm(out - key, axis=-1).max() < 1e-9               # the key pose on every frame
    nudged = key + np.array([0.004, 0.0, 0.0])                           # the whole body 4 mm aside
    out = engine.inbetween(_keys(key, nudged, key), fps=30.0, seed=1)
    assert np.linalg.norm(out - key, axis=-1).max() < 0.015              # near-still: within 15 mm of the key
    # Keys far apart: the engine's own motion, not a straight blend.
    far = engine.inbetween(_keys(clean[0], clean[30], clean[60]), fps=30.0, seed=1)
    straight = clean[0] + (clean[30] - clean[0]) * (np.arange(1, 30) / 30)[:, None, None]
    assert np.linalg.norm(far[1:30] - straight, axis=-1).max() > 0.01


def test_denoising_a_still_or_clean_take_leaves_it_and_a_noisy_one_is_cleaned(engine, clean):
    still = np.repeat(clean[:1], 40, axis=0)
    assert np.linalg.norm(engine.denoise(still, fps=30.0) - still, axis=-1).max() < 0.001
    out = engine.denoise(clean, fps=30.0)
    moved = np.linalg.norm(out - clean, axis=-1)
    assert moved.max() < 0.002, (moved.mean(), moved.max())
    noisy = clean + np.random.default_rng(0).normal(0, 0.012, clean.shape)
    err_in = np.linalg.norm(noisy - clean, axis=-1).mean()
    err_out = np.linalg.norm(engine.denoise(noisy, fps=30.0) - clean, axis=-1).mean()
    assert err_out < 0.5 * err_in, (err_in, err_out)
