"""Retargeting between body24 joints and real armatures, in numpy only: the math behind "pose for rig".

An armature is plain arrays (`Armature`): bone names, parents, rest matrices in armature space (Blender's
`bone.matrix_local`: columns X, Y along the bone, Z; translation = the head), lengths, rotation modes and the
constraints that decide what follows what. A rig map binds to it (`bind`): every body24 joint becomes a weighted sum
of points fixed in bones, which reads poses (`joints_from_pose`) and is what `solve` aims at when writing.

Blender's pose-bone convention, which `solve` produces and `forward_kinematics` follows:
    pose[b] = pose[parent] @ inv(rest[parent]) @ rest[b] @ basis[b],   basis = translate(location) @ rotate(...)

Writing a pose (`solve`): every body24 joint with children is a *part* (the pelvis turns the hips bone, the
shoulder turns the upper arm ...). A part's rotation, from the rig's rest body to the wanted body, swings the part's
rest direction onto the wanted one starting from its parent part's rotation, then twists it about that direction
from a third point where body24 has one (hips and shoulders for pelvis, spine and chest; the bend plane for the
upper limbs, so elbows and knees stay hinges). Each keyed bone turns with its part, so it keeps the rig's own rest
roll. Where a rig map's joint spans several bones (an interpolated spine), a few sweeps of forward kinematics
correct the aim exactly. The root bone's location puts the pelvis where the take puts it, scaled by leg length.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .rig_map import PIVOTS, RigMap, RigMapError, bone_of, detect_rig_match, load_rig_map, match_names
from .rotations import matrix_to_euler, y_up_to_z_up
from .skeleton import INDEX, JOINT_NAMES

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


def bone_matrix(head, tail, roll) -> np.ndarray:
    """Blender's rest matrix of a bone from head, tail and roll (armature space), (..., 4, 4).

    The same construction as Blender's `vec_roll_to_mat3`: the smallest rotation taking +Y onto the bone, then the
    roll about the bone. Lets a description come from head/tail/roll (another DCC, a file) as well as from bpy.
    """
    head, tail = np.asarray(head, dtype=np.float64), np.asarray(tail, dtype=np.float64)
    nor, length = _unit(tail - head)
    if np.any(length < 1e-9):
        raise ValueError("a bone with head == tail has no direction (zero-length bone)")
    x, y, z = nor[..., 0], nor[..., 1], nor[..., 2]
    theta = 1.0 + y
    theta_alt = x * x + z * z
    small = theta <= 6.1e-3
    theta = np.where(small, theta_alt * 0.5 + theta_alt * theta_alt * 0.125, theta)
    theta = np.maximum(theta, 1e-300)
    b = np.stack([np.stack([1 - x * x / theta, x, -x * z / theta], -1),
                  np.stack([-x, y, -z], -1),
                  np.stack([-x * z / theta, z, 1 - z * z / theta], -1)], -2)
    flip = ~((theta > 6.1e-3) | (theta_alt > 2.5e-4 ** 2))
    b = np.where(flip[..., None, None], np.diag([-1.0, -1.0, 1.0]), b)
    rot = axis_angle_matrix(nor, np.asarray(roll, dtype=np.float64)) @ b
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = head
    out[..., 3, 3] = 1.0
    return out


# --- the armature description -----------------------------------------------------------------------------------

@dataclass
class Armature:
    """What the retarget needs to know about an armature; plain data (JSON via `to_dict` / `from_dict`)."""
    name: str
    bones: list[str]
    parents: np.ndarray            # (B,) int, -1 for roots
    rest: np.ndarray               # (B, 4, 4) armature space, Blender's bone.matrix_local
    lengths: np.ndarray            # (B,)
    rotation_modes: list[str]      # "QUATERNION", "AXIS_ANGLE" or an Euler order such as "XYZ"
    local_location: np.ndarray     # (B,) bool: location keys in the bone's own rest axes (Blender's default)
    inherit_rotation: np.ndarray   # (B,) bool
    constraints: list[list[dict]]  # per bone, as `describe_armature` reads them (type, subtarget, influence ...)
    world: np.ndarray = field(default_factory=lambda: np.eye(4))  # object matrix_world

    def __post_init__(self):
        self.parents = np.asarray(self.parents, dtype=int)
        self.rest = np.asarray(self.rest, dtype=np.float64)
        self.lengths = np.asarray(self.lengths, dtype=np.float64)
        self.local_location = np.asarray(self.local_location, dtype=bool)
        self.inherit_rotation = np.asarray(self.inherit_rotation, dtype=bool)
        self.world = np.asarray(self.world, dtype=np.float64)
        self.index = {n: i for i, n in enumerate(self.bones)}
        self.validate()

    def validate(self) -> None:
        """Refuse, with a message naming the bones, what the retarget cannot work with."""
        n = len(self.bones)
        problems = []
        if len(self.index) != n:
            problems.append("bone names are not unique")
        shapes = {"parents": (self.parents.shape, (n,)), "rest": (self.rest.shape, (n, 4, 4)),
                  "lengths": (self.lengths.shape, (n,)), "local_location": (self.local_location.shape, (n,)),
                  "inherit_rotation": (self.inherit_rotation.shape, (n,))}
        for key, (got, want) in shapes.items():
            if got != want:
                problems.append(f"{key} has shape {got}, expected {want}")
        if len(self.rotation_modes) != n or len(self.constraints) != n:
            problems.append("rotation_modes and constraints need one entry per bone")
        if problems:
            raise ValueError(f"armature '{self.name}': " + "; ".join(problems))
        bad_modes = [b for b, m in zip(self.bones, self.rotation_modes)
                     if m not in EULER_ORDERS + ("QUATERNION", "AXIS_ANGLE")]
        if bad_modes:
            problems.append(f"unknown rotation mode on bone(s) {', '.join(bad_modes)}")
        if np.any((self.parents < -1) | (self.parents >= n)):
            problems.append("a parent index is out of range")
        if not np.all(np.isfinite(self.rest)) or not np.all(np.isfinite(self.lengths)):
            problems.append("rest matrices or lengths are not finite")
        else:
            rot = self.rest[:, :3, :3]
            err = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
            det = np.linalg.det(rot)
            bad = [self.bones[i] for i in np.flatnonzero((err > 1e-4) | (det < 0.5))]
            if bad:
                problems.append(f"bone(s) {', '.join(bad[:10])} have no proper rest orientation (zero-length or "
                                "scaled bones; Blender keeps every bone longer than zero)")
            # A zero-length bone with a proper orientation is usable (Blender keeps such bones at a tiny length);
            # a map that puts two body24 joints on it is refused later, naming the joints.
            negative = [self.bones[i] for i in np.flatnonzero(self.lengths < 0)]
            if negative:
                problems.append(f"bone(s) {', '.join(negative[:10])} have negative length")
        scale = np.linalg.norm(self.world[:3, :3], axis=0)
        if not np.all(np.isfinite(self.world)) or scale.min() <= 1e-12:
            problems.append("the object's matrix_world is not invertible")
        elif scale.max() - scale.min() > 1e-4 * scale.max():
            problems.append(f"the object has non-uniform scale {tuple(np.round(scale, 4))}: apply the scale "
                            "(Ctrl+A > Scale) first, rotations cannot be retargeted through a stretched object")
        elif np.linalg.det(self.world[:3, :3]) < 0:
            problems.append("the object is mirrored (negative scale): apply the scale first")
        # Parent loops would make forward kinematics run forever.
        seen_root = np.zeros(n, dtype=bool)
        for i in range(n):
            j, steps = i, 0
            while j >= 0 and not seen_root[j] and steps <= n:
                j, steps = self.parents[j], steps + 1
            if steps > n:
                problems.append(f"bone '{self.bones[i]}' is its own ancestor")
                break
            seen_root[i] = True
        if problems:
            raise ValueError(f"armature '{self.name}': " + "; ".join(problems))

    @property
    def world_scale(self) -> float:
        return float(np.linalg.norm(self.world[:3, 0]))

    def to_armature_space(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> armature space."""
        s = self.world_scale
        return (points - self.world[:3, 3]) @ self.world[:3, :3] / (s * s)

    def to_world(self, points: np.ndarray) -> np.ndarray:
        return points @ self.world[:3, :3].T + self.world[:3, 3]

    @classmethod
    def from_bones(cls, name: str, bones: list[str], parents, heads, tails, rolls, rotation_modes=None,
                   world=None) -> "Armature":
        """An armature from head/tail/roll per bone (no constraints, quaternion rotations unless given)."""
        rest = bone_matrix(heads, tails, rolls)
        lengths = np.linalg.norm(np.asarray(tails, float) - np.asarray(heads, float), axis=-1)
        n = len(bones)
        return cls(name=name, bones=list(bones), parents=np.asarray(parents), rest=rest, lengths=lengths,
                   rotation_modes=list(rotation_modes or ["QUATERNION"] * n), local_location=np.ones(n, bool),
                   inherit_rotation=np.ones(n, bool), constraints=[[] for _ in range(n)],
                   world=np.eye(4) if world is None else world)

    def to_dict(self) -> dict:
        return {"name": self.name, "matrix_world": self.world.tolist(), "bones": [
            {"name": b, "parent": self.bones[p] if p >= 0 else None, "matrix_local": self.rest[i].tolist(),
             "length": float(self.lengths[i]), "rotation_mode": self.rotation_modes[i],
             "use_local_location": bool(self.local_location[i]),
             "use_inherit_rotation": bool(self.inherit_rotation[i]), "constraints": self.constraints[i]}
            for i, (b, p) in enumerate(zip(self.bones, self.parents))]}

    @classmethod
    def from_dict(cls, d: dict) -> "Armature":
        """From `to_dict` or the add-on's `describe_armature`; a bone may give head/tail/roll instead of
        matrix_local."""
        try:
            bones = d["bones"]
            names = [b["name"] for b in bones]
            index = {n: i for i, n in enumerate(names)}
            missing_parent = sorted({b["parent"] for b in bones if b.get("parent") and b["parent"] not in index})
            if missing_parent:
                raise ValueError(f"armature '{d.get('name', '')}': parent bone(s) {', '.join(missing_parent)} "
                                 "are not in the description")
            parents = [index[b["parent"]] if b.get("parent") else -1 for b in bones]
            rest, lengths = [], []
            for b in bones:
                if "matrix_local" in b:
                    rest.append(np.asarray(b["matrix_local"], dtype=np.float64))
                    lengths.append(float(b["length"]))
                else:
                    head, tail = np.asarray(b["head"], float), np.asarray(b["tail"], float)
                    if np.linalg.norm(tail - head) < 1e-9:
                        raise ValueError(f"armature '{d.get('name', '')}': bone '{b['name']}' has zero length "
                                         "(head == tail)")
                    rest.append(bone_matrix(head, tail, float(b.get("roll", 0.0))))
                    lengths.append(float(np.linalg.norm(tail - head)))
            return cls(name=d.get("name", ""), bones=names, parents=np.array(parents, dtype=int),
                       rest=np.stack(rest) if rest else np.zeros((0, 4, 4)), lengths=np.array(lengths),
                       rotation_modes=[b.get("rotation_mode", "QUATERNION") for b in bones],
                       local_location=np.array([b.get("use_local_location", True) for b in bones], dtype=bool),
                       inherit_rotation=np.array([b.get("use_inherit_rotation", True) for b in bones], dtype=bool),
                       constraints=[list(b.get("constraints", [])) for b in bones],
                       world=np.asarray(d.get("matrix_world", np.eye(4)), dtype=np.float64))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an armature description: missing or malformed {e}") from None


