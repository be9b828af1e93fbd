"""The fit skeleton of the gradient-trained recommenders (FunkSVD, AsySVD).

:class:`TrainedRecommender` is the base of both: ``fit``, ``warm_start`` and
``partial_fit`` pass ``X`` through the same steps in the same order (continue
from the fitted model, check the ranks' shapes and shard the users, grow to
new users and items, check for entries, seed, hold out a validation part,
take the global mean, run the epochs, write the fitted attributes). A model
supplies its parameters, its trainer (the kernels and optimizer of one fit,
in its kernel module) and its fold-in.

The epoch loop, :func:`run_epochs`, is one place for the progress bar, the
loss curve, divergence detection, early stopping on a validation score and
the per-epoch callback, so that every trained model behaves the same way
when it diverges or is interrupted. It only works on the trainer's own
tensors; the estimator's fitted attributes are written after it returns, and
``fit`` and ``partial_fit`` restore the estimator on any exception
(``KeyboardInterrupt`` included).

``partial_fit`` continues training on new interactions and accepts more rows
(new users) and more columns (new items) than the fitted model had; fewer
columns are refused with scikit-learn's message, since column ``j`` is item
``j``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .._backend import seed_from_random_state
from .._validation import check_interactions
from ..distributed import allreduce_values, get_rank, rank_seed, resolve_distributed, shard_rows
from ..model_selection import _hide_anywhere, _n_of_share
from ._base import BaseRecommender

__all__ = ["DivergenceError", "TrainedRecommender", "TrainingSetup", "auto_batch_size",
           "call_seed", "check_growing_interactions", "grow", "run_epochs", "validation_split"]


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
    >>> from sksvd.recommenders._sgd_base import run_epochs
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

    ``floor(fraction * nnz)`` random entries go to validation, by the rule
    and the code of :func:`sksvd.model_selection.train_test_split_interactions`
    with ``mode="global"``; the draw is seeded from ``rng``. Both parts keep
    the shape of ``X``; either may be empty (the caller names the parameter).

    Parameters
    ----------
    X : scipy.sparse.csr_matrix
    fraction : float in (0, 1)
    rng : numpy.random.Generator

    Returns
    -------
    X_train, X_val : scipy.sparse.csr_matrix

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sksvd.recommenders._sgd_base import validation_split
    >>> X = sp.random(20, 10, density=0.5, format="csr", random_state=0)
    >>> a, b = validation_split(X, 0.2, np.random.default_rng(0))
    >>> a.nnz + b.nnz == X.nnz, b.nnz
    (True, 20)
    """
    state = np.random.RandomState(int(rng.integers(2**32, dtype=np.uint64)))
    return _hide_anywhere(X, _n_of_share(fraction, X.nnz), state)


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
    >>> from sksvd.recommenders._sgd_base import check_growing_interactions
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
    >>> from sksvd.recommenders._sgd_base import grow
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
    >>> from sksvd.recommenders._sgd_base import call_seed
    >>> call_seed(0, 1) == call_seed(0, 1) != call_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(calls)]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def auto_batch_size(device, sizes, n_units, min_steps=64):
    """The batch that ``batch_size="auto"`` means on ``device``.

    The CPU batch, ``sizes["cpu"]``, is the default ``batch_size``. On
    another device the batch grows up to ``sizes[device.type]``, but only as
    far as ``n_units / min_steps``: an epoch keeps at least ``min_steps``
    steps. Gradient steps, not epochs, train a model, and a small matrix
    cut into a few huge batches takes too few of them in ``n_epochs``
    (``benchmarks/bench_auto_batch.py`` measures the quality of the device
    batches against the CPU's).

    Parameters
    ----------
    device : torch.device
    sizes : dict of str to int
        Largest batch per device type; ``sizes["cpu"]`` is the CPU batch and
        serves the types not listed.
    n_units : int
        What one epoch goes through, in the batch's unit (ratings for
        FunkSVD, users for AsySVD).
    min_steps : int, default=64
        Fewest steps an epoch keeps on a device.

    Returns
    -------
    batch_size : int
        ``min(sizes[device.type], max(sizes["cpu"], n_units // min_steps))``:
        on the CPU always ``sizes["cpu"]``.

    Examples
    --------
    >>> import torch
    >>> from sksvd.recommenders._sgd_base import auto_batch_size
    >>> sizes = {"cpu": 128, "cuda": 8192}
    >>> auto_batch_size(torch.device("cpu"), sizes, 10**6)
    128
    >>> auto_batch_size(torch.device("cuda"), sizes, 943), auto_batch_size(
    ...     torch.device("cuda"), sizes, 138_493)
    (128, 2163)
    >>> auto_batch_size(torch.device("cuda"), sizes, 138_493, min_steps=8)
    8192
    """
    cpu = int(sizes["cpu"])
    return min(int(sizes.get(device.type, cpu)), max(cpu, int(n_units) // int(min_steps)))


class TrainingSetup(NamedTuple):
    """What one call of :meth:`TrainedRecommender._fit` hands to the model's trainer."""

    device: torch.device
    dtype: torch.dtype
    dist: bool
    seed: int
    rng: np.random.Generator
    """Draws shared by the ranks (the same on every rank)."""
    local_rng: np.random.Generator
    """This rank's own draws (``rng`` itself when not distributed)."""
    batch_units: int
    """What an epoch goes through, in the unit of ``batch_size``, summed over the ranks."""


class TrainedRecommender(BaseRecommender):
    """Base of the recommenders trained by epochs: ``fit``, ``warm_start``, ``partial_fit``.

    A subclass sets ``_epochs_attribute`` (the public name of the epoch
    count) and implements

    - ``_check_training(dist)``: refuse parameter combinations (optional);
    - ``_start_state()``: the fitted parameters to continue from;
    - ``_grow_start(X, start, device, dtype)``: ``start`` for the grown ``X``
      (optional, e.g. new users folded in);
    - ``_uses_mean()``: whether the model has a global mean ``mu``;
    - ``_learning_rate()``: the step size, named when training diverges;
    - ``_auto_batch_sizes``: the largest batch ``batch_size="auto"`` takes
      per device type (its "cpu" entry is the CPU batch), ``_min_steps_per_epoch``
      (the fewest steps an epoch keeps with it on a device), ``_batch_units(X)``:
      what an epoch goes through, in the batch's unit, and
      ``_scales_learning_rate()``: whether a larger batch scales the step
      size (see :meth:`_batch_and_rate`);
    - ``_training_context(device, batch_units)``: a context manager around training
      (optional);
    - ``_make_trainer(X, X_val, start, mu, setup)``: an object with
      ``epoch(e) -> float``, ``validate`` (callable or None),
      ``snapshot()``, ``restore(state)``, ``finish()``, ``optimizer``
      (:class:`sksvd._optim.Adam` or None) and ``higher_is_better``;
    - ``_store(trainer, X, X_val, mu, setup, continued)``: write the model's
      fitted attributes;

    plus ``_fold_in`` (see :class:`~sksvd.recommenders.BaseRecommender`).
    The loss curve, validation scores, epoch count, optimizer state and
    sizes are written here.
    """

    _parameter_constraints: dict = {
        "n_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "callback": [callable, None],
        "warm_start": ["boolean"],
        "distributed": ["boolean", StrOptions({"auto"})],
        "device": [str, torch.device],
        "dtype": [str, type, np.dtype, torch.dtype],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _epochs_attribute = "n_iter_"
    _auto_batch_sizes = {"cpu": 128}
    _min_steps_per_epoch = 64
    # Whether ``validation_scores_`` is None (rather than absent) without early stopping.
    _validation_scores_none = False

    def _set_params_from(self, arguments):
        """Store each ``__init__`` argument, unchanged, under its own name.

        ``arguments``: the ``locals()`` of the subclass's ``__init__``, whose
        signature names the parameters (scikit-learn's rule: no logic in
        ``__init__``, validation in ``fit``).
        """
        for name in self._get_param_names():
            setattr(self, name, arguments[name])

    def fit(self, X, y=None):
        """Fit the model to the stored entries (ratings or interactions) of ``X``.

        With ``warm_start=True`` on a fitted model, training continues from
        the fitted parameters (``X`` may have more rows and columns). On any
        exception (a diverging learning rate, a ``callback`` that raises,
        ``KeyboardInterrupt``) the estimator is left exactly as it was before
        the call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Stored entries are the ratings ``r_ui``; zeros mean "not rated".
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return super().fit(X, y)  # the base class restores the state on any exception

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One epoch over ``X``, continuing from the current parameters (see the subclass)."""
        with self._restored_on_error():
            X = check_growing_interactions(self, X)
            self._fit(X, partial=True)
            return self

    # ------------------------------------------------------------- hooks
    def _check_training(self, dist):
        """Refuse parameter combinations that cannot be trained (none by default)."""

    def _grow_start(self, X, start, device, dtype):
        return start

    def _training_context(self, device, batch_units):
        return contextlib.nullcontext()

    def _batch_units(self, X):
        """What one epoch goes through, in the unit of ``batch_size`` (by default the rows
        with an entry: a rank's shard keeps the other rows, empty)."""
        return int(np.count_nonzero(np.diff(X.indptr)))

    def _scales_learning_rate(self):
        return True

    def _batch_and_rate(self, device, batch_units):
        """``(batch_size, learning_rate)`` of a fit on ``device`` of ``batch_units`` (see ``_batch_units``).

        An int ``batch_size`` is used as it is, with the learning rate. With
        ``"auto"`` the batch is :func:`auto_batch_size` of
        ``_auto_batch_sizes`` and ``batch_units`` (on CPU always the CPU
        batch); when the model scales its step with the batch,
        the learning rate is multiplied by ``sqrt(batch / cpu_batch)``: an
        epoch takes ``cpu_batch / batch`` times as many Adam steps, and the
        square-root rule keeps the variance of a step's update about that of
        the small batch (Krizhevsky, "One weird trick for parallelizing
        convolutional neural networks", 2014; Hoffer, Hubara and Soudry,
        "Train longer, generalize better", NeurIPS 2017).
        """
        rate = self._learning_rate()
        if self.batch_size != "auto":
            return int(self.batch_size), rate
        sizes = self._auto_batch_sizes
        batch = auto_batch_size(device, sizes, batch_units, self._min_steps_per_epoch)
        base = sizes["cpu"]
        if batch != base and self._scales_learning_rate():
            rate = float(rate) * math.sqrt(batch / base)
        return batch, rate

    def _check_continued(self):
        """The fitted model's sizes, after checking that ``n_components`` is unchanged."""
        k = self.n_components
        if self.item_factors_.shape[1] != k:
            raise ValueError(
                f"n_components={k}: the fitted model has {self.item_factors_.shape[1]}; "
                "warm_start and partial_fit continue it, so it must stay the same"
            )
        return self.user_factors_.shape[0], self.item_factors_.shape[0]

    def _global_mean(self, X, dist, continued):
        """``mu``: 0 without biases, the fitted one when continuing, else the mean of ``X``."""
        if not self._uses_mean():
            return 0.0
        if continued:
            return float(self.global_mean_)
        if dist:
            total, count = allreduce_values([np.sum(X.data, dtype=np.float64), X.nnz])
            return float(total / count)
        return float(np.mean(X.data, dtype=np.float64))

    # --------------------------------------------------------------- fit
    def _fit(self, X, partial=False):
        name = type(self).__name__
        device, dtype = self._device(), self._dtype()
        dist = resolve_distributed(self.distributed, device)
        self._check_training(dist)
        continued = (partial or self.warm_start) and hasattr(self, "item_factors_")
        start, shape = None, X.shape
        if continued:
            fitted = self._check_continued()
            start = self._start_state()
            # the fitted model's sizes until this call ends (fit set them to X's)
            self.n_users_, self.n_items_ = fitted
            shape = (max(shape[0], fitted[0]), max(shape[1], fitted[1]))
        if dist:
            lo, hi = allreduce_values(shape, op="min"), allreduce_values(shape, op="max")
            if (lo != hi).any():
                raise ValueError(f"X: shape {X.shape} on rank {get_rank()}, but the ranks' "
                                 f"shapes range from {tuple(lo.astype(int))} to "
                                 f"{tuple(hi.astype(int))}; every rank passes the same shape")
            X = shard_rows(X)
        X = grow(X, shape)
        if continued:
            start = self._grow_start(X, start, device, dtype)
        nnz = int(allreduce_values([X.nnz])[0]) if dist else X.nnz
        if nnz == 0:
            raise ValueError(
                f"X: all {X.shape[0]}x{X.shape[1]} entries are zero; "
                f"{name} needs at least one observed (nonzero) rating"
            )
        seed = seed_from_random_state(self.random_state)
        if continued:  # successive calls draw new shuffles and batches, and repeat
            seed = call_seed(seed, getattr(self, self._epochs_attribute))
        rng = np.random.default_rng(seed)
        local_rng = np.random.default_rng(rank_seed(seed)) if dist else rng
        X_val = None
        if self.early_stopping and not partial:
            X, X_val = validation_split(X, self.validation_fraction, local_rng)
            n_fit, n_val = ((int(v) for v in allreduce_values([X.nnz, X_val.nnz])) if dist
                            else (X.nnz, X_val.nnz))
            if n_fit == 0 or n_val == 0:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction!r}: leaves "
                    f"{n_fit} training and {n_val} validation ratings; both must be > 0"
                )
        mu = self._global_mean(X, dist, continued)
        # summed over the ranks, so that every rank takes the same batch (and step count)
        units = self._batch_units(X)
        units = int(allreduce_values([units])[0]) if dist else units
        setup = TrainingSetup(device, dtype, dist, seed, rng, local_rng, units)
        with self._training_context(device, units), torch.no_grad():
            trainer = self._make_trainer(X, X_val, start, mu, setup)
            state = getattr(self, "_optimizer_state", None) if continued else None
            if trainer.optimizer is not None and state is not None:
                trainer.optimizer.load(state)
            losses, scores = run_epochs(
                trainer.epoch, 1 if partial else int(self.n_epochs),
                learning_rate=self._learning_rate(), validate_fn=trainer.validate,
                n_iter_no_change=int(self.n_iter_no_change),
                higher_is_better=trainer.higher_is_better, callback=self.callback,
                verbose=self.verbose, desc=name, snapshot_fn=trainer.snapshot,
                restore_fn=trainer.restore)
            trainer.finish()
        # Training completed: only now are the fitted attributes written.
        validated = trainer.validate is not None
        if continued:
            losses = list(self.loss_curve_) + losses
            if validated and getattr(self, "validation_scores_", None) is not None:
                scores = list(self.validation_scores_) + scores
        self.__dict__.pop("validation_scores_", None)
        if validated or self._validation_scores_none:
            self.validation_scores_ = scores if validated else None
        self.loss_curve_ = losses
        setattr(self, self._epochs_attribute, len(losses))
        self.__dict__.pop("_optimizer_state", None)
        if trainer.optimizer is not None:  # carried over to the next partial_fit / warm start
            self._optimizer_state = trainer.optimizer.state()
        self.n_users_, self.n_items_ = X.shape
        self.n_features_in_ = X.shape[1]
        self._store(trainer, X, X_val, mu, setup, continued)
