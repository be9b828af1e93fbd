"""sksvd.plotting: the figures hold the data they are given, with no GUI backend."""

import io
import sys
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sksvd.plotting import plot_rank_profile, plot_training

matplotlib.use("Agg")  # in case anything falls back to pyplot: never a GUI in tests


@pytest.fixture
def profile():
    return pd.DataFrame({
        "rank": [1, 5, 20],
        "energy": [0.90, 0.96, 0.98],
        "singular_value_share": [0.23, 0.34, 0.46],
        "compression_ratio": [0.01, 0.06, 0.23],
        "nbytes": [9388, 46940, 187760],
        "psnr": [14.1, 17.9, 20.5],
        "ssim": [0.41, 0.48, 0.57],
        "jpeg_psnr": [21.9, 28.0, 36.3],
    })


def _lines(fig):
    return {line.get_label(): line for ax in fig.axes for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_plot_rank_profile_draws_the_columns(profile):
    fig = plot_rank_profile(profile, title="china")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    lines = _lines(fig)
    np.testing.assert_array_equal(lines["energy  sum s_i^2 share"].get_ydata(), profile["energy"])
    np.testing.assert_array_equal(lines["size / raw image"].get_ydata(),
                                  profile["compression_ratio"])
    np.testing.assert_array_equal(lines["PSNR, SVD (dB)"].get_ydata(), profile["psnr"])
    np.testing.assert_array_equal(lines["PSNR, JPEG same bytes (dB)"].get_xdata(), [1, 5, 20])
    assert fig.axes[1].get_ylabel() == "PSNR (dB)"
    assert fig.axes[0].get_title() == "china"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_plot_rank_profile_minimal_and_real(profile):
    fig = plot_rank_profile(profile[["rank", "energy", "compression_ratio"]])
    assert len(fig.axes) == 1
    from sklearn.datasets import load_sample_image

    from sksvd.image import rank_profile

    img = load_sample_image("china.jpg")[::4, ::4]
    fig = plot_rank_profile(rank_profile(img, [1, 10], ssim=False))
    assert len(_lines(fig)) == 5


def test_plot_rank_profile_bad_input(profile):
    with pytest.raises(ValueError, match="energy"):
        plot_rank_profile(profile.drop(columns="energy"))
    with pytest.raises(ValueError, match="empty"):
        plot_rank_profile(profile.iloc[:0])


def test_plot_training():
    est = SimpleNamespace(loss_curve_=[1.0, 0.7, 0.6], validation_scores_=[0.95, 0.9, 0.92])
    fig = plot_training(est)
    assert len(fig.axes) == 2
    lines = _lines(fig)
    np.testing.assert_array_equal(lines["training loss"].get_ydata(), [1.0, 0.7, 0.6])
    np.testing.assert_array_equal(lines["training loss"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines["validation score"].get_ydata(), [0.95, 0.9, 0.92])
    assert len(plot_training(SimpleNamespace(loss_curve_=[1.0, 0.5])).axes) == 1
    assert len(plot_training(SimpleNamespace(loss_curve_=[1.0], validation_scores_=[])).axes) == 1


def test_plot_training_bad_input():
    with pytest.raises(ValueError, match="no loss_curve_"):
        plot_training(object())
    with pytest.raises(ValueError, match="loss_curve_"):
        plot_training(SimpleNamespace(loss_curve_=[]))


def test_missing_matplotlib_names_the_extra(profile, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"sksvd\[plot\]"):
        plot_rank_profile(profile)
