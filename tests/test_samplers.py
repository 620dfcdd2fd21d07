"""Samplers driven by an exact denoiser (Gaussian data, see gaussian.py), equivalences and bad input.

Tolerances: Monte-Carlo parts are Z = 5 standard errors for the sample size (stats.py); systematic
parts are each sampler's discretisation error for this data, derived exactly (the samplers are affine
maps of x_T here): DDPM with all 1000 steps is within 2.5% in variance (moment propagation below),
DDIM-50 within 17% and DPM-Solver++-20 within 6% (first- and second-order ODE solvers; their
convergence orders are asserted separately against the exact ODE solution).
"""
import math

import pytest
import torch

from ddpm import NoiseSchedule, StepInfo, spaced_timesteps
from ddpm import sample as ddpm_sample
from ddpm.schedules import sampling_start
from gaussian import MU, S, ddpm_exact_moments, exact_denoiser, ode_solution
from stats import assert_gaussian_moments

N = 20_000
LINEAR = NoiseSchedule.from_name("linear", 1000)
COSINE = NoiseSchedule.from_name("cosine", 1000)


def sample(*args, **kwargs):
    """``ddpm.sample`` without x₀ clipping unless a test asks for it: the Gaussian test data leave [−1, 1]."""
    return ddpm_sample(*args, **{"clip_x0": False, **kwargs})


def noise(n=N, d=4, seed=0, dtype=torch.float64):
    return torch.randn(n, d, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("variance", ["fixed_large", "fixed_small"])
def test_ddpm_all_steps_reproduces_the_data(variance):
    m, v = ddpm_exact_moments(LINEAR, list(range(1000)), variance)
    # the sampler's exact output distribution is the data's up to discretisation
    assert ((m - MU) / S).abs().max() < 1e-3
    assert (v / S**2 - 1).abs().max() < 0.025
    x0 = sample(exact_denoiser(LINEAR), LINEAR, noise(), sampler="ddpm", variance=variance, generator=gen())
    assert_gaussian_moments(x0, m, v)  # Monte-Carlo only: the sampler does what the recurrences say
    assert_gaussian_moments(x0, MU, S**2, bias_var=0.025, bias_mean=1e-3)


def test_ddpm_respaced_matches_its_exact_moments():
    r = LINEAR.respaced(50)
    m, v = ddpm_exact_moments(r, list(range(50)), "fixed_small")
    x0 = sample(exact_denoiser(LINEAR), LINEAR, noise(), sampler="ddpm", steps=50, generator=gen())
    assert_gaussian_moments(x0, m, v)


def test_naive_skipping_keeps_original_coefficients():
    keep = spaced_timesteps(1000, 50)
    m, v = ddpm_exact_moments(LINEAR, keep, "fixed_small")
    x0 = sample(exact_denoiser(LINEAR), LINEAR, noise(), sampler="ddpm", steps=50, skip="naive", generator=gen())
    assert_gaussian_moments(x0, m, v)
    # …and it is badly wrong, which is why respacing exists: 50 small original steps barely remove
    # the noise, so the output variance stays near 1 whatever the data's (8.8× too large for s = 0.3)
    assert (v - 1).abs().max() < 0.25 and (v / S**2)[0] > 5


def test_naive_and_respaced_agree_on_all_steps():
    xT = noise(64)
    a = sample(exact_denoiser(COSINE), COSINE, xT, sampler="ddpm", skip="naive", generator=gen())
    b = sample(exact_denoiser(COSINE), COSINE, xT, sampler="ddpm", skip="respace", generator=gen())
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "sampler, steps, bias_var",
    [("ddim", 50, 0.17), ("dpm-solver++", 20, 0.06)],
)
@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
def test_deterministic_samplers_reproduce_the_data(sampler, steps, bias_var, schedule):
    x0 = sample(exact_denoiser(schedule), schedule, noise(), sampler=sampler, steps=steps)
    assert_gaussian_moments(x0, MU, S**2, bias_var=bias_var, bias_mean=0.005)


