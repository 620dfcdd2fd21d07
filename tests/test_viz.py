"""Pictures: exact pixels where the data is shown, the expected sizes and frame counts, and a report
whose every picture is embedded (no reference to a file that might not exist)."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.cli import main
from ddpm.nets import build_denoiser
from ddpm.sampling.plan import SamplingPlan
from ddpm.schedules import NoiseSchedule
from ddpm.viz import labelled_panel, plots, process
from helpers import denoiser_of
from test_cli import TINY


def cell(panel: Image.Image, i: int, j: int, scale: int, size: int) -> np.ndarray:
    """Cell (i, j) of a labelled panel, shrunk back by taking every ``scale``-th pixel: [H, W, 3]."""
    label_w, header_h, pad, cw, ch = panel.info["layout"]
    x, y = label_w + pad + j * (cw + pad), header_h + pad + i * (ch + pad)
    return np.asarray(panel)[y:y + ch:scale, x:x + cw:scale][:size, :size]


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_strip_shows_the_data_itself_and_t0_near_it(channels):
    images = torch.randint(0, 256, (2, channels, 12, 12), dtype=torch.uint8)
    panel = process.forward_strip(images, num_timesteps=1000, times=[0, 500, 999], scale=3)
    assert panel.size[1] == 14 + 6 * (36 + 2) + 2  # header + 3 schedules × 2 images
    for row, k in [(0, 0), (1, 1), (4, 0)]:
        shown = cell(panel, row, 0, 3, 12)
        expected = images[k].permute(1, 2, 0).numpy()
        assert np.array_equal(shown, np.broadcast_to(expected, shown.shape))  # grayscale shown as R = G = B
        t0 = cell(panel, row, 1, 3, 12).astype(int)
        assert np.abs(t0 - expected.astype(int)).mean() < 6  # √β_0 = 0.01 of noise: about one gray level
    # t = T−1 is nearly pure noise: unrelated to the data
    last = cell(panel, 0, 3, 3, 12).astype(float)
    assert abs(np.corrcoef(last[..., 0].ravel(), images[0, 0].float().numpy().ravel())[0, 1]) < 0.5


def test_labelled_panel_keeps_rgb_channels_apart():
    red = torch.zeros(1, 1, 3, 4, 4, dtype=torch.uint8)
    red[..., 0, :, :] = 255
    px = cell(labelled_panel(red, ["r"], ["c"], scale=2), 0, 0, 2, 4)
    assert (px[..., 0] == 255).all() and (px[..., 1:] == 0).all()


@pytest.fixture(scope="module")
def rgb_net():
    torch.manual_seed(0)
    return build_denoiser("unet", image_size=8, in_channels=3, base_channels=16, channel_mults=(1,), num_res_blocks=1,
                          attention_resolutions=(), head_channels=16).eval()


def test_reverse_trajectory_gif_and_strip(rgb_net, tmp_path):
    schedule = NoiseSchedule.from_name("linear", 50)
    record, final = process.reverse_trajectory(denoiser_of(rgb_net, schedule, (3, 8, 8)), SamplingPlan(sampler="ddim", steps=10),
                                               num=3)
    assert len(record.steps) == 10 and final.shape == (3, 3, 8, 8) and final.dtype == torch.uint8
    assert [t for t, _, _ in record.steps] == sorted([t for t, _, _ in record.steps], reverse=True)
    gif = process.trajectory_gif(record, final, tmp_path / "r.gif", max_frames=6)
    with Image.open(gif) as im:
        assert im.n_frames == 6 + 1  # 6 chosen steps + the final samples
    strip = process.trajectory_strip(record, final, columns=4)
    assert np.array_equal(cell(strip, 1, 4, 2, 8), final[0].permute(1, 2, 0).numpy())  # last column: the final sample


def test_sampler_comparison_has_one_row_per_sampler(rgb_net):
    schedule = NoiseSchedule.from_name("linear", 30)
    denoiser, plan = denoiser_of(rgb_net, schedule, (3, 8, 8)), SamplingPlan()
    panel = process.sampler_comparison(denoiser, plan, steps=5, num=3, scale=2)
    _, header_h, pad, cw, ch = panel.info["layout"]
    assert panel.size[1] == header_h + 5 * (ch + pad) + pad
    without = process.sampler_comparison(denoiser, plan, steps=5, num=3, scale=2, include_full=False)
    assert without.size[1] == header_h + 4 * (ch + pad) + pad


def test_schedule_plot(tmp_path):
    path = plots.plot_schedules(tmp_path / "s.png", num_timesteps=37)
    with Image.open(path) as im:
        assert im.size[0] > 500 and im.size[1] > 200


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("viz") / "run"
    argv = ["train", "--data", "mnist", "--limit", "64", "--steps", "6", "--batch-size", "8", "--out", str(out), *TINY]
    argv += ["--set", "train.sample_every=2", "--set", "train.log_every=2", "--set", "sample.steps=5"]  # later --set wins
    assert main(argv) == 0
    return out


def test_progress_gif_loss_plots_and_viz_command(tiny_run, tmp_path):
    assert main(["viz", "progress", str(tiny_run), "--out", str(tmp_path / "p.gif")]) == 0
    with Image.open(tmp_path / "p.gif") as im:
        assert im.n_frames == 3  # grids at steps 2, 4, 6
    assert main(["viz", "loss", str(tiny_run), "--out", str(tmp_path / "l.png")]) == 0
    assert (tmp_path / "l.png").is_file() and (tmp_path / "l-heatmap.png").is_file()
    assert main(["viz", "reverse", str(tiny_run), "--steps", "4", "--out", str(tmp_path / "r.gif")]) == 0
    with Image.open(tmp_path / "r.gif") as im:
        assert im.n_frames == 5
    assert main(["viz", "forward", "--out", str(tmp_path / "f.png"), "--num-timesteps", "100"]) == 0
    assert main(["viz", "loss", str(tiny_run), "--out", str(tmp_path / "l.gif")]) == 2


def test_report_embeds_every_picture(tiny_run):
    assert main(["report", str(tiny_run)]) == 0
    page = (tiny_run / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 8 and all(s.startswith("data:image/") for s in sources)
    assert not re.findall(r'href="(?!#)', page)  # no links to files either
    for title in ("Samples", "Training progress", "Training loss", "Reverse process", "Samplers from the same noise",
                  "Forward process", "Noise schedules", "Config"):
        assert f">{title}</h2>" in page


def test_a_budget_plot_has_one_tick_per_stage():
    """The two recipes of the budget study measured 5.1 and 5.3 minutes for one stage: one tick, not two overprinted
    labels; the stages themselves (×3, ×2, ×2 apart) keep theirs, as do short --minutes budgets."""
    assert plots.stage_ticks([60.3, 5.1, 5.3, 15.1, 15.3, 30.1, 30.3, 60.1]) == [5.1, 15.1, 30.1, 60.1]
    assert plots.stage_ticks([0.2, 0.6, 1.2, 2.4, 0.21]) == [0.2, 0.6, 1.2, 2.4]
