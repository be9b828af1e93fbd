"""Input validation shared by every estimator and function of sksvd.

One place for the checks, so that every error names the argument and the
value it saw, e.g. ``ValueError("k=0: expected an int >= 1")``.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import re

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import InvalidParameterError, validate_params
from sklearn.utils.validation import assert_all_finite, check_array, validate_data

# Largest |value| accepted in a matrix: squares and sums of squares of larger values
# overflow float32 (3.4e38) in the factorisations.
MAX_ABS_VALUE = 1e15

__all__ = [
    "check_matrix",
    "check_interactions",
    "check_n_components",
    "check_int",
    "check_float",
    "check_k",
]


def check_int(value, name, *, min_val=None, max_val=None):
    """Check that ``value`` is an integer within ``[min_val, max_val]``.

    Returns the value as a Python int.

    Examples
    --------
    >>> from sksvd._validation import check_int
    >>> check_int(3, "k", min_val=1)
    3
    >>> check_int(0, "k", min_val=1)
    Traceback (most recent call last):
    ...
    ValueError: k=0: expected an int >= 1
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r}: expected an int, got {type(value).__name__}")
    value = int(value)
    if min_val is not None and value < min_val:
        bound = f">= {min_val}" if max_val is None else f"in [{min_val}, {max_val}]"
        raise ValueError(f"{name}={value}: expected an int {bound}")
    if max_val is not None and value > max_val:
        bound = f"<= {max_val}" if min_val is None else f"in [{min_val}, {max_val}]"
        raise ValueError(f"{name}={value}: expected an int {bound}")
    return value


