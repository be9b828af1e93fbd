"""sksvd: scikit-learn compatible SVD estimators with torch inside."""

__version__ = "0.1.0"
