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


EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
_EPS = 1e-9


# --- rotations (vectorised over leading axes) ---------------------------------------------------------------------

def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-300), n[..., 0]


def _skew(k: np.ndarray) -> np.ndarray:
    z = np.zeros(k.shape[:-1])
    return np.stack([np.stack([z, -k[..., 2], k[..., 1]], -1),
                     np.stack([k[..., 2], z, -k[..., 0]], -1),
                     np.stack([-k[..., 1], k[..., 0], z], -1)], -2)


def axis_angle_matrix(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations about unit axes (..., 3) by angles (...) in radians -> (..., 3, 3)."""
    k = _skew(axis)
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vectors a onto unit vectors b, (..., 3) -> (..., 3, 3).

    Opposite vectors turn half a turn about an axis perpendicular to a (any is as small as any other).
    """
    a, b = np.broadcast_arrays(a, b)
    c = np.sum(a * b, axis=-1)
    k = np.cross(a, b)
    kx = _skew(k)
    near = c < -1.0 + 1e-9
    out = np.eye(3) + kx + (kx @ kx) / np.maximum(1.0 + c, 1e-12)[..., None, None]
    if np.any(near):
        # Half a turn about an axis perpendicular to a: a crossed with the coordinate axis least along it.
        pick = np.eye(3)[np.argmin(np.abs(a), axis=-1)]
        axis, _ = _unit(np.cross(a, pick))
        out = np.where(near[..., None, None], axis_angle_matrix(axis, np.full(c.shape, np.pi)), out)
    return out


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as Blender stores them (w, x, y, z)."""
    m = np.asarray(m, dtype=np.float64)
    t = np.stack([1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
                  1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                  1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                  1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    pick = np.argmax(t, axis=-1)  # the largest diagonal term keeps the square root well away from zero
    r = np.sqrt(np.maximum(np.take_along_axis(t, pick[..., None], -1)[..., 0], 1e-300)) * 0.5
    inv = 0.25 / r
    cands = np.stack([
        np.stack([r, (m[..., 2, 1] - m[..., 1, 2]) * inv, (m[..., 0, 2] - m[..., 2, 0]) * inv,
                  (m[..., 1, 0] - m[..., 0, 1]) * inv], -1),
        np.stack([(m[..., 2, 1] - m[..., 1, 2]) * inv, r, (m[..., 0, 1] + m[..., 1, 0]) * inv,
                  (m[..., 0, 2] + m[..., 2, 0]) * inv], -1),
        np.stack([(m[..., 0, 2] - m[..., 2, 0]) * inv, (m[..., 0, 1] + m[..., 1, 0]) * inv, r,
                  (m[..., 1, 2] + m[..., 2, 1]) * inv], -1),
        np.stack([(m[..., 1, 0] - m[..., 0, 1]) * inv, (m[..., 0, 2] + m[..., 2, 0]) * inv,
                  (m[..., 1, 2] + m[..., 2, 1]) * inv, r], -1)], -2)
    q = np.take_along_axis(cands, pick[..., None, None], -2)[..., 0, :]
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) as (w, x, y, z), any length -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                     np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                     np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def continuous_quaternions(q: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip signs along the frame axis so that neighbouring keys never jump to the other hemisphere (q and -q are
    the same rotation, but interpolating between them spins the bone the long way round). Frame 0 gets w >= 0."""
    q = np.moveaxis(np.asarray(q, dtype=np.float64), axis, 0).copy()
    q[0] *= np.where(q[0, ..., :1] < 0, -1.0, 1.0)
    if len(q) > 1:
        flips = np.where(np.sum(q[1:] * q[:-1], axis=-1) < 0, -1.0, 1.0)
        q[1:] *= np.cumprod(flips, axis=0)[..., None]
    return np.moveaxis(q, 0, axis)


def matrix_to_blender_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices (F, ..., 3, 3) -> Blender Euler angles (F, ..., 3) in radians, stored as (x, y, z).

    Blender's order "XYZ" turns about X first: R = Rz @ Ry @ Rx, i.e. `euler_to_matrix` in the reversed order.
    Angles are unwrapped along the frame axis so that curves do not jump by whole turns.
    """
    rev = order[::-1]
    ang = np.radians(matrix_to_euler(m, rev))
    xyz = np.stack([ang[..., rev.index(a)] for a in "XYZ"], -1)
    return np.unwrap(xyz, axis=0) if xyz.ndim > 1 and len(xyz) > 1 else xyz


def blender_euler_to_matrix(e: np.ndarray, order: str) -> np.ndarray:
    """Blender Euler angles (..., 3) (x, y, z radians) in the given order -> (..., 3, 3)."""
    out = np.broadcast_to(np.eye(3), e.shape[:-1] + (3, 3))
    for a in order:  # the first axis in the order is applied first, so it multiplies on the right
        out = axis_angle_matrix(np.eye(3)["XYZ".index(a)], e[..., "XYZ".index(a)]) @ out
    return out
