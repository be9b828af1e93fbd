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
        "compression_ratio": [100.0, 20.0, 5.0],
        "nbytes": [2363, 11815, 47260],
        "psnr": [14.1, 17.9, 20.5],
        "ssim": [0.41, 0.48, 0.57],
        "jpeg_psnr": [21.9, 28.0, 36.3],
        "float32_nbytes": [9388, 46940, 187760],
        "uint8_nbytes": [2363, 11815, 47260],
        "raw_nbytes": [51360] * 3,
        "jpeg_max_psnr": [41.2] * 3,
    })


def _lines(fig):
    return {line.get_label(): line for ax in fig.axes for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_plot_rank_profile_draws_the_columns(profile):
    fig = plot_rank_profile(profile, title="china")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    quality, size = fig.axes
    assert (quality.get_ylabel(), size.get_ylabel()) == ("PSNR (dB)", "size (kB)")
    lines = _lines(fig)
    np.testing.assert_array_equal(lines["SVD, 8-bit factors"].get_ydata(), profile["psnr"])
    np.testing.assert_array_equal(lines["JPEG at the same bytes"].get_ydata(),
                                  profile["jpeg_psnr"])
    np.testing.assert_array_equal(lines["JPEG at the same bytes"].get_xdata(), [1, 5, 20])
    np.testing.assert_array_equal(lines["JPEG quality 100 (41.2 dB)"].get_ydata(), [41.2, 41.2])
    np.testing.assert_allclose(lines["float32 factors"].get_ydata(),
                               profile["float32_nbytes"] / 1e3)
    np.testing.assert_allclose(lines["8-bit factors"].get_ydata(), profile["uint8_nbytes"] / 1e3)
    np.testing.assert_allclose(lines["raw image"].get_ydata(), [51.36, 51.36])
    assert lines["SVD, 8-bit factors"] in quality.get_lines()
    assert lines["raw image"] in size.get_lines()
    assert fig._suptitle.get_text() == "china"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_plot_rank_profile_minimal_and_real(profile):
    fig = plot_rank_profile(profile[["rank", "psnr", "nbytes"]])
    assert len(fig.axes) == 2 and set(_lines(fig)) == {"SVD, stored factors", "factors"}
    from sklearn.datasets import load_sample_image

    from sksvd.image import rank_profile

    img = load_sample_image("china.jpg")[::4, ::4]
    df = rank_profile(img, [1, 10], ssim=False)
    lines = _lines(plot_rank_profile(df))
    assert len(lines) == 6
    np.testing.assert_array_equal(lines["SVD, 8-bit factors"].get_ydata(), df["psnr"])
    f32 = rank_profile(img, [1, 10], ssim=False, jpeg=False, factor_dtype="float32")
    assert "SVD, stored factors" in _lines(plot_rank_profile(f32))


def test_plot_rank_profile_bad_input(profile):
    with pytest.raises(ValueError, match="psnr"):
        plot_rank_profile(profile.drop(columns="psnr"))
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