def check_float(value, name, *, low=None, high=None, closed="neither"):
    """Check that ``value`` is a real number within an interval.

    ``closed`` is "neither", "left", "right" or "both".

    Examples
    --------
    >>> from sksvd._validation import check_float
    >>> check_float(0.5, "holdout", low=0, high=1)
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r}: expected a float, got {type(value).__name__}")
    value = float(value)
    left = closed in ("left", "both")
    right = closed in ("right", "both")
    ok = np.isfinite(value)
    if low is not None:
        ok &= value >= low if left else value > low
    if high is not None:
        ok &= value <= high if right else value < high
    if not ok:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        interval = f"{'[' if left else '('}{lo}, {hi}{']' if right else ')'}"
        raise ValueError(f"{name}={value!r}: expected a float in {interval}")
    return value


def check_matrix(X, *, name="X", estimator=None, reset=True, accept_sparse=("csr", "csc", "coo"),
                 dtype=(np.float64, np.float32), ensure_min_samples=1, ensure_min_features=1,
                 defer_value_checks=False):
    """Validate a 2-D numeric matrix, dense or sparse, without densifying.

    With an ``estimator``, this is :func:`sklearn.utils.validation.validate_data`
    (which also sets or checks ``n_features_in_``); otherwise
    :func:`sklearn.utils.validation.check_array`. NaN and inf are refused, as
    are values larger in magnitude than ``MAX_ABS_VALUE`` (1e15, which float32
    factorisations would overflow),
    1-D and 3-D input are refused, non-numeric data are refused, and the
    caller's array is never modified (sparse matrices with duplicate entries
    are copied before the duplicates are summed).

    Parameters
    ----------
    X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
    name : str, default="X"
        Argument name used in error messages.
    estimator : estimator instance, default=None
    reset : bool, default=True
        With an estimator: set (True) or check (False) ``n_features_in_``.
    accept_sparse : tuple of str or False
    dtype : dtype or tuple of dtypes
    ensure_min_samples, ensure_min_features : int
    defer_value_checks : bool, default=False
        For a caller that sums ``X``'s squares in float64 anyway: the NaN/inf
        and magnitude checks of dense input (two passes over ``X``) are left
        to :func:`check_values_from_norm`, which needs only that sum.

    Returns
    -------
    X : ndarray or scipy.sparse matrix (CSR when sparse and CSR is accepted)

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._validation import check_matrix
    >>> check_matrix(np.eye(2)).shape
    (2, 2)
    """
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name}={X!r}: expected a 2-D numeric array or sparse matrix")
    kwargs = dict(
        accept_sparse=list(accept_sparse) if accept_sparse else False,
        dtype=dtype,
        ensure_all_finite=not defer_value_checks,
        ensure_2d=True,
        ensure_min_samples=ensure_min_samples,
        ensure_min_features=ensure_min_features,
        accept_large_sparse=True,
    )
    try:
        if estimator is not None:
            out = validate_data(estimator, X, reset=reset, **kwargs)
        else:
            out = check_array(X, input_name=name, **kwargs)
    except ValueError as exc:
        msg = str(exc)
        if name not in msg:
            msg = f"{name}: {msg}"
        raise ValueError(msg) from exc
    if sp.issparse(out) and not out.has_canonical_format:
        out = out.copy() if out is X else out
        out.sum_duplicates()
    if not defer_value_checks:
        _check_values(out, name)
    elif sp.issparse(out):  # cheap on the stored values: not deferred
        _check_values(out, name, finite=True)
    return out


def _check_values(X, name, finite=False):
    """Refuse values above ``MAX_ABS_VALUE`` in magnitude (and, with ``finite``, NaN/inf)."""
    if finite:
        try:
            assert_all_finite(X.data if sp.issparse(X) else X, input_name=name)
        except ValueError as exc:
            msg = str(exc)
            raise ValueError(msg if name in msg else f"{name}: {msg}") from exc
    values = X.data if sp.issparse(X) else X
    if values.size:
        # max |x| from max and min: no X-size temporary (np.abs would copy X).
        peak = max(float(np.max(values)), -float(np.min(values)))
        if peak > MAX_ABS_VALUE:
            raise ValueError(
                f"{name}: a value of magnitude {peak:.3g} exceeds {MAX_ABS_VALUE:.0e}; products "
                "of such values overflow float32 factorisations: rescale the data"
            )


def check_values_from_norm(X, squared_norm, name="X"):
    """The value checks :func:`check_matrix` deferred, from ``||X||_F^2`` summed in float64.

    A finite sum of squares means every value is finite (NaN and inf
    propagate into it), and a sum below ``MAX_ABS_VALUE ** 2`` bounds every
    magnitude. Otherwise (a NaN or inf, or squares that large, which may
    overflow to inf for float64 input) the full checks run, raising their
    usual errors.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._validation import check_values_from_norm
    >>> check_values_from_norm(np.ones((2, 2)), 4.0) is None
    True
    """
    if np.isfinite(squared_norm) and squared_norm < MAX_ABS_VALUE**2:
        return None
    _check_values(X, name, finite=True)
    return None


def check_interactions(X, *, name="X", estimator=None, reset=True, dtype=np.float32,
                       canonical=False, ensure_min_samples=1):
    """Validate a users x items interaction matrix and return it as CSR.

    The one validator of interaction matrices: the estimators' ``fit``, the
    metrics' ``y_true`` and the splitters' ``X`` all go through it.

    Any scipy sparse format is converted to CSR without densifying; dense
    arrays are accepted and converted. Duplicate (user, item) entries are
    **summed** (scipy's convention). The result has sorted indices and the
    requested ``dtype``; it is a copy whenever the input would otherwise be
    changed.

    Parameters
    ----------
    X : array-like or scipy.sparse matrix of shape (n_users, n_items)
        Users in rows, items in columns; stored values are the interactions.
    name : str, default="X"
        Argument name used in error messages.
    estimator : estimator instance, default=None
        When given, ``n_features_in_`` (= number of items) is set or checked.
    reset : bool, default=True
    dtype : numpy dtype or None, default=np.float32
        ``None`` keeps float32 and float64 input as it is (others become float64).
    canonical : bool, default=False
        Also sum duplicates and drop explicitly stored zeros, so that ``nnz``
        counts the interactions (the splitters and metrics count entries).
    ensure_min_samples : int, default=1
        Fewest rows accepted (0 for metrics and splitters of an empty matrix).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_users, n_items)
        The interactions, never the caller's arrays modified in place.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._validation import check_interactions
    >>> check_interactions(np.array([[0, 5], [3, 0]])).nnz
    2
    """
    accepted = (np.float32, np.float64) if dtype == np.float32 else (np.float64, np.float32)
    X = check_matrix(X, name=name, estimator=estimator, reset=reset,
                     accept_sparse=("csr", "csc", "coo"), dtype=accepted,
                     ensure_min_samples=ensure_min_samples)
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=dtype, copy=False)
    else:
        X = sp.csr_matrix(np.asarray(X, dtype=dtype))
    if canonical and (not X.has_canonical_format or (X.nnz and not np.all(X.data != 0))):
        X = X.copy()  # the arrays may be the caller's
        X.sum_duplicates()
        X.eliminate_zeros()
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    if X.indptr.dtype != X.indices.dtype:
        X.indices = X.indices.astype(X.indptr.dtype)
    return X


def check_n_components(n_components, *, n_samples, n_features, name="n_components",
                       allow_float=True, max_rank=None):
    """Check a rank argument: an int in [1, max_rank] or a float share in (0, 1).

    ``max_rank`` defaults to ``min(n_samples, n_features)``.

    Returns
    -------
    int or float

    Examples
    --------
    >>> from sksvd._validation import check_n_components
    >>> check_n_components(2, n_samples=5, n_features=3)
    2
    >>> check_n_components(4, n_samples=5, n_features=3)
    Traceback (most recent call last):
    ...
    ValueError: n_components=4: expected an int in [1, 3] (min(n_samples=5, n_features=3))
    """
    if max_rank is None:
        max_rank = min(n_samples, n_features)
    limit = f"min(n_samples={n_samples}, n_features={n_features})"
    if allow_float and isinstance(n_components, numbers.Real) and not isinstance(
        n_components, (numbers.Integral, bool)
    ):
        if not 0.0 < float(n_components) < 1.0:
            raise ValueError(
                f"{name}={n_components!r}: expected an int >= 1 or a float in (0, 1)"
            )
        return float(n_components)
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise TypeError(
            f"{name}={n_components!r}: expected an int >= 1"
            + (" or a float in (0, 1)" if allow_float else "")
        )
    if n_components < 1 or n_components > max_rank:
        raise ValueError(f"{name}={n_components}: expected an int in [1, {max_rank}] ({limit})")
    return int(n_components)


def check_k(k, n_items, *, name="k"):
    """Check the length of a top-k list: an int in [1, n_items].

    Examples
    --------
    >>> from sksvd._validation import check_k
    >>> check_k(10, 100)
    10
    >>> check_k(0, 100)
    Traceback (most recent call last):
    ...
    ValueError: k=0: expected an int in [1, 100]
    """
    return check_int(k, name, min_val=1, max_val=n_items)


#: The gains and the denominators of the ranking metrics (``gains=``, ``denominator=``).
GAINS = ("binary", "graded", "exponential")
DENOMINATORS = ("relevant", "min")


def check_choice(value, name, choices):
    """Check that ``value`` is one of ``choices``; returns it.

    Examples
    --------
    >>> from sksvd._validation import check_choice, GAINS
    >>> check_choice("graded", "gains", GAINS)
    'graded'
    >>> check_choice("log", "gains", GAINS)
    Traceback (most recent call last):
    ...
    ValueError: gains='log': expected one of 'binary', 'graded', 'exponential'
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")
    return value


