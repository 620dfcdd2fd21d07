"""Improved DDPM on MNIST: L_simple with fixed β̃ against the hybrid objective with a learned-range Σ.

    .venv/bin/python bench/improved_ddpm.py train OUT [--minutes 30] [--runs simple,hybrid]
    .venv/bin/python bench/improved_ddpm.py eval OUT/simple OUT/hybrid [--num 400] [--steps 50,100,250,1000]
    .venv/bin/python bench/improved_ddpm.py paired-nll OUT/simple OUT/hybrid [--images 512]

``train`` trains the runs side by side, one process and one thread each, for the same wall-clock budget
(the same machine state for both: equal training time). Each run is the demo preset's network (1.7M
parameters, 2×2 patches, cosine schedule) without labels; the runs differ only in their [diffusion] keys:
- simple: prediction eps, variance fixed_small, loss simple (the DDPM recipe)
- hybrid: prediction eps, variance learned_range, loss hybrid (improved DDPM §3.1)
- vlb-eps / vlb-mu / ...: see RUNS (DDPM's Table 2 rows).
``eval`` scores each run's EMA weights: the NLL bound on 256 test images (stratified estimate over K = 100 of
the T steps, with its standard error; the per-step terms summed in ten buckets of t) and, for ancestral DDPM at
each number of steps (respaced, the run's own variance), the domain classifier's confident share (± binomial
standard error) and classifier FID against the MNIST test split from ``--num`` samples (seed 0; seed 1 again at
the first step count gives the FID's seed-to-seed spread).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

RUNS = {
    "simple": ["diffusion.prediction=eps", "diffusion.variance=fixed_small", "diffusion.loss=simple"],
    "hybrid": ["diffusion.prediction=eps", "diffusion.variance=learned_range", "diffusion.loss=hybrid"],
    # DDPM Table 2 (Ho et al. 2020): μ̃ or ε prediction, true bound or L_simple, fixed isotropic or learned Σ
    "mu-vlb-fixed": ["diffusion.prediction=mu", "diffusion.variance=fixed_small", "diffusion.loss=vlb"],
    "mu-vlb-learned": ["diffusion.prediction=mu", "diffusion.variance=learned", "diffusion.loss=vlb"],
    "mu-mse-fixed": ["diffusion.prediction=mu", "diffusion.variance=fixed_small", "diffusion.loss=simple"],
    "eps-vlb-fixed": ["diffusion.prediction=eps", "diffusion.variance=fixed_small", "diffusion.loss=vlb"],
    "eps-vlb-learned": ["diffusion.prediction=eps", "diffusion.variance=learned", "diffusion.loss=vlb"],
}
COMMON = ["data.conditional=false", "sample.guidance=0", "train.steps=10000000", "train.sample_every=0", "train.checkpoint_every=500"]


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in args.runs.split(","):
        sets = [f"--set={s}" for s in COMMON + RUNS[name] + [f"train.max_minutes={args.minutes}"]]
        cmd = [sys.executable, "-m", "ddpm.cli", "train", "--config", "mnist-demo", "--out", str(out / name), *sets]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        log = open(out / f"{name}.log", "w")
        procs.append((name, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)))
        print(f"started {name}: {' '.join(cmd)}", flush=True)
    for name, p in procs:
        print(f"{name} exited {p.wait()}", flush=True)


def evaluate_runs(args) -> None:
    import torch

    from ddpm.evaluate import EvalSettings, evaluate

    torch.set_num_threads(args.threads)
    steps = [int(s) for s in args.steps.split(",")]
    print("| run | ckpt step | NLL bits/dim (K = 100) | ancestral steps | seed | confident (p ≥ 0.9) | classifier FID |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        nll = evaluate(run, EvalSettings(num=2, steps=[steps[0]], sampler="ddpm", fid=False, nll=True,
                                         nll_timesteps=100, nll_images=256), log=False)[0]
        buckets = torch.tensor(nll["nll_terms_bpd"]).reshape(10, -1).sum(1)
        print(f"NLL terms of {run} by tenth of t (bits/dim): {[round(v, 4) for v in buckets.tolist()]}; "
              f"prior {nll['nll_prior_bpd']:.4f}, decoder {nll['nll_decoder_bpd']:.4f}"
              + (f"; mean f of Σ_θ per tenth: {[round(v, 3) for v in torch.tensor([float('nan') if v is None else v for v in nll['nll_variance_fraction']]).reshape(10, -1).nanmean(1).tolist()]}"
                 if "nll_variance_fraction" in nll else ""), flush=True)
        for seed, chosen in [(0, steps), (1, steps[:1])]:
            rows = evaluate(run, EvalSettings(num=args.num, steps=chosen, sampler="ddpm", fid=False, domain=True, seed=seed,
                                              batch_size=200), log=False)
            for r in rows:
                p = r["domain_confident"]
                se = (p * (1 - p) / r["num"]) ** 0.5
                print(f"| {Path(run).name} | {r['checkpoint_step']} | {nll['nll_bpd']:.4f} ± {nll['nll_bpd_stderr']:.4f} | "
                      f"{r['steps']} | {seed} | {100 * p:.1f}% ± {100 * se:.1f} | {r['domain_fid']:.2f} |", flush=True)


def paired_nll(args) -> None:
    """The NLL bound of two runs on the same test images with the same x_t and the same stratified t (one seed per
    batch for both), and the standard error of the per-image difference: far smaller than the unpaired one."""
    import torch

    from ddpm.data import load_dataset
    from ddpm.metrics.nll import vlb_terms
    from ddpm.models import build_schedule, load_model

    torch.set_num_threads(args.threads)
    totals = {}
    for run in args.runs:
        model, config, step = load_model(run)
        schedule = build_schedule(config)
        data = load_dataset(config.data.dataset, root=config.data.data_dir, split="test", image_size=config.data.image_size,
                            channels=config.data.channels)
        x0, _ = data.batch(torch.arange(args.images), "cpu")
        out = [vlb_terms(model, schedule, x0[idx], prediction=config.diffusion.prediction, variance=config.diffusion.variance,
                         timesteps=100, generator=torch.Generator().manual_seed(int(idx[0])))["total"]
               for idx in torch.arange(args.images).split(256)]
        totals[run] = torch.cat(out)
        print(f"{run} (step {step}): {totals[run].mean():.4f} ± {totals[run].std() / args.images ** 0.5:.4f} bits/dim", flush=True)
    first, *others = args.runs
    for run in others:
        d = totals[run] - totals[first]
        print(f"paired {run} − {first}: {d.mean():.4f} ± {d.std() / args.images ** 0.5:.4f} bits/dim over {args.images} images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--minutes", type=float, default=30)
    t.add_argument("--runs", default="simple,hybrid")
    e = sub.add_parser("eval")
    e.add_argument("runs", nargs="+")
    e.add_argument("--num", type=int, default=400)
    e.add_argument("--steps", default="50,100,250,1000")
    e.add_argument("--threads", type=int, default=2)
    n = sub.add_parser("paired-nll")
    n.add_argument("runs", nargs="+")
    n.add_argument("--images", type=int, default=512)
    n.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"train": train, "eval": evaluate_runs, "paired-nll": paired_nll}[args.command](args)


if __name__ == "__main__":
    main()
