"""Run a study: train every arm (× seed) with one budget into DIR/arms/ARM-sSEED (ordinary run directories), score
each alike, and gather the results. A killed study continues where it stopped: an arm whose scores are recorded is
kept, an arm in training resumes through the trainer's exact resume. ``only`` runs the arms named (a cluster's job
array, several GPUs); a later run without it gathers what they recorded.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import CLASSIFIER_TRAINING, RunConfig, classifier_config
from ..data import load_dataset
from ..errors import DdpmError
from ..denoiser import Denoiser
from ..generation import generate, sample_labels
from ..io import atomic_write_text
from ..metrics.features import feature_extractor
from ..metrics.nll_bound import NLL_IMAGES, nll_bound
from ..models import load_classifier
from ..scoring import score_samples
from ..viz import save_grid
from .catalog import NLL_TIMESTEPS, Study

SETTINGS_FILE, RESULT_FILE = "study-settings.json", "study-result.json"
STEPS_UNDER_A_TIME_BUDGET = 10_000_000  # with --minutes, the clock ends training


@dataclass(frozen=True)
class StudySettings:
    """What makes two runs of a study the same study: recorded in DIR/study-settings.json, checked on every rerun."""

    study: str
    minutes: float | None
    steps: int | None
    seeds: int
    samples: int
    overrides: tuple[str, ...]
    feature: str  # domain (the dataset's shipped classifier) or inception
    nll: bool = False  # every arm's NLL bound is scored too
    nll_images: int = NLL_IMAGES  # on this many test images

    def check_against(self, out: Path) -> None:
        """Refuse a directory that holds another study, or this one with other settings; record them otherwise."""
        path = out / SETTINGS_FILE
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
            except json.JSONDecodeError:
                raise DdpmError(f"{path} is not valid JSON; use another output directory") from None
            mine = json.loads(json.dumps(asdict(self)))
            defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
            saved = {**defaults, **saved}  # a directory written before a setting existed ran it at its default
            if saved != mine:
                if saved.get("study") != self.study:
                    raise DdpmError(f"{out} holds study {saved.get('study')!r}, not {self.study!r}; use another output directory")
                changed = sorted(k for k in mine if saved.get(k) != mine[k])
                raise DdpmError(f"{out} holds study {self.study!r} run with other settings ({', '.join(changed)}); "
                                "use another --out or the same settings")
        elif out.exists() and any(out.iterdir()):
            raise DdpmError(f"{out} exists and is not a study directory; use another output directory")
        else:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")


def arm_config(study: Study, arm_name: str, settings: StudySettings, seed: int) -> RunConfig:
    """The run config of one arm and seed: its preset, the study's and the arm's overrides, the budget, the user's
    --set (which apply to every arm alike) and the seed. Arms differ only in their own overrides (and budget)."""
    arm = study.arm(arm_name)
    base = RunConfig.from_toml(arm.preset)
    if settings.steps is not None:  # steps alone end training: the preset's time budget is lifted
        base = replace(base, train=replace(base.train, max_minutes=None))
        budget = [f"train.steps={max(1, round(settings.steps * arm.budget_factor))}"]
    else:
        budget = [f"train.steps={STEPS_UNDER_A_TIME_BUDGET}", f"train.max_minutes={settings.minutes * arm.budget_factor}"]
    return base.with_overrides([*study.base, *arm.overrides, *budget, *settings.overrides, f"train.seed={seed}"])


def run_arm(study: Study, arm_name: str, seed: int, settings: StudySettings, out: Path, device, scorer: "Scorer",
            log: Callable[[str], None]) -> dict[str, Any]:
    """Train (or resume) one arm and score it; its result is written to its run directory and returned."""
    from ..checkpoint import list_checkpoints
    from ..train import Trainer

    arm = study.arm(arm_name)
    result_path = out / "arms" / f"{arm_name}-s{seed}" / RESULT_FILE
    if result_path.is_file():
        return json.loads(result_path.read_text())
    # one model per arm, or per seed in a sampling study, or per recipe and seed in a staged study (Study.run_name)
    run = out / "arms" / study.run_name(arm, seed)
    config = arm_config(study, arm_name, settings, seed)
    resuming = run.exists() and bool(list_checkpoints(run))
    log(f"study {study.name}: arm {arm_name} (seed {seed}) {'continues' if resuming else 'trains'} {run}")
    # a stage trains its family's run further (a resume may change the budget); others keep the run's config
    keep = None if resuming and not study.staged else config
    trainer = Trainer(keep, run, device, resume=resuming, force=not resuming and run.exists(), quiet=True)
    summary = trainer.run()
    log(f"study {study.name}: arm {arm_name} (seed {seed}) trained {summary['steps']} steps; scoring it")
    classifier = train_classifier(run, out, settings, seed, device, log) if dict(arm.sampling).get("classifier_scale") else None
    scores = scorer.losses(run, device, study.loss_times) if study.loss_times else \
        scorer.score(run, device, dict(arm.sampling), result_path.parent, memorisation=study.memorisation,
                     nll_images=settings.nll_images if settings.nll else 0, classifier=classifier)
    result = {"arm": arm_name, "seed": seed, "family": arm.family, "steps": summary["steps"],
              "train_minutes": summary["elapsed_s"] / 60, "parameters": summary["parameters"],
              "config": trainer.config.to_dict(), **scores}
    atomic_write_text(result_path, json.dumps(result) + "\n")
    return result


def train_classifier(model_run: Path, out: Path, settings: StudySettings, seed: int, device,
                     log: Callable[[str], None]) -> Path:
    """The noise-aware classifier (``ddpm train-classifier``'s recipe) of the study's model in ``model_run``, trained once
    per seed into DIR/arms/classifier-sSEED with the study's budget (``classifier_budget``); a killed study resumes it
    like an arm."""
    from ..checkpoint import list_checkpoints, load_config
    from ..train import Trainer

    run = out / "arms" / f"classifier-s{seed}"
    if run.exists() and list_checkpoints(run):
        Trainer(None, run, device, resume=True, quiet=True).run()  # finishes a killed training (nothing when done)
        return run
    config = classifier_config(load_config(model_run)).with_overrides(classifier_budget(settings))
    log(f"study: training the noise-aware classifier of {model_run} into {run}")
    summary = Trainer(config, run, device, force=run.exists(), quiet=True).run()
    log(f"study: the classifier trained {summary['steps']} steps")
    return run


def classifier_budget(settings: StudySettings) -> list[str]:
    """The classifier's train.* overrides: the study's budget, never beyond the recipe's own steps (more would
    change the recipe, not the budget: --steps 6250 standing in for 20 minutes gives the classifier its 3000)."""
    steps = CLASSIFIER_TRAINING["steps"]
    if settings.steps is not None:
        return [f"train.steps={min(settings.steps, steps)}"]
    return [f"train.steps={steps}", f"train.max_minutes={settings.minutes}"]


class Scorer:
    """Scores every arm alike: ``samples`` samples from the same seeds with the run's own [sample] settings (the same
    recipe in every arm unless the arm changes it), through ``scoring.score_samples`` as ``ddpm eval`` scores: the
    FID with its bootstrap interval, the share the classifier reads confidently and, when classes were asked for,
    the share read as the asked class; the floor at the same n once."""

    def __init__(self, dataset: str, samples: int, feature: str, device, data_dir: str | None = None):
        from ..metrics.fid import dataset_stats

        self.extractor = feature_extractor(feature, dataset, device=device)
        self.samples, self.dataset, self.data_dir = samples, dataset, data_dir
        self.reference = dataset_stats(f"{dataset}:test", self.extractor, data_dir=data_dir)

    def losses(self, run: Path, device, times: tuple[int, ...]) -> dict[str, Any]:
        """The held-out L_simple of the model in ``run`` (EMA weights) at each single timestep t: the squared error of
        its mean output on ``samples`` test images, the same images and noise for every t and every stage, its mean
        and standard error over the images, and each image's (``per_image``, for the stages' paired changes)."""
        from ..conditioning import model_cond
        from ..objectives import training_loss

        denoiser = Denoiser.from_pretrained(run, device=device)
        d = denoiser.config.data
        test = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels,
                            limit=self.samples, seed=0, test_fraction=d.test_fraction)
        x0, y = test.batch(torch.arange(len(test)), device)
        cond = model_cond(denoiser, y)
        schedule = denoiser.schedule
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(device)
        losses = {}
        with torch.no_grad():
            for t in times:
                t = min(t, schedule.num_timesteps - 1)
                mse = training_loss(denoiser.net, schedule, x0, prediction=denoiser.prediction, variance=denoiser.variance,
                                    t=torch.full((len(x0),), t, device=device), noise=noise, cond=cond)["mse"].double().cpu()
                losses[str(t)] = {"value": mse.mean().item(), "se": (mse.std() / len(mse) ** 0.5).item(), "num": len(mse),
                                  "per_image": mse.tolist()}  # the stages' changes are paired over the images
        return {"losses": losses, "checkpoint_step": denoiser.step, "network_evaluations": 0, "sampling_s": 0.0}

    def floor(self) -> dict[str, Any]:
        """FID of ``samples`` real training images (a fixed draw) against the test reference: a perfect model's score."""
        real = load_dataset(self.dataset, root=self.data_dir, limit=self.samples, seed=0)
        return score_samples(real.images, self.extractor, self.reference).interval.as_dict()

    def score(self, run: Path, device, sampling: dict[str, Any], folder: Path, memorisation: bool = False,
              nll_images: int = 0, classifier: Path | None = None) -> dict[str, Any]:
        """Score the model in ``run`` sampled with its [sample] settings, replaced by ``sampling`` (a sampling study's
        arm); its first 100 samples are drawn into ``folder``/study-samples.png. ``memorisation``: also how close
        the samples come to the run's own training images (``metrics.memorisation``); ``nll_images`` > 0: also its NLL
        bound in bits/dim on that many test images (NLL_TIMESTEPS stratified timesteps, the model's own variance); ``classifier``:
        the noise-aware classifier that guides with ``sampling``'s classifier_scale."""
        import time

        from ..guidance import images_per_sample

        denoiser = Denoiser.from_pretrained(run, device=device)
        config = denoiser.config
        k = denoiser.classes_shown
        sampling = dict(sampling)
        skip = sampling.pop("skip", None)
        scale = sampling.pop("classifier_scale", 0.0)
        guide = {"classifier": load_classifier(classifier, config, device=device), "classifier_scale": scale} if scale else {}
        plan = denoiser.plan(**sampling, **guide)
        if skip is not None and plan.sampler == "ddpm":
            plan = plan.replace(skip=skip)
        labels = sample_labels(denoiser, plan, self.samples)
        started = time.time()
        images = generate(denoiser, plan, self.samples, seed=0, device=device)
        sampling_s = time.time() - started
        folder.mkdir(parents=True, exist_ok=True)
        save_grid(images[:100], folder / "study-samples.png", nrow=k or 10, scale=1)
        scores = score_samples(images, self.extractor, self.reference, labels=labels)
        out = {"fid": scores.interval.as_dict(), "feature": self.extractor.feature,
               "reference": self.reference.source, "sampling_s": sampling_s, "checkpoint_step": denoiser.step,
               "sampler": plan.sampler, "sampling_steps": plan.steps, "guidance": plan.guidance,
               "guidance_interval": list(plan.guidance_interval), "eta": plan.eta or 0.0, "skip": skip or "respace",
               "classifier_scale": scale, "network_evaluations": plan.steps * images_per_sample(k, plan.guidance)}
        if scores.confident is not None:
            out["confident"] = scores.confident
        if scores.asked is not None:
            out["asked"] = scores.asked
        if memorisation:
            from ..metrics.memorisation import memorisation as nearest

            d = config.data
            train = load_dataset(d.dataset, root=d.data_dir, image_size=d.image_size, channels=d.channels, limit=d.limit,
                                 seed=config.train.seed, test_fraction=d.test_fraction)  # the images the run trained on
            test = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels,
                                limit=self.samples, seed=0, test_fraction=d.test_fraction)
            out["memorisation"] = nearest(images, test.images, train.images)
        if nll_images:
            bound = nll_bound(denoiser, images=nll_images, timesteps=NLL_TIMESTEPS, seed=0,
                              device=device)  # the same images and timestep draws in every arm
            out["nll"] = {"value": bound["nll_bpd"], "se": bound["nll_bpd_stderr"], "images": bound["nll_images"],
                          "timesteps": bound["nll_timesteps"], "variance": bound["nll_variance"],
                          "per_image": bound["nll_bpd_per_image"], "s": bound["nll_s"]}
        return out