def validate_args(constraints):
    """:func:`sklearn.utils._param_validation.validate_params` with our error messages.

    The arguments named in ``constraints`` are checked by scikit-learn's
    declared constraints (``Interval``, ``StrOptions``, types, ``None``); a
    refused one raises ``InvalidParameterError`` (a ``ValueError`` and a
    ``TypeError``) that starts ``name=value: expected ...``, as every error
    of sksvd does.

    Examples
    --------
    >>> import numbers
    >>> from sklearn.utils._param_validation import Interval
    >>> from sksvd._validation import validate_args
    >>> @validate_args({"k": [Interval(numbers.Integral, 1, None, closed="left")]})
    ... def top(k=10):
    ...     return k
    >>> top(k=0)
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: k=0: expected an int >= 1
    """

    def decorate(func):
        checked = validate_params(constraints, prefer_skip_nested_validation=True)(func)
        signature = inspect.signature(func)
        own = re.compile(rf"The '(\w+)' parameter of {re.escape(func.__qualname__)} must be "
                         rf"(.*)\. Got .* instead\.$", re.S)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return checked(*args, **kwargs)
            except InvalidParameterError as exc:
                match = own.match(str(exc))
                if match is None:
                    raise
                name, expected = match.groups()
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                raise InvalidParameterError(
                    f"{name}={bound.arguments[name]!r}: expected {_plain_words(expected)}"
                ) from None

        return wrapper

    return decorate


def _plain_words(expected):
    """scikit-learn's 'an int in the range [1, inf)' as 'an int >= 1'."""
    words = re.sub(r"in the range \[(-?[\w.]+), inf\)", r">= \1", expected)
    words = re.sub(r"in the range \[(-?[\w.]+), (-?[\w.]+)\]", r"in [\1, \2]", words)
    return words
