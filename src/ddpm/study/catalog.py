"""The write-ups' experiments, each a study: arms that differ in one setting, the claim they test, its source.

Every arm is the study's base recipe (the ``mnist-demo`` preset: a few CPU-minutes give readable digits) with
its own overrides; the study trains all arms with one budget (``--minutes`` or ``--steps`` each) and scores
them alike (``study.runner``). A claim names the arm the write-up says is better and the one it beats; lower
classifier FID is better.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DdpmError

BASE_PRESET = "mnist-demo"
DEFAULT_SAMPLES, MIN_SAMPLES = 1000, 100  # samples scored per arm at a study's default budget, and at least
# an arm's NLL bound: on the first NLL_IMAGES test images (--nll-images), a stratified estimate over NLL_TIMESTEPS
# timesteps (the exact sum over all T costs T network evaluations per image; the stratified one is unbiased, and its
# spread is in the per-image standard error)
NLL_TIMESTEPS = 100


@dataclass(frozen=True)
class Arm:
    """One setting of a study: ``overrides`` (``section.key=value``) on the base recipe; ``budget_factor``
    multiplies the study's budget (the time-input study's two training lengths); ``preset`` is the recipe it
    starts from. In a sampling study every arm samples the one trained model: ``sampling`` holds its settings
    (sampler, steps, eta, guidance, interval, skip, classifier_scale: the scale of a noise-aware classifier's
    guidance). ``family`` names the curve the arm belongs to: FID against network evaluations in a sampling study,
    FID and NLL against training minutes in a budget study."""

    name: str
    overrides: tuple[str, ...] = ()
    budget_factor: float = 1.0
    sampling: tuple[tuple[str, object], ...] = ()
    family: str = ""
    preset: str = BASE_PRESET  # the recipe the arm starts from (the budget study compares two)


@dataclass(frozen=True)
class Study:
    name: str
    claim: str
    source: str
    arms: tuple[Arm, ...]
    minutes: float  # the default budget per arm on the 2-core build machine
    # (better arm, worse arm) pairs the write-ups assert, lower classifier FID being better; a third element "nll"
    # makes it a claim about the NLL bound in bits/dim instead
    claims: tuple[tuple[str, ...], ...] = ()
    base: tuple[str, ...] = field(default=())  # overrides of every arm
    samples: int | None = None  # the default number of samples scored per arm (None: the command's)
    memorisation: bool = False  # also measure how close samples come to their arm's training images
    # the arms of one family are stages of one run, listed in training order: each trains the run on to its share of
    # the budget (budget_factor) and scores it (the model after 5 min of a 60-min run is the 5-min model: the learning
    # rate does not depend on the budget), so a budget curve costs its longest arm, not the sum of its arms
    staged: bool = False
    # a staged study of the loss at these single timesteps: each stage is scored by the held-out loss at each t
    # instead of samples
    loss_times: tuple[int, ...] = ()
    needs_labels: bool = False  # a study of class conditioning cannot run on unlabelled data
    nll: bool = False  # also score every arm's NLL bound in bits/dim (``ddpm study --nll`` asks it of any study)
    trade_off: bool = False  # its arms trade fidelity for diversity: the report draws FID against the asked-class share

    @property
    def samples_one_model(self) -> bool:
        """A sampling study: one model trained once, its arms only sample it differently."""
        return bool(self.arms) and all(arm.sampling for arm in self.arms)

    def run_name(self, arm: Arm, seed: int) -> str:
        """The run directory under OUT/arms/ that trains ``arm``: its own, or one per seed in a sampling study, or one
        per family and seed in a staged study."""
        if self.samples_one_model or (self.staged and not arm.family):
            return f"model-s{seed}"
        return f"{arm.family if self.staged else arm.name}-s{seed}"

    def stages_before(self, name: str) -> list[Arm]:
        """The arms a staged study's arm ``name`` trains on from: those of its family listed before it."""
        arm = self.arm(name)
        if not self.staged:
            return []
        family = [a for a in self.arms if a.family == arm.family]
        return family[:family.index(arm)]

    def default_samples(self, minutes: float | None) -> int:
        """Samples scored per arm when --samples is not given: the study's count at its default budget, and fewer in
        proportion under a smaller --minutes (at least MIN_SAMPLES), so that scoring a smoke-test budget takes about as
        long as its training; the interval of every FID says what the smaller count costs."""
        full = self.samples or DEFAULT_SAMPLES
        if minutes is None or minutes >= self.minutes:
            return full
        return min(full, max(MIN_SAMPLES, round(full * minutes / self.minutes)))

    @property
    def needs_classifier(self) -> bool:
        """Some arm is guided by a noise-aware classifier of the study's model, which the study trains too."""
        return any(dict(arm.sampling).get("classifier_scale") for arm in self.arms)

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise DdpmError(f"study {self.name!r} has no arm {name!r}; its arms: {', '.join(a.name for a in self.arms)}")