# --- binding a rig map to an armature -----------------------------------------------------------------------------

@dataclass
class Binding:
    """A rig map fitted to one armature: body24 joint j = sum_k weights[j, k] * (pose[bones[k]] @ points[k])."""
    rig: RigMap
    armature: Armature
    prefix: str
    bones: np.ndarray       # (K,) armature bone indices
    points: np.ndarray      # (K, 3) points in each bone's local frame (armature units)
    weights: np.ndarray     # (24, K)
    plan: "_Plan | None" = field(default=None, repr=False)   # how to write, worked out once (see _plan)

    @property
    def bone_names(self) -> list[str]:
        return [self.armature.bones[i] for i in self.bones]

    def resolve(self, name: str) -> str:
        """A map's bone name as this armature spells it (with its prefix)."""
        return self.prefix + name

    def to_dict(self) -> dict:
        """What the add-on needs to read body24 off the armature by itself (see blender_addon/rig_io.py)."""
        return {"rig": self.rig.name, "prefix": self.prefix, "bones": self.bone_names,
                "points": self.points.tolist(), "weights": self.weights.tolist()}


def _rig_map(rig: RigMap | str | None, armature: Armature):
    if rig is None:
        m = detect_rig_match(armature.bones, kind="armature")
        return m.rig, m
    rig = rig if isinstance(rig, RigMap) else load_rig_map(rig)
    return rig, match_names(rig, armature.bones, armature=True)


