"""Owns the diffusion process of the generator: the cosine noise schedule (Nichol & Dhariwal
2021), the forward process ``q_sample``, the training loss (masked MSE on the predicted clean
motion x0, as MDM trains), and DDIM sampling (Song et al. 2021) from x0 predictions.

The model predicts x0 (not the noise), as in MDM: the denoiser is any callable
``predict_x0(x_t [B, T, F] float32, t [B] int64) -> x0 [B, T, F]``. Every tensor is float32 and
lives on the caller's device.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["cosine_alpha_bar", "cosine_betas", "GaussianDiffusion", "ddim_timesteps", "masked_mse"]

#: Nichol & Dhariwal's offset s and their cap on beta_t.
COSINE_OFFSET = 0.008
MAX_BETA = 0.999


def cosine_alpha_bar(t: torch.Tensor | float, num_steps: int, s: float = COSINE_OFFSET) -> torch.Tensor:
    """The closed form f(t) / f(0), f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2, of the
    cosine schedule at (possibly fractional) times ``t`` in [0, T]; float64 tensor of t's shape."""
    t = torch.as_tensor(t, dtype=torch.float64)
    f = torch.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f / f0


def cosine_betas(num_steps: int) -> torch.Tensor:
    """beta_t = min(1 - abar(t + 1) / abar(t), 0.999) for t = 0 .. T-1: float64 [T]."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"the number of diffusion steps must be a positive integer, got {num_steps!r}")
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    abar = cosine_alpha_bar(t, num_steps)
    return (1 - abar[1:] / abar[:-1]).clamp(max=MAX_BETA)


def ddim_timesteps(num_steps: int, sample_steps: int) -> torch.Tensor:
    """The ``sample_steps`` timesteps DDIM visits, descending from T-1 to 0, evenly spaced
    (int64 [S]). Raises ValueError unless 1 <= sample_steps <= num_steps."""
    if isinstance(sample_steps, bool) or not isinstance(sample_steps, int) or not 1 <= sample_steps <= num_steps:
        raise ValueError(f"sampling steps must be an integer in [1, {num_steps}] (the model's diffusion "
                         f"steps), got {sample_steps!r}")
    steps = torch.linspace(num_steps - 1, 0, sample_steps, dtype=torch.float64).round().long()
    return torch.unique_consecutive(steps)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid frames only: ``prediction``, ``target`` [B, T, F],
    ``mask`` [B, T] bool (True = a real frame). Padded frames contribute nothing; each valid
    frame-feature counts once (a long motion weighs more than a short one, as in MDM). Scalar."""
    if prediction.shape != target.shape or prediction.ndim != 3 or mask.shape != prediction.shape[:2]:
        raise ValueError(f"masked_mse: expected prediction and target [B, T, F] and mask [B, T], got "
                         f"{tuple(prediction.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}")
    weight = mask.to(prediction.dtype).unsqueeze(-1)
    squared = (prediction.float() - target.float()) ** 2 * weight
    count = weight.sum() * prediction.shape[-1]
    return squared.sum() / count.clamp_min(1.0)


class GaussianDiffusion:
    """A DDPM forward process with ``num_steps`` steps and the cosine schedule; DDIM sampling.

    Attributes: ``betas``, ``alpha_bar`` (float64 [T]; ``alpha_bar[t]`` = prod_{i <= t} (1 - beta_i),
    the signal fraction of x_t)."""

    def __init__(self, num_steps: int = 1000):
        self.num_steps = int(num_steps)
        self.betas = cosine_betas(num_steps)
        self.alpha_bar = torch.cumprod(1 - self.betas, dim=0)

    def _coef(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def _check_t(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32) or t.shape != (batch,):
            raise ValueError(f"timesteps must be an integer tensor [B={batch}], got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if bool((t < 0).any()) or bool((t >= self.num_steps).any()):
            raise ValueError(f"timesteps must lie in [0, {self.num_steps}), got {t.min().item()}..{t.max().item()}")
        return t.long()

    def sample_timesteps(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform training timesteps: int64 [batch] in [0, T)."""
        return torch.randint(0, self.num_steps, (batch,), device=device, generator=generator)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; x0 [B, ...] float, t int64 [B]."""
        t = self._check_t(t, x0.shape[0])
        noise = torch.randn_like(x0) if noise is None else noise
        if noise.shape != x0.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, x0 {tuple(x0.shape)}")
        return self._coef(self.alpha_bar.sqrt(), t, x0) * x0 + self._coef((1 - self.alpha_bar).sqrt(), t, x0) * noise

    def training_loss(self, predict_x0: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
                      mask: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The DDPM objective on x0: draw t (uniform) and noise, form x_t, return
        ``masked_mse(predict_x0(x_t, t), x0, mask)``. x0 [B, T, F] float, mask [B, T] bool."""
        if t is None:
            t = self.sample_timesteps(x0.shape[0], x0.device)
        x_t = self.q_sample(x0, t, noise)
        return masked_mse(predict_x0(x_t, t), x0, mask)

    @torch.no_grad()
    def ddim_sample(self, predict_x0: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple,
                    steps: int = 50, eta: float = 0.0, generator: torch.Generator | None = None,
                    device=None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """DDIM from pure noise x_{T-1} ~ N(0, I) of ``shape`` [B, T, F] through ``steps`` evenly
        spaced timesteps, each step: x0 = predict_x0(x_t, t), eps = (x_t - sqrt(abar_t) x0) /
        sqrt(1 - abar_t), x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev); the last step
        (abar_prev = 1) returns its x0 prediction. ``eta`` = 0: deterministic given the start noise.
        Returns float32 [B, T, F]."""
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
        timesteps = ddim_timesteps(self.num_steps, steps)
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=device or "cpu", dtype=torch.float32)
        x = noise.to(device) if device is not None else noise
        batch = x.shape[0]
        abar = self.alpha_bar
        for i, step in enumerate(timesteps.tolist()):
            t = torch.full((batch,), step, dtype=torch.int64, device=x.device)
            x0 = predict_x0(x, t).float()
            a_t = float(abar[step])
            a_prev = float(abar[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
            if a_prev >= 1.0:
                x = x0
                break
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
            sigma = float(eta) * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=generator, device=generator.device if generator
                                            is not None else x.device, dtype=x.dtype).to(x.device)
        return x
