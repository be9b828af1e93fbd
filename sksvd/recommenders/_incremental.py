"""What the growing models share: partial_fit's input check, growing a matrix, per-call seeds.

``partial_fit`` continues training on new interactions and accepts more rows
(new users) and more columns (new items) than the fitted model had; fewer
columns are refused with scikit-learn's message, since column ``j`` is item
``j``. The estimators keep the state changes of a call local until it ends,
so an exception leaves them as they were before it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validation import check_interactions

__all__ = ["check_growing_interactions", "grow", "call_seed"]


def check_growing_interactions(estimator, X):
    """Validate the ``X`` of ``partial_fit`` (or of a ``warm_start`` fit).

    Unfitted, or with more columns than ``n_features_in_``, ``X`` is checked
    as in ``fit`` (``n_features_in_`` reset); with as many columns it is
    checked against the fitted feature names; with fewer, scikit-learn's
    "X has ... features" ``ValueError`` is raised.

    Parameters
    ----------
    estimator : fitted or unfitted recommender
    X : {array-like, sparse matrix}

    Returns
    -------
    X : scipy.sparse.csr_matrix

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd import FunkSVD
    >>> from sksvd.recommenders._incremental import check_growing_interactions
    >>> check_growing_interactions(FunkSVD(), np.eye(3)).shape
    (3, 3)
    """
    fitted = getattr(estimator, "n_features_in_", None)
    shape = getattr(X, "shape", None)
    n_cols = shape[1] if shape is not None and len(shape) == 2 else None
    if fitted is None or (n_cols is not None and n_cols > fitted):
        return check_interactions(X, estimator=estimator, reset=True)
    return check_interactions(X, estimator=estimator, reset=False)


def grow(X, shape):
    """``X`` (CSR) with extra empty rows and columns up to ``shape`` (no copy of the entries).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd.recommenders._incremental import grow
    >>> grow(sp.csr_matrix([[1.0]]), (2, 3)).toarray()
    array([[1., 0., 0.],
           [0., 0., 0.]])
    """
    n_rows, n_cols = X.shape
    if (n_rows, n_cols) == tuple(shape):
        return X
    if shape[0] < n_rows or shape[1] < n_cols:
        raise ValueError(f"shape={tuple(shape)}: smaller than X's {X.shape}")
    indptr = np.concatenate([X.indptr, np.full(shape[0] - n_rows, X.indptr[-1],
                                               dtype=X.indptr.dtype)])
    return sp.csr_matrix((X.data, X.indices, indptr), shape=tuple(shape))


def call_seed(seed, calls):
    """A seed for the ``calls``-th continuation of a fit seeded with ``seed``.

    Successive ``partial_fit`` calls with the same ``random_state`` then draw
    different shuffles (as the epochs of one fit do) and still repeat.

    Examples
    --------
    >>> from sksvd.recommenders._incremental import call_seed
    >>> call_seed(0, 1) == call_seed(0, 1) != call_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(calls)]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))
