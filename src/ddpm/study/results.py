"""A study's results as a person reads them: DIR/study.md (one row per arm, every number with its uncertainty, one
sentence per claim), DIR/study.json (all numbers with their settings) and DIR/report.html (the arms' samples side
by side, all from the same noise, and their loss curves)."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_text
from .catalog import Study
from .stats import difference


def _share(entry: dict | None) -> str:
    return "" if entry is None else f"{100 * entry['value']:.1f}% ± {100 * entry['se']:.1f}"


def _fid(entry: dict) -> str:
    return f"{entry['value']:.1f} [{entry['low']:.1f}, {entry['high']:.1f}]"


def by_arm(results: dict[str, Any]) -> dict[str, list[dict]]:
    arms: dict[str, list[dict]] = {}
    for r in results["arms"]:
        arms.setdefault(r["arm"], []).append(r)
    return arms


def table(results: dict[str, Any]) -> list[str]:
    """Markdown rows: per arm (seed 0's interval; with several seeds the mean and spread across seeds too)."""
    seeds = results["settings"]["seeds"]
    head = ["arm", "steps", "train min", f"FID [95% bootstrap], n = {results['settings']['samples']}",
            *(["FID over seeds (mean ± sd)"] if seeds > 1 else []), "confident", "asked class", "net evals", "sampling s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, runs in by_arm(results).items():
        first = runs[0]
        spread = []
        if seeds > 1:
            values = np.array([r["fid"]["value"] for r in runs])
            spread = [f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"]
        rows.append("| " + " | ".join([arm, str(first["steps"]), f"{first['train_minutes']:.1f}", _fid(first["fid"]), *spread,
                                        _share(first.get("confident")), _share(first.get("asked")),
                                        str(first["network_evaluations"]), f"{first['sampling_s']:.0f}"]) + " |")
    floor = results["floor"]
    rows.append(f"| floor: {floor['num']} real training images | | | {_fid(floor)} |" + " |" * (len(head) - 4))
    memorised = [(arm, runs[0]["memorisation"]) for arm, runs in by_arm(results).items() if "memorisation" in runs[0]]
    if memorised:  # a table of its own: how close samples come to their arm's training images
        rows += ["", "| arm | training images | nearest-training distance, samples / test images | near-copies (≈ 1% if none) |",
                 "|---|---|---|---|"]
        rows += [f"| {arm} | {m['train_images']} | {m['nn_ratio']:.2f} | {_share(m['near_copies'])} |" for arm, m in memorised]
    return rows


def claim_sentences(study: Study, results: dict[str, Any]) -> list[str]:
    """One sentence per claim (better, worse): the FID difference with its 95% bootstrap interval (seed-averaged draws
    with several seeds) and whether it exceeds the noise at this n."""
    arms = by_arm(results)
    n = results["settings"]["samples"]
    sentences = []
    for better, worse in study.claims:
        draws = {name: np.mean([r["fid"]["draws"] for r in arms[name]], axis=0) for name in (better, worse)}
        mean, low, high = difference(draws[better], draws[worse])
        verdict = ("holds here: the difference exceeds the noise" if high < 0 else
                   "is contradicted here: the difference exceeds the noise the other way" if low > 0 else
                   "is not settled at this sample size and budget: the interval includes 0")
        sentences.append(f"- \"{better} beats {worse}\": FID difference {mean:+.1f} (95% interval {low:+.1f} … {high:+.1f}, "
                         f"n = {n} samples per arm) — the claim {verdict}.")
    return sentences


def write(study: Study, results: dict[str, Any], out: Path) -> dict[str, Path]:
    s = results["settings"]
    budget = f"{s['steps']} steps" if s["steps"] is not None else f"{s['minutes']:g} min"
    first = results["arms"][0]
    md = [f"# Study `{study.name}`", "", f"Claim: {study.claim} ({study.source}).", "",
          f"Every arm: the `{'` / `'.join(sorted({a.preset for a in study.arms}))}` recipe with its own setting, {budget} of "
          "training per arm (× the arm's factor), "
          f"{s['seeds']} seed(s); scored on {s['samples']} samples (seed 0, {first['sampler']} {first['sampling_steps']} steps, "
          f"guidance w = {first['guidance']:g}) by {first['feature']} features against {first['reference']}.", "",
          *table(results), "", "Claims:", *claim_sentences(study, results), ""]
    paths = {"md": atomic_write_text(out / "study.md", "\n".join(md)),
             "json": atomic_write_text(out / "study.json", json.dumps(results, indent=1) + "\n")}
    paths["html"] = write_html(study, results, out, md)
    return paths


def write_html(study: Study, results: dict[str, Any], out: Path, md: list[str]) -> Path:
    import base64

    from ..viz import plots

    parts = [f"<h1>ddpm study: {html.escape(study.name)}</h1>", "<pre>" + html.escape("\n".join(md)) + "</pre>",
             "<h2>Samples of every arm from the same noise (seed 0)</h2>"]
    for r in results["arms"]:
        grid = out / "arms" / f"{r['arm']}-s{r['seed']}" / "study-samples.png"
        if grid.is_file():
            data = base64.b64encode(grid.read_bytes()).decode()
            parts.append(f"<figure><figcaption>{html.escape(r['arm'])} (seed {r['seed']})</figcaption>"
                         f"<img src='data:image/png;base64,{data}'></figure>")
    families = {}
    for r in results["arms"]:
        if r.get("family") and r["seed"] == 0:
            families.setdefault(r["family"], []).append((r["network_evaluations"], r["fid"]["value"], r["fid"]["low"],
                                                         r["fid"]["high"], r["sampling_s"]))
    if families:
        curve = plots.plot_fid_vs_evaluations(families, out / "study-fid.png")
        parts.append("<h2>FID against network evaluations per sample</h2><img src='data:image/png;base64,"
                     + base64.b64encode(curve.read_bytes()).decode() + "'>")
    curves = plots.plot_loss_curves({f"{r['arm']}-s{r['seed']}": out / "arms" / f"{r['arm']}-s{r['seed']}" for r in results["arms"]},
                                    out / "study-loss.png")
    parts.append("<h2>Training loss</h2><img src='data:image/png;base64," + base64.b64encode(curves.read_bytes()).decode() + "'>")
    style = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}figure{display:inline-block;margin:4px}" \
            "img{image-rendering:pixelated}pre{background:#f6f6f6;padding:1em;overflow:auto}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>study {html.escape(study.name)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    return atomic_write_text(out / "report.html", page)