@pytest.mark.parametrize(
    "sampler, spacing, order",
    [("ddim", "uniform", 1), ("ddim", "quadratic", 1), ("dpm-solver++", "logsnr", 2), ("dpm-solver++", "uniform", 2)],
)
def test_convergence_order_against_exact_ode(sampler, spacing, order):
    """Error against the exact probability-flow ODE solution falls as steps^−order."""
    xT = noise(512)
    errors = []
    for steps in (50, 100, 200):
        first = spaced_timesteps(1000, steps, spacing, LINEAR.alphas_cumprod)[-1]
        x0 = sample(exact_denoiser(LINEAR), LINEAR, xT, sampler=sampler, steps=steps, spacing=spacing)
        errors.append((x0 - ode_solution(LINEAR, xT, first)).abs().max().item())
    ratio = errors[0] / errors[1]
    assert 2**order * 0.8 < ratio < 2**order * 1.25, f"errors {errors}: ratio {ratio:.2f}, expected ≈ {2**order}"
    assert errors[2] < errors[1]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_parameterizations_are_equivalent(sampler, prediction):
    xT = noise(256)
    kwargs = dict(steps=25) if sampler != "ddpm" else dict(steps=100)
    a = sample(exact_denoiser(COSINE, "eps"), COSINE, xT, sampler=sampler, generator=gen(), **kwargs)
    b = sample(exact_denoiser(COSINE, prediction), COSINE, xT, sampler=sampler, generator=gen(), prediction=prediction, **kwargs)
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("steps", [1, 10, 50])
def test_ddim_eta1_is_ddpm_with_posterior_variance(steps):
    """DDIM eq. 16 with η = 1 gives σ² = β̃ and the DDPM posterior mean: with the same noise the two
    samplers produce the same trajectory (so every step has the same distribution)."""
    xT = noise(256)
    a = sample(exact_denoiser(LINEAR), LINEAR, xT, sampler="ddim", steps=steps, eta=1.0, generator=gen(7))
    b = sample(exact_denoiser(LINEAR), LINEAR, xT, sampler="ddpm", steps=steps, variance="fixed_small", generator=gen(7))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_one_step_distribution_matches_ddpm():
    """One step from the same x_t: both samplers' (mean, σ) agree, read off two noise draws each."""
    r = LINEAR.respace([0, 400, 999])
    xT = noise(64)
    outs = {}
    for seed in (1, 2):
        for name, kw in [("ddim", dict(eta=1.0)), ("ddpm", dict(variance="fixed_small"))]:
            states = []
            sample(exact_denoiser(LINEAR), r, xT, sampler=name, generator=gen(seed), callback=lambda i: states.append(i.x_t), **kw)
            outs[name, seed] = states[1]  # x at t = 400 after one step from t = 999
    for name in ("ddim", "ddpm"):
        assert not torch.allclose(outs[name, 1], outs[name, 2])
    torch.testing.assert_close(outs["ddim", 1], outs["ddpm", 1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(outs["ddim", 2], outs["ddpm", 2], rtol=1e-10, atol=1e-10)


def test_dpm_solver_first_order_is_ddim():
    xT = noise(256)
    a = sample(exact_denoiser(COSINE), COSINE, xT, sampler="dpm-solver++", steps=20, order=1, spacing="uniform")
    b = sample(exact_denoiser(COSINE), COSINE, xT, sampler="ddim", steps=20, eta=0.0)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sampler, options", [("ddpm", {}), ("ddim", {"eta": 0.5}), ("ddpm", {"steps": 10, "skip": "naive"})])
def test_seeded_runs_are_bit_identical(sampler, options):
    model = lambda x, t: torch.tanh(x) * (t[:, None, None, None] / 10.0)  # noqa: E731
    s = NoiseSchedule.from_name("linear", 20)
    xT = torch.randn(3, 1, 8, 8, generator=gen(0))
    a = sample(model, s, xT, sampler=sampler, generator=gen(5), **options)
    b = sample(model, s, xT, sampler=sampler, generator=gen(5), **options)
    c = sample(model, s, xT, sampler=sampler, generator=gen(6), **options)
    assert a.dtype == torch.float32 and a.shape == xT.shape
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "sampler, options, expected_t",
    [
        ("ddpm", {}, list(range(99, -1, -1))),  # all T steps start at T−1
        # fewer start at sampling_start = 98, the last step of cosine-100 with λ ≥ −5.1 (λ_99 = −7.6)
        ("ddpm", {"steps": 5}, [98, 74, 49, 24, 0]),
        ("ddpm", {"steps": 5, "skip": "naive"}, [98, 74, 49, 24, 0]),
        ("ddim", {"steps": 4}, [98, 65, 33, 0]),
        ("dpm-solver++", {"steps": 3, "spacing": "uniform"}, [98, 49, 0]),
    ],
)
def test_callback_and_model_see_original_timesteps(sampler, options, expected_t):
    s = NoiseSchedule.from_name("cosine", 100)
    calls, infos = [], []
    model = exact_denoiser(s, calls=calls)
    xT = noise(8)
    out = sample(model, s, xT, sampler=sampler, callback=infos.append, generator=gen(), **options)
    assert [int(t[0]) for t in calls] == expected_t
    assert all(t.dtype == torch.long and t.shape == (8,) and (t == t[0]).all() for t in calls)
    assert [info.t for info in infos] == expected_t
    assert [info.i for info in infos] == list(range(len(expected_t)))
    assert all(isinstance(info, StepInfo) and info.num_steps == len(expected_t) for info in infos)
    assert torch.equal(infos[0].x_t, xT)
    assert all(info.x0_pred.shape == xT.shape for info in infos)
    if sampler != "ddpm":  # the deterministic samplers return the last x̂₀
        assert torch.equal(out, infos[-1].x0_pred)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
def test_clip_x0(sampler):
    s = NoiseSchedule.from_name("linear", 50)
    wild = lambda x, t: -3 * x  # noqa: E731  (ε̂ = −3x predicts x̂₀ far outside [−1, 1])
    infos = []
    out = sample(wild, s, noise(16), sampler=sampler, clip_x0=True, callback=infos.append, generator=gen())
    assert all(info.x0_pred.abs().max() <= 1.0 for info in infos)
    assert out.abs().max() <= 1.0 + 1e-6
    unclipped = sample(wild, s, noise(16), sampler=sampler, generator=gen())
    assert unclipped.abs().max() > 1.0


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
def test_sampling_moves_the_schedule_once_and_keeps_dtype_at_every_step(sampler, monkeypatch):
    s = NoiseSchedule.from_name("linear", 30)
    moves, seen = [], []
    to = NoiseSchedule.to
    monkeypatch.setattr(NoiseSchedule, "to", lambda self, device: moves.append(device) or to(self, device))
    xT = torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)
    out = sample(lambda x, t: seen.append(x.dtype) or 0.1 * x, s, xT, sampler=sampler, steps=10, generator=torch.Generator())
    assert len(moves) == 1  # once per sampling run, not once per step
    assert seen == [torch.bfloat16] * 10 and out.dtype == torch.bfloat16 and out.shape == xT.shape


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
def test_explicit_timesteps_equal_the_same_steps_by_spacing(sampler):
    s = NoiseSchedule.from_name("cosine", 50)
    model = lambda x, t: 0.3 * x + 0.01 * t.view(-1, 1, 1, 1)  # noqa: E731
    xT = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    by_steps = sample(model, s, xT, sampler=sampler, steps=7, spacing="quadratic", generator=torch.Generator().manual_seed(1))
    visited = spaced_timesteps(50, 7, "quadratic", s.alphas_cumprod, sampling_start(s.alphas_cumprod, 7))
    given = sample(model, s, xT, sampler=sampler, timesteps=visited, generator=torch.Generator().manual_seed(1))
    assert torch.equal(by_steps, given)
    seen = []
    sample(lambda x, t: seen.append(int(t[0])) or model(x, t), s, xT, sampler=sampler, timesteps=[0, 10, 49])
    assert seen == [49, 10, 0]