def bind(armature: Armature, rig: RigMap | str | None = None) -> Binding:
    """Fit a rig map (None: detect it from the bone names) to an armature; errors name the missing bones and the
    body24 joints they leave unmapped."""
    rig, match = _rig_map(rig, armature)
    if match.missing:
        raise RigMapError(
            f"{rig.path or rig.name}: armature '{armature.name}' has no bone(s) "
            f"{', '.join(match.prefix + m for m in match.missing)}"
            + (f" (names tried with the prefix '{match.prefix}')" if match.prefix else "")
            + f"; body24 joints unmapped: {', '.join(match.unmapped_joints())}")
    prefix = match.prefix
    columns: dict[tuple, int] = {}
    rows: list[dict[int, float]] = []

    def column(bone: int, point: np.ndarray) -> int:
        key = (bone,) + tuple(np.round(point, 12))
        return columns.setdefault(key, len(columns))

    points: dict[int, tuple[int, np.ndarray]] = {}

    def term(ref: str, weight: float, out: dict[int, float]):
        if ref.startswith("@"):
            for c, w in rows[INDEX[ref[1:]]].items():
                out[c] = out.get(c, 0.0) + weight * w
            return
        b = armature.index[prefix + bone_of(ref)]
        tail = ref != bone_of(ref)
        p = np.array([0.0, armature.lengths[b], 0.0]) if tail else np.zeros(3)
        c = column(b, p)
        points[c] = (b, p)
        out[c] = out.get(c, 0.0) + weight

    for body_name in JOINT_NAMES:
        spec = rig.joints[body_name]
        row: dict[int, float] = {}
        if spec.kind == "joint":
            term(spec.refs[0], 1.0, row)
        elif spec.kind == "lerp":
            term(spec.refs[0], 1.0 - spec.t, row)
            term(spec.refs[1], spec.t, row)
        else:
            b = armature.index[prefix + bone_of(spec.refs[0])]
            # Offsets are metres (BVH maps: file units, which unit_scale turns into metres), in the bone's frame
            # or, for rest_offset and BVH joints (whose frame is the file's axes at rest), the armature's axes.
            v = np.array(spec.offset, dtype=np.float64) * rig.unit_scale
            if rig.kind == "bvh":
                v = y_up_to_z_up(v) if rig.up_axis == "Y" else v
            if rig.kind == "bvh" or spec.kind == "rest_offset":
                v = armature.rest[b, :3, :3].T @ v
            v = v / armature.world_scale
            c = column(b, v)
            points[c] = (b, v)
            row[c] = 1.0
        rows.append(row)
    k = len(columns)
    weights = np.zeros((len(JOINT_NAMES), k))
    for j, row in enumerate(rows):
        for c, w in row.items():
            weights[j, c] = w
    bones = np.array([points[c][0] for c in range(k)], dtype=int)
    local = np.array([points[c][1] for c in range(k)]).reshape(k, 3)
    return Binding(rig=rig, armature=armature, prefix=prefix, bones=bones, points=local, weights=weights)


def _points(binding: Binding, heads: np.ndarray, rots: np.ndarray) -> np.ndarray:
    """Heads (F, K, 3) and rotations (F, K, 3, 3) of the binding's bones -> armature-space body24 (F, 24, 3)."""
    pts = heads + np.einsum("fkij,kj->fki", rots, binding.points)
    return np.einsum("jk,fkc->fjc", binding.weights, pts)


def rest_joints(binding: Binding, world: bool = False) -> np.ndarray:
    """The rig's rest pose as body24 (24, 3), armature space (or world)."""
    rest = binding.armature.rest[binding.bones]
    j = _points(binding, rest[None, :, :3, 3], rest[None, :, :3, :3])[0]
    return binding.armature.to_world(j) if world else j


def joints_from_pose(binding: Binding, matrices: np.ndarray, world: bool = True) -> np.ndarray:
    """The reverse direction: pose-bone matrices (F, B, 4, 4) in armature space (every bone of the armature, in its
    order; Blender's pose_bone.matrix) -> body24 (F, 24, 3), world space unless `world` is False."""
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim == 3:
        m = m[None]
    m = m[:, binding.bones]
    j = _points(binding, m[..., :3, 3], m[..., :3, :3])
    return binding.armature.to_world(j) if world else j


# --- what follows what: parents and constraints ---------------------------------------------------------------

@dataclass
class _Structure:
    parent: np.ndarray        # effective parent (a single-target Armature constraint counts as a parent)
    copy_of: np.ndarray       # bone whose pose this bone copies (world-space Copy Transforms at full influence), -1
    stretched: np.ndarray     # a Stretch To after the copy: the head follows, the orientation does not
    issues: list[list[str]]   # constraints the retarget cannot follow, per bone