def labelled_overrides(study: Study, dataset: str, data_dir: str | None) -> list[str]:
    """What unlabelled data changes in the base recipe (class-conditional, guided w = 2): unconditional, unguided —
    or one sentence when the study is about class conditioning itself."""
    data = load_dataset(dataset, root=data_dir, limit=2, seed=0)
    if data.num_classes:
        return []
    if study.needs_labels:
        raise DdpmError(f"study {study.name!r} needs class labels; dataset {dataset!r} has none")
    return ["data.conditional=false", "sample.guidance=0"]


def run_study(study: Study, out: Path, settings: StudySettings, *, device, only: list[str] | None = None,
              data_dir: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Run (or continue) ``study`` in ``out``; returns the gathered results once every arm and seed is scored (None
    when ``only`` left some for another process)."""
    for name in only or []:
        study.arm(name)  # an unknown arm is refused before any work
    settings.check_against(out)  # (the CLI has checked the data's labels: ``labelled_overrides``)
    dataset = arm_config(study, study.arms[0].name, settings, 0).data.dataset
    scorer = Scorer(dataset, settings.samples, settings.feature, device, data_dir)
    wanted = {a.name for a in study.arms if not only or a.name in only}
    earlier = {a.name for name in wanted for a in study.stages_before(name)} - wanted
    if earlier:  # a stage trains its run on from the stage before: those are trained and scored first
        log(f"study {study.name}: {', '.join(a.name for a in study.arms if a.name in earlier)} first, the earlier stages "
            f"of the same run(s)")
    wanted = [a.name for a in study.arms if a.name in wanted | earlier]
    results = {}
    for name in wanted:
        for seed in range(settings.seeds):
            results[(name, seed)] = run_arm(study, name, seed, settings, out, device, scorer, log)
    missing = [f"{a.name}-s{seed}" for a in study.arms for seed in range(settings.seeds)
               if not (out / "arms" / f"{a.name}-s{seed}" / RESULT_FILE).is_file()]
    if missing:
        log(f"study {study.name}: {len(missing)} arm run(s) still to do ({', '.join(missing)}); run again without --only "
            "once they are done to gather the table")
        return None
    arms = [json.loads((out / "arms" / f"{a.name}-s{seed}" / RESULT_FILE).read_text())
            for a in study.arms for seed in range(settings.seeds)]
    floor_path = out / "study-floor.json"
    if not floor_path.is_file() and not study.loss_times:
        atomic_write_text(floor_path, json.dumps(scorer.floor()) + "\n")
    return {"study": study.name, "claim": study.claim, "source": study.source, "settings": asdict(settings),
            "floor": json.loads(floor_path.read_text()) if floor_path.is_file() else None, "arms": arms}
