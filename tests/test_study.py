"""ddpm study: arms that differ only in their setting, honest intervals, the floor, resume, and the refusals."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from ddpm.cli import main

from ddpm.study import STUDIES, StudySettings
from ddpm.study.runner import STEPS_UNDER_A_TIME_BUDGET, arm_config
from ddpm.metrics.bootstrap import bootstrap_fid

TINY = ["--set", "model.base_channels=16", "--set", "model.channel_mults=[1,2]", "--set", "train.sample_every=0",
        "--set", "sample.steps=3", "--set", "train.checkpoint_every=2", "--set", "data.limit=256", "--set", "train.log_every=2"]


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_arms_differ_only_in_their_own_setting(name):
    """Diffing each arm's config against the first arm's: only the keys its overrides (or the first arm's) name
    differ, and the budget when the arm has a budget factor; the user's --set reaches every arm alike."""
    study = STUDIES[name]
    settings = StudySettings(name, None, 100, 1, 50, ("train.lr=0.001",), "domain")
    first = arm_config(study, study.arms[0].name, settings, seed=0)
    assert first.train.lr == 0.001 and first.train.max_minutes is None
    assert first.train.steps == round(100 * study.arms[0].budget_factor)
    for arm in study.arms[1:]:
        if arm.preset != study.arms[0].preset:  # (the budget study's second recipe: compared with its own first arm)
            continue
        config = arm_config(study, arm.name, settings, seed=0)
        allowed = {o.split("=")[0] for o in arm.overrides + study.arms[0].overrides}
        if arm.budget_factor != study.arms[0].budget_factor:
            allowed.add("train.steps")
            assert config.train.steps == round(100 * arm.budget_factor)
        changed = set(first.changed_keys(config))
        if "model.architecture" in allowed:  # another network: its keys replace the U-Net's
            changed = {k for k in changed if not k.startswith("model.")}
        assert changed <= allowed, (arm.name, changed - allowed)
    timed = arm_config(study, study.arms[0].name, StudySettings(name, 5.0, None, 1, 50, (), "domain"), seed=3)
    assert timed.train.max_minutes == pytest.approx(5.0 * study.arms[0].budget_factor)
    assert timed.train.steps == STEPS_UNDER_A_TIME_BUDGET and timed.train.seed == 3


def test_every_arm_is_one_directory_name():
    """An arm's run directory is DIR/arms/ARM-sSEED: a name with a path separator would nest it (the guidance interval
    arms were once "w=1 t/T in [0.2,1]")."""
    for study in STUDIES.values():
        for arm in study.arms:
            assert "/" not in arm.name and "\\" not in arm.name and arm.name.strip() == arm.name, (study.name, arm.name)


def test_memorisation_tells_copies_from_new_images():
    """The training images themselves are all near-copies (distance 0); held-out real images are as far from the training
    set as the test images that set the threshold: about 1% fall under it."""
    from ddpm.data import load_dataset
    from ddpm.metrics.memorisation import memorisation

    train = load_dataset("mnist", limit=2000, seed=1).images
    test = load_dataset("mnist", split="test", limit=1000, seed=2).images
    copies = memorisation(train[:300], test[:500], train)
    assert copies["nn_ratio"] < 0.01 and copies["near_copies"]["value"] == 1  # (cdist rounds 0 to ~1e-3)
    fresh = memorisation(test[500:], test[:500], train)
    assert 0.85 < fresh["nn_ratio"] < 1.15
    p, se = fresh["near_copies"]["value"], (0.01 * 0.99 / 500) ** 0.5
    assert abs(p - 0.01) < 4 * se + 0.01  # the threshold is itself a 1% quantile of 500 draws


def test_the_mlp_arm_has_the_unet_s_parameter_count():
    from ddpm.models import build_model

    study = STUDIES["architecture"]
    settings = StudySettings("architecture", None, 1, 1, 2, (), "domain")
    count = {a: sum(p.numel() for p in build_model(arm_config(study, a, settings, 0).resolved(28, 1, 10)).parameters())
             for a in ("unet", "mlp")}
    assert abs(count["mlp"] / count["unet"] - 1) < 0.05, count


def test_the_fid_interval_covers_the_whole_set_value_and_narrows_with_n():
    """On real MNIST training digits against the test reference (the floor itself): the interval contains the FID of
    the whole set at every n, and its width shrinks as n grows."""
    from ddpm.data import load_dataset
    from ddpm.metrics.domain import DomainFeatures
    from ddpm.metrics.fid import dataset_stats

    domain = DomainFeatures("mnist")
    reference = dataset_stats("mnist:test", domain)
    features, _ = domain.classify(load_dataset("mnist", limit=1600, seed=5).images)
    widths = []
    for n in (100, 400, 1600):
        fid = bootstrap_fid(features[:n], reference, feature=domain.feature, seed=1)
        assert fid.low <= fid.value <= fid.high, (n, fid.low, fid.value, fid.high)
        widths.append(fid.high - fid.low)
    assert widths[0] > widths[1] > widths[2] > 0


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """The schedules study on a tiny budget, uninterrupted."""
    out = tmp_path_factory.mktemp("study") / "schedules"
    assert main(["study", "schedules", "--out", str(out), "--steps", "4", "--samples", "30", *TINY]) == 0
    return out


def test_a_tiny_study_writes_its_table_with_every_arm_and_interval(study_dir):
    md = (study_dir / "study.md").read_text()
    for arm in ("linear", "cosine", "sigmoid"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {arm} |"))
        assert row.count("[") == 1 and row.count("±") == 2  # FID interval, confident and asked shares
    assert "floor: 30 real training images" in md and md.count("- \"cosine beats") == 2
    results = json.loads((study_dir / "study.json").read_text())
    assert results["floor"]["num"] == results["settings"]["samples"] == 30  # the floor at the samples' n
    assert all(r["fid"]["num"] == 30 and r["steps"] == 4 for r in results["arms"])
    assert (study_dir / "report.html").read_text().count("<figure>") == 3
    # each arm is an ordinary run: the commands work on it
    assert main(["sample", str(study_dir / "arms" / "cosine-s0"), "-n", "2", "--steps", "2",
                 "--out", str(study_dir / "x.npz")]) == 0


def test_the_method_paragraph_says_a_shared_setting_once_and_a_varied_one_per_arm():
    from ddpm.study.results import method

    def scored(*arms, families=()) -> dict:
        rows = [{"sampler": sampler, "sampling_steps": steps, "guidance": w, "feature": "domain-mnist",
                 "reference": "mnist:test"} for sampler, steps, w in arms]
        for row, family in zip(rows, families):
            row["family"] = family
        return {"settings": {"steps": 100, "minutes": None, "seeds": 1, "samples": 30}, "arms": rows}

    text = method(STUDIES["samplers"], scored(("ddim", 5, 0.0), ("ddpm", 10, 0.0)))
    assert text.startswith("One model of the `mnist-demo` recipe, 100 steps of training")  # not "every arm trained"
    assert "(seed 0, the sampler and steps its name says, guidance w = 0)" in text
    text = method(STUDIES["guidance"], scored(("ddpm", 50, 0.0), ("ddpm", 50, 2.0)))
    assert "(seed 0, ddpm 50 steps, the guidance its name says)" in text
    text = method(STUDIES["schedules"], scored(("ddpm", 50, 2.0), ("ddpm", 50, 2.0)))
    assert text.startswith("Every arm: the `mnist-demo` recipe") and "(seed 0, ddpm 50 steps, guidance w = 2)" in text
    # the budget study's two recipes each sample with their own [sample] settings, said per recipe (not "its name
    # says": a stage's name says only its minutes)
    text = method(STUDIES["budget"], scored(("ddpm", 50, 2.0), ("ddpm", 50, 2.0), ("dpm-solver++", 20, 0.0),
                                            families=("mnist-demo", "mnist-demo", "mnist")))
    assert ("(seed 0, each recipe its own: `mnist-demo` ddpm 50 steps, guidance w = 2; `mnist` dpm-solver++ 20 steps, "
            "guidance w = 0)") in text, text


def table_numbers(out) -> list:
    results = json.loads((out / "study.json").read_text())
    return [(r["arm"], r["steps"], r["fid"]["value"], r["fid"]["draws"], r["asked"]) for r in results["arms"]]


def test_a_study_killed_between_and_inside_arms_ends_with_the_same_table(study_dir, tmp_path):
    out = tmp_path / "schedules"
    args = ["study", "schedules", "--out", str(out), "--steps", "4", "--samples", "30", *TINY]
    assert main([*args, "--only", "linear"]) == 0  # as if killed after the first arm
    assert not (out / "study.md").exists() and (out / "arms" / "linear-s0" / "study-result.json").exists()
    # killed inside the second arm, right after its first checkpoint
    process = subprocess.Popen([sys.executable, "-m", "ddpm", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "arms" / "cosine-s0" / "checkpoints" / "step_00000002.safetensors"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (out / "arms" / "cosine-s0" / "study-result.json").exists()  # killed mid-arm
    assert main(args) == 0
    assert table_numbers(out) == table_numbers(study_dir)


@pytest.mark.parametrize("argv, message", [
    (["study", "nope", "--out", "{out}"], "unknown study 'nope'"),
    (["study", "schedules", "--out", "{out}", "--only", "cosinus"], "has no arm 'cosinus'"),
    (["study", "schedules", "--out", "{out}", "--steps", "0"], "must be"),
    (["study", "schedules", "--out", "{out}", "--minutes", "-1"], "must be"),
    (["study", "schedules", "--out", "{out}", "--seeds", "0"], "must be"),
    (["study", "timesteps", "--out", "{study}"], "holds study 'schedules', not 'timesteps'"),
    (["study", "schedules", "--out", "{study}", "--steps", "5"], "run with other settings (steps)"),
    (["study", "schedules", "--out", "{nonempty}"], "is not a study directory"),
    (["study", "schedules"], "ddpm study NAME --out DIR"),
])
def test_bad_study_requests_are_one_sentence_and_touch_nothing(study_dir, tmp_path, capsys, argv, message):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    before = sorted(p.name for p in study_dir.rglob("*"))
    argv = [a.format(out=tmp_path / "new", study=study_dir, nonempty=tmp_path / "mine") for a in argv]
    if "{study}" in " ".join(argv) or str(study_dir) in argv:
        argv += ["--samples", "30", *TINY] if "--steps" in argv else ["--steps", "4", "--samples", "30", *TINY]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in study_dir.rglob("*")) == before
    assert not (tmp_path / "new").exists() and (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_list_names_every_study_with_its_arms_and_budget(capsys):
    assert main(["study", "--list"]) == 0
    text = capsys.readouterr().out
    for study in STUDIES.values():
        assert f"{study.name}: {study.claim}" in text and ", ".join(a.name for a in study.arms)[:20] in text
    assert "default budget" in text



def test_a_sampling_study_trains_one_model_and_samples_it_per_arm(tmp_path):
    out = tmp_path / "samplers"
    assert main(["study", "samplers", "--out", str(out), "--steps", "2", "--samples", "10", *TINY,
                 "--only", "ddpm-naive-5", "--only", "dpm-solver++-10"]) == 0
    assert sorted(p.name for p in (out / "arms").iterdir()) == sorted(["dpm-solver++-10-s0", "ddpm-naive-5-s0", "model-s0"])
    naive = json.loads((out / "arms" / "ddpm-naive-5-s0" / "study-result.json").read_text())
    solver = json.loads((out / "arms" / "dpm-solver++-10-s0" / "study-result.json").read_text())
    assert (naive["sampler"], naive["sampling_steps"], naive["skip"], naive["guidance"]) == ("ddpm", 5, "naive", 0.0)
    assert (solver["sampler"], solver["sampling_steps"], solver["network_evaluations"]) == ("dpm-solver++", 10, 10)
    assert naive["config"] == solver["config"] and naive["checkpoint_step"] == solver["checkpoint_step"] == 2  # one model
    assert not (out / "study.md").exists()  # 30 arms still to run


def test_a_study_of_class_conditioning_is_refused_on_unlabelled_data(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["study", "guidance", "--out", str(tmp_path / "g"), "--data", "folder", "--data-dir", str(folder)]) == 2
    assert "study 'guidance' needs class labels; dataset 'folder' has none" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
    from ddpm.study.runner import labelled_overrides

    assert labelled_overrides(STUDIES["schedules"], "folder", str(folder)) == ["data.conditional=false", "sample.guidance=0"]
    assert labelled_overrides(STUDIES["guidance"], "mnist", None) == []


def test_a_loss_study_trains_one_run_in_stages_and_measures_each_timestep(tmp_path):
    out = tmp_path / "loss"
    assert main(["study", "loss-per-timestep", "--out", str(out), "--steps", "12", "--samples", "16", *TINY]) == 0
    results = json.loads((out / "study.json").read_text())
    assert [r["steps"] for r in results["arms"]] == [2, 4, 6, 8, 10, 12]  # one run, trained further at each stage
    assert [r["checkpoint_step"] for r in results["arms"]] == [2, 4, 6, 8, 10, 12]
    assert sorted(p.name for p in (out / "arms").iterdir() if (p / "checkpoints").is_dir()) == ["model-s0"]
    times = STUDIES["loss-per-timestep"].loss_times
    assert all(list(r["losses"]) == [str(t) for t in times] and r["losses"]["500"]["num"] == 16 for r in results["arms"])
    md = (out / "study.md").read_text()
    assert "| stage-6 | 12 |" in md and "settles no claim" in md and results["floor"] is None
    # each stage's change is paired over the same images: the mean and standard error of the per-image differences
    before, after = (np.array(results["arms"][k]["losses"]["500"]["per_image"]) for k in (0, 1))
    change = after - before
    mean, se = change.mean(), change.std(ddof=1) / len(change) ** 0.5
    row = next(line for line in md.splitlines() if line.startswith("| stage-1 → stage-2 |")).split(" | ")
    shown_mean, shown_se = (float(x) for x in row[1 + times.index(500)].split(" ± "))
    assert shown_mean == pytest.approx(mean, abs=se / 10) and shown_se == pytest.approx(se, rel=0.05)


@pytest.mark.slow
def test_a_budget_curve_is_one_run_per_recipe_scored_after_each_stage(tmp_path, capsys):
    """--only a late stage trains and scores the stages before it first, on the recipe's one run; a stage whose run
    has already trained past it (its score lost) is refused, not scored as the later model."""
    out = tmp_path / "budget"
    args = ["study", "budget", "--out", str(out), "--steps", "2", "--samples", "20", "--nll-images", "8", *TINY,
            "--set", "model.attention_resolutions=[]"]  # (the mnist preset's attends at 7×7, which TINY's U-Net lacks)
    assert main([*args, "--only", "mnist-demo-15min"]) == 0
    assert "mnist-demo-5min first" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "arms").iterdir() if (p / "checkpoints").is_dir()) == ["mnist-demo-s0"]
    scored = {name: json.loads((out / "arms" / f"{name}-s0" / "study-result.json").read_text())
              for name in ("mnist-demo-5min", "mnist-demo-15min")}
    assert [(r["steps"], r["checkpoint_step"]) for r in scored.values()] == [(2, 2), (6, 6)]
    assert scored["mnist-demo-5min"]["fid"]["value"] != scored["mnist-demo-15min"]["fid"]["value"]
    assert main(args) == 0  # the other stages, then the table
    assert sorted(p.name for p in (out / "arms").iterdir() if (p / "checkpoints").is_dir()) == ["mnist-demo-s0", "mnist-s0"]
    results = json.loads((out / "study.json").read_text())
    assert [(r["arm"], r["steps"]) for r in results["arms"][4:]] == [("mnist-5min", 2), ("mnist-15min", 6),
                                                                    ("mnist-30min", 12), ("mnist-60min", 24)]
    assert "the arms of a recipe are the stages of its run" in (out / "study.md").read_text()
    (out / "arms" / "mnist-demo-5min-s0" / "study-result.json").unlink()
    assert main([*args, "--only", "mnist-demo-5min"]) == 2
    assert "the run has trained further already" in capsys.readouterr().err  # (the trainer's refusal)


def test_a_loss_is_printed_to_two_significant_digits_of_its_error():
    """The loss at t = 999 is ~1000× smaller than at t = 1: fixed decimals printed it as 0.0006 ± 0.0000."""
    from ddpm.study.results import _loss

    assert _loss({"value": 0.000612, "se": 0.0000123}) == "0.000612 ± 0.000012"
    assert _loss({"value": 0.5307, "se": 0.0028}) == "0.5307 ± 0.0028"
    assert _loss({"value": 12.3, "se": 0.25}) == "12.30 ± 0.25"


def test_the_paired_nll_interval_covers_the_true_difference_at_its_level():
    """400 draws of 256 paired per-image bounds whose true mean difference is 0.05: the 95% interval covers it in
    95% ± 3 binomial errors of the draws; with the z or the √n broken it covers far more or far less."""
    from ddpm.study.stats import paired_difference

    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        shared = rng.normal(1.5, 0.3, 256)  # the image's own difficulty, common to both models
        a, b = shared + 0.05 + rng.normal(0, 0.1, 256), shared + rng.normal(0, 0.1, 256)
        mean, low, high = paired_difference(a, b)
        assert low < mean < high
        covered += low <= 0.05 <= high
    assert abs(covered / 400 - 0.95) < 3 * (0.95 * 0.05 / 400) ** 0.5


def test_the_interval_across_three_seeds_covers_the_true_difference_at_its_level():
    """2000 studies of 3 seeds whose per-seed FID differences scatter around −5: the t-interval (t₂ = 4.30) covers −5
    in 95% ± 3 binomial errors of them; the normal quantile 1.96 would cover about 80%."""
    from ddpm.study.stats import across_seeds

    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        worse = rng.normal(150, 10, 3)  # the seeds' own level, common to both arms (same data order)
        mean, low, high = across_seeds(worse - 5 + rng.normal(0, 4, 3), worse)
        covered += low <= -5 <= high
    assert abs(covered / 2000 - 0.95) < 3 * (0.95 * 0.05 / 2000) ** 0.5


def test_with_several_seeds_a_claim_needs_the_seeds_to_agree_as_well_as_the_samples(capsys):
    """Three seeds per arm, each FID with a narrow bootstrap: cosine beats linear by about 20 in every seed (settled);
    cosine beats sigmoid by −8, +9, −7 (the seed-averaged draws alone would call −2 settled; the seeds do not)."""
    from ddpm.study.results import claim_sentences, table

    rng = np.random.default_rng(0)

    def run(arm, seed, fid):
        draws = fid + rng.normal(0, 0.5, 200)
        draws += fid - draws.mean()
        return {"arm": arm, "seed": seed, "steps": 4, "train_minutes": 0.1, "network_evaluations": 10, "sampling_s": 1.0,
                "fid": {"value": fid, "low": fid - 1, "high": fid + 1, "num": 1000, "draws": draws.tolist()}}

    fids = {"cosine": [100, 101, 99], "linear": [118, 123, 119], "sigmoid": [108, 92, 106]}
    results = {"settings": {"steps": 4, "minutes": None, "seeds": 3, "samples": 1000},
               "arms": [run(arm, seed, fid) for arm, values in fids.items() for seed, fid in enumerate(values)],
               "floor": {"value": 5.0, "low": 4.0, "high": 6.0, "num": 1000}}
    linear, sigmoid = claim_sentences(STUDIES["schedules"], results)
    # per-seed differences −18, −22, −20: sd 2, so −20 ± t₂ · 2 / √3 = −20 ± 4.30 · 1.155
    assert "FID difference -20.0 over 3 seeds (95% interval across the seeds -25.0 … -15.0" in linear
    assert linear.endswith("the claim holds here: the difference exceeds the noise.")
    assert "over 3 seeds" in sigmoid and "the sampling noise alone -2.8 … -1.3" in sigmoid  # excludes 0 by itself
    assert sigmoid.endswith("is not settled at this sample size, budget and number of seeds: an interval includes 0.")
    row = next(line for line in table(results) if line.startswith("| linear |"))
    assert "| 120.0 ± 2.6 |" in row  # the spread across seeds beside seed 0's interval


def test_each_seed_of_an_arm_is_its_own_run_differing_only_in_its_seed(tmp_path):
    out = tmp_path / "schedules"
    assert main(["study", "schedules", "--out", str(out), "--steps", "2", "--samples", "10", "--seeds", "2",
                 "--only", "cosine", *TINY]) == 0
    configs = [json.loads((out / "arms" / f"cosine-s{seed}" / "study-result.json").read_text())["config"] for seed in (0, 1)]
    assert configs[0]["train"].pop("seed") == 0 and configs[1]["train"].pop("seed") == 1 and configs[0] == configs[1]


def test_a_smaller_budget_scores_fewer_samples_in_proportion():
    study = STUDIES["schedules"]  # 15 min and 1000 samples by default
    assert study.default_samples(None) == study.default_samples(15) == study.default_samples(60) == 1000
    assert study.default_samples(7.5) == 500 and study.default_samples(0.2) == 100  # (at least 100)
    assert STUDIES["samplers"].default_samples(10) == 150  # its own 300 at 20 min


@pytest.mark.slow
def test_a_study_of_likelihood_scores_every_arm_s_nll_with_its_error_and_claims(tmp_path):
    """The variance study on a tiny budget: an NLL column with its standard error, the NLL claims settled by the paired
    interval, and each arm's number equal to ddpm eval --nll with the same images, timesteps and seed."""
    out = tmp_path / "variance"
    assert main(["study", "variance", "--out", str(out), "--steps", "3", "--samples", "20", "--nll-images", "24", *TINY]) == 0
    md = (out / "study.md").read_text()
    assert "NLL bits/dim ± se (24 test images, 100 t)" in md
    for arm in ("fixed_small", "fixed_large", "learned_range", "learned_range-vlb"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {arm} |"))
        assert row.count("±") == 3  # NLL, confident, asked
    assert md.count("beats fixed_small in NLL\": NLL difference") == 1 and "the same 24 test images" in md
    assert md.count("\"learned_range-vlb beats learned_range in NLL\": NLL difference") == 1
    vlb = json.loads((out / "arms" / "learned_range-vlb-s0" / "config.json").read_text())
    assert (vlb["diffusion"]["loss"], vlb["train"]["timestep_sampler"]) == ("vlb", "loss_aware")
    results = json.loads((out / "study.json").read_text())
    arm = next(r for r in results["arms"] if r["arm"] == "learned_range")
    assert arm["nll"]["variance"] == "learned_range" and len(arm["nll"]["per_image"]) == 24
    assert np.mean(arm["nll"]["per_image"]) == pytest.approx(arm["nll"]["value"])
    from ddpm.evaluate import EvalSettings, evaluate

    row, = evaluate(out / "arms" / "learned_range-s0", EvalSettings(fid=False, nll=True, nll_images=24, nll_timesteps=100), log=False)
    assert row["nll_bpd"] == pytest.approx(arm["nll"]["value"], rel=1e-6)


def test_nll_is_refused_where_every_arm_samples_one_model(tmp_path, capsys):
    assert main(["study", "samplers", "--out", str(tmp_path / "s"), "--nll"]) == 2
    assert "score it once with ddpm eval RUN --nll" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_a_directory_written_before_a_setting_existed_reads_it_at_its_default(study_dir):
    """study-settings.json of an older ddpm lacks "nll": the study is the same one, and it gathers the same table."""
    settings_file = study_dir / "study-settings.json"
    saved = json.loads(settings_file.read_text())
    before = table_numbers(study_dir)
    settings_file.write_text(json.dumps({k: v for k, v in saved.items() if k != "nll"}))
    try:
        assert main(["study", "schedules", "--out", str(study_dir), "--steps", "4", "--samples", "30", *TINY]) == 0
        assert table_numbers(study_dir) == before
    finally:
        settings_file.write_text(json.dumps(saved))


def test_the_classifier_gets_the_study_budget_but_never_more_than_its_recipe():
    """--steps N trains the classifier N steps up to the recipe's own, --minutes M trains the recipe's steps or M minutes."""
    from ddpm.config import CLASSIFIER_TRAINING
    from ddpm.study.runner import classifier_budget

    recipe = CLASSIFIER_TRAINING["steps"]
    settings = StudySettings("guidance", None, 2, 1, 10, (), "domain")
    assert classifier_budget(settings) == ["train.steps=2"]
    assert classifier_budget(replace(settings, steps=2 * recipe)) == [f"train.steps={recipe}"]
    assert classifier_budget(replace(settings, steps=None, minutes=20.0)) == [f"train.steps={recipe}", "train.max_minutes=20.0"]


def test_the_guidance_study_trains_a_classifier_once_and_its_arms_sample_with_it(tmp_path):
    """A classifier-scale arm: the study's model and a noise-aware classifier of it trained with the study's budget, and
    the arm's samples are generate()'s with that classifier at that scale (the same picture, byte for byte)."""
    from ddpm.checkpoint import load_config
    from ddpm.denoiser import Denoiser
    from ddpm.generation import generate
    from ddpm.models import load_classifier
    from ddpm.viz import save_grid

    out = tmp_path / "guidance"
    assert main(["study", "guidance", "--out", str(out), "--steps", "2", "--samples", "10", *TINY,
                 "--only", "classifier s=2", "--only", "classifier s=4"]) == 0
    assert sorted(p.name for p in (out / "arms").iterdir()) == ["classifier s=2-s0", "classifier s=4-s0", "classifier-s0", "model-s0"]
    clf = load_config(out / "arms" / "classifier-s0")
    assert clf.model.ARCHITECTURE == "classifier" and json.loads((out / "arms" / "classifier-s0" / "metrics.jsonl")
                                                                .read_text().splitlines()[-1])["step"] == 2
    result = json.loads((out / "arms" / "classifier s=2-s0" / "study-result.json").read_text())
    assert (result["classifier_scale"], result["guidance"]) == (2.0, 0.0) and "asked" in result
    denoiser = Denoiser.from_pretrained(out / "arms" / "model-s0")
    plan = denoiser.plan(guidance=0.0, classifier=load_classifier(out / "arms" / "classifier-s0", denoiser.config),
                         classifier_scale=2.0)
    images = generate(denoiser, plan, 10, seed=0)
    save_grid(images, tmp_path / "mine.png", nrow=10, scale=1)
    assert (tmp_path / "mine.png").read_bytes() == (out / "arms" / "classifier s=2-s0" / "study-samples.png").read_bytes()
    four = (out / "arms" / "classifier s=4-s0" / "study-samples.png").read_bytes()
    assert four != (tmp_path / "mine.png").read_bytes()  # the scale reaches the sampler


def test_the_budget_study_report_draws_quality_against_training_time(tmp_path):
    """The budget study's arms form one curve per recipe (their family), FID and NLL against training minutes."""
    from ddpm.study.results import write_html

    study = STUDIES["budget"]
    assert {a.family for a in study.arms} == {"mnist-demo", "mnist"}
    arms = [{"arm": a.name, "seed": 0, "family": a.family, "train_minutes": 5 * a.budget_factor,
             "fid": {"value": 100 / a.budget_factor, "low": 90 / a.budget_factor, "high": 110 / a.budget_factor},
             "nll": {"value": 2 - 0.05 * a.budget_factor, "se": 0.01}} for a in study.arms]
    (tmp_path / "arms").mkdir()
    page = write_html(study, {"arms": arms}, tmp_path, ["table"]).read_text()
    assert "Quality against training time" in page and (tmp_path / "study-budget.png").stat().st_size > 10_000
    assert "FID against network evaluations" not in page


def test_the_guidance_study_report_draws_fidelity_against_fid(tmp_path):
    """The guidance study's arms trade fidelity for diversity: its report draws FID against the asked-class share, one
    line per family (every step, interval, classifier scale), not FID against network evaluations."""
    from ddpm.study.results import write_html

    study = STUDIES["guidance"]
    arms = []
    for i, a in enumerate(study.arms):
        options = dict(a.sampling)
        arms.append({"arm": a.name, "seed": 0, "family": a.family, "guidance": options.get("guidance", 0.0),
                     "classifier_scale": options.get("classifier_scale", 0.0), "network_evaluations": 100,
                     "sampling_s": 1.0, "fid": {"value": 100 + 10 * i, "low": 90 + 10 * i, "high": 110 + 10 * i},
                     "asked": {"value": 0.8 + 0.01 * i, "se": 0.01}})
    (tmp_path / "arms").mkdir()
    page = write_html(study, {"arms": arms}, tmp_path, ["table"]).read_text()
    assert "Fidelity against FID" in page and (tmp_path / "study-guidance.png").stat().st_size > 10_000
    assert "FID against network evaluations" not in page


def test_the_samplers_study_report_draws_fid_against_evaluations_with_the_floor(tmp_path):
    """A sampling study's report: FID against network evaluations, one line per sampler family, and the real-vs-real
    floor as a band (the picture changes when the floor is given)."""
    from ddpm.study.results import write_html

    study = STUDIES["samplers"]
    arms = [{"arm": a.name, "seed": 0, "family": a.family, "network_evaluations": dict(a.sampling)["steps"],
             "sampling_s": 0.1 * dict(a.sampling)["steps"], "fid": {"value": 100.0 + i, "low": 90.0 + i, "high": 110.0 + i}}
            for i, a in enumerate(study.arms)]
    pictures = []
    for floor in (None, {"value": 30.0, "low": 20.0, "high": 40.0, "num": 300}):
        out = tmp_path / ("floor" if floor else "none")
        (out / "arms").mkdir(parents=True)
        page = write_html(study, {"arms": arms, **({"floor": floor} if floor else {})}, out, ["table"]).read_text()
        assert "FID against network evaluations" in page and "Fidelity against FID" not in page
        pictures.append((out / "study-fid.png").read_bytes())
    assert len(pictures[0]) > 10_000 and pictures[0] != pictures[1]
