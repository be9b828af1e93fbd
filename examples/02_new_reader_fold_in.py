"""A new reader rated four books: fold them in and recommend, without refitting.

The blog's book recommender: readers x books ratings, a rank-k SVD, and a
new reader who rated four books. Her vector is her ratings projected on the
item factors, ``w = x V_k`` (PureSVD's fold-in), and her scores for every
book are ``x V_k V_k^T``; FunkSVD and AsySVD fold her in their own way (a
ridge regression on the item factors; a sum of item weights). No model is
refitted.

Then the same on MovieLens 100K (set ``SKSVD_DATA_HOME`` to the folder
holding ``ml-100k``, or let ``load_movielens`` download it): a new user who
rated the three Star Wars films and Raiders of the Lost Ark.

Run: ``python examples/02_new_reader_fold_in.py``
"""

import numpy as np
import scipy.sparse as sp

from sksvd import AsySVD, FunkSVD, SVDRecommender
from sksvd.datasets import load_movielens

# ----------------------------------------------------------------------------- books
books = ["Dune", "Foundation", "Neuromancer", "Hyperion", "Emma", "Persuasion",
         "Middlemarch", "Jane Eyre"]
#                  Du Fo Ne Hy Em Pe Mi JE
ratings = np.array([[5, 4, 5, 0, 1, 0, 0, 1],   # science-fiction readers
                    [4, 5, 0, 4, 0, 1, 0, 0],
                    [5, 0, 4, 5, 0, 0, 1, 0],
                    [0, 4, 5, 4, 1, 0, 0, 0],
                    [1, 0, 0, 0, 5, 4, 5, 4],   # nineteenth-century novel readers
                    [0, 1, 0, 0, 4, 5, 4, 5],
                    [0, 0, 1, 0, 5, 0, 4, 5],
                    [1, 0, 0, 1, 4, 5, 5, 0]], dtype=np.float32)
X = sp.csr_matrix(ratings)

new_reader = np.zeros((1, len(books)), dtype=np.float32)
new_reader[0, [books.index("Dune"), books.index("Hyperion"),
               books.index("Emma"), books.index("Jane Eyre")]] = [5, 4, 1, 2]

# shrinkage=0: the blog's plain rank-k SVD (the default shrinks the spectrum, which
# suits large rating matrices; on 8 x 8 it would scale every score down).
pure = SVDRecommender(n_components=2, shrinkage=0, algorithm="full", random_state=0).fit(X)
print("her vector w = x V_k:", pure.transform(new_reader).round(2))
scores = pure.predict(new_reader)[0]
for b in np.argsort(-scores):
    mark = "  (rated)" if new_reader[0, b] else ""
    print(f"  {books[b]:12s} {scores[b]:6.2f}{mark}")
ids, _ = pure.recommend(new_reader, k=2)
print("PureSVD recommends:", [books[i] for i in ids[0]])

# Funk's factorisation of the observed ratings (loss="mse"): its scores are ratings.
funk = FunkSVD(n_components=2, loss="mse", n_epochs=300, learning_rate=0.05,
               regularization=0.02, random_state=0).fit(X)
ids, predicted = funk.recommend(new_reader, k=2)
print("FunkSVD recommends:", [books[i] for i in ids[0]], "predicted ratings",
      predicted[0].round(2))

# ----------------------------------------------------------------------------- MovieLens
ml = load_movielens("100k")
titles = ml.items["title"].to_numpy()
liked = {50: 5, 172: 5, 181: 4, 174: 5}          # MovieLens ids -> ratings
cols = [ml.item_index[i] for i in liked]
x = sp.csr_matrix((list(liked.values()), ([0] * len(cols), cols)), shape=(1, ml.X.shape[1]))
n_ratings = ml.X.getnnz(axis=0)
print("\nA new MovieLens user rated:", ", ".join(titles[c] for c in cols))
for model in (SVDRecommender(random_state=0), FunkSVD(random_state=0),
              AsySVD(random_state=0)):            # the defaults: fitted for top-N lists
    model.fit(ml.X)                               # fitted once, without her
    ids, _ = model.recommend(x, k=5)              # she is folded in here
    print(f"{type(model).__name__}:")
    for i in ids[0]:
        print(f"    {titles[i]:45s} rated by {n_ratings[i]:3d} users")
# All three score what users who share her taste chose to watch. Fitted to the
# ratings instead (loss="mse"), FunkSVD and AsySVD predict the rating she would give,
# which favours well-rated films, some of them rarely seen, and ranks worse.
