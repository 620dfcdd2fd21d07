"""A study's results as a person reads them: DIR/study.md (one row per arm, every number with its uncertainty, one
sentence per claim), DIR/study.json (all numbers with their settings) and DIR/report.html (the arms' samples side
by side, all from the same noise, and their loss curves)."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_text
from .catalog import Study
from .stats import across_seeds, difference, paired_difference, paired_mean_se


def _share(entry: dict | None) -> str:
    return "" if entry is None else f"{100 * entry['value']:.1f}% ± {100 * entry['se']:.1f}"


def _fid(entry: dict) -> str:
    return f"{entry['value']:.1f} [{entry['low']:.1f}, {entry['high']:.1f}]"


def _nll(entry: dict | None) -> str:
    return "" if entry is None else f"{entry['value']:.3f} ± {entry['se']:.3f}"


def _loss(entry: dict) -> str:
    """A value ± its standard error, to the decimals that give the error two significant digits (a loss of 6e-4 at
    t = 999 and one of 0.53 at t = 1 in one table)."""
    se = entry["se"]
    decimals = max(0, 1 - math.floor(math.log10(se))) if se > 0 else 4
    return f"{entry['value']:.{decimals}f} ± {se:.{decimals}f}"


def by_arm(results: dict[str, Any]) -> dict[str, list[dict]]:
    arms: dict[str, list[dict]] = {}
    for r in results["arms"]:
        arms.setdefault(r["arm"], []).append(r)
    return arms


def loss_table(results: dict[str, Any]) -> list[str]:
    """A loss study's rows: per stage (seed 0), the held-out loss at each single t ± its standard error."""
    times = list(results["arms"][0]["losses"])
    rows = ["| stage | steps | train min | " + " | ".join(f"loss at t = {t}" for t in times) + " |",
            "|" + "---|" * (3 + len(times))]
    stages = [runs[0] for runs in by_arm(results).values()]
    for r in stages:
        rows.append(f"| {r['arm']} | {r['steps']} | {r['train_minutes']:.1f} | "
                    + " | ".join(_loss(r["losses"][t]) for t in times) + " |")
    if all("per_image" in entry for r in stages for entry in r["losses"].values()):  # (older studies kept no images)
        rows += ["", "Change from the previous stage, paired over the same images and noise (mean ± standard error of "
                 "the per-image differences):", "",
                 "| stage | " + " | ".join(f"t = {t}" for t in times) + " |", "|" + "---|" * (1 + len(times))]
        for before, after in zip(stages, stages[1:]):
            changes = (paired_mean_se(after["losses"][t]["per_image"], before["losses"][t]["per_image"]) for t in times)
            rows.append(f"| {before['arm']} → {after['arm']} | "
                        + " | ".join(_loss({"value": mean, "se": se}) for mean, se in changes) + " |")
    return rows


