"""AsySVD: Koren's asymmetric SVD, users as normalised sums of item factors."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .._backend import device_array, numpy_dtype, to_numpy
from ..distributed import allreduce_
from ._asysvd_kernels import AsyTrainer, Batch, user_vectors
from ._sgd_base import TrainedRecommender

__all__ = ["AsySVD"]


class AsySVD(TrainedRecommender):
    r"""Asymmetric SVD (Koren 2008): users folded in from the items they rated.

    A user has no factors of their own: the vector of a user ``u`` with
    rated items ``R(u)`` (ratings ``r_uj``) is built from item weights,

    .. math::

        p_u = |R(u)|^{-1/2} \sum_{j \in R(u)} (r_{uj} - b_{uj})\, x_j
              + |R(u)|^{-1/2} \sum_{j \in R(u)} y_j, \qquad
        \hat r_{ui} = b_{ui} + q_i^\top p_u,

    with ``b_ui = mu + b_u + b_i`` (Koren, "Factorization meets the
    neighborhood", KDD 2008, Sec. 4, with ``N(u) = R(u)``). ``mu`` is the
    mean of the stored values, ``b_i`` is learned, and the user bias is the
    closed-form regularised mean of the user's residuals (Koren's Sec. 2.1)

    .. math::

        b_u = \frac{\sum_{j \in R(u)} (r_{uj} - \mu - b_j)}
                   {\lambda_u + |R(u)|},

    so that every user, seen in ``fit`` or new, is folded in exactly and
    instantly by the same formula (``transform`` of a training row gives the
    trained prediction). An empty row gets ``p_u = 0`` and ``b_u = 0``
    (prediction ``mu + b_i``). With ``use_bias=False`` the model is the PoliMi
    course's simplified AsySVD: no biases, no x-term,
    ``r_ui = q_i . |R(u)|^-1/2 sum_{j in R(u)} y_j``.

    Losses, summed over the stored entries ``(u, i)`` of ``X``:

    - ``"mse"``: ``(r_ui - rhat_ui)^2`` (ratings);
    - ``"bpr"``: ``-log sigmoid(rhat_ui - rhat_uj)`` for ``n_negatives``
      sampled items ``j`` the user has not rated (Rendle et al. 2009);
    - ``"mse_neg"``: ``(r_ui - rhat_ui)^2 + sum_j rhat_uj^2``, the sampled
      negatives as zero ratings (the course's implicit-feedback loss).

    plus ``regularization`` times the squared norms of the parameters of each
    item in each term (``q_i, x_i, y_i, b_i`` per stored entry, ``q_j, b_j``
    per sampled negative), as per-sample SGD regularises. Negatives of a batch
    are drawn uniformly from a shared pool of ``min(n_items, 1024)`` distinct
    items drawn uniformly (so each negative is uniform over the items), which
    turns their scores into one dense product.

    With ``leave_one_out`` each stored entry ``(u, i)`` is predicted during
    training from ``R(u) - {i}`` (and ``b_u`` from it), as FISM does (Kabbur,
    Ning and Karypis, KDD 2013): training then matches the prediction of an
    item the user has not rated, and the self-weight ``q_i . y_i`` cannot
    memorise the data. Ranking losses need it (without it BPR learns a large
    ``q_i . y_i``); it changes only training, never the model's formula.

    Training is user-batched in torch on ``device``: a batch of
    ``batch_size`` users is one sparse matrix, their vectors one
    sparse-dense product, the predictions at all their stored entries one
    sampled dense-dense product, and the exact gradients (written by hand:
    the ``|R(u)|^-1/2`` factor reaching ``x_j`` and ``y_j``, and the
    dependence of ``b_u`` and of the x-term weights on ``b_j``) further
    sparse products, applied with Adam (Kingma and Ba 2015). There is no
    Python loop per user or per interaction. A step gathers the parameter
    rows of its users' items (and of its negatives' pool), renumbered, and
    updates only those rows: Adam is lazy, as ``torch.optim.SparseAdam``
    (the moments of items absent from a step are left as they are, the bias
    correction counts every step), so the time and memory of a step grow
    with the batch, not with the catalogue (a 1,000,000-item model trains
    in bounded memory).

    Growing: :meth:`partial_fit` runs one epoch on the rows of a new ``X``
    from the current item parameters, with new items (more columns)
    initialised as in ``fit`` and new users (more rows) folded in;
    ``warm_start=True`` makes ``fit`` start from the current parameters.
    Data-parallel: when a ``torch.distributed`` process group is initialised
    (``torchrun``, :func:`sksvd.distributed.spawn`), or with
    ``distributed=True``, the users are sharded over the ranks and the item
    gradients summed (:mod:`sksvd.distributed`): the result is a
    single-process fit with the same ``batch_size``, held by every rank.

    ``profile_weights="value"`` makes the y-term a weighted sum,
    ``p_u = |R(u)|^-1/2 sum_{j in R(u)} r_uj y_j`` (the stored values, e.g.
    ratings, as in PureSVD's fold-in ``x_u V``); the default sums the
    ``y_j`` unweighted (Koren's ``N(u)``). ``init="svd"`` starts from
    PureSVD (Cremonesi, Koren and Turrin 2010) of the matrix the y-term sums
    (``X``'s 0/1 pattern, or ``X`` with ``profile_weights="value"``):
    ``q = y = c V_k``, ``x = 0``, ``b = 0`` with ``V_k`` its top right
    singular vectors and ``c = init_std * sqrt(n_items)``, so that before any
    step the scores are ``c^2 |R(u)|^-1/2 x_u V_k V_k^T`` (plus ``b_u``):
    every user's items rank exactly as PureSVD ranks them; training then
    fine-tunes that model (Rendle et al.'s BPR from a PureSVD start).

    Defaults. With no argument the model is trained for top-N lists:
    ``loss="bpr"``, and the parameters left at ``"auto"`` resolve to the
    y-term model weighted by the ratings (``use_bias=False``,
    ``profile_weights="value"``) started from PureSVD with its spectrum
    shrunk (``init="svd"``, ``init_shrinkage=1e4``, ``init_std=1``) and
    fine-tuned at a small step (``learning_rate=3e-4``). On validation splits
    of MovieLens 100K ``u1.base`` (20% of each user's ratings held out, those
    rated >= 4 relevant, NDCG@10), the shrunk start carried the quality:
    BPR or sampled zeros from a random start, or at larger steps, ranked
    below it, and the small step keeps it (see
    ``benchmarks/bench_topn.py`` for the comparison with PureSVD and EASE).
    Tuning for top-N lists, a grid of 6 points for ``GridSearchCV`` with
    :func:`sksvd.model_selection.make_topk_scorer` on the training matrix:
    ``{"n_components": [64, 128], "init_shrinkage": [3e3, 1e4, 3e4]}``
    (``benchmarks/bench_topn.py``).
    ``loss="mse"`` turns the same ``"auto"`` parameters into Koren's rating
    model (biases, x- and y-terms, unweighted y-term, random start with
    ``init_std=0.05``, ``learning_rate=0.003``), whose defaults were chosen
    for RMSE on a validation split of ``u1.base``. ``predict_ratings``
    needs ``loss="mse"``: the ranking losses learn scores, not ratings.

    Parameters
    ----------
    n_components : int, default=64
        Dimension ``d`` of the factors.
    n_epochs : int, default=20
    learning_rate : float or "auto", default="auto"
        Adam's step size; "auto" is 0.003 for ``loss="mse"``, 3e-4 for the
        ranking losses.
    regularization : float, default=0.3
        L2 weight ``lambda`` per item occurrence (see above).
    loss : {"bpr", "mse", "mse_neg"}, default="bpr"
    n_negatives : int, default=4
        Sampled negatives per stored entry (``"bpr"`` and ``"mse_neg"``).
    use_bias : bool or "auto", default="auto"
        Koren's full model (biases, x- and y-terms); False gives the course's
        simplified model (y-term only, no biases). "auto" is True for
        ``loss="mse"``, False for the ranking losses.
    leave_one_out : bool or "auto", default="auto"
        Train each stored entry without its own item in the profile (see
        above); "auto" is True for the ranking losses, False for "mse".
    confidence : {"uniform", "value"}, default="uniform"
        How much each stored entry weighs in the loss: 1 ("uniform", Koren's
        and Rendle's losses), or its stored value ("value"), which then
        multiplies the entry's squared error, its BPR pairs and its sampled
        negatives (regularisation is not weighted), like the confidences of
        Hu, Koren and Volinsky (ICDM 2008). With ``use_bias=False`` the values
        enter the model nowhere else, so ``X`` can carry confidences, e.g.
        1 for items rated 4 or 5 and 0.1 for the others.
    profile_weights : {"auto", "ones", "value"}, default="auto"
        Weights of the items in the y-term: 1 (Koren's implicit term over
        ``N(u) = R(u)``) or the stored values ``r_uj`` (see above). The same
        weights serve training, ``transform`` and every fold-in. "auto" is
        "ones" for ``loss="mse"``, "value" for the ranking losses.
    user_bias_shrinkage : float, default=25.0
        ``lambda_u`` of the closed-form user bias.
    init : {"auto", "random", "svd"}, default="auto"
        "auto" is "random" for ``loss="mse"``, "svd" for the ranking losses.
        "random": ``q, x, y`` normal with standard deviation ``init_std``,
        ``b = 0``. "svd": PureSVD's item factors (see above; computed as
        :class:`~sksvd.recommenders.SVDRecommender` does, on the training
        part when ``early_stopping``), scaled so their entries' root mean
        square is ``init_std``; factors beyond ``min(n_users, n_items)``
        stay random. Not available with ``distributed`` training; ignored
        when ``warm_start`` or ``partial_fit`` continue a fitted model.
    init_shrinkage : float, default=1e4
        ``lambda`` of the spectral shrinkage of the ``init="svd"`` start
        (see :class:`~sksvd.recommenders.SVDRecommender`); 0 starts from
        plain PureSVD.
    init_std : float or "auto", default="auto"
        Standard deviation of the normal initialisation of ``q, x, y`` (the
        root mean square of the entries of ``q`` with ``init="svd"``);
        "auto" is 0.05 for the random start, 1.0 for the SVD start (Adam's
        steps are of about ``learning_rate`` per entry whatever their size,
        so the start's scale sets how far a step moves it).
    batch_size : int or "auto", default="auto"
        Users per batch (one Adam step each). Larger batches run faster per
        epoch on big data (fewer steps over the item tables) but take fewer
        steps per epoch. "auto" is 128 on the CPU; on a GPU it grows up to
        8192 while an epoch keeps at least 8 steps (``min(8192, max(128,
        n // 8))`` for ``n`` users with a rating), with the learning rate
        times ``sqrt(batch / 128)`` (square-root scaling).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the stored entries; stop when the
        validation score (RMSE for ``"mse"``, sampled AUC otherwise) has not
        improved for ``n_iter_no_change`` epochs and keep the best epoch.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    callback : callable ``f(epoch, loss)``, default=None
        Called after each epoch; an exception raised there stops ``fit``
        and leaves the estimator as it was before.
    warm_start : bool, default=False
        When fitted already, ``fit`` starts from the current item parameters
        (and keeps ``global_mean_``) instead of a fresh initialisation; ``X``
        may have more rows and columns (new items start as in a fresh fit),
        ``loss_curve_`` and ``n_epochs_`` continue. ``n_components`` and
        ``use_bias`` must be unchanged.
    distributed : {"auto", True, False}, default="auto"
        Data-parallel training under ``torch.distributed``, as for
        :class:`~sksvd.recommenders.FunkSVD` (True requires a process group,
        "auto" uses one when initialised): every rank passes an ``X`` of the
        same shape and trains on the users ``u % world_size == rank``;
        ``batch_size`` is the effective (summed over ranks) number of users
        per step. See :mod:`sksvd.distributed`.
    device : str, default="auto"
    dtype : str, default="float32"
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the batches and the negatives; on CPU the
        same seed gives the same model bit for bit.
    verbose : int, default=0
        A progress bar with the loss when > 0.

    Attributes
    ----------
    item_factors_ : ndarray of shape (n_items, n_components)
        ``q_i``.
    item_weights_ : ndarray of shape (n_terms, n_items, n_components)
        With ``use_bias=True``: ``item_weights_[0]`` is ``x`` (weights of the
        residuals) and ``item_weights_[1]`` is ``y`` (implicit weights);
        with ``use_bias=False`` only ``y`` (``n_terms=1``).
    user_factors_ : ndarray of shape (n_users, n_components)
        ``p_u`` of the fitted users (from their rows of ``X``).
    global_mean_ : float
        ``mu`` (``use_bias=True`` only).
    user_bias_ : ndarray of shape (n_users,)
        ``b_u`` of the fitted users (``use_bias=True`` only).
    item_bias_ : ndarray of shape (n_items,)
        ``b_i`` (``use_bias=True`` only).
    loss_curve_ : list of float
        Objective per stored entry, per epoch.
    validation_scores_ : list of float
        Per epoch, with ``early_stopping``.
    n_epochs_ : int
        Epochs run (summed over ``partial_fit`` calls and warm starts).
    n_users_, n_items_, n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.recommenders import AsySVD
    >>> X = np.array([[5, 4, 0, 1], [4, 5, 1, 0], [0, 1, 5, 4], [1, 0, 4, 5]])
    >>> rec = AsySVD(n_components=4, n_epochs=50, learning_rate=0.05,
    ...              random_state=0, device="cpu").fit(X)
    >>> rec.transform(np.array([[5, 0, 0, 0]])).shape
    (1, 4)
    >>> float(rec.predict(np.array([[5, 5, 0, 0]]))[0, 2]) < 3  # a new user
    True
    """

    _parameter_constraints: dict = {
        **TrainedRecommender._parameter_constraints,
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "regularization": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "loss": [StrOptions({"mse", "bpr", "mse_neg"})],
        "n_negatives": [Interval(numbers.Integral, 1, None, closed="left")],
        "use_bias": ["boolean", StrOptions({"auto"})],
        "leave_one_out": ["boolean", StrOptions({"auto"})],
        "confidence": [StrOptions({"uniform", "value"})],
        "user_bias_shrinkage": [Interval(numbers.Real, 0, None, closed="left")],
        "profile_weights": [StrOptions({"auto", "ones", "value"})],
        "init": [StrOptions({"auto", "random", "svd"})],
        "init_shrinkage": [Interval(numbers.Real, 0, None, closed="left")],
        "init_std": [Interval(numbers.Real, 0, None, closed="left"), StrOptions({"auto"})],
    }

    def __init__(self, n_components=64, *, n_epochs=20, learning_rate="auto",
                 regularization=0.3, loss="bpr", n_negatives=4, use_bias="auto",
                 leave_one_out="auto", confidence="uniform", profile_weights="auto",
                 user_bias_shrinkage=25.0, init="auto", init_shrinkage=10000.0, init_std="auto",
                 batch_size="auto",
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 callback=None, warm_start=False, distributed="auto", device="auto",
                 dtype="float32", random_state=None, verbose=0):
        self._set_params_from(locals())

    def partial_fit(self, X, y=None):
        """One epoch over the rows of ``X``, continuing from the current item parameters.

        Row ``u`` of ``X`` is user ``u`` and column ``i`` item ``i`` of the
        fitted model; ``X`` may have more rows (new users) and more columns
        (new items, initialised as in ``fit``; ``global_mean_`` is kept). An
        AsySVD user *is* the set of items they rated, so a row of ``X`` is
        taken as that user's whole profile: for a user seen before, pass
        their old and new interactions (a row with the new ones only trains
        and folds them in as if those were all). ``user_factors_`` and
        ``user_bias_`` are refreshed for the rows with entries in ``X`` and
        kept for the others. On an unfitted estimator it initialises as
        ``fit`` does and runs one epoch. ``early_stopping`` is not used.
        Adam's moments and step count carry over from the previous call (in
        memory and in pickles; :func:`sksvd.io.save` stores the model only,
        so after :func:`sksvd.io.load` they restart). An exception leaves the
        estimator exactly as before the call.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Users' whole profiles, row ``u`` for user ``u`` (see above);
            ``n_items`` >= the fitted ``n_items_``.
        y : None
            Ignored.

        Returns
        -------
        self : AsySVD
            The estimator: its items trained one more epoch, the users of
            ``X`` folded in again.

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.recommenders import AsySVD
        >>> rec = AsySVD(n_components=2, loss="mse", random_state=0, device="cpu")
        >>> rec = rec.partial_fit(np.array([[5, 4, 0], [4, 0, 1]]))
        >>> rec = rec.partial_fit(np.array([[5, 4, 0, 2]]))  # user 0's profile, a new item
        >>> rec.item_weights_.shape, rec.user_factors_.shape, rec.n_epochs_
        ((2, 4, 2), (2, 2), 2)
        """
        return super().partial_fit(X, y)

    _epochs_attribute = "n_epochs_"
    _auto_batch_sizes = {"cpu": 128, "cuda": 8192}
    # Adam with the square-root step keeps AsySVD's quality even at one step per epoch
    # (benchmarks/bench_auto_batch.py, "device cap"); 8 steps keep a margin.
    _min_steps_per_epoch = 8

    def _start_state(self):
        """The fitted item parameters (numpy, by name), to continue from."""
        biased = self._use_bias()
        weights = self.item_weights_
        if (weights.shape[0] == 2) != biased:
            raise ValueError(
                f"use_bias={self.use_bias!r}: the fitted model was trained with "
                f"use_bias={weights.shape[0] == 2}; warm_start and partial_fit continue it")
        start = {"q": self.item_factors_, "y": weights[-1]}
        if biased:
            start.update(x=weights[0], b=self.item_bias_)
        return start

    def _uses_mean(self):
        return self._use_bias()

    def _make_trainer(self, X, X_val, start, mu, setup):
        ranking, loo = self.loss != "mse", self.leave_one_out
        batch_size, learning_rate = self._batch_and_rate(setup.device, setup.batch_units)
        config = dict(
            n_components=self.n_components, biased=self._use_bias(), init=self._init(),
            init_std=self._init_std(), init_shrinkage=self.init_shrinkage,
            learning_rate=learning_rate, batch_size=batch_size,
            n_negatives=self.n_negatives, weighted=self._profile_weights() == "value",
            loss=self.loss, regularization=self.regularization,
            shrinkage=self.user_bias_shrinkage,
            leave_one_out=ranking if loo == "auto" else bool(loo),
            confidence=self.confidence == "value")
        return AsyTrainer(X, X_val, config, mu=mu, device=setup.device, dtype=setup.dtype,
                          seed=setup.seed, rng=setup.rng, local_rng=setup.local_rng,
                          start=start, dist=setup.dist)

    def _store(self, trainer, X, X_val, mu, setup, continued):
        device, dtype, np_dtype = setup.device, setup.dtype, numpy_dtype(setup.dtype)
        biased = "x" in trainer.params
        old_users = (self.user_factors_, getattr(self, "user_bias_", None)) if continued else None
        for name in ("global_mean_", "item_bias_", "user_bias_"):
            self.__dict__.pop(name, None)
        self.item_factors_ = to_numpy(trainer.params["q"], dtype=np_dtype)
        self.item_weights_ = to_numpy(trainer.weights, dtype=np_dtype)
        if biased:
            self.global_mean_ = mu
            self.item_bias_ = to_numpy(trainer.params["b"], dtype=np_dtype)
        # The fitted users' vectors and biases, from their full training rows.
        X_full = X if X_val is None else X + X_val
        W, B = [], []
        for s, e in self._batches(X_full.shape[0], None):
            w, c = self._fold_in(X_full[s:e], device, dtype)
            W.append(to_numpy(w, dtype=np_dtype))
            if c is not None:
                B.append(to_numpy(c, dtype=np.float64) - mu)
        d = int(self.n_components)
        user_factors = np.concatenate(W) if W else np.zeros((0, d), np_dtype)
        user_bias = (np.concatenate(B) if B else np.zeros(0)) if biased else None
        seen = np.diff(X_full.indptr) > 0
        if setup.dist:  # each user's row comes from its own rank (zeros elsewhere)
            parts = [torch.from_numpy(user_factors), torch.from_numpy(seen.astype(np.int64))]
            if biased:
                parts.append(torch.from_numpy(user_bias))
            allreduce_(parts)
            seen = seen | (parts[1].numpy() > 0)
        if continued:  # users without a row in X keep their vectors
            keep = ~seen[:old_users[0].shape[0]]
            n_old = keep.size
            user_factors[:n_old][keep] = old_users[0][keep]
            if biased:
                user_bias[:n_old][keep] = old_users[1][keep]
        self.user_factors_ = user_factors
        if biased:
            self.user_bias_ = user_bias

    # ------------------------------------------------ loss-dependent defaults
    def _use_bias(self):
        return self.loss == "mse" if self.use_bias == "auto" else bool(self.use_bias)

    def _init(self):
        if self.init == "auto":
            return "random" if self.loss == "mse" else "svd"
        return self.init

    def _learning_rate(self):
        if self.learning_rate == "auto":
            return 0.003 if self.loss == "mse" else 3e-4
        return float(self.learning_rate)

    def _init_std(self):
        if self.init_std == "auto":
            return 0.05 if self._init() == "random" else 1.0
        return float(self.init_std)

    def _profile_weights(self):
        if self.profile_weights == "auto":
            return "ones" if self.loss == "mse" else "value"
        return self.profile_weights

    # -------------------------------------------------------------- fold-in
    def _fold_in(self, X, device, dtype):
        params = {"q": None}
        weights = device_array(self, "item_weights_", device, dtype)  # once per fit
        params["y"] = weights[-1]
        mu = 0.0
        if weights.shape[0] == 2:
            params["x"] = weights[0]
            params["b"] = device_array(self, "item_bias_", device, dtype)
            mu = float(self.global_mean_)
        batch = Batch(X, device, dtype, transposed=False,
                       weighted=self._profile_weights() == "value")
        P, beta, _, _ = user_vectors(batch, params, mu, float(self.user_bias_shrinkage))
        return P, (None if beta is None else beta + mu)

    # ------------------------------------------------------- explain hook
    def _fold_in_terms(self, x):
        """:meth:`_fold_in` of one row as a sum over its rated items (for ``explain``).

        With ``n = |R(u)|``, ``s = n^-1/2``, ``w_j`` the y-term weights and,
        with biases, ``resid_j = r_j - mu - b_j`` and ``t_j = resid_j /
        (user_bias_shrinkage + n)`` (so ``b_u = sum_j t_j``):
        ``p_u = s sum_j (resid_j x_j + w_j y_j - t_j sum_k x_k)`` and
        ``c_u = mu + sum_j t_j``. Returns ``(W_terms, c_terms, W0, c0)`` in
        float64: item ``j``'s share of ``p_u`` and of ``c_u``, and the rest.
        """
        cols = x.indices
        r = np.asarray(x.data, dtype=np.float64)
        n = cols.size
        weights = np.asarray(self.item_weights_, dtype=np.float64)
        s = 1.0 / np.sqrt(n) if n else 0.0
        # the y-term weights the fold-in uses (a "auto" setting resolved as there)
        weighting = getattr(self, "_profile_weights", lambda: self.profile_weights)()
        w = r if weighting == "value" else np.ones(n)
        terms = s * w[:, None] * weights[-1][cols]
        W0 = np.zeros(weights.shape[2])
        if weights.shape[0] == 1:
            return terms, None, W0, 0.0
        mu = float(self.global_mean_)
        x_rated = weights[0][cols]
        resid = r - mu - np.asarray(self.item_bias_, dtype=np.float64)[cols]
        share = resid / (float(self.user_bias_shrinkage) + n) if n else resid
        terms += s * (resid[:, None] * x_rated - share[:, None] * x_rated.sum(0))
        return terms, share, W0, mu
