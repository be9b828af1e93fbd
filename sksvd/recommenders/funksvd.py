"""FunkSVD: matrix factorisation, weighted over every entry for top-N lists or on the observed ratings."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .._backend import device_array, numpy_dtype, to_numpy
from .._threads import threads_for
from ._funksvd_kernels import RIDGE_BLOCK, FunkTrainer, ridge_operands, ridge_rows
from ._sgd_base import TrainedRecommender

__all__ = ["FunkSVD"]


class FunkSVD(TrainedRecommender):
    """Matrix factorisation: for top-N lists over every entry, or Funk's on the ratings.

    Two objectives, chosen by ``loss``.

    ``loss="mse_all"`` (the default, for top-N lists): weighted matrix
    factorisation over *every* entry of ``X``, the missing ones as zeros of
    weight ``w0 = unobserved_weight`` (Hu, Koren and Volinsky, ICDM 2008;
    Pan et al., ICDM 2008; with the frequency-scaled penalty of Rendle et
    al., "Revisiting the performance of iALS on item recommendation
    benchmarks", RecSys 2022):

        J = sum_{(u,i) stored} (r_ui - p_u . q_i)**2 + w0 sum_{(u,i) missing} (p_u . q_i)**2
            + lambda sum_u m_u |p_u|**2 + lambda sum_i m_i |q_i|**2,

    ``m_u = n_u + w0 (n_items - n_u)`` the total weight of user ``u``'s terms
    (``m_i`` likewise), so ``regularization`` means a penalty per unit of
    weight for both losses. It is solved by alternating least squares
    (``solver="auto"``): each sweep solves every user in closed form with
    the items fixed, then every item, as batched ridge regressions in torch
    whose normal matrices share the Gram matrix of the fixed side; the cost
    of a sweep grows with the stored entries, not with the missing ones.
    There are no biases (``user_bias_``, ``item_bias_`` and ``global_mean_``
    are zero), the scores ``p_u . q_i`` rank items and are not ratings
    (``predict_ratings`` refuses them), and new users are folded in by the
    same weighted ridge regression. The defaults (``n_components=32``,
    ``regularization=0.06``, ``unobserved_weight=0.25``, 12 sweeps) were
    chosen on validation splits (20% of each user's training ratings held
    out, those rated >= 4 relevant, NDCG@10) of MovieLens 100K ``u1.base``
    and ``u2.base`` and of an 80% part of MovieLens latest-small.

    Tuning for top-N lists, a grid of 12 points for ``GridSearchCV`` with
    :func:`sksvd.model_selection.make_topk_scorer` on the training matrix:
    ``{"n_components": [32, 64], "regularization": [0.03, 0.06],
    "unobserved_weight": [0.1, 0.25, 0.5]}`` (``benchmarks/bench_topn.py``).

    ``loss="mse"`` (for ratings): Funk's biased factorisation on the
    observed ratings only. A rating is predicted as

        r_hat(u, i) = mu + b_u + b_i + p_u . q_i

    (``mu`` the mean training rating, ``b_u``/``b_i`` user and item biases,
    ``p_u``/``q_i`` factors of length ``n_components``), and the model
    minimises the squared error over the set ``R`` of *observed* ratings
    only (zeros of ``X`` are missing, never "rated 0"), with L2 penalties:

        J = sum_{(u,i) in R} [ (r_ui - r_hat(u, i))**2
                               + lambda (|p_u|**2 + |q_i|**2) + lambda_b (b_u**2 + b_i**2) ]

    (Funk 2006; Koren, Bell and Volinsky 2009, eq. 5; the penalties sit inside
    the sum, once per rating, which is what per-rating SGD minimises: a user
    with ``n_u`` ratings pays ``n_u lambda |p_u|**2``). Solvers:

    ``"sgd"``
        Funk's and Surprise's stochastic gradient descent: for each rating,
        ``e = r_ui - r_hat``, ``b_u += lr (e - lambda_b b_u)``,
        ``p_u += lr (e q_i - lambda p_u)`` and likewise for ``b_i``, ``q_i``.
        Here ``batch_size`` ratings at a time are updated together (one
        vectorised step whose per-row updates are the sums of the per-rating
        ones), in an order shuffled each epoch by a seeded generator, so a
        CPU run repeats bit for bit. When a row is expected to appear more
        than ``1 / learning_rate`` times in one mini-batch (very large
        batches on skewed data), its step is scaled down to that bound.
    ``"adam"``
        The same mini-batch gradients with the Adam update (Kingma and Ba
        2015), as the "NaiveFunk" of the blog post "SVD for Image Compression and
        Recommender Systems" trains it; use a smaller
        ``learning_rate`` (e.g. 0.005).
    ``"als"``
        Alternating least squares on the observed entries: each sweep solves
        every user's ``(p_u, b_u)`` in closed form with the items fixed, then
        every item's ``(q_i, b_i)``, as batched ridge regressions with the
        penalties weighted by the row's rating count (ALS-WR, Zhou et al.
        2008). ``learning_rate``, ``batch_size`` and ``init_std`` do not
        matter beyond the initial item factors.

    ``transform`` (and so ``predict`` and ``recommend``) folds users in by
    the same ridge regression with the items fixed, so users not seen in
    ``fit`` get a factor and a bias; a row with no rating gets the bias-only
    prediction ``mu + b_i``.

    Growing: :meth:`partial_fit` runs one epoch on new ratings from the
    current parameters, with new users (more rows) and new items (more
    columns) initialised as in ``fit``; ``warm_start=True`` makes ``fit``
    start from the current parameters too. Data-parallel: when a
    ``torch.distributed`` process group is initialised (``torchrun``,
    :func:`sksvd.distributed.spawn`), or with ``distributed=True``, ``fit``
    and ``partial_fit`` shard the ratings by user over the ranks and sum the
    item updates (:mod:`sksvd.distributed`): the result is a single-process
    fit with the same ``batch_size``, held by every rank.

    Parameters
    ----------
    n_components : int, default=32
        Length of the factors ``p_u``, ``q_i``.
    loss : {"mse_all", "mse"}, default="mse_all"
        "mse_all": every entry, the missing ones as weighted zeros (top-N
        lists); "mse": the observed ratings only (rating prediction).
    unobserved_weight : float in [0, 1], default=0.25
        ``w0`` of ``loss="mse_all"``, the weight of a missing entry relative
        to a stored one.
    n_epochs : int, default=12
        Passes over the ratings (ALS sweeps).
    learning_rate : float, default=0.03
        SGD step ``lr`` (or Adam's step size).
    learning_rate_decay : float, default=1.0
        Epoch ``e`` (0-based, counted within each ``fit``/``partial_fit``
        call) steps with ``learning_rate * learning_rate_decay**e`` (SGD and
        Adam), as Koren (2009) decays it by 0.9 per sweep; 1.0 keeps it fixed.
    regularization : float, default=0.06
        ``lambda``, the penalty on the factors.
    reg_bias : float or None, default=None
        ``lambda_b``, the penalty on the biases (None: ``regularization``).
    init_std : float, default=0.02
        Standard deviation of the normal initial factors (biases start at 0).
    batch_size : int or "auto", default="auto"
        Ratings per vectorised SGD/Adam step. "auto" is 4096 on the CPU; on
        a GPU it grows up to 262144 while an epoch keeps at least 64 steps
        (``min(262144, max(4096, nnz // 64))``), and ``solver="adam"`` then
        steps with ``learning_rate * sqrt(batch / 4096)`` (square-root
        scaling), while SGD's summed steps keep ``learning_rate``.
    solver : {"auto", "sgd", "adam", "als"}, default="auto"
        "auto" is "als" for ``loss="mse_all"`` (its only solver) and "sgd"
        for ``loss="mse"``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the ratings, stop when their
        RMSE has not improved for ``n_iter_no_change`` epochs, and keep the
        best epoch's parameters (``loss="mse"`` only).
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    callback : callable or None, default=None
        ``callback(epoch, loss)`` after each epoch; an exception it raises
        stops training and leaves the estimator as it was before ``fit``.
    warm_start : bool, default=False
        When fitted already, ``fit`` starts from the current factors and
        biases (and keeps ``global_mean_``) instead of a fresh
        initialisation; ``X`` may have more rows and columns (new users and
        items start as in a fresh fit), ``loss_curve_`` and ``n_iter_``
        continue. ``n_components`` must be unchanged.
    distributed : {"auto", True, False}, default="auto"
        Data-parallel training under ``torch.distributed``: "auto" when a
        process group is initialised, True to require one (initialised here
        from the ``torchrun`` variables if needed), False never. Every rank
        passes an ``X`` of the same shape; rank ``r`` trains on the users
        ``u % world_size == r`` and ignores the other rows. ``batch_size`` is
        the effective (summed over ranks) batch; ``solver="als"`` is not
        supported. See :mod:`sksvd.distributed`.
    device : str or torch.device, default="auto"
        "auto" (``SKSVD_DEVICE``, else cuda when available, else cpu), "cpu",
        "cuda" or "cuda:N".
    dtype : str, default="float32"
    random_state : int, RandomState instance or None, default=None
        Seeds the initial factors, the shuffles and the validation split.
    verbose : int, default=0
        A progress bar with the current loss when > 0.

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, n_components)
    item_factors_ : ndarray of shape (n_items, n_components)
    user_bias_ : ndarray of shape (n_users,)
    item_bias_ : ndarray of shape (n_items,)
    global_mean_ : float
        Mean of the training ratings.
    loss_curve_ : list of float
        Per epoch, ``J`` divided by the number of training ratings (for SGD
        and Adam, the squared errors are those seen by each mini-batch
        before its step, the penalties those at the end of the epoch).
    validation_scores_ : list of float or None
        Per-epoch validation RMSE with ``early_stopping``, else None.
    n_iter_ : int
        Epochs run (summed over ``partial_fit`` calls and warm starts).
    n_users_, n_items_, n_features_in_ : int

    Raises
    ------
    ValueError
        ``X`` empty, with NaN or inf, or with no nonzero rating; a
        parameter out of range; training diverged
        (:class:`sksvd.recommenders._sgd_base.DivergenceError`, naming the
        learning rate).

    Notes
    -----
    Users and items without a training rating keep zero factors and biases.
    On CPU, while the mini-batch tensors are small (``batch_size *
    (n_components + 2) < 2**22`` elements; always for ALS, whose blocks are
    smaller), training runs on one torch thread (the setting is restored
    after ``fit``): such small ops lose more to thread synchronisation than
    they gain, most of all on a busy machine.
    On a GPU, large batches (the default ``batch_size="auto"``, or e.g.
    ``2**18``) keep kernel launches from dominating.

    References
    ----------
    S. Funk, "Netflix Update: Try This at Home", 2006.
    Y. Koren, R. Bell, C. Volinsky, "Matrix Factorization Techniques for
    Recommender Systems", IEEE Computer 42(8), 2009.
    Y. Zhou, D. Wilkinson, R. Schreiber, R. Pan, "Large-Scale Parallel
    Collaborative Filtering for the Netflix Prize", AAIM 2008.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd import FunkSVD
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4], [1, 0, 4, 5]])
    >>> rec = FunkSVD(n_components=2, random_state=0, device="cpu").fit(X)  # top-N lists
    >>> ids, _ = rec.recommend(np.array([[5, 0, 0, 0]]), k=1)  # a new user
    >>> int(ids[0, 0])
    1
    >>> rat = FunkSVD(n_components=2, loss="mse", n_epochs=200, learning_rate=0.05,
    ...               regularization=0.01, random_state=0, device="cpu").fit(X)
    >>> rat.predict_ratings([0, 1], [0, 1]).round()  # ratings
    array([5., 5.], dtype=float32)
    """

    _parameter_constraints: dict = {
        **TrainedRecommender._parameter_constraints,
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "regularization": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "learning_rate_decay": [Interval(numbers.Real, 0, 1, closed="right")],
        "reg_bias": [Interval(numbers.Real, 0, None, closed="left"), None],
        "init_std": [Interval(numbers.Real, 0, None, closed="left")],
        "solver": [StrOptions({"auto", "sgd", "adam", "als"})],
        "loss": [StrOptions({"mse_all", "mse"})],
        "unobserved_weight": [Interval(numbers.Real, 0, 1, closed="both")],
    }

    def __init__(self, n_components=32, *, n_epochs=12, learning_rate=0.03,
                 learning_rate_decay=1.0, regularization=0.06, reg_bias=None, init_std=0.02,
                 batch_size="auto", solver="auto", loss="mse_all", unobserved_weight=0.25,
                 early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, callback=None, warm_start=False, distributed="auto",
                 device="auto", dtype="float32", random_state=None, verbose=0):
        self._set_params_from(locals())

    def partial_fit(self, X, y=None):
        """One epoch over the ratings of ``X``, continuing from the current parameters.

        Row ``u`` of ``X`` is user ``u`` and column ``i`` item ``i`` of the
        fitted model; ``X`` may have more rows (new users) and more columns
        (new items) than before, whose factors start as in ``fit`` (the
        fitted ones continue from their values, ``global_mean_`` is kept).
        Only the ratings of ``X`` are visited: pass the new ones. On an
        unfitted estimator it initialises as ``fit`` does and runs one epoch.
        ``early_stopping`` is not used. With ``solver="adam"`` the moments and
        step count carry over from the previous call (in memory and in
        pickles, not through :func:`sksvd.io.save`); ``"als"`` re-solves the
        users and items that have ratings in ``X`` from those ratings alone.
        An exception leaves the estimator exactly as before the call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            New ratings; ``n_items`` >= the fitted ``n_items_``.
        y : None
            Ignored.

        Returns
        -------
        self : FunkSVD
            The estimator, after one more epoch over the ratings of ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd import FunkSVD
        >>> rec = FunkSVD(n_components=2, random_state=0, device="cpu")
        >>> rec = rec.partial_fit(np.array([[5, 4, 0], [4, 0, 1]]))
        >>> rec = rec.partial_fit(np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 5]]))
        >>> rec.user_factors_.shape, rec.item_factors_.shape, rec.n_iter_
        ((3, 2), (4, 2), 2)
        """
        return super().partial_fit(X, y)

    _epochs_attribute = "n_iter_"
    _validation_scores_none = True
    _auto_batch_sizes = {"cpu": 4096, "cuda": 262144}

    def _start_state(self):
        """(pa0, qa0): the fitted factors and biases, augmented, for warm start and partial_fit."""
        n_users = self.user_factors_.shape[0]
        pa0 = np.column_stack([self.user_factors_, self.user_bias_, np.ones(n_users)])
        qa0 = np.column_stack([self.item_factors_, np.ones(self.item_factors_.shape[0]),
                               self.item_bias_])
        return pa0, qa0

    def _grow_start(self, X, start, device, dtype):
        """Start the new users (rows past the fitted ones) at their fold-in.

        A new user's ``(p_u, b_u)`` is the ridge regression ``transform``
        solves, on their ratings of the fitted items, so that one pass of
        ``partial_fit`` refines a good vector instead of a random one.
        """
        pa0, qa0 = start
        mu = self.global_mean_
        n_old, m_old = pa0.shape[0], qa0.shape[0]
        rows = n_old + np.flatnonzero(np.diff(X.indptr[n_old:]))
        if rows.size == 0:
            return start
        k = self.n_components
        new = np.zeros((X.shape[0] - n_old, k + 2))
        new[:, k + 1] = 1.0
        Xn = X[rows][:, :m_old].tocsr()
        for s, e in self._batches(rows.size, None):
            W, c = self._fold_in(Xn[s:e], device, dtype)
            new[rows[s:e] - n_old, :k] = to_numpy(W, dtype=np.float64)
            if c is not None:  # loss="mse_all" has no biases
                new[rows[s:e] - n_old, k] = to_numpy(c, dtype=np.float64) - mu
        return np.concatenate([pa0, new]), qa0

    def _solver(self):
        """The solver that ``solver`` and ``loss`` name together."""
        if self.loss == "mse_all":
            if self.solver not in ("auto", "als"):
                raise ValueError(f"solver={self.solver!r}: loss='mse_all' is solved by "
                                 "alternating least squares; use solver='auto' or 'als', or "
                                 "loss='mse' for SGD or Adam on the observed ratings")
            return "als"
        return "sgd" if self.solver == "auto" else self.solver

    def _check_training(self, dist):
        solver = self._solver()
        if dist and solver == "als":
            raise ValueError(f"solver={solver!r}: data-parallel training (distributed) "
                             "supports 'sgd' and 'adam' (with loss='mse')")
        if self.early_stopping and self.loss != "mse":
            raise ValueError(f"early_stopping=True: stops on the RMSE of held-out ratings, "
                             f"which loss={self.loss!r} does not fit; use loss='mse', or "
                             "choose n_epochs with sksvd.model_selection.make_topk_scorer")

    def _uses_mean(self):
        return self.loss != "mse_all"  # loss="mse_all": missing entries are zeros, no mean

    def _learning_rate(self):
        return self.learning_rate

    def _scales_learning_rate(self):
        # SGD's mini-batch step is the sum of the per-rating steps: its size does not
        # shrink with the number of steps per epoch, so only Adam's step is scaled.
        return self._solver() == "adam"

    def _training_context(self, device, batch_units):
        if self._solver() == "als":
            work = RIDGE_BLOCK["cpu"]
        else:
            work = self._batch_and_rate(device, batch_units)[0] * (self.n_components + 2)
        return threads_for(device, work)

    def _batch_units(self, X):
        return X.nnz

    def _make_trainer(self, X, X_val, start, mu, setup):
        all_entries = self.loss == "mse_all"
        batch_size, learning_rate = self._batch_and_rate(setup.device, setup.batch_units)
        return FunkTrainer(
            X, X_val, solver="wmf" if all_entries else self._solver(),
            n_components=self.n_components, learning_rate=learning_rate,
            learning_rate_decay=self.learning_rate_decay, batch_size=batch_size,
            regularization=self.regularization, reg_bias=self.reg_bias,
            init_std=self.init_std,
            unobserved_weight=float(self.unobserved_weight) if all_entries else None,
            mu=mu, device=setup.device, dtype=setup.dtype, seed=setup.seed, start=start,
            dist=setup.dist)

    def _store(self, trainer, X, X_val, mu, setup, continued):
        k, np_dtype = self.n_components, numpy_dtype(setup.dtype)
        pa, qa = to_numpy(trainer.pa, dtype=np_dtype), to_numpy(trainer.qa, dtype=np_dtype)
        if not (np.isfinite(pa).all() and np.isfinite(qa).all()):
            raise ValueError(
                f"learning_rate={self.learning_rate!r}: training produced non-finite factors; "
                "lower the learning rate or raise the regularization"
            )
        self.user_factors_ = np.ascontiguousarray(pa[:, :k])
        self.user_bias_ = np.ascontiguousarray(pa[:, k])
        self.item_factors_ = np.ascontiguousarray(qa[:, :k])
        self.item_bias_ = np.ascontiguousarray(qa[:, k + 1])
        self.global_mean_ = mu

    def _fold_in(self, X, device, dtype):
        """Ridge-solve each row's ``(p_u, b_u)`` with the items fixed (batched on ``device``)."""
        if self.loss == "mse_all":
            return self._fold_in_all(X, device, dtype)
        k = self.n_components
        reg = float(self.regularization)
        reg_b = reg if self.reg_bias is None else float(self.reg_bias)
        # zero-copy views of the fitted arrays on CPU: nothing of size n_items per call
        feats = device_array(self, "item_factors_", device, dtype)  # once per fit
        offsets = device_array(self, "item_bias_", device, dtype)
        reg_vec = torch.full((k + 1,), reg, dtype=dtype, device=device)
        reg_vec[k] = reg_b
        z = torch.zeros((X.shape[0], k + 1), dtype=dtype, device=device)
        if X.nnz:
            indptr, indices, y, plan = ridge_operands(X, k, device, dtype, self.global_mean_)
            with threads_for(device, X.nnz * (k + 1)):
                ridge_rows(indptr, indices, y, feats, offsets, reg_vec, plan, z, append_one=True)
        return z[:, :k], z[:, k] + self.global_mean_

    def _fold_in_all(self, X, device, dtype):
        """``loss="mse_all"``: each row's ``p_u`` by the weighted ridge regression of a sweep."""
        k = self.n_components
        feats = device_array(self, "item_factors_", device, dtype)  # once per fit
        gram = feats.T.to(torch.float64) @ feats.to(torch.float64)
        reg = torch.full((k,), float(self.regularization), dtype=dtype, device=device)
        z = torch.zeros((X.shape[0], k), dtype=dtype, device=device)
        if X.nnz:
            indptr, indices, y, plan = ridge_operands(X, k, device, dtype)
            with threads_for(device, X.nnz * (k + 1)):
                ridge_rows(indptr, indices, y, feats,
                           torch.zeros(feats.shape[0], dtype=dtype, device=device), reg, plan,
                           z, gram=gram, unobserved_weight=float(self.unobserved_weight))
        return z, None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # transform's output follows the `dtype` parameter (float32 by default),
        # not the input's dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags
