"""Reverse-time samplers, one signature for all (as k-diffusion writes them):

    sampler(score_fn, x, ts, sde, *, generator=None, project=None, callback=None) -> x

`score_fn(x, t)` gives the score at a batch of times; `ts` runs from the start time down to the end time;
`project(x, t)` re-imposes what is known after every step (imputation); `callback(i, n)` reports progress.
"""
from __future__ import annotations

import torch

from gfpose_core.prior.sde import SubVPSDE


def time_grid(steps: int, t_start: float = 1.0, t_end: float = 1e-3, rho: float = 1.0, device="cpu") -> torch.Tensor:
    """`steps`+1 times from t_start to t_end; rho > 1 spends more steps near t_end, where detail forms."""
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64, device=device)
    a, b = t_start ** (1 / rho), t_end ** (1 / rho)
    return ((a + u * (b - a)) ** rho).float()


def _batch_t(t, x):
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)


def _noise(x, generator):
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def euler_maruyama(score_fn, x, ts, sde: SubVPSDE, *, generator=None, project=None, callback=None):
    """The paper's sampler: Euler-Maruyama on the reverse SDE, no corrector (the last step adds no noise)."""
    reverse = sde.reverse(score_fn)
    n = len(ts) - 1
    for i in range(n):
        t, h = _batch_t(ts[i], x), float(ts[i] - ts[i + 1])
        drift, g = reverse(x, t)
        x = x - drift * h
        if i < n - 1:
            x = x + g[:, None] * (h ** 0.5) * _noise(x, generator)
        x = project(x, ts[i + 1]) if project else x
        callback and callback(i + 1, n)
    return x


def mode_seeking(score_fn, x, ts, sde: SubVPSDE, *, generator=None, project=None, callback=None):
    """Deterministic reverse drift with the full g^2 * score: climbs to a likely pose (docs/findings.md, 1).

    Best for one completion; it collapses free generation, so it is never used for that.
    """
    reverse = sde.reverse(score_fn)
    n = len(ts) - 1
    for i in range(n):
        drift, _ = reverse(x, _batch_t(ts[i], x))
        x = x - drift * float(ts[i] - ts[i + 1])
        x = project(x, ts[i + 1]) if project else x
        callback and callback(i + 1, n)
    return x


def heun_ode(score_fn, x, ts, sde: SubVPSDE, *, generator=None, project=None, callback=None):
    """Heun's second-order method on the probability-flow ODE (1/2 g^2 * score): deterministic, true samples."""
    flow = sde.reverse(score_fn, probability_flow=True)
    n = len(ts) - 1
    for i in range(n):
        h = float(ts[i] - ts[i + 1])
        d1, _ = flow(x, _batch_t(ts[i], x))
        x_euler = x - d1 * h
        d2, _ = flow(x_euler, _batch_t(ts[i + 1], x))
        x = x - 0.5 * (d1 + d2) * h
        x = project(x, ts[i + 1]) if project else x
        callback and callback(i + 1, n)
    return x


CHURN = 0.1        # k-diffusion's gamma per step: the noise level is raised by this fraction before each step


