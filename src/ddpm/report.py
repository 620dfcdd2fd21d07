"""``ddpm report RUN``: one self-contained HTML page (pictures embedded as data URIs) with the run's config,
training curves, samples, GIFs, strips and evaluation results. The pictures are also kept in RUN/report/."""
from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_config, load_weights, resolve_checkpoint
from .data import load_dataset
from .eval_table import table_cells
from .conditioning import model_cond
from .denoiser import Denoiser
from .generation import generate
from .guidance import images_per_sample
from .io import atomic_write_text, check_writable
from .nets import is_classifier
from .viz import plots, process, save_grid
from .viz.guidance import guidance_sweep, interpolation_cells, interpolation_strip, sweep_gif, sweep_panel
from .viz.images import save_image


# The report's own sampling: a reverse trajectory of REVERSE_SAMPLES images with the run's sampler, and each
# sampler row of the comparison on COMPARISON_SAMPLES images with COMPARISON_STEPS steps.
REVERSE_SAMPLES = 4
COMPARISON_SAMPLES = 8
COMPARISON_STEPS = 20
# A conditional run's guidance sweep: one sample of each class (at most GUIDANCE_SAMPLES) per weight, with the run's
# sampler; a onehot-context run's interpolation strip: INTERPOLATION_ROWS noises × INTERPOLATION_FRAMES contexts.
GUIDANCE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
GUIDANCE_SAMPLES = 10
INTERPOLATION_ROWS, INTERPOLATION_FRAMES = 3, 8