def _structure(arm: Armature, keyed: set[int]) -> _Structure:
    n = len(arm.bones)
    parent = arm.parents.copy()
    copy_of = np.full(n, -1)
    stretched = np.zeros(n, dtype=bool)
    issues: list[list[str]] = [[] for _ in range(n)]
    for b, cons in enumerate(arm.constraints):
        for c in cons:
            if not c.get("enabled", True) or c.get("influence", 1.0) <= 1e-6:
                continue  # muted, or switched off (Rigify's IK/FK and follow switches end up here)
            kind, sub = c.get("type", ""), c.get("subtarget") or ""
            target = arm.index.get(sub, -1) if c.get("own_armature", True) else -1
            spaces = (c.get("owner_space", "WORLD"), c.get("target_space", "WORLD"))
            if kind == "COPY_SCALE":
                continue  # poses carry no scale
            if kind in ("COPY_TRANSFORMS", "COPY_ROTATION", "COPY_LOCATION") and spaces == ("LOCAL", "LOCAL") \
                    and target >= 0 and target not in keyed:
                continue  # copies a local pose that the retarget leaves at rest: no effect
            if kind == "COPY_TRANSFORMS" and spaces == ("WORLD", "WORLD") and target >= 0 \
                    and c.get("influence", 1.0) >= 1 - 1e-6 and c.get("mix_mode", "REPLACE") == "REPLACE":
                copy_of[b], stretched[b], issues[b] = target, False, []
                continue  # replaces everything above it in the stack
            if kind == "STRETCH_TO":
                stretched[b] = True
                continue
            if kind == "ARMATURE":
                live = [(t, w) for t, w in c.get("targets", []) if w > 1e-6]
                if len(live) == 1 and abs(live[0][1] - 1) < 1e-6 and live[0][0] in arm.index:
                    parent[b] = arm.index[live[0][0]]
                    continue
            issues[b].append(f"{kind} '{c.get('name', kind)}'")
    return _Structure(parent=parent, copy_of=copy_of, stretched=stretched, issues=issues)


def _dependency_order(needed: set[int], st: _Structure) -> list[int]:
    """Topological order over parents and copy targets (a copy's target may come later in the bone list)."""
    order, state = [], {}

    def visit(b):
        stack = [(b, False)]
        while stack:
            x, done = stack.pop()
            if done:
                state[x] = 2
                order.append(x)
                continue
            if state.get(x) == 2:
                continue
            if state.get(x) == 1:
                raise RigMapError(f"bone dependencies form a loop at '{x}'")
            state[x] = 1
            stack.append((x, True))
            for d in _depends_on(x, st):
                if state.get(d) != 2:
                    stack.append((d, False))

    for b in sorted(needed):
        if state.get(b) != 2:
            visit(b)
    return order


def _closure(start: set[int], st: _Structure) -> set[int]:
    out, todo = set(), list(start)
    while todo:
        b = todo.pop()
        if b in out:
            continue
        out.add(b)
        todo += _depends_on(b, st)
    return out


def _depends_on(b: int, st: _Structure) -> list[int]:
    """The bones whose pose decides this one's: the copied bone for a full copy (its parent no longer matters)."""
    if st.copy_of[b] >= 0:
        return [int(st.copy_of[b])]
    return [int(st.parent[b])] if st.parent[b] >= 0 else []


# --- body parts: the rotation each body24 joint with children turns through ------------------------------------

# part: (aim from, aim to, twist rule, twist points, parent part). Twist rules: "side" aligns the listed right->left
# pairs; "bend" the limb's bend plane (root, middle, end, which way the middle joint points on a straight rest
# limb); "inherit" keeps the parent part's twist (hinges, and where body24 has no third point: head, hands, feet).
_PARTS = {
    "pelvis": ("pelvis", "spine", "side", (("hip_r", "hip_l"),), None),
    "spine": ("spine", "chest", "side", (("hip_r", "hip_l"), ("shoulder_r", "shoulder_l")), "pelvis"),
    "chest": ("chest", "neck", "side", (("shoulder_r", "shoulder_l"),), "spine"),
    "neck": ("neck", "head", "inherit", None, "chest"),
    "head": ("head", "head_end", "inherit", None, "neck"),
}
for _s in ("l", "r"):
    _PARTS.update({
        f"collar_{_s}": (f"collar_{_s}", f"shoulder_{_s}", "inherit", None, "chest"),
        f"shoulder_{_s}": (f"shoulder_{_s}", f"elbow_{_s}", "bend", (f"shoulder_{_s}", f"elbow_{_s}", f"wrist_{_s}",
                                                                     "back"), f"collar_{_s}"),
        f"elbow_{_s}": (f"elbow_{_s}", f"wrist_{_s}", "inherit", None, f"shoulder_{_s}"),
        f"wrist_{_s}": (f"wrist_{_s}", f"hand_end_{_s}", "inherit", None, f"elbow_{_s}"),
        f"hip_{_s}": (f"hip_{_s}", f"knee_{_s}", "bend", (f"hip_{_s}", f"knee_{_s}", f"ankle_{_s}", "front"),
                      "pelvis"),
        f"knee_{_s}": (f"knee_{_s}", f"ankle_{_s}", "inherit", None, f"hip_{_s}"),
        f"ankle_{_s}": (f"ankle_{_s}", f"toe_{_s}", "inherit", None, f"knee_{_s}"),
    })
PARTS = tuple(p for p in PIVOTS)            # body24 order: parents before children
assert set(PARTS) == set(_PARTS)
_PART_INDEX = {p: i for i, p in enumerate(PARTS)}
# How much evidence (sine of the bend angle, or of the hips/shoulders line across the aim) the twist needs: none
# below the first value (the parent's twist is kept), full trust above the second, a smooth blend between.
_TRUST = {"side": (0.05, 0.3), "bend": (np.sin(np.radians(3.0)), np.sin(np.radians(15.0)))}