def table(results: dict[str, Any]) -> list[str]:
    """Markdown rows: per arm (seed 0's interval; with several seeds the mean and spread across seeds too)."""
    if "losses" in results["arms"][0]:
        return loss_table(results)
    seeds = results["settings"]["seeds"]
    nll = next((r["nll"] for r in results["arms"] if "nll" in r), None)
    nll_head = ([f"NLL bits/dim ± se ({nll['images']} test images, {nll['timesteps']} t)"]
                + (["NLL over seeds (mean ± sd)"] if seeds > 1 else [])) if nll else []
    head = ["arm", "steps", "train min", f"FID [95% bootstrap], n = {results['settings']['samples']}",
            *(["FID over seeds (mean ± sd)"] if seeds > 1 else []), *nll_head, "confident", "asked class", "net evals",
            "sampling s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def spread(values: list[float], digits: int) -> str:
        return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"

    for arm, runs in by_arm(results).items():
        first = runs[0]
        fid_seeds = [spread([r["fid"]["value"] for r in runs], 1)] if seeds > 1 else []
        nll_cells = [_nll(first.get("nll"))] if nll else []
        if nll and seeds > 1:
            nll_cells.append(spread([r["nll"]["value"] for r in runs], 3) if "nll" in first else "")
        rows.append("| " + " | ".join([arm, str(first["steps"]), f"{first['train_minutes']:.1f}", _fid(first["fid"]), *fid_seeds,
                                        *nll_cells, _share(first.get("confident")), _share(first.get("asked")),
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
    """One sentence per claim (better, worse[, "nll"]): the FID difference with its 95% bootstrap interval (seed-averaged
    draws with several seeds), or the NLL difference with its 95% interval over the same test images, and whether it
    exceeds the noise at this n. With K ≥ 2 seeds also the 95% t-interval of the per-seed differences (the training
    runs' own noise, ``stats.across_seeds``): the claim is settled only when both intervals exclude 0 on one side."""
    arms = by_arm(results)
    n = results["settings"]["samples"]
    sentences = []
    for better, worse, *metric in study.claims:
        runs = {name: sorted(arms[name], key=lambda r: r["seed"]) for name in (better, worse)}
        if metric == ["nll"]:
            if "nll" not in runs[better][0]:
                continue  # a study run without its NLL (an older directory) settles only its FID claims
            per_image = {name: np.mean([r["nll"]["per_image"] for r in runs[name]], axis=0) for name in runs}
            mean, low, high = paired_difference(per_image[better], per_image[worse])
            unit, digits, noise, basis = " bits/dim", 3, "the test images' noise", f"the same {len(per_image[better])} test images"
            per_seed = {name: [r["nll"]["value"] for r in runs[name]] for name in runs}
        else:
            draws = {name: np.mean([r["fid"]["draws"] for r in runs[name]], axis=0) for name in runs}
            mean, low, high = difference(draws[better], draws[worse])
            unit, digits, noise, basis = "", 1, "the sampling noise", f"n = {n} samples per arm"
            per_seed = {name: [r["fid"]["value"] for r in runs[name]] for name in runs}
        kind = "NLL" if metric else "FID"
        intervals = [(low, high)]
        if len(per_seed[better]) > 1:
            mean, seed_low, seed_high = across_seeds(per_seed[better], per_seed[worse])
            intervals.append((seed_low, seed_high))
            what = (f"{kind} difference {mean:+.{digits}f}{unit} over {len(per_seed[better])} seeds (95% interval across "
                    f"the seeds {seed_low:+.{digits}f} … {seed_high:+.{digits}f}; {noise} alone {low:+.{digits}f} … "
                    f"{high:+.{digits}f}, {basis})")
        else:
            what = f"{kind} difference {mean:+.{digits}f}{unit} (95% interval {low:+.{digits}f} … {high:+.{digits}f}, {basis})"
        verdict = ("holds here: the difference exceeds the noise" if all(h < 0 for _, h in intervals) else
                   "is contradicted here: the difference exceeds the noise the other way" if all(lo > 0 for lo, _ in intervals) else
                   "is not settled at this sample size and budget: the interval includes 0" if len(intervals) == 1 else
                   "is not settled at this sample size, budget and number of seeds: an interval includes 0")
        sentences.append(f"- \"{better} beats {worse}{' in NLL' if metric else ''}\": {what} — the claim {verdict}.")
    return sentences


def method(study: Study, results: dict[str, Any]) -> str:
    """The paragraph above a study's table: what was trained, for how long, and how every arm was scored."""
    s = results["settings"]
    budget = f"{s['steps']} steps" if s["steps"] is not None else f"{s['minutes']:g} min"
    first = results["arms"][0]
    presets = sorted({a.preset for a in study.arms})
    recipe = f"the `{'` / `'.join(presets)}` recipe" + "s" * (len(presets) > 1)
    if study.loss_times:
        how = (f"One run of {recipe}, {budget} of training in all, in {len(study.arms)} stages; after each, the EMA model's "
               f"squared error of its target on {s['samples']} test images at each single t (the same images and noise "
               "every time), ± its standard error over the images. This study measures; it settles no claim.")
    else:
        arms = results["arms"]
        trained = (f"One model of {recipe}, {budget} of training, {s['seeds']} seed(s); every arm samples it its own way"
                   if study.samples_one_model else
                   f"One run per recipe ({recipe}), {s['seeds']} seed(s), scored after {budget} × each arm's factor of "
                   "training: the arms of a recipe are the stages of its run" if study.staged else
                   f"Every arm: {recipe} with its own setting, {budget} of training per arm (× the arm's factor), "
                   f"{s['seeds']} seed(s)")

        def shared(*keys: str) -> bool:
            return all(a[key] == first[key] for a in arms for key in keys)

        def sampled(arm: dict) -> str:
            return f"{arm['sampler']} {arm['sampling_steps']} steps, guidance w = {arm['guidance']:g}"

        per_recipe: dict[str, set[str]] = {}
        for arm in arms:
            per_recipe.setdefault(arm.get("family", ""), set()).add(sampled(arm))
        # a setting every arm shares is said once; one each recipe of a staged study fixes (its [sample] section), per
        # recipe; one the arms vary, each arm's name says (a sampling study's)
        if study.staged and not shared("sampler", "sampling_steps", "guidance") and all(len(v) == 1 for v in per_recipe.values()):
            sampling = "each recipe its own: " + "; ".join(f"`{family}` {next(iter(said))}" for family, said in per_recipe.items())
        else:
            sampling = ((f"{first['sampler']} {first['sampling_steps']} steps" if shared("sampler", "sampling_steps")
                         else "the sampler and steps its name says") + ", " +
                        (f"guidance w = {first['guidance']:g}" if shared("guidance") else "the guidance its name says"))
        how = (f"{trained}; scored on {s['samples']} samples (seed 0, {sampling}) by {first['feature']} features against "
               f"{first['reference']}.")
        if "nll" in first:
            how += (f" NLL: the variational bound in bits/dim on the first {first['nll']['images']} test images, a stratified "
                    f"estimate over {first['nll']['timesteps']} timesteps with the arm's own variance (the same images and "
                    "timesteps in every arm), ± its standard error over the images.")
    return how


def write(study: Study, results: dict[str, Any], out: Path) -> dict[str, Path]:
    how = method(study, results)
    md = [f"# Study `{study.name}`", "", f"Claim: {study.claim} ({study.source}).", "", how, "",
          *table(results), "", *(["Claims:", *claim_sentences(study, results), ""] if study.claims else [])]
    paths = {"md": atomic_write_text(out / "study.md", "\n".join(md)),
             "json": atomic_write_text(out / "study.json", json.dumps(results, indent=1) + "\n")}
    paths["html"] = write_html(study, results, out, md)
    return paths


def _img(path: Path) -> str:
    import base64

    return f"<img src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def write_html(study: Study, results: dict[str, Any], out: Path, md: list[str]) -> Path:
    from ..viz import plots

    parts = [f"<h1>ddpm study: {html.escape(study.name)}</h1>", "<pre>" + html.escape("\n".join(md)) + "</pre>",
             "<h2>Samples of every arm from the same noise (seed 0)</h2>"]
    for r in results["arms"]:
        grid = out / "arms" / f"{r['arm']}-s{r['seed']}" / "study-samples.png"
        if grid.is_file():
            parts.append(f"<figure><figcaption>{html.escape(r['arm'])} (seed {r['seed']})</figcaption>{_img(grid)}</figure>")
    families, trained, guided = {}, {}, {}  # curves over sampling settings, training budgets, guidance strengths
    for r in results["arms"]:
        if r.get("family") and r["seed"] == 0:
            if study.trade_off:
                guided.setdefault(r["family"], []).append(r)
            elif study.samples_one_model:
                families.setdefault(r["family"], []).append((r["network_evaluations"], r["fid"]["value"], r["fid"]["low"],
                                                             r["fid"]["high"], r["sampling_s"]))
            else:
                trained.setdefault(r["family"], []).append(r)
    stages = [r for r in results["arms"] if "losses" in r and r["seed"] == 0]
    if stages:
        parts.append("<h2>Held-out loss at single timesteps over training</h2>"
                     + _img(plots.plot_losses_over_training(stages, out / "study-losses.png")))
    if families:
        parts.append("<h2>FID against network evaluations per sample</h2>"
                     + _img(plots.plot_fid_vs_evaluations(families, out / "study-fid.png", floor=results.get("floor"))))
    if guided:
        unguided = next((r for r in results["arms"] if r["seed"] == 0 and r.get("guidance") == 0
                         and not r.get("classifier_scale")), None)
        if unguided is not None:  # every guided family starts from the unguided model
            guided = {name: arms if unguided in arms else [unguided, *arms] for name, arms in guided.items()}
        parts.append("<h2>Fidelity against FID</h2>" + _img(plots.plot_fid_vs_fidelity(guided, out / "study-guidance.png")))
    if trained:
        parts.append("<h2>Quality against training time</h2>"
                     + _img(plots.plot_quality_vs_training(trained, out / "study-budget.png")))
    runs = sorted({study.run_name(study.arm(r["arm"]), r["seed"]) for r in results["arms"]})
    parts.append("<h2>Training loss</h2>" + _img(plots.plot_loss_curves({name: out / "arms" / name for name in runs},
                                                                        out / "study-loss.png")))
    style = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}figure{display:inline-block;margin:4px}" \
            "img{image-rendering:pixelated}pre{background:#f6f6f6;padding:1em;overflow:auto}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>study {html.escape(study.name)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    return atomic_write_text(out / "report.html", page)
