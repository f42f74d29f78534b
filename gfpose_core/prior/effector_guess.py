"""The network's answer for posing from effectors (Engine.pose_from_effectors): the posterior-mean network's guess,
refined by the score model over its last EFFECTOR_STEPS sampler steps (from REFINE_FROM_T), with no separate pass
for the score model's mode. The projection (effectors.hold_lengths) then puts it on the character's bones.

Why no mode pass: decided on validation poses on a Rigify rig's body (scripts/effector_rig_validation.py: CMU
subjects 8 and 14 and the Bandai validation clips, 300 poses each, the rig's rest pose given as the server gives
it). Unknown joints' MPJPE mm / elbow angle error deg, CMU | Bandai. Put on the body as shipped (effectors.on_body):
the former answer (a mode pass and the posterior mean refined, half of each, 6 + 6 steps) 30.2 / 10.8 | 27.8 /
10.5; this with 2 / 3 / 5 refining steps 30.1 / 10.1 | 27.4 / 10.3, 28.5 / 9.7 | 28.0 / 10.6, 28.8 / 9.9 | 28.2 /
10.5. Held only (hold_lengths): the former 35.5 / 12.3 | 31.8 / 8.9, this (3 steps) 32.8 / 12.8 | 31.5 / 9.1.
Blender's IK on the same poses: 51.5 / 23.2 | 35.1 / 9.2. On the rig's former collar reading, held only: the former
answer 41.6 / 12.1 | 36.6 / 11.9, none of the mode mixed in 39.7 / 13.2 | 36.1 / 12.0, the mode alone 43.9 / 14.0
| 38.3 / 12.9, the posterior mean unrefined 49.8 / 15.4 | 43.4 / 11.8, this 39.2 / 12.8 | 36.2 / 12.0. A quarter
of the former answer's network evaluations: one pose 29.5 -> 13.8 ms median here (2-core CPU beside other work).
"""
from __future__ import annotations

import numpy as np

from gfpose_core.body.skeleton import N_JOINTS, restore

EFFECTOR_STEPS = 3


def effector_guess(engine, arr: np.ndarray, known: np.ndarray, seed, callback, refine_from: float, sampler: str):
    """(answer (N, 24, 3) with the known joints pasted, the masked input, its canonical frame) for poses `arr`
    (N, 24, 3) with the joints `known` (N, 24) given: the posterior mean noised to time `refine_from` and sampled back
    with `sampler` (the engine's REFINE_FROM_T and completion sampler); engine.complete's best guess where the
    weights have no posterior-mean network."""
    from gfpose_core.threads import threads_for
    if engine.posterior_mean is None:
        out, masked, frame = engine._answer(arr, known, 1, seed, None, None, callback, 0.0, EFFECTOR_STEPS)
        return out[:, 0], masked, frame
    masked = np.where(known[..., None], arr, np.nan)
    canon, frame = engine._canonical(masked)
    obs = np.nan_to_num(engine.space.to_model(canon))
    cmask = engine._coord_mask(known)
    with threads_for(len(obs), engine.device):     # one pose on two threads beside Blender stalls (threads.py)
        mean = engine.posterior_mean(obs, cmask)
    alpha, _ = engine.sde.alpha_sigma(refine_from)
    x = engine._run(obs, cmask, False, sampler=sampler, steps=EFFECTOR_STEPS, generator=engine._generator(seed),
                    t_start=refine_from, x_start=float(alpha) * mean,
                    callback=callback)
    out = restore(engine.space.from_model(x).reshape(len(arr), N_JOINTS, 3), frame)
    return np.where(known[..., None], arr, out), masked, frame