def _evidence(joints: np.ndarray, rule: str, pts) -> np.ndarray:
    """The vector whose part across the aim fixes the twist: (..., 24, 3) -> (..., 3)."""
    if rule == "side":
        acc = 0.0
        for r, l in pts:
            acc = acc + _unit(joints[..., INDEX[l], :] - joints[..., INDEX[r], :])[0]
        return acc / len(pts)
    a, m, e = (joints[..., INDEX[n], :] for n in pts[:3])
    u, v = m - a, e - m
    # The bend normal, of length sin(bend angle): no evidence on a straight limb.
    return np.cross(u, v) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-300)[..., None]


def _rest_evidence(rest: np.ndarray, rule: str, pts, aim: np.ndarray) -> np.ndarray:
    ev = _evidence(rest, rule, pts)
    if rule == "bend" and np.linalg.norm(ev) < 1e-3:
        # A straight rest limb (T-pose, BVH rest): the knee points to the rig's front, the elbow to its back.
        up = _unit(rest[INDEX["neck"]] - rest[INDEX["pelvis"]])[0]
        left = _unit(rest[INDEX["hip_l"]] - rest[INDEX["hip_r"]])[0]
        front = _unit(np.cross(left, up))[0]
        pole = front if pts[3] == "front" else -front
        ev = np.cross(pole, aim)
        if np.linalg.norm(ev) < 0.1:        # the limb points along the front axis at rest: use up instead
            ev = np.cross(up if pts[3] == "front" else -up, aim)
    return _unit(ev)[0]


def part_rotations(rest: np.ndarray, joints: np.ndarray, keyed: set[str] | None = None) -> np.ndarray:
    """For each part, the rotation (F, 19, 3, 3) taking the rig's rest body (24, 3) to each pose (F, 24, 3); both in
    the same space. See the module note; parts follow PARTS order. A part without a rest direction (its two
    joints on one spot) keeps its parent's rotation, or is an error where bones turn with it (`keyed`)."""
    joints = np.asarray(joints, dtype=np.float64)
    f = joints.shape[0]
    out = np.zeros((f, len(PARTS), 3, 3))
    for p, part in enumerate(PARTS):
        a, c, rule, pts, parent = _PARTS[part]
        base = out[:, _PART_INDEX[parent]] if parent else np.broadcast_to(np.eye(3), (f, 3, 3))
        aim_r, len_r = _unit(rest[INDEX[c]] - rest[INDEX[a]])
        if len_r < 1e-9 and keyed is not None and part not in keyed:
            out[:, p] = base
            continue
        if len_r < 1e-9:
            raise RigMapError(f"the rig's rest pose puts body24 joints '{a}' and '{c}' at the same place, so the "
                              f"part '{part}' has no direction: map '{c}' to a point away from '{a}'")
        aim_t, len_t = _unit(joints[:, INDEX[c]] - joints[:, INDEX[a]])
        carried = base @ aim_r
        # Where the wanted direction is undefined (joints on top of each other) keep the parent's.
        aim_t = np.where((len_t > 1e-9)[:, None], aim_t, carried)
        rot = swing(carried, aim_t) @ base
        if rule != "inherit":
            ev_r = _rest_evidence(rest, rule, pts, aim_r)
            p_vec = rot @ ev_r
            q_vec = _evidence(joints, rule, pts)
            p_perp = p_vec - np.sum(p_vec * aim_t, -1, keepdims=True) * aim_t
            q_perp = q_vec - np.sum(q_vec * aim_t, -1, keepdims=True) * aim_t
            w = np.linalg.norm(p_perp, axis=-1) * np.linalg.norm(q_perp, axis=-1)
            sin = np.sum(aim_t * np.cross(p_perp, q_perp), -1) / np.maximum(w, 1e-300)
            cos = np.sum(p_perp * q_perp, -1) / np.maximum(w, 1e-300)
            lo, hi = _TRUST[rule]
            if rule == "bend" and pts[3] == "front":
                # A knee bending backwards: hyperextension (or mocap noise), not a thigh turned half round, which
                # hips cannot do; only a strong bend the other way may turn the thigh.
                back = np.clip(-cos, 0.0, 1.0)
                lo = lo + back * (np.sin(np.radians(20.0)) - lo)
                hi = hi + back * (np.sin(np.radians(40.0)) - hi)
            x = np.clip((w - lo) / (hi - lo), 0.0, 1.0)
            trust = x * x * (3 - 2 * x)
            phi = np.arctan2(trust * sin, trust * cos + (1.0 - trust))
            rot = axis_angle_matrix(aim_t, phi) @ rot
        out[:, p] = rot
    return out


# --- writing: plan, forward kinematics, solve ---------------------------------------------------------------------

@dataclass
class _Plan:
    binding: Binding
    keyed: np.ndarray            # (N,) armature bone indices keyed with a part's rotation
    parts: np.ndarray            # (N,) part index per keyed bone
    rest_bones: np.ndarray       # bones keyed at rest
    root: int
    structure: _Structure
    order: list[int]             # needed bones in dependency order
    slot: dict[int, int]         # armature bone index -> position in `order`
    offsets: np.ndarray          # (M, 3) head relative to the effective parent, in the parent's rest frame
    rel: np.ndarray              # (M, 3, 3) rest orientation relative to the effective parent
    corrector: dict[int, list[tuple[np.ndarray, float]]]  # part -> [(group of keyed bones, sensitivity)]
    properties: list[tuple[str, str, float]]
    warnings: list[str]


def _plan(binding: Binding) -> _Plan:
    if binding.plan is None:
        binding.plan = _make_plan(binding)
    return binding.plan


