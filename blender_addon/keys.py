"""Keyframes written into an F-curve without touching the animator's other keys (bpy + numpy only).

A curve the animator made holds more than frames and values: handle positions and types, interpolation, easing,
key types (breakdown, extreme ...). Writing a key here sets the keys it writes and nothing else: a key already on a
written frame keeps everything but its value (its handles move with it, as Blender's own "replace" does), a new
key is inserted with the user's Preferences > Animation defaults, and every other key is left bit for bit (Blender
recalculates the automatic handles of the keys next to a new one, as it does for any key inserted by hand; free
and aligned handles are put back exactly). Bulk arrays throughout (foreach_get / foreach_set), one curve update.
"""
from __future__ import annotations

import bpy
import numpy as np

_MATCH = 1e-3          # frames: a key this close to a written frame is the key on that frame


def _codes(prop: str) -> dict[str, int]:
    return {e.identifier: e.value for e in bpy.types.Keyframe.bl_rna.properties[prop].enum_items}


def interpolation_code(name: str) -> int:
    return _codes("interpolation")[name]


def new_key_defaults() -> tuple[int, int]:
    """(interpolation, handle type) codes that new keys get: the user's Preferences > Animation > F-Curves."""
    edit = bpy.context.preferences.edit
    return (_codes("interpolation")[edit.keyframe_new_interpolation_type],
            _codes("handle_left_type")[edit.keyframe_new_handle_type])


def _get(kp, prop: str, n: int, width: int, dtype) -> np.ndarray:
    buf = np.empty(n * width, dtype=dtype)
    kp.foreach_get(prop, buf)
    return buf.reshape(n, width) if width > 1 else buf


def set_keys(fc, frames: np.ndarray, values: np.ndarray, interpolation: int | None = None,
             clear_between: bool = False) -> None:
    """Key one F-curve at `frames` (float, increasing) with `values`.

    A key already at a written frame gets the new value (its handles shifted by the change, everything else kept);
    the other frames get new keys with `interpolation` (None: the user's default) and the user's default handle
    type. Every other key stays as it was. clear_between: also remove the keys strictly between two written frames
    that are not on a written frame (a switch that must hold over the range, in an action made for the result)."""
    frames = np.asarray(frames, dtype=np.float32).reshape(-1)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    ipo_new, handle_new = new_key_defaults()
    if interpolation is not None:
        ipo_new = int(interpolation)
    kp = fc.keyframe_points
    n_old = len(kp)
    co = _get(kp, "co", n_old, 2, np.float32)
    if clear_between and n_old and len(frames) > 1:
        inside = (co[:, 0] > frames[0] + _MATCH) & (co[:, 0] < frames[-1] - _MATCH)
        on_written = np.abs(co[:, 0, None] - frames[None]).min(-1) <= _MATCH
        for i in np.flatnonzero(inside & ~on_written)[::-1]:
            kp.remove(kp[int(i)], fast=True)
        n_old = len(kp)
        co = _get(kp, "co", n_old, 2, np.float32)
    left, right = _get(kp, "handle_left", n_old, 2, np.float32), _get(kp, "handle_right", n_old, 2, np.float32)
    lt, rt = _get(kp, "handle_left_type", n_old, 1, np.int32), _get(kp, "handle_right_type", n_old, 1, np.int32)
    ipo = _get(kp, "interpolation", n_old, 1, np.int32)
    # Which written frames already hold a key.
    hit = np.full(len(frames), -1, dtype=np.int64)
    if n_old:
        order = np.argsort(co[:, 0], kind="stable")
        xs = co[order, 0]
        pos = np.clip(np.searchsorted(xs, frames), 0, n_old - 1)
        for shift in (0, -1):
            p = np.clip(pos + shift, 0, n_old - 1)
            close = (np.abs(xs[p] - frames) <= _MATCH) & (hit < 0)
            hit[close] = order[p[close]]
    on_old = hit >= 0
    idx = hit[on_old]
    delta = values[on_old] - co[idx, 1]
    co[idx, 1] = values[on_old]
    left[idx, 1] += delta
    right[idx, 1] += delta
    fresh = ~on_old
    n_new = int(fresh.sum())
    if n_new:
        kp.add(n_new)
        new_co = np.stack([frames[fresh], values[fresh]], -1)
        co = np.concatenate([co, new_co])
        left, right = np.concatenate([left, new_co]), np.concatenate([right, new_co])
        lt = np.concatenate([lt, np.full(n_new, handle_new, np.int32)])
        rt = np.concatenate([rt, np.full(n_new, handle_new, np.int32)])
        ipo = np.concatenate([ipo, np.full(n_new, ipo_new, np.int32)])
        kp.foreach_set("interpolation", ipo)
        kp.foreach_set("handle_left_type", lt)
        kp.foreach_set("handle_right_type", rt)
    kp.foreach_set("co", co.ravel())
    kp.foreach_set("handle_left", left.ravel())
    kp.foreach_set("handle_right", right.ravel())
    fc.update()         # sorts the new keys in (stable: Blender swaps only keys strictly out of order)
    # Blender recomputes aligned handles on update: put back exactly what the animator's keys held.
    n = len(kp)
    where = np.empty(n, dtype=np.int64)
    where[np.argsort(co[:, 0], kind="stable")] = np.arange(n)
    keep = np.zeros(n, dtype=bool)
    keep[:n_old] = True
    manual = ((lt == 0) | (lt == 3) | (rt == 0) | (rt == 3)) & keep     # FREE or ALIGNED
    if manual.any():
        got_l, got_r = _get(kp, "handle_left", n, 2, np.float32), _get(kp, "handle_right", n, 2, np.float32)
        got_l[where[manual]], got_r[where[manual]] = left[manual], right[manual]
        kp.foreach_set("handle_left", got_l.ravel())
        kp.foreach_set("handle_right", got_r.ravel())
