"""Figures: the rank profile of an image compression, and training curves.

Figures are built with :class:`matplotlib.figure.Figure` directly, not through
``pyplot``, so they need no GUI backend (safe in tests, scripts and threads)
and are never left open in a global figure manager; in Jupyter they display
as usual, and ``fig.savefig(path)`` writes them. matplotlib (the ``plot``
extra) is imported only when a figure is made.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_rank_profile", "plot_training"]


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sksvd.plotting needs matplotlib: pip install 'sksvd[plot]'"
        ) from exc
    return Figure(figsize=figsize, layout="constrained")


def plot_rank_profile(profile, *, title=None, figsize=(10.0, 4.2)):
    """Quality and size of an SVD-compressed image against rank, in two panels.

    Left, **quality**: PSNR of the reconstruction from the stored factors
    (``psnr``), of the best JPEG no larger (``jpeg_psnr``), and JPEG's
    quality-100 ceiling as a dashed line (``jpeg_max_psnr``). Right,
    **size**: bytes of the factors in float32 and at 8 bits
    (``float32_nbytes``, ``uint8_nbytes``; ``nbytes`` when those are
    absent) against the raw image's (``raw_nbytes``, dotted): where a curve
    is above the dotted line the "compressed" image is larger than the raw
    one.

    Parameters
    ----------
    profile : pandas.DataFrame
        As returned by :func:`sksvd.image.rank_profile`: columns ``rank``,
        ``psnr`` and ``nbytes`` are required; the others are drawn when
        present (and not all NaN).
    title : str, default=None
        Title over both panels.
    figsize : (float, float), default=(10.0, 4.2)

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: PSNR (dB) and size (kB) against rank.

    Examples
    --------
    >>> import pandas as pd
    >>> from sksvd.plotting import plot_rank_profile
    >>> df = pd.DataFrame({"rank": [1, 10], "psnr": [14.0, 19.0], "nbytes": [2600, 26000],
    ...                    "jpeg_psnr": [25.0, 33.0], "jpeg_max_psnr": [40.0, 40.0],
    ...                    "raw_nbytes": [50000, 50000]})
    >>> fig = plot_rank_profile(df)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['PSNR (dB)', 'size (kB)']
    """
    missing = [c for c in ("rank", "psnr", "nbytes") if c not in profile]
    if missing:
        raise ValueError(
            f"profile: missing column(s) {missing}: expected the DataFrame of rank_profile"
        )
    if len(profile) == 0:
        raise ValueError("profile: empty DataFrame: expected at least one rank")

    def column(name):
        if name not in profile:
            return None
        values = np.asarray(profile[name], dtype=float)
        return values if np.isfinite(values).any() else None

    rank = np.asarray(profile["rank"], dtype=float)
    fig = _figure(figsize)
    quality, size = fig.subplots(1, 2)
    sizes = {name: column(name) for name in ("float32_nbytes", "uint8_nbytes")}
    factor = "8-bit" if sizes["uint8_nbytes"] is not None and np.array_equal(
        sizes["uint8_nbytes"], column("nbytes")) else "stored"

    quality.plot(rank, np.asarray(profile["psnr"], dtype=float), "o-", color="tab:red",
                 label=f"SVD, {factor} factors")
    jpeg = column("jpeg_psnr")
    if jpeg is not None:
        quality.plot(rank, jpeg, "s-", color="tab:blue", label="JPEG at the same bytes")
    ceiling = column("jpeg_max_psnr")
    if ceiling is not None:
        quality.axhline(float(np.nanmax(ceiling)), color="tab:blue", ls="--", lw=1,
                        label=f"JPEG quality 100 ({np.nanmax(ceiling):.1f} dB)")
    quality.set_xlabel("rank k")
    quality.set_ylabel("PSNR (dB)")
    quality.set_title("quality (higher is better)")
    quality.legend(loc="lower right", fontsize="small")
    quality.grid(True, alpha=0.3)

    if sizes["float32_nbytes"] is None and sizes["uint8_nbytes"] is None:
        size.plot(rank, np.asarray(profile["nbytes"], dtype=float) / 1e3, "o-",
                  color="tab:red", label="factors")
    if sizes["float32_nbytes"] is not None:
        size.plot(rank, sizes["float32_nbytes"] / 1e3, "^-", color="tab:gray",
                  label="float32 factors")
    if sizes["uint8_nbytes"] is not None:
        size.plot(rank, sizes["uint8_nbytes"] / 1e3, "o-", color="tab:red",
                  label="8-bit factors")
    raw = column("raw_nbytes")
    if raw is not None:
        size.axhline(float(np.nanmax(raw)) / 1e3, color="black", ls=":", lw=1.2,
                     label="raw image")
    size.set_xlabel("rank k")
    size.set_ylabel("size (kB)")
    size.set_title("size (lower is better)")
    size.set_ylim(bottom=0)
    size.legend(loc="upper left", fontsize="small")
    size.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_training(estimator, *, title=None, figsize=(6.0, 4.0)):
    """Training loss per epoch, with the validation score on a second axis when present.

    Parameters
    ----------
    estimator : fitted estimator
        With ``loss_curve_`` (list of per-epoch training losses) and
        optionally ``validation_scores_`` (per-epoch validation scores), as
        :class:`sksvd.FunkSVD` and :class:`sksvd.AsySVD` record them.
    title : str, default=None
    figsize : (float, float), default=(6.0, 4.0)

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from sksvd.plotting import plot_training
    >>> est = SimpleNamespace(loss_curve_=[1.0, 0.6, 0.5], validation_scores_=[0.9, 0.8, 0.85])
    >>> len(plot_training(est).axes)
    2
    """
    loss = getattr(estimator, "loss_curve_", None)
    if loss is None:
        raise ValueError(
            f"estimator={type(estimator).__name__}: no loss_curve_ (not fitted, or not "
            "trained by epochs)"
        )
    loss = np.asarray(loss, dtype=float)
    if loss.ndim != 1 or loss.size == 0:
        raise ValueError(f"estimator.loss_curve_: shape={loss.shape}: expected a non-empty list")
    fig = _figure(figsize)
    ax = fig.add_subplot()
    epochs = np.arange(1, loss.size + 1)
    ax.plot(epochs, loss, "o-", color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    handles, labels = ax.get_legend_handles_labels()
    scores = getattr(estimator, "validation_scores_", None)
    if scores is not None and len(scores) > 0:
        scores = np.asarray(scores, dtype=float)
        ax2 = ax.twinx()
        ax2.plot(np.arange(1, scores.size + 1), scores, "s--", color="tab:orange",
                 label="validation score")
        ax2.set_ylabel("validation score")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best", fontsize="small")
    ax.set_title(title or f"{type(estimator).__name__} training")
    ax.grid(True, alpha=0.3)
    return fig
