"""Mutation check: break each formula on purpose and see whether the tests notice.

Each mutation replaces one exact piece of source text in a throw-away copy of ``src/`` (the working tree is
never touched) and runs the tests named for it with that copy first on PYTHONPATH; a mutation is *caught*
when those tests fail. The tests named are the ones that pin the formula (a unit-test file or a ``-k``
selection), so the whole check takes minutes, not the suite's quarter hour; a surviving mutation means the
formula is unpinned and needs a test. Prints a table and the score; exits 1 when a mutation survives or a
mutation's source text is no longer found (the check is then out of date).

    .venv/bin/python bench/mutation_check.py [--only NAME_SUBSTRING]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, file under src/ddpm, original text, mutated text, pytest arguments)
MUTATIONS = [
    ("posterior mean coefficient of x_t uses α instead of √α", "schedules.py",
     "posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * alphas.sqrt()", "posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * alphas",
     ["tests/test_schedules.py", "tests/test_forward_process.py"]),
    ("β̃ at t = 0 taken as β₀ instead of β̃₁", "schedules.py",
     "first = posterior_variance[1:2] if len(betas) > 1 else betas[:1]", "first = betas[:1]",
     ["tests/test_metrics.py", "tests/test_schedules.py"]),
    ("cosine schedule offset s = 0.0008", "schedules.py",
     "def cosine_betas(num_timesteps: int, s: float = 0.008)", "def cosine_betas(num_timesteps: int, s: float = 0.0008)",
     ["tests/test_schedules.py"]),
    ("few-step samplers start at T−1 again", "schedules.py",
     "keep = int((lam >= min_log_snr).sum()) - 1", "keep = len(lam) - 1",
     ["tests/test_schedules.py", "tests/test_samplers.py"]),
    ("x̂₀ from ε with 1 − ᾱ instead of √(1 − ᾱ)", "parameterization.py",
     "return (x_t - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar ** 0.5", "return (x_t - (1 - alpha_bar) * eps) / alpha_bar ** 0.5",
     ["tests/test_parameterization.py", "tests/test_samplers.py"]),
    ("NLL prior taken at T−2", "metrics/nll.py",
     "t = torch.full((len(x0),), schedule.num_timesteps - 1, dtype=torch.long)",
     "t = torch.full((len(x0),), schedule.num_timesteps - 2, dtype=torch.long)", ["tests/test_metrics.py"]),
    ("NLL decoder log-scale without the ½", "metrics/nll.py",
     "discretized_gaussian_log_likelihood(x0_64, model_mean, 0.5 * model_logvar)",
     "discretized_gaussian_log_likelihood(x0_64, model_mean, model_logvar)", ["tests/test_metrics.py"]),
    ("NLL model called with respaced indices", "metrics/nll.py",
     "t_model = schedule.timesteps.to(device)[t]", "t_model = t", ["tests/test_metrics.py"]),
    ("KL arguments swapped", "metrics/nll.py",
     "kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar)",
     "kl = normal_kl(model_mean, model_logvar, true_mean, true_logvar)", ["tests/test_metrics.py"]),
    ("DPM-Solver++ ratio r inverted", "sampling/dpm_solver.py", "r = h_prev / h", "r = h / h_prev",
     ["tests/test_samplers.py"]),
    ("DPM-Solver++ extrapolation weight 1/r instead of 1/(2r)", "sampling/dpm_solver.py",
     "d = (1 + 0.5 / r) * x0 - (0.5 / r) * x0_prev", "d = (1 + 1 / r) * x0 - (1 / r) * x0_prev", ["tests/test_samplers.py"]),
    ("DPM-Solver++ never lowers the final order", "sampling/dpm_solver.py",
     "(j == 0 and lower_order_final and steps < LOWER_ORDER_FINAL_BELOW)", "False", ["tests/test_samplers.py"]),
    ("ancestral DDPM adds noise at the last step", "sampling/ddpm.py",
     "x = mean if last else mean + var[i] ** 0.5 * randn_like(x, generator)",
     "x = mean + var[i] ** 0.5 * randn_like(x, generator)", ["tests/test_samplers.py"]),
    ("DDIM σ = η β̃ instead of η √β̃", "sampling/ddim.py",
     "sigma = (eta * coefs.posterior_variance.sqrt()).tolist()", "sigma = (eta * coefs.posterior_variance).tolist()",
     ["tests/test_samplers.py"]),
    ("per-sample noise ignores the sample index", "rng.py",
     "torch.Generator().manual_seed(sample_seed(seed, int(i)))", "torch.Generator().manual_seed(sample_seed(seed, 0))",
     ["tests/test_generate.py"]),
    ("a shard restarts the sample count", "generation.py",
     "range(first_index + start, first_index + stop)", "range(start, stop)", ["tests/test_generate.py"]),
    ("Inception Score split by torch.chunk", "metrics/inception_score.py",
     "part = log_p[i * n // splits:(i + 1) * n // splits]", "part = log_p.chunk(splits)[min(i, len(log_p.chunk(splits)) - 1)]",
     ["tests/test_metrics.py"]),
    ("FID statistics with the biased covariance", "metrics/frechet.py",
     "np.cov(features, rowvar=False)", "np.cov(features, rowvar=False, bias=True)", ["tests/test_metrics.py"]),
    ("Fréchet distance with + 2 tr √(Σ₁Σ₂)", "metrics/frechet.py",
     "np.trace(b.sigma) - 2 * trace_sqrt", "np.trace(b.sigma) + 2 * trace_sqrt", ["tests/test_metrics.py"]),
    ("AdaGN as scale·GN(h) + shift", "nets/layers.py",
     "h = self.out_norm(h) * (1 + scale) + shift", "h = self.out_norm(h) * scale + shift", ["tests/test_nets.py"]),
    ("learning-rate warm-up off by one step", "train/step.py",
     "return t.lr * min(1.0, (step + 1) / max(1, t.warmup_steps))", "return t.lr * min(1.0, (step + 2) / max(1, t.warmup_steps))",
     ["tests/test_training.py", "-k", "by_value"]),
    ("EMA weights swapped", "train/step.py",
     "[p.detach() for p in model.parameters()], 1.0 - decay)", "[p.detach() for p in model.parameters()], decay)",
     ["tests/test_training.py", "-k", "by_value"]),
    ("EMA warm-up (1 + n)/(10 + n) → n/(10 + n)", "train/step.py",
     "min(t.ema_decay, (1 + step) / (10 + step))", "min(t.ema_decay, step / (10 + step))",
     ["tests/test_training.py", "-k", "by_value"]),
    ("gradient clipping at 10× the setting", "train/step.py",
     "t.grad_clip if t.grad_clip > 0 else float(\"inf\")", "10 * t.grad_clip if t.grad_clip > 0 else float(\"inf\")",
     ["tests/test_training.py", "-k", "by_value"]),
    ("Min-SNR run logs the weighted loss as loss", "train/trainer.py",
     "window.add(result.mse, result.t,", "window.add(result.loss, result.t,", ["tests/test_training.py", "-k", "min_snr"]),
    ("Min-SNR weight for ε without the 1/SNR", "objectives.py",
     "{\"eps\": capped / snr,", "{\"eps\": capped,", ["tests/test_objectives.py"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutations whose name contains this")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only in m[0]]
    rows, survived, stale = [], 0, 0
    with tempfile.TemporaryDirectory(prefix="ddpm-mutation-") as tmp:
        for name, rel, original, mutated, tests in chosen:
            copy = Path(tmp) / "src"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(ROOT / "src", copy)
            path = copy / "ddpm" / rel
            text = path.read_text()
            if text.count(original) != 1:
                rows.append((name, rel, "STALE (source text not found once)", 0.0))
                stale += 1
                continue
            path.write_text(text.replace(original, mutated))
            env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
            started = time.time()
            run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                 cwd=ROOT, env=env, capture_output=True, text=True)
            caught = run.returncode != 0
            survived += not caught
            rows.append((name, rel, "caught" if caught else "SURVIVED", time.time() - started))
            print(f"{'caught  ' if caught else 'SURVIVED'} {name} ({time.time() - started:.0f} s)", flush=True)
    print("\n| mutation | file | result | seconds |\n|---|---|---|---|")
    for name, rel, result, seconds in rows:
        print(f"| {name} | {rel} | {result} | {seconds:.0f} |")
    caught = len(rows) - survived - stale
    print(f"\nscore: {caught}/{len(rows)} caught, {survived} survived, {stale} stale")
    return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
