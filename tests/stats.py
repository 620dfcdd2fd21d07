"""Monte-Carlo tolerances derived from the sample size.

For N i.i.d. draws of a Gaussian with variance v, the sample mean has standard error √(v/N) and the
unbiased sample variance has standard error v·√(2/(N−1)). A z-score bound of Z = 5 per statistic gives
a false-alarm rate below 6e-7 each, so a test that checks a few dozen statistics fails by chance less
than once in 10⁴ runs (and never with the fixed seeds used here).
"""
import torch

Z = 5.0


def assert_gaussian_moments(samples: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, *, bias_var: float = 0.0, bias_mean: float = 0.0):
    """samples [N, D] against per-dimension mean [D] and variance [D].

    ``bias_var`` (relative) and ``bias_mean`` (in units of √var) widen the tolerance by a stated
    systematic error, e.g. a sampler's discretisation error; the Monte-Carlo part is always Z standard errors.
    """
    n = samples.shape[0]
    samples = samples.double()
    mean, var = mean.double(), var.double()
    m_hat, v_hat = samples.mean(0), samples.var(0)
    mean_err = ((m_hat - mean) / var.sqrt()).abs()
    mean_tol = Z / n**0.5 + bias_mean
    assert (mean_err <= mean_tol).all(), f"mean off by {mean_err.max():.4f}·√var > {mean_tol:.4f} (N={n})"
    var_err = (v_hat / var - 1).abs()
    var_tol = Z * (2 / (n - 1)) ** 0.5 + bias_var
    assert (var_err <= var_tol).all(), f"variance off by {var_err.max():.4f} (relative) > {var_tol:.4f} (N={n})"
