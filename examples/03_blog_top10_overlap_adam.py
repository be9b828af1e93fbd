"""The blog's evaluation: hide each test user's 10 favourite films, count how many come back.

The protocol of the blog post: take some users as test users, hide each
one's 10 highest-rated items, train on everything else, recommend 10 items
to each test user (items they kept visible excluded) and measure the
overlap with the hidden 10, ``|top-10 & hidden| / 10`` (precision@10, since
exactly 10 are hidden). The model is the blog's "NaiveFunk": Funk's
factorisation ``r_ui ~ mu + b_u + b_i + p_u . q_i`` trained on the observed
ratings only (``loss="mse"``), with Adam (``FunkSVD(loss="mse", solver="adam")``),
beside plain SGD, PureSVD and the most popular items.

Two variants:

* the blog's: test users are in the training matrix with their top 10
  removed (weak generalisation);
* strong generalisation: test users are not trained on at all; their visible
  ratings are folded in (``make_topk_scorer("precision", holdout="top:10")``).

Run: ``python examples/03_blog_top10_overlap_adam.py`` (MovieLens 100K; set
``SKSVD_DATA_HOME`` or let it download).
"""

import numpy as np
import scipy.sparse as sp

from sksvd import FunkSVD, SVDRecommender
from sksvd.datasets import load_movielens
from sksvd.metrics import precision_at_k
from sksvd.model_selection import make_topk_scorer

X = load_movielens("100k").X                     # 943 users x 1682 films, ratings 1..5
rng = np.random.default_rng(0)
test_users = np.sort(rng.choice(X.shape[0], size=200, replace=False))
train_users = np.setdiff1d(np.arange(X.shape[0]), test_users)

overlap = make_topk_scorer("precision", k=10, holdout="top:10", random_state=0)
X_visible, X_hidden = overlap.split(X[test_users])  # each test user's 10 favourites hidden
hidden = np.unique(X_hidden.getnnz(axis=1)).tolist()
print(f"{len(test_users)} test users, items hidden per user: {hidden}")


def models():
    return {
        "FunkSVD, Adam (NaiveFunk)": FunkSVD(n_components=32, n_epochs=20, loss="mse",
                                            solver="adam", learning_rate=0.005,
                                            random_state=0),
        "FunkSVD, SGD": FunkSVD(n_components=32, loss="mse", random_state=0),
        "PureSVD": SVDRecommender(n_components=20, random_state=0),
    }


# The blog's variant: test users trained on with their favourites removed.
X_blog = sp.vstack([X[train_users], X_visible]).tocsr()
rows = np.arange(len(train_users), X_blog.shape[0])
print("\nweak generalisation (the blog): mean |top-10 & hidden 10| / 10")
for name, model in models().items():
    model.fit(X_blog)
    ids, _ = model.recommend(X_blog[rows], k=10)      # visible items excluded
    print(f"  {name:28s} {precision_at_k(X_hidden, ids, k=10):.3f}")
popular = np.argsort(-X_blog.getnnz(axis=0))           # most rated first
seen = X_visible.toarray() > 0
pop_ids = np.array([[i for i in popular if not s[i]][:10] for s in seen])
print(f"  {'most popular':28s} {precision_at_k(X_hidden, pop_ids, k=10):.3f}")

# Strong generalisation: the test users are new to the model, folded in.
print("\nstrong generalisation: test users folded in, never trained on")
for name, model in models().items():
    model.fit(X[train_users])
    print(f"  {name:28s} {overlap(model, X[test_users]):.3f}")
