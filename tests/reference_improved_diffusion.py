"""An independent numpy transcription of improved-diffusion's likelihood code (openai/improved-diffusion,
``gaussian_diffusion.py`` and ``losses.py``), float64, used as the golden reference for ddpm's NLL.

Line for line: ``GaussianDiffusion.__init__`` (posterior coefficients, the clipped log-variance with β̃₁ at
t = 0), ``p_mean_variance`` for FIXED_SMALL (σ² = β̃) and FIXED_LARGE (σ² = β with β̃₁ at t = 0) with an
ε-model and clip_denoised, ``_vb_terms_bpd``, ``_prior_bpd`` and ``losses.discretized_gaussian_log_likelihood``
with the tanh approximation of Φ (or, with ``exact_cdf``, scipy's normal CDF in its place).
"""
import numpy as np
from scipy.special import ndtr


class Reference:
    def __init__(self, betas: np.ndarray):
        self.betas = betas = np.asarray(betas, dtype=np.float64)
        self.T = len(betas)
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    def q_posterior(self, x0, x_t, t):
        mean = self.posterior_mean_coef1[t] * x0 + self.posterior_mean_coef2[t] * x_t
        return mean, self.posterior_log_variance_clipped[t]

    def p_mean_log_variance(self, eps, x_t, t, variance):
        if variance == "fixed_large":  # FIXED_LARGE
            log_variance = np.log(np.append(self.posterior_variance[1], self.betas[1:]))[t]
        else:  # FIXED_SMALL
            log_variance = self.posterior_log_variance_clipped[t]
        x0 = np.clip(self.sqrt_recip_alphas_cumprod[t] * x_t - self.sqrt_recipm1_alphas_cumprod[t] * eps, -1, 1)
        mean, _ = self.q_posterior(x0, x_t, t)
        return mean, log_variance

    def vb_term_bpd(self, x0, x_t, eps, t, variance, exact_cdf=False):
        """Bits/dim of one example: KL term at t > 0, decoder NLL at t = 0."""
        true_mean, true_log_variance = self.q_posterior(x0, x_t, t)
        mean, log_variance = self.p_mean_log_variance(eps, x_t, t, variance)
        if t == 0:
            return -np.mean(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_variance, exact_cdf)) / np.log(2.0)
        return np.mean(normal_kl(true_mean, true_log_variance, mean, log_variance)) / np.log(2.0)

    def prior_bpd(self, x0):
        t = self.T - 1
        mean = np.sqrt(self.alphas_cumprod[t]) * x0
        log_variance = np.log(1.0 - self.alphas_cumprod[t])
        return np.mean(normal_kl(mean, log_variance, 0.0, 0.0)) / np.log(2.0)


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + np.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * np.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * np.power(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales, exact_cdf=False):
    cdf = ndtr if exact_cdf else approx_standard_normal_cdf
    centered_x = x - means
    inv_stdv = np.exp(-log_scales)
    cdf_plus = cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
    log_one_minus_cdf_min = np.log(np.maximum(1.0 - cdf_min, 1e-12))
    cdf_delta = cdf_plus - cdf_min
    return np.where(x < -0.999, log_cdf_plus,
                    np.where(x > 0.999, log_one_minus_cdf_min, np.log(np.maximum(cdf_delta, 1e-12))))
