"""An armature as plain arrays: bones, parents, rest matrices (Blender's `bone.matrix_local`), constraints."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gfpose_core.body.rotations import EULER_ORDERS, _unit, axis_angle_matrix


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