def churn_heun(score_fn, x, ts, sde: SubVPSDE, *, generator=None, project=None, callback=None, churn=CHURN):
    """Stochastic sampler of Karras et al. 2022 (alg. 2): raise the noise a little, then one Heun ODE step down.

    The churn raises the noise level s = sigma / alpha to s * (1 + churn) by rescaling x and topping up fresh
    noise so that x follows the marginal at the raised time exactly; the Heun step on the probability-flow ODE
    (exact for the marginals up to its own second-order error) then brings it down to the next time. The fresh
    noise corrects earlier steps' errors and makes draws from one start differ. The old stochastic Heun averaged
    two reverse-SDE drifts around one noise kick and spread ~14% too wide at 20 steps (tests/test_samplers.py).
    No churn past t = T, none on the last step, so the end is no noisier than ts[-1]. churn 0.1 was chosen on the
    Gaussian test: 0.25 widened thin dimensions by 4-9% at 20 steps, 0 is the plain ODE.
    """
    flow = sde.reverse(score_fn, probability_flow=True)
    n = len(ts) - 1
    s_max = sde.noise_ratio(sde.T)
    for i in range(n):
        t_i, t_next = float(ts[i]), float(ts[i + 1])
        s_i = sde.noise_ratio(t_i)
        s_hat = s_i if i == n - 1 else min(s_i * (1.0 + churn), s_max)
        t_hat = t_i
        if s_hat > s_i:
            # Raise x from t_i to t_hat so its marginal is exactly p_t_hat: rescale the signal, top up the noise.
            t_hat = sde.t_for_noise_ratio(s_hat)
            a_i, a_hat = (float(v) for v in (sde.alpha_sigma(t_i)[0], sde.alpha_sigma(t_hat)[0]))
            x = (a_hat / a_i) * x + a_hat * (s_hat ** 2 - s_i ** 2) ** 0.5 * _noise(x, generator)
        h = t_hat - t_next
        d1, _ = flow(x, _batch_t(t_hat, x))
        x_euler = x - d1 * h
        d2, _ = flow(x_euler, _batch_t(t_next, x))
        x = x - 0.5 * (d1 + d2) * h
        x = project(x, ts[i + 1]) if project else x
        callback and callback(i + 1, n)
    return x


def posterior_mean(score_fn, x, ts, sde: SubVPSDE, *, generator=None, project=None, callback=None):
    """Tweedie's formula: E[x_0 | x_t] = (x_t + sigma^2 * score) / alpha in one evaluation at the start time.

    Not a sample but the least-squares estimate of the clean signal, what a denoiser that is scored by mean error
    wants (a sample adds the posterior's own spread to the error). Only for short starts (denoising): from
    t = 1 it gives the mean pose. The step count is ignored.
    """
    alpha, sigma = sde.alpha_sigma(float(ts[0]))
    x = (x + float(sigma) ** 2 * score_fn(x, _batch_t(ts[0], x))) / float(alpha)
    x = project(x, ts[-1]) if project else x
    callback and callback(1, 1)
    return x


SAMPLERS = {"em": euler_maruyama, "mode": mode_seeking, "heun": heun_ode, "sde_heun": churn_heun,
            "tweedie": posterior_mean}


def sample_known(score_fn, obs, coord_mask, sde: SubVPSDE, *, sampler: str, steps: int, generator,
                 t_start: float = 1.0, x_start=None, impute: bool = True, paste_noise: bool | None = None,
                 callback=None):
    """Sample x given what is known: `obs` (B, D) where `coord_mask` (B, D) is 1, with the named sampler.

    The score function carries the condition (guidance); imputation also pastes the known values, noised to the
    current time, after every step (exactly at the end). Deterministic samplers paste without noise so they stay
    deterministic. paste_noise overrides that (a model trained on noise-free known values wants False).
    x_start: where to start at t_start (default: the prior).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler '{sampler}' (known: {', '.join(SAMPLERS)})")
    noisy_paste = sampler not in ("mode", "heun") if paste_noise is None else paste_noise
    known = coord_mask > 0
    use_impute = impute and bool(known.any())

    def project(x, t):
        alpha, sigma = sde.alpha_sigma(float(t))
        pasted = float(alpha) * obs
        if noisy_paste:
            pasted = pasted + float(sigma) * torch.randn(x.shape, generator=generator, device=x.device)
        return torch.where(known, pasted, x)

    ts = time_grid(steps, t_start=t_start, device=obs.device)
    x = sde.prior_sampling(obs.shape, generator=generator, device=obs.device) if x_start is None else x_start
    if use_impute:
        x = project(x, ts[0])
    x = SAMPLERS[sampler](score_fn, x, ts, sde, generator=generator, project=project if use_impute else None,
                          callback=callback)
    return torch.where(known, obs, x) if use_impute else x