def test_naive_skipping_is_ddpm_on_the_original_coefficients_at_the_visited_steps():
    s = NoiseSchedule.from_name("linear", 40)
    xT = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731 — an x₀-model that says 0: each step is x ← coef2_t·x (+ noise)
    out = sample(zero, s, xT, sampler="ddpm", prediction="x0", skip="naive", timesteps=[5, 20],
                 generator=torch.Generator().manual_seed(1))
    z = torch.randn(xT.shape, generator=torch.Generator().manual_seed(1))
    c2, var = s.posterior_mean_coef2, s.posterior_variance
    expected = c2[5] * (c2[20] * xT + var[20].sqrt() * z)  # the ORIGINAL t = 20 and t = 5 coefficients, nothing respaced
    assert torch.allclose(out, expected.float(), atol=1e-6)
    respaced = sample(zero, s, xT, sampler="ddpm", prediction="x0", skip="respace", timesteps=[5, 20],
                      generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(respaced, out, atol=1e-3)


def _model(x, t):
    return torch.zeros_like(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sampler="euler"), "unknown sampler 'euler'; expected one of ddpm, ddim, dpm-solver\\+\\+"),
        (dict(sampler="ddim", steps=11), r"steps must be an integer in 1..10 \(the schedule's T\), got 11"),
        (dict(sampler="ddpm", steps=0), "steps must be an integer in 1..10"),
        (dict(sampler="ddim", eta=1.5), r"eta must be a number in \[0, 1\], got 1.5"),
        (dict(sampler="ddim", eta=-0.1), r"eta must be a number in \[0, 1\]"),
        (dict(sampler="ddpm", eta=0.0), "sampler 'ddpm' takes no option 'eta'"),
        (dict(sampler="ddim", timesteps=[3, 2]), "timesteps must be a non-empty, strictly increasing list of integers in 0..9"),
        (dict(sampler="ddim", timesteps=[0, 10]), "strictly increasing list of integers in 0..9"),
        (dict(sampler="ddim", timesteps=[0, 5], steps=3), "steps = 3 disagrees with the 2 timesteps given"),
        (dict(sampler="ddpm", variance="beta"), "unknown variance 'beta'; expected one of fixed_small, fixed_large, learned, learned_range"),
        (dict(sampler="ddpm", variance="learned"), r"variance 'learned' needs a model that outputs a variance \(twice the image channels\)"),
        (dict(sampler="ddpm", skip="random"), "unknown skip 'random'; expected one of respace, naive"),
        (dict(sampler="dpm-solver++", order=3), "order must be 1 or 2, got 3"),
        (dict(sampler="ddim", prediction="score"), "unknown prediction 'score'"),
        (dict(sampler="ddim", spacing="cubic"), "unknown spacing 'cubic'"),
    ],
)
def test_bad_arguments(kwargs, match):
    s = NoiseSchedule.from_name("linear", 10)
    with pytest.raises(ValueError, match=match):
        sample(_model, s, torch.zeros(2, 3), **kwargs)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
