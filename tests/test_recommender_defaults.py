"""The recommenders' defaults rank: each beats the most-popular baseline on MovieLens 100K u1.

A fast check of the top-N protocol (train u1.base; relevant = u1.test ratings >= 4; items seen
in training excluded; users without a relevant item skipped); the full comparison with
PureSVD, EASE and implicit lives in benchmarks/bench_topn.py.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from sksvd import AsySVD, FunkSVD, SVDRecommender
from sksvd.metrics import ndcg_at_k


@pytest.fixture(scope="module")
def u1(data_home):
    from sksvd.datasets import load_movielens

    ds = load_movielens("100k", fold="u1", data_home=data_home)
    relevant = (ds.X_test >= 4).astype(np.float32)
    relevant.eliminate_zeros()
    users = np.flatnonzero(np.diff(sp.csr_matrix(relevant).indptr))
    return ds.X_train.tocsr(), sp.csr_matrix(relevant)[users], users


def _popularity_ndcg(X, relevant, users):
    counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
    S = np.tile(counts, (users.size, 1))
    S[X[users].toarray() > 0] = -np.inf
    ids = np.argsort(-S, axis=1, kind="stable")[:, :10]
    return ndcg_at_k(relevant, ids, 10)


@pytest.mark.parametrize("cls", [SVDRecommender, FunkSVD, AsySVD])
def test_default_beats_popularity_on_movielens(u1, cls):
    X, relevant, users = u1
    baseline = _popularity_ndcg(X, relevant, users)
    rec = cls(random_state=0, device="cpu").fit(X)
    ids, _ = rec.recommend(X[users], k=10)
    score = ndcg_at_k(relevant, ids, 10)
    # the defaults are chosen on validation splits of the training data; on u1.test the
    # most-popular list scores about 0.25, PureSVD (k=20, no shrinkage) about 0.46
    assert score > 1.2 * baseline, (score, baseline)
