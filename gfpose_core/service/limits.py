"""What the server accepts and what it answers: sizes, magnitudes, work, and finite answers only.

Work is counted as the engine will do it, not as the request looks: takes are resampled to the models' 30 fps
first, so 60 frames at 0.02 fps are 90,000 frames of work; every hypothesis and every sampler step multiplies it.
"""
from __future__ import annotations

import math

import numpy as np
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_POSES = 20_000          # poses x hypotheses per request, and frames of a take once resampled to 30 fps
MAX_STEPS = 1000
# Poses x sampler steps per request: 20,000 poses at the defaults (10-25 steps) fit, 1,000 poses of the paper's
# 1,000-step sampler fit; 20,000 poses x 1,000 steps (half an hour of one GPU) does not.
MAX_WORK = 1_000_000
MODEL_FPS = 30.0
MIN_FPS, MAX_FPS = 1.0, 1000.0   # capture rates: a second per frame is already a slide show
MAX_METRES = 1e5              # world coordinates beyond 100 km are a unit mistake (and overflow float32 maths)
MAX_PIXELS = 1e6


def short(text: str, n: int = 60) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


def validation_error(_request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 without the echoed input: a NaN it cannot encode made it a 500, and a 10 MB string would come
    back whole. Location and message only, shortened, at most 20 of them."""
    errors = exc.errors()
    detail = [{"loc": [short(x, 40) if isinstance(x, str) else x for x in e.get("loc", ())],
               "msg": short(e.get("msg", ""), 200), "type": short(e.get("type", ""), 40)} for e in errors[:20]]
    return JSONResponse({"detail": detail}, 422)


def _limit(count: float, what: str, limit: int, unit: str):
    if not count <= limit:   # also catches inf and nan
        shown = "too many" if not math.isfinite(count) else f"{count:,.0f}"
        raise HTTPException(413, f"{what}: {shown} {unit} is over this server's limit of {limit:,} {unit} per request")


def poses(count: int, what: str):
    _limit(count, what, MAX_POSES, "poses")


def frames_at_model_rate(frames: int, fps: float) -> float:
    """How many frames a take becomes once resampled to the models' rate."""
    return (max(frames, 1) - 1) * (MODEL_FPS / fps) + 1


def file_rate(frames: int, fps: float, what: str, max_frames: int = 200_000):
    """For takes read from files (the command line): a ValueError when the rate is not a capture rate or the take
    resampled to the models' rate is too long to hold (a `Frame Time: 10` header makes 300 frames of each)."""
    if not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"{what}: {fps:.3g} fps is outside capture rates ({MIN_FPS:g}-{MAX_FPS:g} fps)")
    if frames_at_model_rate(frames, fps) > max_frames:
        raise ValueError(f"{what}: {frames} frames at {fps:.3g} fps are over {max_frames:,} frames at "
                         f"{MODEL_FPS:.0f} fps")


def take(frames: int, fps: float, what: str = "take"):
    _limit(frames_at_model_rate(frames, fps), f"{what} resampled to {MODEL_FPS:.0f} fps", MAX_POSES, "frames")


def work(poses_: float, steps: int, what: str) -> float:
    _limit(poses_ * steps, f"{what} x sampler steps", MAX_WORK, "pose-steps")
    return poses_ * steps


def magnitudes(arr: np.ndarray, name: str, bound: float = MAX_METRES):
    big = np.abs(arr) > bound   # NaN compares False: unknown stays allowed
    if big.any():
        raise HTTPException(422, f"{name} has values beyond ±{bound:g} (e.g. {arr[big].flat[0]:.3g}): "
                                 "not a pose in metres")


def answer(out: np.ndarray, what: str) -> list:
    """The answer as JSON lists, only when every number is finite: a 200 with nulls in it would look served."""
    out = np.asarray(out, dtype=np.float64)
    if not np.isfinite(out).all():
        raise HTTPException(422, f"{what} could not be answered with finite numbers for this input (joints too "
                                 "close together, too far apart, or unknown everywhere): check the input's scale "
                                 "and known joints")
    return out.tolist()


def finite_tree(value, path: str = "answer"):
    """Every float in a JSON-like answer (dicts, lists) finite, or a 422 naming where."""
    if isinstance(value, float) and not math.isfinite(value):
        raise HTTPException(422, f"{path} is not finite for this input")
    if isinstance(value, np.ndarray):
        answer(value, path)
    elif isinstance(value, dict):
        for k, v in value.items():
            finite_tree(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            finite_tree(v, f"{path}[{i}]")
    return value
