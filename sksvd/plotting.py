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


def plot_rank_profile(profile, *, title=None, figsize=(7.0, 4.5)):
    """Energy and size against rank, with PSNR (SVD and JPEG) on a second axis.

    Parameters
    ----------
    profile : pandas.DataFrame
        As returned by :func:`sksvd.image.rank_profile`: columns ``rank``,
        ``energy`` and ``compression_ratio`` are required; ``psnr``,
        ``jpeg_psnr`` and ``singular_value_share`` are drawn when present.
    title : str, default=None
    figsize : (float, float), default=(7.0, 4.5)

    Returns
    -------
    matplotlib.figure.Figure
        Left axis: energy share, share of ``sum s_i`` and size of the factors
        relative to the raw image; right axis: PSNR in dB.

    Examples
    --------
    >>> import pandas as pd
    >>> from sksvd.plotting import plot_rank_profile
    >>> df = pd.DataFrame({"rank": [1, 10], "energy": [0.9, 0.97],
    ...                    "compression_ratio": [0.01, 0.1], "psnr": [14.0, 19.0]})
    >>> fig = plot_rank_profile(df)
    >>> len(fig.axes)
    2
    """
    missing = [c for c in ("rank", "energy", "compression_ratio") if c not in profile]
    if missing:
        raise ValueError(
            f"profile: missing column(s) {missing}: expected the DataFrame of rank_profile"
        )
    if len(profile) == 0:
        raise ValueError("profile: empty DataFrame: expected at least one rank")
    rank = np.asarray(profile["rank"], dtype=float)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    ax.plot(rank, profile["energy"], "o-", color="tab:blue", label="energy  sum s_i^2 share")
    if "singular_value_share" in profile:
        ax.plot(rank, profile["singular_value_share"], "s-", color="tab:cyan",
                label="sum s_i share")
    ax.plot(rank, profile["compression_ratio"], "^-", color="tab:gray",
            label="size / raw image")
    ax.axhline(1.0, color="tab:gray", lw=0.8, ls=":")
    ax.set_xlabel("rank k")
    ax.set_ylabel("share")
    handles, labels = ax.get_legend_handles_labels()
    if "psnr" in profile or "jpeg_psnr" in profile:
        ax2 = ax.twinx()
        if "psnr" in profile:
            ax2.plot(rank, profile["psnr"], "D-", color="tab:red", label="PSNR, SVD (dB)")
        if "jpeg_psnr" in profile and np.isfinite(
                np.asarray(profile["jpeg_psnr"], dtype=float)).any():
            ax2.plot(rank, np.asarray(profile["jpeg_psnr"], dtype=float), "D--",
                     color="tab:orange", label="PSNR, JPEG same bytes (dB)")
        ax2.set_ylabel("PSNR (dB)")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3,
              fontsize="small", frameon=False)
    ax.set_title(title or "SVD compression: energy, size and quality against rank")
    ax.grid(True, alpha=0.3)
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
