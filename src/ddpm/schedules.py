"""Noise schedules of the forward process q(x_t | x_0) and everything derived from them.

Notation (Ho et al. 2020, "DDPM"): timesteps are indexed t = 0 … T−1 (the paper's t = 1 … T),
β_t is the variance added at step t, α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s, so that

    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)                                    (DDPM eq. 4)
    q(x_{t−1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)                           (DDPM eq. 6–7)
    μ̃_t = β_t √ᾱ_{t−1} / (1 − ᾱ_t) · x_0 + (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t) · x_t
    β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t,      with ᾱ_{−1} := 1.

Every quantity is computed once in float64 (cancellation in 1 − ᾱ near t = 0 costs float32 most of
its digits) and cast to the data's dtype only when it is gathered for a batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from .errors import DdpmError

ScheduleName = Literal["linear", "cosine", "sigmoid"]
SCHEDULE_NAMES: tuple[str, ...] = ("linear", "cosine", "sigmoid")
Spacing = Literal["uniform", "quadratic", "logsnr"]
SPACINGS: tuple[str, ...] = ("uniform", "quadratic", "logsnr")
FixedVariance = Literal["fixed_small", "fixed_large"]  # the fixed reverse variances σ_t² = β̃_t, β_t of DDPM §3.2
FIXED_VARIANCES: tuple[str, ...] = ("fixed_small", "fixed_large")
MAX_TIMESTEPS = 10_000
MAX_BETA = 0.999  # improved DDPM clips β here so that no step destroys the signal outright
MIN_LOG_SNR = -5.1  # few-step samplers start where λ ≥ this (the official DPM-Solver's ``clipped_lambda``)


def linear_betas(num_timesteps: int) -> torch.Tensor:
    """DDPM's linear schedule: β from 1e-4 to 0.02 over 1000 steps.

    For other T both ends are scaled by 1000/T (improved-diffusion's ``get_named_beta_schedule``)
    so that ᾱ_{T−1} stays near zero; below T ≈ 20 the scaled end exceeds 1 and is clipped at 0.999.
    """
    scale = 1000.0 / num_timesteps
    betas = torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)
    return betas.clamp(max=MAX_BETA)


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Improved DDPM eq. 17: ᾱ(u) = f(u)/f(0), f(u) = cos²((u + s)/(1 + s) · π/2), u = t/T ∈ [0, 1]."""
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f / f0


def cosine_betas(num_timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021: β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), 0.999), so ᾱ_t = ᾱ((t+1)/T)."""
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = cosine_alpha_bar(u, s)
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)


def sigmoid_alpha_bar(u: torch.Tensor, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """Unnormalised ᾱ(u) of the sigmoid schedule (Jabri et al. 2022, arXiv:2212.11972, Fig. 8).

    Same formula as ``sigmoid_beta_schedule`` in lucidrains/denoising-diffusion-pytorch:
    ᾱ(u) = (σ(end/τ) − σ((u (end − start) + start)/τ)) / (σ(end/τ) − σ(start/τ)).
    """
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)


def sigmoid_betas(num_timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), 0.999) for the sigmoid ᾱ(u) (start −3, end 3, τ = 1)."""
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = sigmoid_alpha_bar(u, start, end, tau)
    alpha_bar = alpha_bar / alpha_bar[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=0.0, max=MAX_BETA)


_BETA_BUILDERS = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}


