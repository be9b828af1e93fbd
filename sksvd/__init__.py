"""sksvd: scikit-learn compatible SVD estimators with torch inside.

Estimators
----------
TruncatedSVDCompressor
    Truncated SVD of dense or sparse matrices and images.
SVDRecommender, FunkSVD, AsySVD
    PureSVD, Funk's biased matrix factorisation and Koren's asymmetric SVD.

Explanation
    What a recommender's ``explain`` returns.

Submodules: ``image``, ``plotting``, ``metrics``, ``model_selection``,
``pipeline``, ``datasets``, ``io``, ``linalg``.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "TruncatedSVDCompressor": "sksvd.compression",
    "SVDRecommender": "sksvd.recommenders.puresvd",
    "FunkSVD": "sksvd.recommenders.funksvd",
    "AsySVD": "sksvd.recommenders.asysvd",
    "Explanation": "sksvd.recommenders._base",
}
_SUBMODULES = {"image", "plotting", "metrics", "model_selection", "datasets", "io", "linalg",
               "distributed", "pipeline",
               "compression", "recommenders"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES)


def __getattr__(name):
    # Imported on first use: ``import sksvd`` stays fast, and torch-heavy
    # modules load only when an estimator is asked for.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"sksvd.{name}")
    raise AttributeError(f"module 'sksvd' has no attribute {name!r}")


def __dir__():
    return __all__ + ["__version__"]