def _make_plan(binding: Binding) -> _Plan:
    arm, rig = binding.armature, binding.rig
    if rig.write is None:
        raise RigMapError(f"{rig.path or rig.name}: this map has no [write] table, so it can read poses but not key "
                          "them; add [write] root, bones (and rest, properties) as in rigs/mixamo.toml")
    w = rig.write
    missing = sorted(b for b in w.bone_names() if binding.resolve(b) not in arm.index)
    if missing:
        raise RigMapError(f"{rig.path or rig.name}: cannot key armature '{arm.name}': it has no bone(s) "
                          f"{', '.join(binding.resolve(b) for b in missing)} (named in [write])")
    keyed = np.array([arm.index[binding.resolve(b)] for b in w.bones], dtype=int)
    parts = np.array([_PART_INDEX[p] for p in w.bones.values()], dtype=int)
    rest_bones = np.array([arm.index[binding.resolve(b)] for b in w.rest], dtype=int)
    root = arm.index[binding.resolve(w.root)]
    st = _structure(arm, set(keyed.tolist()))
    needed = _closure(set(binding.bones.tolist()) | set(keyed.tolist()), st)
    order = _dependency_order(needed, st)
    slot = {b: i for i, b in enumerate(order)}
    warnings = []
    for b in order:
        if st.issues[b]:
            warnings.append(f"bone '{arm.bones[b]}' has constraint(s) {', '.join(st.issues[b])} that the retarget "
                            "does not follow; keys may not land exactly")
    for k, b in enumerate(binding.bones):
        if st.stretched[b] and np.linalg.norm(binding.points[k]) > 1e-9:
            warnings.append(f"bone '{arm.bones[b]}' is stretched by a constraint; a point along it may drift")
    # The pelvis must move with the root bone, or the root translation cannot place it.
    pelvis_bones = binding.bones[np.abs(binding.weights[INDEX["pelvis"]]) > 1e-12]
    for b in pelvis_bones:
        if root not in _closure({int(b)}, st):
            raise RigMapError(f"{rig.path or rig.name}: root bone '{arm.bones[root]}' does not carry the pelvis "
                              f"(bone '{arm.bones[b]}' is not below it)")
    rest = arm.rest
    offsets = np.zeros((len(order), 3))
    rel = np.tile(np.eye(3), (len(order), 1, 1))
    for i, b in enumerate(order):
        p = st.parent[b]
        if st.copy_of[b] < 0:
            if p >= 0:
                offsets[i] = rest[p, :3, :3].T @ (rest[b, :3, 3] - rest[p, :3, 3])
                rel[i] = rest[p, :3, :3].T @ rest[b, :3, :3]
            else:
                offsets[i] = rest[b, :3, 3]
                rel[i] = rest[b, :3, :3]
    props = [(binding.resolve(bone), prop, value) for bone, values in w.properties.items()
             for prop, value in values.items()]
    plan = _Plan(binding=binding, keyed=keyed, parts=parts, rest_bones=rest_bones, root=root, structure=st,
                 order=order, slot=slot, offsets=offsets, rel=rel, corrector={}, properties=props,
                 warnings=warnings)
    plan.corrector = _correctors(plan)
    return plan