def network_evaluations(config, full_ddpm: bool) -> int:
    """Image evaluations of the network that make_pictures runs when it is given the samples to show (what the
    demo budgets for). ``config``: as the trainer resolved it (num_classes set)."""
    s, T = config.sample, config.diffusion.num_timesteps
    rows = [T if options.get("steps", 0) is None else min(COMPARISON_STEPS, T)
            for _, _, options in process.SAMPLER_ROWS if full_ddpm or options.get("steps", 0) is not None]
    k = config.classes_shown()
    per_step = images_per_sample(k, s.guidance)
    steps = s.steps or T
    evaluations = (REVERSE_SAMPLES * steps + COMPARISON_SAMPLES * sum(rows)) * per_step
    if k:
        evaluations += sum(images_per_sample(k, w) for w in GUIDANCE_WEIGHTS) * min(k, GUIDANCE_SAMPLES) * steps
    if config.data.context == "onehot" and k > 1:
        evaluations += INTERPOLATION_ROWS * INTERPOLATION_FRAMES * steps * per_step
    return evaluations


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif"}[path.suffix]
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def make_pictures(run_dir: Path, out: Path, denoiser: Denoiser, *, device="cpu", full_ddpm: bool = True,
                  log=print, samples: torch.Tensor | None = None) -> dict[str, Path]:
    """Draw every picture the run allows into ``out`` with ``denoiser`` (on ``device``); every sampled picture goes
    through ``generate`` with the run's own plan (its [sample] settings, guidance interval included); returns
    {name: path}. ``samples`` (uint8 [N, C, H, W], one class per column when conditional) are shown as they are
    instead of drawing new ones."""
    pictures: dict[str, Path] = {}
    config = denoiser.config
    d, plan = config.data, denoiser.plan()
    k = denoiser.classes_shown
    T = denoiser.num_timesteps

    log("report: schedules and forward process")
    pictures["schedules"] = plots.plot_schedules(out / "schedules.png", T)
    real = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels, limit=3, seed=1,
                        test_fraction=d.test_fraction)
    pictures["forward"] = save_image(process.forward_strip(real.images, num_timesteps=T), out / "forward.png")

    train, evals = plots.read_log(run_dir)
    if train:
        pictures["loss"] = plots.plot_loss(run_dir, out / "loss.png")
        pictures["loss_heatmap"] = plots.plot_loss_heatmap(run_dir, out / "loss_heatmap.png")
    if list((run_dir / "progress").glob("step_*.png")):
        pictures["progress"] = process.progress_gif(run_dir, out / "progress.gif")
    log(f"report: reverse trajectory ({plan.sampler}, {plan.steps} steps)")
    record, final = process.reverse_trajectory(denoiser, plan, num=REVERSE_SAMPLES, device=device)
    pictures["reverse_gif"] = process.trajectory_gif(record, final, out / "reverse.gif")
    pictures["reverse_strip"] = save_image(process.trajectory_strip(record, final), out / "reverse.png")
    log(f"report: sampler comparison{' (incl. all ' + str(T) + ' DDPM steps)' if full_ddpm else ''}")
    comparison = process.sampler_comparison(denoiser, plan, steps=min(COMPARISON_STEPS, T), num=COMPARISON_SAMPLES,
                                            device=device, include_full=full_ddpm)
    pictures["samplers"] = save_image(comparison, out / "samplers.png")
    if samples is None:  # conditional: ten samples of each class, one class per column
        samples = generate(denoiser, plan, 10 * k if k else 64, device=device)
    pictures["samples"] = save_grid(samples, out / "samples.png", nrow=k or 8, scale=2)
    if k:
        log(f"report: guidance sweep (w = {', '.join(f'{w:g}' for w in GUIDANCE_WEIGHTS)})")
        finals, records = guidance_sweep(denoiser, plan, GUIDANCE_WEIGHTS, num=min(k, GUIDANCE_SAMPLES), device=device)
        pictures["guidance"] = save_image(sweep_panel(finals, GUIDANCE_WEIGHTS, "w"), out / "guidance.png")
        # small (1× pixels, 20 frames): the page embeds it, and 40 frames at 2× weigh 4 MB
        pictures["guidance_gif"] = sweep_gif(records, finals, GUIDANCE_WEIGHTS, "w", out / "guidance.gif", scale=1, max_frames=20)
    if denoiser.onehot and k > 1:
        log("report: context interpolation")
        c0, c1 = (model_cond(denoiser, torch.tensor([label]))["context"][0] for label in (0, 1))
        pictures["interpolation"] = save_image(interpolation_strip(interpolation_cells(
            denoiser, plan, c0, c1, frames=INTERPOLATION_FRAMES, rows=INTERPOLATION_ROWS, device=device)),
            out / "interpolation.png")
    if [e for e in evals if "fid" in e or "domain_fid" in e]:
        pictures["metrics_vs_steps"] = plots.plot_metrics_vs_steps(evals, out / "metrics_vs_steps.png")
    nll = [e for e in evals if "nll_terms_bpd" in e]
    if nll:
        pictures["nll_terms"] = plots.plot_nll_terms(nll[-1], out / "nll_terms.png")
    return pictures


def make_classifier_pictures(run_dir: Path, out: Path, config) -> dict[str, Path]:
    """The pictures of a noise-aware classifier's run: its accuracy on noisy test images per band of t (the last
    ``classifier_eval`` record), its training loss (cross-entropy) and the loss per timestep over training."""
    pictures: dict[str, Path] = {}
    evals = plots.read_records(run_dir, "classifier_eval")
    if evals:
        pictures["classifier_accuracy"] = plots.plot_classifier_accuracy(evals[-1], out / "classifier_accuracy.png")
    if plots.read_records(run_dir, "train"):
        pictures["loss"] = plots.plot_loss(run_dir, out / "loss.png")
        pictures["loss_heatmap"] = plots.plot_loss_heatmap(run_dir, out / "loss_heatmap.png")
    pictures["schedules"] = plots.plot_schedules(out / "schedules.png", config.diffusion.num_timesteps)
    return pictures


