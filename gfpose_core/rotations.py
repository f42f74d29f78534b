"""Rotation helpers on numpy arrays, vectorised over any leading axes."""
from __future__ import annotations

import numpy as np

_AXIS = {"X": 0, "Y": 1, "Z": 2}


def axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """(...,) angles about one of X/Y/Z -> (..., 3, 3) matrices acting on column vectors."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    m = np.zeros(a.shape + (3, 3))
    i = _AXIS[axis]
    j, k = (i + 1) % 3, (i + 2) % 3
    m[..., i, i] = 1.0
    m[..., j, j] = c
    m[..., k, k] = c
    m[..., j, k] = -s
    m[..., k, j] = s
    return m


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Angles (..., K) in degrees for the K (1 to 3) axes in `order`, applied as written (BVH: R = R1 @ R2 @ R3)."""
    m = axis_rotation(order[0], angles[..., 0])
    for n in range(1, len(order)):
        m = m @ axis_rotation(order[n], angles[..., n])
    return m


def matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Inverse of `euler_to_matrix` for any of the six Tait-Bryan orders; (..., 3, 3) -> (..., 3) degrees."""
    i, j, k = (_AXIS[c] for c in order)
    # Sign of the permutation (i, j, k): +1 for cyclic orders like XYZ, -1 for the others.
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    mid = np.arcsin(np.clip(sign * m[..., i, k], -1.0, 1.0))
    first = np.arctan2(-sign * m[..., j, k], m[..., k, k])
    last = np.arctan2(-sign * m[..., i, j], m[..., i, i])
    # Gimbal lock: put the whole rotation into the first angle.
    locked = np.abs(np.cos(mid)) < 1e-9
    if np.any(locked):
        alt = np.arctan2(sign * m[..., k, j], m[..., j, j])
        first = np.where(locked, alt, first)
        last = np.where(locked, 0.0, last)
    return np.degrees(np.stack([first, mid, last], axis=-1))


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Y-up (BVH, facing +Z) to Blender's Z-up (facing -Y): (x, y, z) -> (x, -z, y)."""
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)
