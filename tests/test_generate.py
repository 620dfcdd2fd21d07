"""generate_with(): per-sample noise streams make a seed's images independent of the batch they are drawn in."""
import pytest
import torch

from helpers import generate_with

from ddpm import rng
from ddpm.errors import DdpmError
from ddpm.schedules import NoiseSchedule


def smooth_model(x, t):
    """A stand-in ε̂ that depends on each sample alone (as a network in eval mode does)."""
    return 0.5 * torch.tanh(x) + 1e-3 * t.view(-1, 1, 1, 1)


SCHEDULE = NoiseSchedule.from_name("cosine", 100)


@pytest.mark.parametrize("sampler, options", [("ddpm", {}), ("ddpm", {"steps": None}), ("ddim", {"eta": 1.0}),
                                              ("ddim", {"eta": 0.0}), ("dpm-solver++", {})])
def test_a_seed_gives_the_same_images_whatever_the_batch_size(sampler, options):
    kwargs = {"num": 5, "shape": (1, 4, 4), "sampler": sampler, "steps": 10, "seed": 7, **options}
    whole = generate_with(smooth_model, SCHEDULE, batch_size=5, **kwargs)
    assert torch.equal(whole, generate_with(smooth_model, SCHEDULE, batch_size=2, **kwargs))
    assert torch.equal(whole, generate_with(smooth_model, SCHEDULE, batch_size=1, **kwargs))
    # a shard that starts at sample 3 draws samples 3 and 4 of the whole run
    shard = generate_with(smooth_model, SCHEDULE, **{**kwargs, "num": 2}, first_index=3)
    assert torch.equal(whole[3:], shard)
    # another seed gives other images, and the samples of one run differ from one another
    assert not torch.equal(whole, generate_with(smooth_model, SCHEDULE, batch_size=5, **{**kwargs, "seed": 8}))
    assert len({tuple(img.flatten().tolist()) for img in whole}) == 5


def test_per_sample_streams_are_independent_standard_normals():
    """Each stream is N(0, 1): mean and variance of 4000 draws within 4.5 standard errors, and neighbouring
    (seed, index) pairs are uncorrelated (|r| < 4.5/√n)."""
    n = 4000
    draws = rng.randn((8, n), rng.SampleNoise(0, range(8)))
    draws_next_seed = rng.randn((8, n), rng.SampleNoise(1, range(8)))
    for x in (*draws, *draws_next_seed):
        assert abs(x.mean()) < 4.5 / n ** 0.5
        assert abs(x.var() - 1) < 4.5 * (2 / n) ** 0.5
    both = torch.cat([draws, draws_next_seed])
    corr = torch.corrcoef(both)
    off = corr[~torch.eye(len(both), dtype=torch.bool)]
    assert off.abs().max() < 4.5 / n ** 0.5


def test_sample_noise_refuses_a_batch_of_another_size():
    with pytest.raises(DdpmError, match="noise for a batch of shape"):
        rng.randn((3, 2), rng.SampleNoise(0, range(2)))
    with pytest.raises(DdpmError, match="non-negative"):
        rng.sample_seed(-1, 0)
