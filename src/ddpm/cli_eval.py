"""``ddpm eval``, ``ddpm fid`` and ``ddpm fid-stats``: scoring a run, two image sets, or a reference once."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import distributed
from .cli_flags import FMT, POSITIVE_FLAG, classifier_flags, sample_flags, sampling_flags, shared as shared_flags, steps_flag
from .errors import DdpmError
from .io import check_writable
from .metrics.bootstrap import BOOTSTRAP_DRAWS
from .metrics.domain import DOMAIN_OF
from .metrics.features import FEATURES
from .metrics.nll_bound import NLL_IMAGES
from .schedules import FIXED_VARIANCES
from .validation import NON_NEGATIVE, flag


def add_parsers(sub) -> None:
    p = sub.add_parser("eval", help="sample from a run and score it (FID, domain scores, NLL)", formatter_class=FMT,
                       parents=[shared_flags("device", "seed", "batch-size", "no-ema")],
                       description="Generate --num samples per entry of --steps with the run's [sample] settings (replaced by "
                                   "the sampling flags given), score them against the dataset's test split read at the run's "
                                   "image size (a folder dataset: its held-out share or test/ subfolder), print a table and "
                                   "append each result to the run's metrics.jsonl. Without --fid, --domain or --nll: FID, plus "
                                   "the domain scores where a shipped classifier knows the dataset.")
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("-n", "--num", type=POSITIVE_FLAG, default=10000, help="samples per evaluation (-n under torchrun)")
    sampling_flags(p, str, "sampling steps, or a comma-separated sweep such as 10,20,50,100,all ('all' = T)")
    p.add_argument("--fid", action="store_true", help="Inception FID against the reference")
    p.add_argument("--domain", action="store_true", help="domain classifier scores: classifier FID, IS analogue, confident share, class histogram")
    p.add_argument("--nll", action="store_true", help="NLL bound in bits/dim on test images (T network calls per batch)")
    p.add_argument("--nll-images", type=POSITIVE_FLAG, default=NLL_IMAGES, help="test images for --nll")
    p.add_argument("--nll-variance", choices=FIXED_VARIANCES, default=None,
                   help="a fixed reverse variance σ² for --nll in place of the model's own (diffusion.variance)")
    p.add_argument("--nll-timesteps", type=POSITIVE_FLAG, default=None,
                   help="estimate the bound's sum over T steps from this many stratified ones (with its standard "
                        "error); default: all T, exact")
    p.add_argument("--reference", help="reference set: DATASET:SPLIT, an image folder or a statistics .npz (default: the run's dataset, test split)")
    bootstrap_flag(p, "the samples behind each FID's")
    p.add_argument("--no-log", action="store_true", help="do not append the results to the run's metrics.jsonl")

    p = sub.add_parser("fid", help="FID between two image sets", formatter_class=FMT, parents=[shared_flags("device")],
                       description="Print the FID between A and B, each an image folder, an .npz with arr_0 (uint8 NHWC samples) "
                                   "or mu/sigma (statistics), or DATASET:SPLIT such as mnist:test (cached reference statistics). "
                                   "Inception-v3 (TF 2015-12-05 weights) pool features; images are resized to 299×299 as StyleGAN3 does "
                                   "and grayscale is repeated to RGB.")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--feature", choices=FEATURES, default="inception", help="inception, or domain for the MNIST/Fashion-MNIST classifier's features (then --dataset)")
    p.add_argument("--dataset", choices=tuple(DOMAIN_OF), default="mnist", help="which domain classifier --feature domain uses")
    p.add_argument("--data-dir", help="directory of the dataset files for DATASET:SPLIT")
    p.add_argument("--batch-size", type=POSITIVE_FLAG, default=32, help="images per Inception batch")
    bootstrap_flag(p, "A's images (else B's, the other set held fixed) behind the FID's")

    p = sub.add_parser("fid-stats", help="compute and cache FID reference statistics of a dataset split", formatter_class=FMT,
                       parents=[shared_flags("device")],
                       description="Compute the Inception statistics of DATASET:SPLIT (e.g. mnist:test) once; later FIDs read them "
                                   "from the cache ($DDPM_CACHE, else ~/.cache/ddpm).")
    p.add_argument("spec", help="DATASET:SPLIT, e.g. mnist:test or fashion-mnist:train")
    p.add_argument("--out", type=Path, help="also write the statistics to this .npz")
    p.add_argument("--feature", choices=FEATURES, default="inception", help="inception, or domain (MNIST/Fashion-MNIST classifier features)")
    p.add_argument("--data-dir", help="directory of the dataset files")
    p.add_argument("--refresh", action="store_true", help="recompute even if cached")
    p.add_argument("--batch-size", type=POSITIVE_FLAG, default=32, help="images per Inception batch")



def bootstrap_flag(p: argparse.ArgumentParser, what: str) -> None:
    """--bootstrap-draws: how many resamples of ``what`` 95% interval (``metrics.bootstrap.bootstrap_fid``)."""
    p.add_argument("--bootstrap-draws", type=flag(int, NON_NEGATIVE), default=BOOTSTRAP_DRAWS, metavar="B",
                   help=f"resamples of {what} 95%% interval (0: none, which saves minutes on a CPU at 10k Inception "
                        "features)")


def _parse_steps(text: str | None) -> list[int | None] | None:
    """--steps of ddpm eval: None (not given), or positive integers and 'all' (None: all T), comma-separated."""
    if text is None:
        return None
    try:
        return [None if step == "all" else step for step in map(steps_flag, text.split(","))]
    except argparse.ArgumentTypeError:
        raise DdpmError(f"--steps must be positive integers or 'all', comma-separated; got {text!r}") from None


def _bar(total: int, what: str, unit: str = "img"):
    from .progress import progress_bar

    return progress_bar(total or None, desc=what, unit=unit, leave=False, disable=not distributed.world().is_main)


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_config
    from .eval_table import format_table
    from .evaluate import EvalSettings, evaluate
    from .models import pick_device

    fid, domain, nll = args.fid, args.domain, args.nll
    if not (fid or domain or nll):
        config = load_config(args.run)
        fid, domain = True, config.data.dataset in DOMAIN_OF
    classifier, scale = classifier_flags(args)
    settings = EvalSettings(num=args.num, steps=_parse_steps(args.steps), **sample_flags(args), seed=args.seed,
                            classifier=classifier, classifier_scale=scale, context=args.context,
                            batch_size=args.batch_size, use_ema=not args.no_ema, fid=fid, domain=domain, nll=nll,
                            nll_images=args.nll_images, nll_variance=args.nll_variance, nll_timesteps=args.nll_timesteps,
                            reference=args.reference, bootstrap_draws=args.bootstrap_draws)
    rows = evaluate(args.run, settings, device=pick_device(args.device), bar=_bar, log=not args.no_log)
    if distributed.world().is_main:
        print(format_table(rows))
    return 0


def cmd_fid(args: argparse.Namespace) -> int:
    from .metrics.features import feature_extractor
    from .metrics.fid import fid_between
    from .models import pick_device

    extractor = feature_extractor(args.feature, args.dataset, device=pick_device(args.device), batch_size=args.batch_size)
    bar = _bar(0, f"{extractor.feature} features")
    try:
        fid = fid_between(args.a, args.b, extractor, draws=args.bootstrap_draws, data_dir=args.data_dir,
                          progress=bar.update)
    finally:
        bar.close()
    if distributed.world().is_main:
        if fid.resampled:
            interval = f" [{fid.low:.4f}, {fid.high:.4f}] (95% bootstrap over {fid.resampled}'s images, {fid.draws} draws)"
        else:
            interval = " (no interval: " + ("--bootstrap-draws 0)" if not args.bootstrap_draws else
                                            "both sets are saved statistics, which cannot be resampled)")
        print(f"FID {fid.value:.4f}{interval}  ({extractor.feature} features; {fid.a.num or '?'} images in A, "
              f"{fid.b.num or '?'} in B)", file=sys.stderr)
        print(f"{fid.value:.6f}")
    return 0


def cmd_fid_stats(args: argparse.Namespace) -> int:
    from .metrics.features import feature_extractor
    from .metrics.fid import dataset_stats
    from .models import pick_device

    dataset = args.spec.partition(":")[0]
    if args.out:
        check_writable(args.out)
    extractor = feature_extractor(args.feature, dataset, device=pick_device(args.device), batch_size=args.batch_size)
    bar = _bar(0, f"{args.spec} {extractor.feature} features")
    try:
        stats = dataset_stats(args.spec, extractor, data_dir=args.data_dir, refresh=args.refresh, progress=bar.update)
    finally:
        bar.close()
    if not distributed.world().is_main:
        return 0
    if args.out:
        stats.save(args.out)
    print(f"{args.spec}: {stats.num} images, {len(stats.mu)}-d {stats.feature} statistics cached"
          + (f" and written to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


# What torchrun can spread over processes (each rank its share of the steps' batch, of the sample indices or of
# the images whose features are extracted; rank 0 writes and prints).


COMMANDS = {"eval": cmd_eval, "fid": cmd_fid, "fid-stats": cmd_fid_stats}
