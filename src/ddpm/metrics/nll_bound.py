"""The NLL bound of a trained model on its own test split, in bits/dim (DDPM eq. 5): every KL term, the prior and
the discretized decoder (``metrics.nll.vlb_terms`` per batch), shared among torchrun's ranks."""
from __future__ import annotations

import time
from typing import Any

import torch

from .. import distributed
from ..data import load_dataset
from ..errors import DdpmError
from ..conditioning import model_cond
from ..progress import progress_bars
from ..rng import SampleNoise
from .nll import vlb_terms

NLL_IMAGES = 256  # test images the bound is averaged over unless told otherwise (ddpm eval --nll-images, studies)


def nll_bound(denoiser, *, images: int = NLL_IMAGES, timesteps: int | None = None, variance: str | None = None,
              seed: int = 0, batch_size: int = 256, device: torch.device | str | None = None,
              progress=None) -> dict[str, Any]:
    """NLL bound in bits/dim (DDPM eq. 5) on the first ``images`` images of the run's test split, with the model's own
    variance (or ``variance``, a fixed one, in its place) over all T steps or ``timesteps`` stratified ones; the
    images' own labels (or one-hot contexts) condition a conditional model. ``nll_bpd_per_image`` [n] lets two
    models scored on the same images be compared pairwise. Image i's noise and timesteps come from its own stream
    (seed, i), so the result does not depend on the batch size, and under torchrun the ranks share the images and
    every rank returns all n. ``progress``: a ``progress_bars`` factory (none by default)."""
    if denoiser.config is None:
        raise DdpmError("the NLL bound is measured on the test split of the model's own data: load it with "
                        "Denoiser.from_pretrained (a denoiser built by hand has no dataset)")
    started = time.time()
    device = denoiser.device if device is None else device
    schedule = denoiser.schedule
    d = denoiser.config.data
    test = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels,
                        test_fraction=d.test_fraction)
    n = min(images, len(test))
    variance = variance or denoiser.variance
    T = schedule.num_timesteps
    calls = T if timesteps is None or timesteps >= T - 1 else timesteps + 1
    learned = variance == "learned_range"
    # under torchrun each rank bounds its share of the images; image i's noise and timesteps come from its own
    # stream (seed, i), so the numbers are those of one process, whatever the batch size or number of ranks
    start, stop = distributed.shard(n)
    # (a rank may have no share: the empty rows keep torch.cat and the gather working)
    parts: dict[str, list[torch.Tensor]] = {"total": [torch.zeros(0, dtype=torch.float64)],
                                            "terms": [torch.zeros(0, T, dtype=torch.float64)],
                                            "prior": [torch.zeros(0, dtype=torch.float64)],
                                            **({"variance_fraction": [torch.zeros(0, T, dtype=torch.float64)]} if learned else {})}
    with (progress or progress_bars())(((n + batch_size - 1) // batch_size) * calls,
                                         f"NLL bound on {n} test images", "step") as update:
        update = distributed.counting_all_ranks(update)
        for idx in torch.arange(start, stop).split(batch_size):
            x0, y = test.batch(idx, device)
            cond = model_cond(denoiser, y)  # the test images' own labels (or one-hot contexts)
            cond = None if cond is None else {key: value.to(device) for key, value in cond.items()}
            out = vlb_terms(denoiser.net, schedule, x0, prediction=denoiser.prediction, variance=variance,
                            timesteps=timesteps, cond=cond, generator=SampleNoise(seed, idx.tolist()),
                            progress=update)
            for key, rows in parts.items():
                rows.append(out[key])
    # gathered on the device (NCCL moves no CPU tensors), every rank then holds all n images' bounds in order
    total, terms_all, prior, *fraction = (distributed.gather_rows(torch.cat(rows).to(device), n).cpu()
                                         for rows in parts.values())
    return {"nll_bpd": total.mean().item(), "nll_bpd_stderr": (total.std() / len(total) ** 0.5).item() if len(total) > 1 else None,
            "nll_images": n, "nll_variance": variance, "nll_timesteps": timesteps or T, "nll_prior_bpd": prior.mean().item(),
            "nll_decoder_bpd": terms_all[:, 0].mean().item(), "nll_terms_bpd": terms_all.mean(0).tolist(),
            "nll_bpd_per_image": total.tolist(), "nll_s": time.time() - started,
            # None (JSON null, not NaN) at steps no image drew in a stratified estimate
            **({"nll_variance_fraction": [None if v != v else v for v in fraction[0].nanmean(0).tolist()]}
               if fraction else {})}