def test_model_with_wrong_output_shape(sampler):
    s = NoiseSchedule.from_name("linear", 10)
    bad = lambda x, t: x[:, :1]  # noqa: E731
    with pytest.raises(ValueError, match=r"model returned \(2, 1\) for x_t of shape \(2, 3\)"):
        sample(bad, s, torch.zeros(2, 3), sampler=sampler)


def test_bad_x_T_and_schedule():
    s = NoiseSchedule.from_name("linear", 10)
    with pytest.raises(ValueError, match="x_T must be a floating-point tensor"):
        sample(_model, s, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="schedule must be a NoiseSchedule"):
        sample(_model, "linear", torch.zeros(2, 3))


def official_multistep_dpm_solver_pp(model_fn, lam, alpha, sigma, ts, x, lower_order_final, order=2):
    """A transcription of the official DPM-Solver's multistep loop (LuChengTHU/dpm-solver, ``DPM_Solver.sample`` with
    method "multistep", algorithm "dpmsolver++", solver_type "dpmsolver", ``denoise_to_zero=True``), in float64, on the
    decreasing timesteps ``ts`` (the official ``timesteps``: ``steps`` + 1 of them, its ``steps`` counting updates):
        first order   x_t = (σ_t/σ_s) x − α_t φ₁ m₀,                         φ₁ = e^{−h} − 1,
        second order  x_t = (σ_t/σ_s) x − α_t φ₁ m₀ − ½ α_t φ₁ (m₀ − m₁)/r₀,  r₀ = h₀/h,
    the first update at first order, the update at step ``step`` at order min(order, steps + 1 − step) when
    ``lower_order_final and steps < 10``, no evaluation after the last update, then one (``denoise_to_zero``) at
    ts[-1]. Returns (the states after each update, with x first; the final x̂₀; the number of model evaluations)."""
    evaluations = []

    def m(x_, t_):
        evaluations.append(t_)
        return model_fn(x_, torch.full((len(x_),), t_))

    def update(x_, t_prev, m_prev, t_, step_order):
        h = lam[t_] - lam[t_prev[-1]]
        phi_1 = torch.expm1(-h)
        x_new = sigma[t_] / sigma[t_prev[-1]] * x_ - alpha[t_] * phi_1 * m_prev[-1]
        if step_order == 2:
            r0 = (lam[t_prev[-1]] - lam[t_prev[-2]]) / h
            x_new = x_new - 0.5 * alpha[t_] * phi_1 * (m_prev[-1] - m_prev[-2]) / r0
        return x_new

    steps = len(ts) - 1
    assert steps >= order
    t_prev, m_prev, states = [ts[0]], [m(x, ts[0])], [x]
    for step in range(1, order):
        x = update(x, t_prev, m_prev, ts[step], step)
        states.append(x)
        t_prev.append(ts[step])
        m_prev.append(m(x, ts[step]))
    for step in range(order, steps + 1):
        step_order = min(order, steps + 1 - step) if lower_order_final and steps < 10 else order
        x = update(x, t_prev, m_prev, ts[step], step_order)
        states.append(x)
        t_prev, m_prev = t_prev[1:] + [ts[step]], m_prev[1:] + [m_prev[-1]]
        if step < steps:
            m_prev[-1] = m(x, ts[step])
    return states, m(x, ts[-1]), len(evaluations)


