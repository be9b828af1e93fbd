"""The course's AsySVD on MovieLens, with a global 80/20 split, in interactions per second.

The PoliMi recommender-systems course trains a simplified asymmetric SVD
(no biases; a user is ``|R(u)|^-1/2 sum_{j in R(u)} y_j``, the scores are
``q_i . p_u``) on implicit feedback, with sampled unrated items as zero
ratings, by per-sample SGD in numpy at about 930 to 2,900 samples per second,
and ends: "Tools such as PyTorch may become useful". Here the same model is
``AsySVD(use_bias=False, loss="mse_neg")``, trained user-batched in torch.

Protocol: the course's global split, 80% of all interactions (whatever the
user) to train and 20% to test (``train_test_split_interactions(mode="global")``),
ranking metrics at 10 on the test interactions, training items excluded.

Run: ``python examples/04_course_asysvd_80_20.py`` (MovieLens latest-small;
set ``SKSVD_DATA_HOME`` or let it download).
"""

import time

from sksvd import AsySVD, SVDRecommender
from sksvd.datasets import load_movielens
from sksvd.model_selection import evaluate, train_test_split_interactions

ml = load_movielens("latest-small")
X = ml.X.copy()
X.data[:] = 1.0                                   # implicit feedback: who rated what
X_train, X_test = train_test_split_interactions(X, test_size=0.2, random_state=0,
                                                mode="global")
print(f"{X.shape[0]} users x {X.shape[1]} items; train {X_train.nnz:,}, test {X_test.nnz:,}")

# The course's model and start: random factors (init="random"; AsySVD's default starts
# from PureSVD and fine-tunes it at a much smaller step).
asy = AsySVD(n_components=64, n_epochs=10, loss="mse_neg", n_negatives=4, use_bias=False,
             learning_rate=0.01, init="random", init_std=0.05, random_state=0)
t0 = time.perf_counter()
asy.fit(X_train)
seconds = time.perf_counter() - t0
epochs = asy.n_epochs_
print(f"AsySVD: {epochs} epochs in {seconds:.1f} s = "
      f"{epochs * X_train.nnz / seconds:,.0f} interactions per second "
      f"(each with {asy.n_negatives} sampled negatives; the course's numpy loop: 930-2,900)")

pure = SVDRecommender(n_components=50, random_state=0).fit(X_train)
for name, model in (("AsySVD (course)", asy), ("PureSVD", pure)):
    res = evaluate(model, X_train, X_test, metrics=("ndcg", "recall", "precision"), k=10)
    print(f"  {name:16s} NDCG@10 {res['ndcg']:.3f}  recall@10 {res['recall']:.3f}  "
          f"precision@10 {res['precision']:.3f}  ({res['n_users']} users)")