def spaced_timesteps(
    num_timesteps: int, steps: int, spacing: Spacing = "uniform", alphas_cumprod: torch.Tensor | None = None,
    last: int | None = None,
) -> list[int]:
    """Choose ``steps`` of the original timesteps 0 … ``last`` (default T−1), in increasing order.

    Every spacing keeps both ends: t = ``last`` (where sampling starts from pure noise) and t = 0.
    - ``uniform``: round(linspace(0, last, S)) (the "trailing" choice that Lin et al. 2023 recommend over
      DDIM's range(0, T, T//S)).
    - ``quadratic``: ⌊linspace(0, √last, S)²⌋, the DDIM paper's CIFAR-10 spacing, denser at low noise. The
      paper's code ends at √(0.8 T)², i.e. starts sampling at t ≈ 0.8 T, where x_T ~ N(0, I) is far from
      q(x_t) on cosine (√ᾱ = 0.31 there, 0.04 on linear); here it ends at ``last`` like the others.
    - ``logsnr``: the steps nearest to a uniform grid in λ = log(α/σ) = ½ log(ᾱ/(1−ᾱ)) from t = last to
      t = 0, the spacing DPM-Solver recommends; needs ``alphas_cumprod``.
    Where rounding would repeat a step, steps are pushed apart so that exactly S distinct ones remain.
    S = 1 keeps only t = last.
    """
    _check_steps(num_timesteps, steps)
    if spacing not in SPACINGS:
        raise DdpmError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    last = num_timesteps - 1 if last is None else last
    if isinstance(last, bool) or not isinstance(last, int) or not steps - 1 <= last <= num_timesteps - 1:
        raise DdpmError(f"the last timestep must be an integer in {steps - 1}..{num_timesteps - 1} for {steps} steps, got {last!r}")
    if steps == 1:
        return [last]
    if spacing == "uniform":
        wanted = [int(round(i * last / (steps - 1))) for i in range(steps)]
    elif spacing == "quadratic":
        wanted = [int((i * math.sqrt(last) / (steps - 1)) ** 2) for i in range(steps)]
    else:
        if alphas_cumprod is None:
            raise DdpmError("spacing='logsnr' needs the schedule's alphas_cumprod")
        lam = log_snr(alphas_cumprod)[: last + 1]  # decreasing in t
        grid = torch.linspace(lam[0].item(), lam[-1].item(), steps, dtype=torch.float64)
        wanted = [int(torch.argmin((lam - g).abs())) for g in grid.tolist()]
    return _distinct(wanted, last)


def log_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """λ_t = log(α_t/σ_t) = ½ log(ᾱ_t / (1 − ᾱ_t)), float64 like its input [T], decreasing in t."""
    return 0.5 * torch.log(alphas_cumprod / (1 - alphas_cumprod))


def sampling_start(alphas_cumprod: torch.Tensor, steps: int, min_log_snr: float = MIN_LOG_SNR) -> int:
    """The timestep a few-step sampler starts from: the highest t with λ_t ≥ ``min_log_snr``, or higher when
    ``steps`` distinct timesteps do not fit below it (``steps`` − 1 at least).

    Why: the 0.999 clip on β leaves the cosine schedule's last steps degenerate (T = 1000: ᾱ_999 ≈ 2.4e-9,
    λ falls from −6.5 at t = 998 to −9.9 at t = 999). There x̂₀ = (x − σ ε̂)/α multiplies an error in ε̂ by
    1/α ≈ 2·10⁴, and a grid uniform in λ spends a quarter of its steps on the last five timesteps. The official
    DPM-Solver truncates discrete schedules at λ = −5.1 (``numerical_clip_alpha``); the linear schedule
    (λ_999 = −5.06) keeps all of its steps, cosine with T = 1000 starts at t = 995 (√ᾱ = 0.006).
    """
    lam = log_snr(alphas_cumprod)
    keep = int((lam >= min_log_snr).sum()) - 1  # λ decreases in t: the first ``keep`` + 1 steps qualify
    return min(max(keep, steps - 1, 0), len(lam) - 1)


def _distinct(wanted: list[int], last: int) -> list[int]:
    """Nearest strictly increasing sequence in 0..last ending at ``last`` (pushed up, then down from the end)."""
    out: list[int] = []
    for t in wanted:
        out.append(max(t, out[-1] + 1) if out else max(t, 0))
    out[-1] = last
    for k in range(len(out) - 2, -1, -1):
        out[k] = min(out[k], out[k + 1] - 1)
    return out


