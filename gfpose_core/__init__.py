"""GFPose engine: a score-based prior of plausible 3D human poses (body24), importable without Blender.

The tree states the architecture, each layer importing only those above it in this list:
    body/     the body24 skeleton, rotations, temporal filters          (numpy, scipy)
    formats/  BVH and ASF/AMC files
    rigs/     rig map files, armatures, binding and the solve onto bones
    data.py   `load_take` and the training/test datasets
    prior/    the paper's per-frame score model, samplers, posterior mean, training
    motion/   the motion model over windows of frames, takes, contacts, training
    engine.py the facade every user calls (`Engine`)
    service/  the `gfpose` command line, the HTTP server, the demo
    bench/    `gfpose bench` (nothing above imports it)
"""
__version__ = "0.1.0"

__all__ = ["Engine", "Take", "load_take", "JOINT_NAMES", "PARENTS"]


def __getattr__(name):
    # Engine pulls in torch, load_take the file formats and rigs: both load on first use, so that importing the
    # engine loads no file format and `gfpose --help` stays fast.
    if name == "Engine":
        from gfpose_core.engine import Engine
        return Engine
    if name in ("JOINT_NAMES", "PARENTS"):       # numpy arrays: not needed to print `gfpose --help`
        from gfpose_core.body import skeleton
        return getattr(skeleton, name)
    if name in ("Take", "load_take"):
        from gfpose_core import data
        return getattr(data, name)
    raise AttributeError(name)