SECTIONS = [
    ("classifier_accuracy", "Classifier accuracy on noisy test images", "Each test image classified once per band of "
     "timesteps, at a t drawn in the band with fresh noise; ± 2 binomial standard errors. Guidance uses the classifier's "
     "gradient at every t the sampler visits: where it is near chance, it can only push towards its bias."),
    ("samples", "Samples", "From the EMA weights with the run's [sample] settings; a class-conditional run shows one "
     "class per column, with its classifier-free guidance weight."),
    ("guidance", "Guidance strength", "The same noise (x_T and every step's) sampled at each classifier-free guidance "
     "weight w, one class per column: w = 0 is the plain conditional model; larger w trades diversity for fidelity."),
    ("guidance_gif", "Guidance strength, the reverse processes side by side", ""),
    ("interpolation", "From one context to another", "c = (1 − λ)·c₁ + λ·c₂ with c₁, c₂ the one-hot vectors of the "
     "first two classes and λ from 0 to 1 (columns); each row holds its noise fixed."),
    ("progress", "Training progress", "The same fixed latent sampled at every saved grid: one frame per grid."),
    ("loss", "Training loss", ""),
    ("loss_heatmap", "Loss per timestep over training", "Which noise levels the model has learned, and when."),
    ("reverse_gif", "Reverse process", "x_t (left) and the model's predicted x₀ (right) at each step of one sampling run."),
    ("reverse_strip", "Reverse process, one sample", ""),
    ("samplers", "Samplers from the same noise", "Each row starts from the same x_T (the stochastic ones also share their noise). "
     "Naive skipping keeps each visited step's original β_t and posterior coefficients, so a few steps remove only a "
     "fraction of the noise: the reason respacing (improved DDPM §4) exists."),
    ("forward", "Forward process", "x_t ~ q(x_t | x₀) with the same noise in each row: how fast each schedule destroys the signal."),
    ("schedules", "Noise schedules", ""),
    ("metrics_vs_steps", "Metrics against sampling steps", ""),
    ("nll_terms", "Variational bound per timestep", ""),
]


def write_report(run_dir: str | Path, *, device="cpu", full_ddpm: bool = True, log=print,
                 samples: torch.Tensor | None = None) -> Path:
    """Write RUN/report.html (self-contained) and RUN/report/*.png|gif; returns the HTML path.
    ``samples``: already drawn samples to show (see make_pictures)."""
    run_dir = Path(run_dir)
    started = time.time()
    checkpoint = resolve_checkpoint(run_dir)
    check_writable(run_dir / "report")  # before drawing pictures that could not be saved
    config = load_config(checkpoint)
    if is_classifier(config.model):
        step = load_weights(checkpoint)[3]
        pictures = make_classifier_pictures(run_dir, run_dir / "report", config)
    else:
        denoiser = Denoiser.from_pretrained(checkpoint, device=device)
        step = denoiser.step
        pictures = make_pictures(run_dir, run_dir / "report", denoiser, device=device, full_ddpm=full_ddpm, log=log,
                                 samples=samples)
    train, evals = plots.read_log(run_dir)
    parts = [f"<h1>ddpm run: {html.escape(run_dir.name)}</h1>",
             f"<p>checkpoint step {step} ({html.escape(checkpoint.name)}); "
             + (f"last logged loss {train[-1]['loss']:.4f} at step {train[-1]['step']}, "
                f"{train[-1].get('elapsed_s', 0) / 60:.1f} min of training; " if train else "")
             + f"report written {time.strftime('%Y-%m-%d %H:%M')} in {{elapsed}} s.</p>"]
    if evals:
        parts.append("<h2>Evaluations</h2>" + _eval_table(evals))
    for key, title, caption in SECTIONS:
        if key in pictures:
            parts.append(f'<section><h2>{title}</h2>{f"<p>{html.escape(caption)}</p>" if caption else ""}'
                         f'<img alt="{key}" src="{_data_uri(pictures[key])}"></section>')
    parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(config.to_dict(), indent=2)) + "</pre>")
    body = "\n".join(parts).replace("{elapsed}", f"{time.time() - started:.0f}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>ddpm report: {html.escape(run_dir.name)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")
    return atomic_write_text(run_dir / "report.html", page)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}section{margin-bottom:2em}"""

def _eval_table(evals: list[dict[str, Any]]) -> str:
    head, *rows = table_cells(evals)
    cell = lambda tag, text: f"<{tag}>{html.escape(text)}</{tag}>"  # noqa: E731
    return ("<table><tr>" + "".join(cell("th", h) for h in head) + "</tr>"
            + "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows) + "</table>")