def _check_steps(num_timesteps: int, steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise DdpmError(f"steps must be an integer in 1..{num_timesteps} (the schedule's T), got {steps!r}")


def _check_num_timesteps(num_timesteps: int) -> None:
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or not 1 <= num_timesteps <= MAX_TIMESTEPS:
        raise DdpmError(f"num_timesteps must be an integer in 1..{MAX_TIMESTEPS}, got {num_timesteps!r}")


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete forward process with all its derived coefficients, each a float64 tensor of shape [T].

    ``timesteps`` holds, for each of the T steps of this schedule, its index in the ORIGINAL schedule:
    arange(T) for a schedule built from betas, the kept indices for a respaced one. Models are always
    called with these original indices.
    """

    betas: torch.Tensor
    timesteps: torch.Tensor  # int64 [T]
    name: str = "custom"

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas)
        if betas.ndim != 1 or len(betas) < 1 or len(betas) > MAX_TIMESTEPS:
            raise DdpmError(f"betas must be a 1-D tensor with 1..{MAX_TIMESTEPS} entries, got shape {tuple(betas.shape)}")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas > 1).any():
            raise DdpmError("betas must be finite and in (0, 1]")
        betas = betas.to(torch.float64)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "timesteps", torch.as_tensor(self.timesteps, dtype=torch.long, device=betas.device))
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        one = torch.ones(1, dtype=torch.float64, device=betas.device)
        alphas_cumprod_prev = torch.cat([one, alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # β̃_0 = 0, so its log is -inf: like improved-diffusion, the clipped log repeats β̃_1 at t = 0 (only the
        # variance of the *last* sampling step, where no noise is added, and the decoder L_0 see it).
        # The one home of this rule: ``fixed_log_variance`` uses the same value at t = 0 for σ² = β too.
        first = posterior_variance[1:2] if len(betas) > 1 else betas[:1]
        object.__setattr__(self, "_first_variance", first)
        derived = dict(
            alphas=alphas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1.0 - alphas_cumprod).sqrt(),
            posterior_variance=posterior_variance,
            posterior_log_variance_clipped=torch.log(torch.cat([first, posterior_variance[1:]])),
            posterior_mean_coef1=betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        )
        for key, value in derived.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_device_cache", {})

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_betas(cls, betas: torch.Tensor | Sequence[float], name: str = "custom") -> "NoiseSchedule":
        betas = torch.as_tensor(betas, dtype=torch.float64)
        return cls(betas=betas, timesteps=torch.arange(len(betas)), name=name)

    @classmethod
    def from_name(cls, name: ScheduleName, num_timesteps: int = 1000) -> "NoiseSchedule":
        """Build the ``linear``, ``cosine`` or ``sigmoid`` schedule with T = ``num_timesteps`` (1 ≤ T ≤ 10 000)."""
        if name not in _BETA_BUILDERS:
            raise DdpmError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULE_NAMES)}")
        _check_num_timesteps(num_timesteps)
        return cls.from_betas(_BETA_BUILDERS[name](num_timesteps), name=name)

    def respace(self, timesteps: Sequence[int] | torch.Tensor) -> "NoiseSchedule":
        """The schedule restricted to the given (increasing) timesteps, ᾱ preserved at each kept step.

        Improved DDPM §4: β'_i = 1 − ᾱ_{k_i} / ᾱ_{k_{i−1}} (ᾱ_{k_{−1}} := 1), so the respaced process has
        exactly the original marginals q(x_{k_i} | x_0) and its own posteriors between kept steps.
        ``timesteps`` index THIS schedule; the result remembers their original indices.
        """
        keep = torch.as_tensor(list(timesteps) if not torch.is_tensor(timesteps) else timesteps, dtype=torch.long)
        if keep.ndim != 1 or len(keep) < 1:
            raise DdpmError("timesteps to keep must be a non-empty 1-D sequence")
        if (keep < 0).any() or (keep >= self.num_timesteps).any() or (keep[1:] <= keep[:-1]).any():
            raise DdpmError(f"timesteps to keep must be strictly increasing integers in 0..{self.num_timesteps - 1}")
        if len(keep) == self.num_timesteps:  # every step kept: this very schedule (bit for bit)
            return self
        keep = keep.to(self.betas.device)
        alpha_bar = self.alphas_cumprod[keep]
        prev = torch.cat([torch.ones(1, dtype=torch.float64, device=alpha_bar.device), alpha_bar[:-1]])
        return NoiseSchedule(betas=1.0 - alpha_bar / prev, timesteps=self.timesteps[keep], name=self.name)

    def respaced(self, steps: int, spacing: Spacing = "uniform") -> "NoiseSchedule":
        """Shorthand for ``respace(spaced_timesteps(T, steps, spacing, ᾱ))``; returns self when steps == T."""
        if spacing not in SPACINGS:
            raise DdpmError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
        if steps == self.num_timesteps:
            _check_steps(self.num_timesteps, steps)
            return self
        return self.respace(spaced_timesteps(self.num_timesteps, steps, spacing, self.alphas_cumprod.cpu()))

    # -- access ---------------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def __len__(self) -> int:
        return self.num_timesteps

    def __repr__(self) -> str:
        return f"NoiseSchedule(name={self.name!r}, T={self.num_timesteps}, original_T={int(self.timesteps[-1]) + 1})"

    def to(self, device: torch.device | str) -> "NoiseSchedule":
        """This schedule with every tensor on ``device`` (cached: the copy is made once per device).

        MPS has no float64, so there the coefficients are kept in float32.
        """
        device = torch.device(device)
        if device.type == self.betas.device.type and (device.index is None or device == self.betas.device):
            return self
        key = str(device)
        if key not in self._device_cache:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            moved = object.__new__(NoiseSchedule)
            for field_name, value in vars(self).items():
                if torch.is_tensor(value):
                    value = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
                object.__setattr__(moved, field_name, value)
            object.__setattr__(moved, "_device_cache", {})
            self._device_cache[key] = moved
        return self._device_cache[key]

    def gather(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Coefficient ``name`` at step indices ``t`` [B], shaped [B, 1, …, 1] to broadcast over ``like``."""
        values = getattr(self, name)[t.to(self.betas.device)].to(device=like.device, dtype=like.dtype)
        return values.reshape(len(t), *([1] * (like.ndim - 1)))

    # -- forward process ------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (DDPM eq. 4); x0, noise [B, …], t [B]."""
        return self.gather("sqrt_alphas_cumprod", t, x0) * x0 + self.gather("sqrt_one_minus_alphas_cumprod", t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean [B, …], variance and clipped log-variance [B, 1, …] of q(x_{t−1} | x_t, x_0) (DDPM eq. 6–7)."""
        mean = self.gather("posterior_mean_coef1", t, x_t) * x0 + self.gather("posterior_mean_coef2", t, x_t) * x_t
        return mean, self.gather("posterior_variance", t, x_t), self.gather("posterior_log_variance_clipped", t, x_t)

    def fixed_log_variance(self, variance: FixedVariance) -> torch.Tensor:
        """log σ_t², float64 [T], of the fixed reverse variances of DDPM §3.2: σ² = β̃_t (``"fixed_small"``) or
        β_t (``"fixed_large"``), with β̃_1 at t = 0 for both (improved-diffusion's choice: β̃_0 = 0 has no log)."""
        if variance == "fixed_small":
            return self.posterior_log_variance_clipped
        if variance == "fixed_large":
            return torch.log(torch.cat([self._first_variance, self.betas[1:]]))
        raise DdpmError(f"unknown fixed variance {variance!r}; expected one of {', '.join(FIXED_VARIANCES)}")

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t), float64 [T]."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)

    def log_snr(self) -> torch.Tensor:
        """λ_t = log(α_t/σ_t) = ½ log SNR_t, float64 [T]."""
        return log_snr(self.alphas_cumprod)
