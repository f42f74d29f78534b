"""How many CPU threads a sampling call gets."""
from __future__ import annotations

import contextlib

import torch

SMALL_BATCH = 32             # poses sampled on one CPU thread


@contextlib.contextmanager
def threads_for(batch: int, device: torch.device, small: int = SMALL_BATCH):
    """One CPU thread for a few poses: they are too small to share, and with another process on a core (Blender
    itself) a second thread stalls every small operation (the benchmark measured 10x slower on 2 cores)."""
    threads = torch.get_num_threads()
    if device.type == "cpu" and batch <= small and threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
