"""The sub-VP SDE (Song et al. 2021), as the GFPose paper uses it: beta from 0.1 to 20 over t in [0, 1]."""
from __future__ import annotations

import math

import torch


class SubVPSDE:
    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-5):
        self.beta_0, self.beta_1, self.T, self.eps = beta_min, beta_max, T, eps

    def beta(self, t):
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def _log_mean_coeff(self, t):
        return -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def sde(self, x, t):
        """Forward drift f(x, t) and diffusion g(t)."""
        beta = self.beta(t)
        discount = 1.0 - torch.exp(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t ** 2)
        return -0.5 * _col(beta, x) * x, torch.sqrt(beta * discount)

    def marginal_prob(self, x0, t):
        """Mean and std of p(x_t | x_0)."""
        lmc = self._log_mean_coeff(t)
        return _col(torch.exp(lmc), x0) * x0, 1.0 - torch.exp(2.0 * lmc)

    def alpha_sigma(self, t):
        lmc = self._log_mean_coeff(torch.as_tensor(t, dtype=torch.float64))
        return torch.exp(lmc), 1.0 - torch.exp(2.0 * lmc)

    def t_for_noise_ratio(self, ratio: float) -> float:
        """The t at which sigma(t)/alpha(t) equals `ratio` (an observation's noise, in model units).

        Closed form: sigma = 1 - alpha^2 on this SDE, so alpha solves alpha^2 + ratio * alpha - 1 = 0, and
        log alpha is a quadratic in t. Clipped to [eps, T]; samplers call it every step, so no bisection.
        """
        r = max(float(ratio), 0.0)
        log_alpha = math.log((math.sqrt(r * r + 4.0) - r) / 2.0)
        a, b = 0.25 * (self.beta_1 - self.beta_0), 0.5 * self.beta_0
        t = (-b + math.sqrt(b * b - 4.0 * a * log_alpha)) / (2.0 * a) if a > 0 else -log_alpha / b
        return min(max(t, self.eps), self.T)

    def noise_ratio(self, t) -> float:
        """sigma(t)/alpha(t): the noise level in units of the clean signal (Karras et al.'s sigma)."""
        alpha, sigma = self.alpha_sigma(float(t))
        return float(sigma / alpha)

    def prior_sampling(self, shape, generator=None, device="cpu"):
        return torch.randn(shape, generator=generator, device=device)

    def score_fn(self, noise_fn):
        """The one place a network's output becomes a score: both networks predict the noise eps added to x_0,
        and the score of p(x_t | x_0) is -eps / sigma(t)."""
        def score(x, t):
            return -noise_fn(x, t) / _col(self.marginal_prob(x, t)[1], x)

        return score

    def reverse(self, score_fn, probability_flow: bool = False):
        """Drift and diffusion of the reverse-time SDE (or of the probability-flow ODE: half the score term)."""
        sde = self

        def reverse_sde(x, t):
            drift, g = sde.sde(x, t)
            g2 = _col(g ** 2, x)
            score = score_fn(x, t)
            if probability_flow:
                return drift - 0.5 * g2 * score, torch.zeros_like(g)
            return drift - g2 * score, g

        return reverse_sde


def _col(v, like):
    """Broadcast a per-sample (B,) value against a (B, D) batch."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim)) if v.ndim else v