def _fk(plan: _Plan, keyed_rot: dict[int, np.ndarray], n_frames: int, local: bool = False,
        root_location: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Forward kinematics of the needed bones, every bone not in `keyed_rot` at its rest basis.

    keyed_rot: armature-space orientations (F, 3, 3) of keyed bones, or with `local` their basis rotations (Blender's
    pose-bone convention). Returns heads (F, M, 3) and orientations (F, M, 3, 3) in `order`, and for keyed bones the
    orientation their basis applies to (basis = pre.T @ orientation)."""
    arm, st = plan.binding.armature, plan.structure
    m = len(plan.order)
    heads = np.zeros((n_frames, m, 3))
    rots = np.zeros((n_frames, m, 3, 3))
    pre = {}
    for i, b in enumerate(plan.order):
        c = st.copy_of[b]
        if c >= 0:
            heads[:, i], rots[:, i] = heads[:, plan.slot[c]], rots[:, plan.slot[c]]
            continue
        p = st.parent[b]
        if p >= 0:
            k = plan.slot[p]
            heads[:, i] = heads[:, k] + rots[:, k] @ plan.offsets[i]
            pr = rots[:, k] @ plan.rel[i] if arm.inherit_rotation[b] else np.broadcast_to(arm.rest[b, :3, :3],
                                                                                           (n_frames, 3, 3))
        else:
            heads[:, i] = plan.offsets[i]
            pr = np.broadcast_to(plan.rel[i], (n_frames, 3, 3))
        if root_location is not None and b == plan.root:
            heads[:, i] += np.einsum("fij,fj->fi", _location_axes(plan, b, pr, rots), root_location)
        if b in keyed_rot:
            pre[b] = pr
            rots[:, i] = pr @ keyed_rot[b] if local else keyed_rot[b]
        else:
            rots[:, i] = pr
    return heads, rots, pre


def _location_axes(plan: _Plan, b: int, pre: np.ndarray, rots: np.ndarray) -> np.ndarray:
    """The axes a bone's location keys move it along: its own rest axes, or with Blender's "Local Location" off
    its parent's (the armature's for a root bone)."""
    arm = plan.binding.armature
    if arm.local_location[b]:
        return pre
    p = plan.structure.parent[b]
    if p < 0:
        return np.broadcast_to(np.eye(3), pre.shape)
    return rots[:, plan.slot[p]] @ arm.rest[p, :3, :3].T


def _fk_joints(plan: _Plan, heads: np.ndarray, rots: np.ndarray) -> np.ndarray:
    cols = [plan.slot[b] for b in plan.binding.bones]
    return _points(plan.binding, heads[:, cols], rots[:, cols])


def _aim_dirs(joints: np.ndarray) -> np.ndarray:
    """(F, 24, 3) -> unit aim direction of every part (F, 19, 3) and its length."""
    a = np.array([INDEX[_PARTS[p][0]] for p in PARTS])
    c = np.array([INDEX[_PARTS[p][1]] for p in PARTS])
    return _unit(joints[:, c] - joints[:, a])


def _correctors(plan: _Plan) -> dict[int, list[tuple[np.ndarray, float]]]:
    """For each part, the groups of keyed bones (all bones of one part) that turn the part's aim, with how much
    (measured at rest, each group turned alone, the other bones keeping their orientations). Sensitivity 1: the
    aim turns with the group (both ends rigid in it); then that group alone corrects it. An aim spread over several
    groups (an interpolated spine) is corrected by all of them, each in proportion to its sensitivity."""
    arm = plan.binding.armature
    rest_rot = {int(b): arm.rest[b, :3, :3][None] for b in plan.keyed}
    heads, rots, _ = _fk(plan, rest_rot, 1)
    base_dir, base_len = _aim_dirs(_fk_joints(plan, heads, rots))
    groups = {int(p): plan.keyed[plan.parts == p] for p in np.unique(plan.parts)}
    eps = 1e-3
    sens = {}
    for g, bones in groups.items():
        responses = []
        for axis_pick in (0, 1):
            perturbed = dict(rest_rot)
            # Turn the group about an axis across its own part's aim (any axis serves to measure).
            helper = np.eye(3)[np.argsort(np.abs(base_dir[0, g]))[axis_pick]]
            axis = _unit(np.cross(base_dir[0, g], helper))[0]
            turn = axis_angle_matrix(axis, np.array(eps))
            for b in bones:
                perturbed[int(b)] = turn @ rest_rot[int(b)]
            h, r, _ = _fk(plan, perturbed, 1)
            d, _ = _aim_dirs(_fk_joints(plan, h, r))
            responses.append(np.arccos(np.clip(np.sum(d[0] * base_dir[0], -1), -1, 1)) / eps)
        sens[g] = np.maximum(*responses)
    out = {}
    for p in range(len(PARTS)):
        if base_len[0, p] < 1e-9:
            continue
        own = sens.get(p)
        if own is not None and own[p] > 0.9:
            out[p] = [(groups[p], float(own[p]))]      # the part's own bones carry its whole aim
            continue
        movers = [(groups[g], float(s[p])) for g, s in sens.items() if s[p] > 0.05]
        if movers:
            out[p] = movers
    return out


@dataclass
class RigPose:
    """Keys for one armature: what `solve` returns and the add-on writes (`to_dict` for JSON)."""
    bones: list[str]                   # keyed bones (as the armature spells them)
    parts: list[str]                   # the body24 joint each keyed bone turns with
    rotation_modes: list[str]          # mode of each keyed bone's keys: "QUATERNION" or a Blender Euler order
    rotations: list[np.ndarray]        # per keyed bone (F, 4) quaternion (w, x, y, z) or (F, 3) Euler radians
    quaternions: np.ndarray            # (F, N, 4) the same rotations as quaternions, sign-continuous
    root: str
    location: np.ndarray               # (F, 3) the root bone's location keys
    rest: list[str]                    # bones keyed at rest
    rest_modes: list[str]
    properties: list[tuple[str, str, float]]  # (pose bone, custom property, value) to set before keying
    joints: np.ndarray                 # (F, 24, 3) where body24 lands on the rig (world), by forward kinematics
    root_scale: float
    aim_error: np.ndarray              # (F, 19) degrees between each part's aim on the rig and the wanted one
    warnings: list[str]

    def channels(self) -> list[tuple[str, str, np.ndarray]]:
        """(bone, data path property, values (F, n)) for every F-curve group to key."""
        f = self.location.shape[0]
        out = []
        for bone, mode, values in zip(self.bones, self.rotation_modes, self.rotations):
            out.append((bone, "rotation_quaternion" if mode == "QUATERNION" else "rotation_euler", values))
            if bone == self.root:
                out.append((bone, "location", self.location))
        for bone, mode in zip(self.rest, self.rest_modes):
            q = mode == "QUATERNION"
            out.append((bone, "rotation_quaternion" if q else "rotation_euler",
                        np.tile([1.0, 0, 0, 0] if q else [0.0, 0, 0], (f, 1))))
            out.append((bone, "location", np.zeros((f, 3))))
        return out

    def to_dict(self) -> dict:
        modes = dict(zip(self.bones, self.rotation_modes)) | dict(zip(self.rest, self.rest_modes))
        return {"frames": int(self.location.shape[0]), "root": self.root, "root_scale": self.root_scale,
                "rotation_modes": modes,
                "channels": [{"bone": b, "path": p, "values": np.asarray(v).tolist()} for b, p, v in self.channels()],
                "properties": [{"bone": b, "name": n, "value": v} for b, n, v in self.properties],
                "joints": self.joints.tolist(), "warnings": self.warnings}


def leg_length(joints: np.ndarray) -> float:
    """Hip to knee to ankle, averaged over both legs and (median) over frames; (..., 24, 3)."""
    j = np.asarray(joints, dtype=np.float64).reshape(-1, len(JOINT_NAMES), 3)
    total = 0.0
    for s in ("l", "r"):
        h, k, a = (j[:, INDEX[f"{n}_{s}"]] for n in ("hip", "knee", "ankle"))
        total = total + np.linalg.norm(k - h, axis=-1) + np.linalg.norm(a - k, axis=-1)
    return float(np.median(total / 2))


def check_joints(joints) -> np.ndarray:
    """Body24 poses as (F, 24, 3) float64, or a ValueError naming what is wrong."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim == 2:
        j = j[None]
    if j.ndim != 3 or j.shape[1:] != (len(JOINT_NAMES), 3) or j.shape[0] == 0:
        raise ValueError(f"joints must be (frames, 24, 3) or (24, 3) body24 positions, got shape {j.shape}")
    bad = ~np.isfinite(j).all(axis=(0, 2))
    if bad.any():
        raise ValueError("joints are not finite (NaN or inf) for "
                         f"{', '.join(n for n, b in zip(JOINT_NAMES, bad) if b)}: a pose for a rig needs every "
                         "joint (complete the pose first)")
    return j


