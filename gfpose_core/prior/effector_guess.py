"""The network's answer for posing from effectors (Engine.pose_from_effectors): the effector network's
(effector_net.py: told the character's bone lengths, no sampling); where the weights have none, the posterior-mean
network's guess refined by the score model over its last EFFECTOR_STEPS sampler steps (from REFINE_FROM_T). The
projection (effectors.on_body) then puts it on the character's bones.

Decided on validation poses on a Rigify rig's body (scripts/effector_rig_validation.py: CMU subjects 8 and 14 and
the Bandai validation clips, 300 poses each, the rig's rest pose given as the server gives it), unknown joints'
MPJPE mm, CMU | Bandai; Blender's IK 51.5 | 35.1. The posterior mean refined (before the effector network) 28.5 |
28.0. The effector network (6,000 steps, seed 1, as shipped) 22.6 | 25.7; trained 16,000 steps 23.0 | 26.3 (at
its step 5,000: 23.9 | 25.0: longer training fits CMU's people better and Bandai's worse); the two averaged 22.6 |
25.7; without the mirror average 0.3-0.7 mm worse. Half of the network's answer refined by the score model
(NET_REFINE_SHARE 0.5, 3 steps): 22.6 | 24.7, but 7.8 ms more per live pose (12.8 against 5.0 ms median here), which
put Auto Pose over its 50 ms median (54.5 ms against 41.5 ms in the bench), and neither reaches 0.7x Blender IK on
Bandai validation (0.70 / 0.73): not refined. With 1 or 2 refining steps CMU was worse (30.8, 22.7).

Before the effector network (the posterior mean; no mode pass): the former answer (a mode pass and the posterior
mean refined, half of each, 6 + 6 steps) 30.2 | 27.8; refining 2 / 3 / 5 steps 30.1 | 27.4, 28.5 | 28.0, 28.8 |
28.2.
"""
from __future__ import annotations

import numpy as np

from gfpose_core.body.skeleton import N_JOINTS, known_bone_lengths, restore
from gfpose_core.prior.effector_net import body_code
from gfpose_core.prior.effectors import effector_body, on_body

EFFECTOR_STEPS = 3
# With the effector network (effector_net.py): the share of its answer refined by the score model over the last
# EFFECTOR_STEPS sampler steps that is mixed into it (0: its answer as it is).
NET_REFINE_SHARE = 0.0


def effector_pose(engine, arr: np.ndarray, known: np.ndarray, lengths, rest, seed, callback, refine_from: float,
                  sampler: str) -> np.ndarray:
    """Engine.pose_from_effectors: the body (N, 24, 3) between the `known` joints of `arr`, on the character's body
    (`lengths`, else the `rest` pose's, else what the known joints measure and the reference body at their scale):
    effector_guess's answer put on it (effectors.on_body)."""
    masked = np.where(known[..., None], arr, np.nan)
    canonical = engine._canonical(masked)
    fallback = known_bone_lengths(masked, engine.space.reference_bones * canonical[1].scale[:, None])
    lengths, rest = effector_body(lengths, rest, fallback)
    out = effector_guess(engine, arr, known, lengths, seed, callback, refine_from, sampler, canonical)
    return on_body(out, known, lengths, rest).joints


def effector_guess(engine, arr: np.ndarray, known: np.ndarray, lengths: np.ndarray, seed, callback,
                   refine_from: float, sampler: str, canonical=None) -> np.ndarray:
    """The answer (N, 24, 3), known joints pasted, for poses `arr` (N, 24, 3) with the joints `known` (N, 24) given,
    on a body of bone `lengths` (N, 23): the effector network's where the weights have one, else the posterior mean
    noised to time `refine_from` and sampled back with `sampler` (the engine's REFINE_FROM_T and completion
    sampler), else engine.complete's best guess. `canonical`: engine._canonical of the known joints, if found."""
    from gfpose_core.threads import threads_for
    if engine.posterior_mean is None and engine.effector_mean is None:
        out, _, _ = engine._answer(arr, known, 1, seed, None, None, callback, EFFECTOR_STEPS)
        return out[:, 0]
    canon, frame = canonical or engine._canonical(np.where(known[..., None], arr, np.nan))
    obs = np.nan_to_num(engine.space.to_model(canon))
    cmask = engine._coord_mask(known)
    share = 1.0
    with threads_for(len(obs), engine.device):     # one pose on two threads beside Blender stalls (threads.py)
        if engine.effector_mean is not None:
            mean = engine.effector_mean(obs, cmask, body_code(lengths, engine.space.reference_bones, frame.scale))
            share = NET_REFINE_SHARE
        else:
            mean = engine.posterior_mean(obs, cmask)
    x = mean
    if share > 0:
        alpha, _ = engine.sde.alpha_sigma(refine_from)
        refined = engine._run(obs, cmask, False, sampler=sampler, steps=EFFECTOR_STEPS,
                              generator=engine._generator(seed), t_start=refine_from, x_start=float(alpha) * mean,
                              callback=callback)
        x = (1 - share) * mean + share * refined
    elif callback:
        callback(1, 1)      # where a superseded request stops (service/live.py) before the projection
    out = restore(engine.space.from_model(x).reshape(len(arr), N_JOINTS, 3), frame)
    return np.where(known[..., None], arr, out)
