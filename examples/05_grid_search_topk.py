"""Choose PureSVD's rank and spectral shrinkage by cross-validation over users.

``make_topk_scorer`` turns a top-k metric into a scikit-learn scorer by the
strong-generalisation protocol: the users of each validation fold were not
seen in ``fit``; 20% of each one's ratings are hidden, the rest folded in,
and the hidden items are what the model must rank in its top 10. Any
scikit-learn search uses it: here ``GridSearchCV`` over ``n_components`` and
``shrinkage`` (the singular values shrunk as ``s_i^2 / (s_i^2 + lambda)``, as in
low-rank ridge regression; 0 is plain PureSVD), with ``KFold`` over the rows
(users) of MovieLens 100K. Without shrinkage the quality falls past a few dozen
components; with it the larger ranks help.

Run: ``python examples/05_grid_search_topk.py`` (set ``SKSVD_DATA_HOME`` or
let ``load_movielens`` download).
"""

import pandas as pd
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from sksvd import SVDRecommender
from sksvd.datasets import load_movielens
from sksvd.model_selection import make_topk_scorer

X = load_movielens("100k").X
scorer = make_topk_scorer("ndcg", k=10, holdout=0.2, random_state=0)
search = GridSearchCV(
    SVDRecommender(algorithm="randomized", random_state=0),
    {"n_components": [25, 50, 200], "shrinkage": [0.0, 1e4]},
    scoring={"ndcg": scorer, "recall": make_topk_scorer("recall", k=10)},
    refit="ndcg",
    cv=KFold(3, shuffle=True, random_state=0),
)
search.fit(X)

results = pd.DataFrame(search.cv_results_)[
    ["param_n_components", "param_shrinkage", "mean_test_ndcg", "std_test_ndcg",
     "mean_test_recall", "mean_fit_time"]]
print(results.sort_values("mean_test_ndcg", ascending=False).round(4).to_string(index=False))
print("best:", search.best_params_, f"NDCG@10 {search.best_score_:.4f}")

# The same scorer in cross_val_score, on another shuffle of the users.
best = SVDRecommender(**search.best_params_, algorithm="randomized", random_state=0)
scores = cross_val_score(best, X,
                         scoring=scorer, cv=KFold(3, shuffle=True, random_state=1))
print("NDCG@10 of the best setting on other folds:", scores.round(4))
