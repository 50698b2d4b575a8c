"""Pictures are written, readable PNGs of the expected layout; bad input is refused."""

import matplotlib.image as mpimg
import pytest
import torch

from engramlab.errors import BadInput, DataError
from engramlab.viz import image_grid, plot_bars, plot_curves, plot_training_log, to_images


def read_png(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 20 and img.shape[1] > 20
    return img


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 12), (1, 28, 28), (128,), (8, 8)])
def test_image_grid_writes_png_for_every_pattern_shape(shape, tmp_path, gen):
    x = torch.rand(3, 5, *shape, generator=gen)
    path = image_grid(x, x * 0.5, x, tmp_path / "grid.png", max_episodes=2)
    read_png(path)
    assert not list(tmp_path.glob(".*tmp"))


def test_image_grid_without_query_column_and_pm1_strings(tmp_path, gen):
    x = torch.randint(0, 2, (2, 4, 100), generator=gen).float() * 2 - 1
    read_png(image_grid(x, None, -x, tmp_path / "s.png"))


def test_strings_are_laid_out_square_and_mapped_to_unit_range():
    x = torch.tensor([[-1.0, 1.0, 0.0]])
    assert to_images(x).tolist() == [[0.0, 1.0, 0.5]]


def test_image_grid_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(BadInput, match="query"):
        image_grid(torch.zeros(2, 3, 64), torch.zeros(2, 3, 63), None, tmp_path / "x.png")


def test_plot_curves_with_ci_bands_and_vertical_line(tmp_path):
    x = [0.03, 0.06, 0.12, 0.25]
    path = plot_curves(
        x,
        {"hebbian": ([0.0, 0.01, 0.05, 0.2], [0.0, 0.005, 0.01, 0.02]), "modern": (torch.zeros(4), None)},
        tmp_path / "c.png",
        xlabel="T/N",
        ylabel="bit error",
        vline=(0.138, "0.138 N"),
        logx=True,
    )
    read_png(path)


def test_plot_curves_rejects_length_mismatch(tmp_path):
    with pytest.raises(BadInput, match="points"):
        plot_curves([1, 2], {"a": ([1, 2, 3], None)}, tmp_path / "c.png", "x", "y")


def test_plot_training_log_reads_csv_with_validation_gaps(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "step,loss,squared_error,lr,episodes_per_s,wall,val_loss,val_squared_error\n"
        "1,3.0,3.0,0.001,10,0.1,,\n2,2.0,2.0,0.001,10,0.2,2.5,2.5\n3,1.5,1.5,0.001,10,0.3,,\n"
    )
    read_png(plot_training_log(log, tmp_path / "train.png"))


def test_plot_training_log_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        plot_training_log(tmp_path / "nope.csv", tmp_path / "x.png")


def test_plot_bars_with_intervals_and_reference_line(tmp_path):
    path = plot_bars(["base", "ablated", "no ci"], [0.1, 0.2, 0.15], [0.01, 0.02, None], tmp_path / "b.png",
                     "error", reference=(0.12, "query"), title="t")  # fmt: skip
    assert mpimg.imread(path).ndim == 3


def test_plot_bars_rejects_length_mismatch_and_no_bars(tmp_path):
    with pytest.raises(BadInput, match="2 labels but 3 means"):
        plot_bars(["a", "b"], [1.0, 2.0, 3.0], None, tmp_path / "b.png", "x")
    with pytest.raises(BadInput, match="no bars"):
        plot_bars([], [], None, tmp_path / "b.png", "x")