def _sweep(key: str, values, **names) -> tuple[Arm, ...]:
    return tuple(Arm(names.get(str(v), str(v)), (f"{key}={v}",)) for v in values)


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("schedules", "the cosine schedule beats linear and sigmoid", "Nichol & Dhariwal 2021 §3.2; the write-ups",
          _sweep("diffusion.schedule", ("linear", "cosine", "sigmoid")), minutes=15,
          claims=(("cosine", "linear"), ("cosine", "sigmoid"))),
    Study("timesteps", "more diffusion steps T give better samples", "Ho et al. 2020; the write-ups",
          tuple(Arm(f"T={t}", (f"diffusion.num_timesteps={t}",)) for t in (300, 500, 1000, 2000)), minutes=12,
          claims=(("T=1000", "T=300"), ("T=2000", "T=500"))),
    Study("architecture", "a U-Net is far ahead of an MLP of the same size; AdaGN and 1/√2 skips are details that help",
          "the write-ups; Dhariwal & Nichol 2021 (AdaGN); Song et al. 2021 (1/√2)",
          (Arm("unet"), Arm("mlp", ("model.architecture=mlp", "model.hidden=440", "model.depth=4")),
           Arm("unet-add-time", ("model.time_conditioning=add",)), Arm("unet-skip-÷√2", ("model.rescale_skip=true",))),
          minutes=12, claims=(("unet", "mlp"), ("unet", "unet-add-time"), ("unet-skip-÷√2", "unet"))),
    Study("time-input", "without its time input a U-Net learns only the average digit at first, nearly real digits later",
          "the write-ups (500 vs 700 epochs)",
          (Arm("with-t"), Arm("without-t", ("model.use_time=false",)),
           Arm("with-t-2x", budget_factor=2.0), Arm("without-t-2x", ("model.use_time=false",), budget_factor=2.0)),
          minutes=8, claims=(("with-t", "without-t"), ("without-t-2x", "without-t"))),
    Study("small-data", "1.5k training images are enough for passable digits", "the write-ups",
          (Arm("1.5k", ("data.limit=1500",)), Arm("full")), minutes=15, claims=(("full", "1.5k"),), memorisation=True),
    Study("objectives", "predicting ε (L_simple) is the best target; x₀ and μ̃ are worse", "Ho et al. 2020 Table 2; Salimans & Ho 2022 (v)",
          _sweep("diffusion.prediction", ("eps", "x0", "v", "mu")), minutes=12,
          claims=(("eps", "x0"), ("eps", "mu")), nll=True),
    Study("variance", "learned variances beat fixed ones; the VLB objective (importance-sampled t) has the best NLL, "
          "the hybrid one the better samples", "Nichol & Dhariwal 2021 §3.1, §3.3",
          (Arm("fixed_small", ("diffusion.variance=fixed_small",)), Arm("fixed_large", ("diffusion.variance=fixed_large",)),
           Arm("learned_range", ("diffusion.variance=learned_range", "diffusion.loss=hybrid")),
           Arm("learned_range-vlb", ("diffusion.variance=learned_range", "diffusion.loss=vlb",
                                     "train.timestep_sampler=loss_aware"))), minutes=15,
          claims=(("learned_range", "fixed_small"), ("learned_range", "fixed_large"),
                  ("learned_range", "fixed_small", "nll"), ("learned_range", "fixed_large", "nll"),
                  ("learned_range-vlb", "learned_range", "nll"), ("learned_range", "learned_range-vlb")), nll=True),
)}


SAMPLER_STEPS = (5, 10, 20, 50, 100, 250)
SAMPLER_FAMILIES = (("ddim", (("sampler", "ddim"),)), ("ddim-eta1", (("sampler", "ddim"), ("eta", 1.0))),
                    ("ddpm", (("sampler", "ddpm"),)), ("ddpm-naive", (("sampler", "ddpm"), ("skip", "naive"))),
                    ("dpm-solver++", (("sampler", "dpm-solver++"),)))


def _sampler_arms() -> tuple[Arm, ...]:
    arms = [Arm(f"{family}-{steps}", sampling=(*options, ("steps", steps), ("guidance", 0.0)), family=family)
            for family, options in SAMPLER_FAMILIES for steps in SAMPLER_STEPS]
    arms += [Arm("ddpm-1000", sampling=(("sampler", "ddpm"), ("steps", 1000), ("guidance", 0.0)), family="ddpm"),
             Arm("ddim-1000", sampling=(("sampler", "ddim"), ("steps", 1000), ("guidance", 0.0)), family="ddim")]
    return tuple(arms)


