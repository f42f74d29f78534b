"""GFPose engine: a score-based prior of plausible 3D human poses (body24), importable without Blender."""
__version__ = "0.1.0"

from .data import Take, load_take
from .skeleton import JOINT_NAMES, PARENTS

__all__ = ["Engine", "Take", "load_take", "JOINT_NAMES", "PARENTS"]


def __getattr__(name):
    # Engine pulls in torch; importing it lazily keeps `load_take` and the skeleton cheap to import.
    if name == "Engine":
        from .engine import Engine
        return Engine
    raise AttributeError(name)
