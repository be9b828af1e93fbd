"""The epoch loop shared by the gradient-trained recommenders (FunkSVD, AsySVD).

One place for the progress bar, the loss curve, divergence detection, early
stopping on a validation score and the per-epoch callback, so that every
trained model behaves the same way when it diverges or is interrupted.

Interrupt safety: the loop only works on the trainer's own tensors; the
estimator's fitted attributes are written by the caller after the loop
returns. An exception (``KeyboardInterrupt`` included) raised inside the
loop therefore leaves the estimator exactly as it was before ``fit``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DivergenceError", "run_epochs", "validation_split"]


class DivergenceError(ValueError):
    """Training produced a NaN or infinite loss (learning rate too large)."""


def run_epochs(epoch_fn, n_epochs, *, learning_rate, validate_fn=None, n_iter_no_change=5,
               tol=0.0, higher_is_better=False, callback=None, verbose=0, desc="fit",
               snapshot_fn=None, restore_fn=None):
    """Run ``epoch_fn`` up to ``n_epochs`` times with the shared bookkeeping.

    Parameters
    ----------
    epoch_fn : callable ``f(epoch) -> float``
        Runs one epoch and returns its mean training loss.
    n_epochs : int
    learning_rate : float
        Only used in the divergence error message.
    validate_fn : callable ``f() -> float``, default=None
        When given, called after each epoch; training stops when the score
        has not improved by ``tol`` for ``n_iter_no_change`` epochs, and the
        best epoch's parameters are restored through ``snapshot_fn`` /
        ``restore_fn``.
    n_iter_no_change : int, default=5
    tol : float, default=0.0
    higher_is_better : bool, default=False
        Direction of the validation score (False for RMSE, True for NDCG).
    callback : callable ``f(epoch, loss)``, default=None
        Called after each completed epoch; may raise to stop training.
    verbose : int, default=0
        A tqdm progress bar showing the loss when > 0.
    desc : str
    snapshot_fn, restore_fn : callables, default=None
        ``snapshot_fn() -> state`` and ``restore_fn(state)`` save/restore the
        trainer's parameters (for early stopping's best epoch).

    Returns
    -------
    loss_curve : list of float
    validation_scores : list of float (empty without ``validate_fn``)

    Raises
    ------
    DivergenceError
        If a loss is NaN or infinite.

    Examples
    --------
    >>> from sksvd.recommenders._training import run_epochs
    >>> run_epochs(lambda epoch: 1.0 / (epoch + 1), 3, learning_rate=0.1)
    ([1.0, 0.5, 0.3333333333333333], [])
    """
    losses, scores = [], []
    best, best_state, since_best = None, None, 0
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_epochs, desc=desc, leave=False)
    try:
        for epoch in range(n_epochs):
            loss = float(epoch_fn(epoch))
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"learning_rate={learning_rate!r}: training diverged at epoch {epoch + 1} "
                    f"(loss={loss}); lower the learning rate or raise the regularization"
                )
            losses.append(loss)
            postfix = {"loss": f"{loss:.4f}"}
            if validate_fn is not None:
                score = float(validate_fn())
                scores.append(score)
                postfix["val"] = f"{score:.4f}"
                improved = best is None or (
                    score > best + tol if higher_is_better else score < best - tol
                )
                if improved:
                    best, since_best = score, 0
                    if snapshot_fn is not None:
                        best_state = snapshot_fn()
                else:
                    since_best += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(postfix)
            if callback is not None:
                callback(epoch, loss)
            if validate_fn is not None and since_best >= n_iter_no_change:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None and restore_fn is not None:
        restore_fn(best_state)
    return losses, scores


def validation_split(X, fraction, rng):
    """Split the stored entries of a CSR matrix into train and validation parts.

    Each stored entry goes to validation with probability ``fraction``
    (exactly ``round(fraction * nnz)`` entries, drawn by ``rng``). Both parts
    keep the shape of ``X``.

    Parameters
    ----------
    X : scipy.sparse.csr_matrix
    fraction : float in (0, 1)
    rng : numpy.random.Generator or RandomState

    Returns
    -------
    X_train, X_val : scipy.sparse.csr_matrix

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sksvd.recommenders._training import validation_split
    >>> X = sp.random(20, 10, density=0.5, format="csr", random_state=0)
    >>> a, b = validation_split(X, 0.2, np.random.default_rng(0))
    >>> a.nnz + b.nnz == X.nnz
    True
    """
    import scipy.sparse as sp

    coo = X.tocoo()
    n_val = int(round(fraction * coo.nnz))
    perm = rng.permutation(coo.nnz)
    val = np.zeros(coo.nnz, dtype=bool)
    val[perm[:n_val]] = True

    def part(mask):
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=X.shape)

    return part(~val), part(val)
