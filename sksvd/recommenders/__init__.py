"""Recommenders fitted on a users x items matrix: PureSVD, FunkSVD, AsySVD."""

import importlib

_LAZY = {
    "BaseRecommender": "sksvd.recommenders._base",
    "SVDRecommender": "sksvd.recommenders.puresvd",
    "FunkSVD": "sksvd.recommenders.funksvd",
    "AsySVD": "sksvd.recommenders.asysvd",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sksvd.recommenders' has no attribute {name!r}")