STAGES = 6
STUDIES.update({s.name: s for s in (
    Study("loss-per-timestep", "the loss at single timesteps shows what training has learned, and when, better than the "
          "training loss, whose random t makes it noisy", "the write-ups (their proposed measure)",
          tuple(Arm(f"stage-{k}", budget_factor=k / STAGES) for k in range(1, STAGES + 1)), minutes=20, staged=True,
          loss_times=(1, 50, 200, 500, 800, 999)),
    Study("budget", "quality against compute: what 5, 15, 30 and 60 CPU-minutes buy with the demo recipe and the mnist "
          "preset (the curve to plan a run by)", "this project",
          tuple(Arm(f"{preset}-{5 * factor}min", budget_factor=factor, preset=preset, family=preset)
                for preset in ("mnist-demo", "mnist") for factor in (1, 3, 6, 12)),
          minutes=5, claims=(("mnist-demo-60min", "mnist-demo-5min"), ("mnist-60min", "mnist-5min"),
                             ("mnist-60min", "mnist-5min", "nll")), nll=True, staged=True),
    Study("samplers", "naive step skipping is very disappointing, DDIM divides the steps by 5, and under 500 steps DDIM "
          "beats DDPM (above, DDPM wins)", "the write-ups; Song et al. 2021 (DDIM); Lu et al. 2022 (DPM-Solver++)",
          _sampler_arms(), minutes=20, samples=300,
          claims=(("ddpm-50", "ddpm-naive-50"), ("ddim-50", "ddpm-50"), ("ddim-10", "ddpm-10"), ("ddpm-1000", "ddim-1000"))),
    Study("guidance", "the guidance weight (classifier-free w, or a noise-aware classifier's scale s) trades diversity "
          "(FID) for fidelity (the asked digit)",
          "Ho & Salimans 2022; Dhariwal & Nichol 2021 (classifier guidance); Kynkäänniemi et al. 2024 (interval)",
          tuple(Arm(f"w={w:g}", sampling=(("guidance", w),), family="every step") for w in (0.0, 0.5, 1.0, 2.0, 4.0))
          + tuple(Arm(f"w={w:g} interval [0.2,1]", sampling=(("guidance", w), ("guidance_interval", (0.2, 1.0))),
                      family="interval [0.2, 1]") for w in (1.0, 2.0, 4.0))
          + tuple(Arm(f"classifier s={s:g}", sampling=(("guidance", 0.0), ("classifier_scale", s)), family="classifier scale")
                  for s in (1.0, 2.0, 4.0, 8.0)),
          minutes=20, samples=500, claims=(("w=0", "w=4"), ("w=0", "classifier s=8")), needs_labels=True, trade_off=True),
)})


def find_study(name: str) -> Study:
    if name not in STUDIES:
        raise DdpmError(f"unknown study {name!r}; the studies: {', '.join(STUDIES)} (ddpm study --list)")
    return STUDIES[name]


def describe() -> str:
    """``ddpm study --list``: each study's arms, claim, source and default budget."""
    lines = []
    for s in STUDIES.values():
        lines.append(f"{s.name}: {s.claim} ({s.source})")
        factor = (lambda a: "") if s.loss_times else (lambda a: f" ({a.budget_factor:g}× budget)" if a.budget_factor != 1 else "")
        lines.append(f"    arms: {', '.join(a.name + factor(a) for a in s.arms)}")
        if s.loss_times:
            lines.append(f"    default budget: one model trained {s.minutes:g} min on a 2-core CPU in {len(s.arms)} stages, "
                         f"the held-out loss at t = {', '.join(map(str, s.loss_times))} after each")
        elif s.samples_one_model:
            classifier = f" and its noise-aware classifier up to {s.minutes:g} min" if s.needs_classifier else ""
            lines.append(f"    default budget: one model trained {s.minutes:g} min on a 2-core CPU{classifier}, then every arm scored on "
                         f"{s.default_samples(None)} samples ({sum(dict(a.sampling).get('steps', 50) for a in s.arms)} sampling steps in all)")
        elif s.staged:
            longest = {a.family: a.budget_factor * s.minutes for a in s.arms}  # (the last stage of each run)
            lines.append(f"    default budget: {len(longest)} runs trained {' and '.join(f'{m:g}' for m in longest.values())} min "
                         f"on a 2-core CPU ({sum(longest.values()):g} min in all), scored after each stage on "
                         f"{s.default_samples(None)} samples" + (" and its NLL bound" if s.nll else ""))
        else:
            lines.append(f"    default budget: {s.minutes:g} min of training per arm on a 2-core CPU "
                         f"({sum(a.budget_factor for a in s.arms) * s.minutes:g} min in all), then every arm scored on "
                         f"{s.default_samples(None)} samples" + (" and its NLL bound" if s.nll else ""))
    return "\n".join(lines)