def solve(armature: Armature, joints, rig: RigMap | str | None = None, binding: Binding | None = None,
          root_scale: float | None = None, sweeps: int = 4) -> RigPose:
    """Body24 poses (F, 24, 3) world space -> keys for the armature's mapped bones (Blender's pose-bone
    convention) and the root bone's location.

    root_scale: how much the root translation is scaled; None = the rig's leg length over the take's.
    """
    j_world = check_joints(joints)
    binding = binding or bind(armature, rig)
    plan = _plan(binding)
    arm = armature
    f = j_world.shape[0]
    targets = arm.to_armature_space(j_world)
    rest = rest_joints(binding)
    part_rot = part_rotations(rest, targets, {PARTS[p] for p in plan.parts})   # (F, 19, 3, 3)
    keyed_rot = {int(b): part_rot[:, p] @ arm.rest[b, :3, :3] for b, p in zip(plan.keyed, plan.parts)}
    want_dir, want_len = _aim_dirs(targets)
    # Correct aims that span several groups (interpolated spines): a few sweeps of forward kinematics.
    heads, rots, pre = _fk(plan, keyed_rot, f)
    got_dir, _ = _aim_dirs(_fk_joints(plan, heads, rots))
    for _ in range(sweeps):
        worst = 0.0
        for p in range(len(PARTS)):
            if p not in plan.corrector:
                continue
            axis, s = _unit(np.cross(got_dir[:, p], want_dir[:, p]))
            angle = np.arctan2(s, np.sum(got_dir[:, p] * want_dir[:, p], -1))
            angle = np.where(want_len[:, p] > 1e-9, angle, 0.0)
            if angle.max() < 1e-7:
                continue
            worst = max(worst, float(angle.max()))
            # The least turning that corrects the aim to first order: group g turns by angle * k_g / sum(k^2).
            movers = plan.corrector[p]
            norm = sum(k * k for _, k in movers)
            for bones, k in movers:
                turn = axis_angle_matrix(axis, np.minimum(angle * k / norm, np.pi / 2))
                for b in bones:
                    keyed_rot[int(b)] = turn @ keyed_rot[int(b)]
            heads, rots, pre = _fk(plan, keyed_rot, f)
            got_dir, _ = _aim_dirs(_fk_joints(plan, heads, rots))
        if worst < 1e-6:
            break
    predicted = _fk_joints(plan, heads, rots)
    # Root translation: the pelvis goes where the take puts it, scaled about the world origin by leg length.
    scale = root_scale if root_scale is not None else (
        leg_length(rest) * arm.world_scale / max(leg_length(j_world), 1e-9))
    want_root = arm.to_armature_space(j_world[:, INDEX["pelvis"]] * scale)
    delta = want_root - predicted[:, INDEX["pelvis"]]
    axes = _location_axes(plan, plan.root, pre[plan.root], rots)
    location = np.einsum("fji,fj->fi", axes, delta)   # axes are orthonormal: their transpose inverts them
    predicted = predicted + delta[:, None]
    got_dir, _ = _aim_dirs(predicted)
    aim_error = np.degrees(np.arccos(np.clip(np.sum(got_dir * want_dir, -1), -1, 1)))
    # Local rotations in each bone's own mode.
    bones, parts, modes, values, quats = [], [], [], [], []
    warnings = list(plan.warnings)
    for b, p in zip(plan.keyed, plan.parts):
        basis = np.swapaxes(pre[int(b)], -1, -2) @ keyed_rot[int(b)]
        q = continuous_quaternions(matrix_to_quaternion(basis))
        mode = arm.rotation_modes[b]
        if mode == "AXIS_ANGLE":
            warnings.append(f"bone '{arm.bones[b]}' uses axis-angle rotation; it is keyed as a quaternion")
            mode = "QUATERNION"
        bones.append(arm.bones[b])
        parts.append(PARTS[p])
        modes.append(mode)
        values.append(q if mode == "QUATERNION" else matrix_to_blender_euler(basis, mode))
        quats.append(q)
    rest_modes = ["QUATERNION" if arm.rotation_modes[b] in ("QUATERNION", "AXIS_ANGLE") else arm.rotation_modes[b]
                  for b in plan.rest_bones]
    return RigPose(bones=bones, parts=parts, rotation_modes=modes, rotations=values,
                   quaternions=np.stack(quats, axis=1), root=arm.bones[plan.root], location=location,
                   rest=[arm.bones[b] for b in plan.rest_bones], rest_modes=rest_modes,
                   properties=plan.properties, joints=arm.to_world(predicted), root_scale=float(scale),
                   aim_error=aim_error, warnings=warnings)


def forward_kinematics(pose: RigPose, binding: Binding) -> np.ndarray:
    """Where a RigPose's own keys put body24 on the armature (F, 24, 3) world space: Blender's pose-bone
    convention applied to the local rotations and root location, independently of how `solve` got them."""
    plan = _plan(binding)
    arm = binding.armature
    f = pose.location.shape[0]
    local = {arm.index[b]: quaternion_to_matrix(q) for b, q in zip(pose.bones, np.moveaxis(pose.quaternions, 1, 0))}
    heads, rots, _ = _fk(plan, local, f, local=True, root_location=pose.location)
    return arm.to_world(_fk_joints(plan, heads, rots))


# --- JSON entry points for the engine server ("pose for rig") ---------------------------------------------------

def bind_for_rig(description: dict, rig: str | None = None) -> dict:
    """Server helper: armature description -> the binding the add-on reads body24 with, plus what writing needs
    first (custom properties to set before the armature is described again for `pose_for_rig`)."""
    arm = Armature.from_dict(description)
    binding = bind(arm, rig)
    out = binding.to_dict()
    w = binding.rig.write
    out["properties"] = [{"bone": binding.resolve(b), "name": k, "value": v}
                         for b, vals in (w.properties.items() if w else []) for k, v in vals.items()]
    out["can_write"] = w is not None
    return out


def pose_for_rig(description: dict, joints, rig: str | None = None, root_scale: float | None = None) -> dict:
    """Server helper: armature description + body24 poses -> keys to write (RigPose.to_dict)."""
    arm = Armature.from_dict(description)
    return solve(arm, joints, rig=rig, root_scale=root_scale).to_dict()