@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("grid", [
    [0, 2, 30, 35, 300, 310, 900],
    [0, 2, 30, 35, 120, 300, 310, 600, 900],  # 9 evaluations = 8 official steps: lowered
    [0, 2, 30, 35, 120, 300, 310, 600, 700, 900],  # 10 = 9 official steps: still lowered
    [0, 2, 30, 35, 120, 300, 310, 450, 600, 700, 900],  # 11 = 10 official steps: second order to the end
], ids=lambda g: f"{len(g)}-evaluations")
def test_dpm_solver_pp_matches_the_official_multistep_loop_on_a_non_uniform_grid(grid, lower_order_final):
    """Golden trajectory against ``official_multistep_dpm_solver_pp`` on grids whose step ratios r = h_{i−1}/h_i range
    over 0.02…20, so an inverted r or a wrong coefficient cannot pass, and whose lengths straddle the official
    ``lower_order_final`` threshold: the official run makes as many model evaluations as ddpm's (its ``steps``
    updates and the final x̂₀), and lowers its last update exactly when ddpm does."""
    s = NoiseSchedule.from_name("cosine", 1000)
    model = lambda x, t: torch.tanh(1.5 * x) * (0.4 + t.view(-1, 1).to(x.dtype) / 2000)  # noqa: E731  (x̂₀)
    xT = noise(6)
    infos, calls = [], []
    out = sample(lambda x, t: calls.append(t) or model(x, t), s, xT, sampler="dpm-solver++", timesteps=grid,
                 prediction="x0", callback=infos.append, lower_order_final=lower_order_final)
    abar = s.alphas_cumprod
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    lam = torch.log(alpha / sigma)
    states, x0, evaluations = official_multistep_dpm_solver_pp(model, lam, alpha, sigma, list(reversed(grid)), xT.clone(),
                                                               lower_order_final)
    assert len(calls) == evaluations == len(grid)
    assert len(infos) == len(states)
    for info, expected in zip(infos, states):
        torch.testing.assert_close(info.x_t, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, x0, rtol=1e-10, atol=1e-12)
    ts = list(reversed(grid))
    r = [(lam[ts[k]] - lam[ts[k - 1]]) / (lam[ts[k + 1]] - lam[ts[k]]) for k in range(1, len(ts) - 1)]
    assert min(r) < 0.1 and max(r) > 5


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
@pytest.mark.parametrize("evaluations, lowered", [(9, True), (10, True), (11, False)])
def test_dpm_solver_pp_lowers_the_last_update_below_ten_official_steps(schedule, evaluations, lowered):
    """``lower_order_final`` on the default grid: the update into t = 0 is the first-order (DDIM) one exactly when the
    official code would lower it (fewer than 10 official steps = 11 evaluations), here with the exact Gaussian
    denoiser, where it also moves the result towards the exact ODE solution (RMS 2.4e-2 → 1.6e-2 on linear at 10
    evaluations; the bound 0.8 leaves room for the 4096 draws of x_T, which change these by under 2%)."""
    xT = noise(4096)
    runs = {}
    for lower in (True, False):
        infos = []
        runs[lower] = sample(exact_denoiser(schedule), schedule, xT, sampler="dpm-solver++", steps=evaluations,
                             lower_order_final=lower, callback=infos.append), infos
    out, infos = runs[True]
    before, last = infos[-2], infos[-1]  # the evaluation at t_1, and the state after the update into t = 0
    a0, a1 = (schedule.alphas_cumprod[t].item() for t in (last.t, before.t))
    h = 0.5 * (math.log(a0 / (1 - a0)) - math.log(a1 / (1 - a1)))
    first_order = ((1 - a0) / (1 - a1)) ** 0.5 * before.x_t - a0**0.5 * math.expm1(-h) * before.x0_pred
    assert last.t == 0
    first = spaced_timesteps(1000, evaluations, "logsnr", schedule.alphas_cumprod,
                             sampling_start(schedule.alphas_cumprod, evaluations))[-1]
    exact = ode_solution(schedule, xT, first)
    rms = {lower: ((x - exact) ** 2).mean().sqrt().item() for lower, (x, _) in runs.items()}
    if lowered:
        torch.testing.assert_close(last.x_t, first_order, rtol=1e-10, atol=1e-12)
        assert rms[True] < 0.8 * rms[False], rms
    else:
        assert (last.x_t - first_order).abs().max() > 1e-4
        assert torch.equal(out, runs[False][0])


@pytest.mark.parametrize("variance", ["fixed_large", "fixed_small"])
def test_ancestral_ddpm_adds_no_noise_at_the_last_step(variance):
    """The output is exactly the posterior mean of the step at t = 0, with no σ₀ z added, although the
    variance kept there (β̃₁, for σ² = β as for β̃) is not zero."""
    s = NoiseSchedule.from_name("linear", 2)
    assert s.fixed_log_variance(variance).exp()[0] > 0
    model = lambda x, t: 0.5 * x  # noqa: E731
    xT = noise(64)
    infos = []
    out = sample(model, s, xT, sampler="ddpm", variance=variance, generator=gen(), callback=infos.append)
    x_1 = infos[-1].x_t  # the state the last step starts from (t = 0)
    expected = s.posterior_mean_coef1[0] * infos[-1].x0_pred + s.posterior_mean_coef2[0] * x_1
    torch.testing.assert_close(out, expected.to(out.dtype), rtol=1e-6, atol=1e-6)
