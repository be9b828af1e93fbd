"""Shared fixtures: where MovieLens lives, and small real data sets."""

import os
from pathlib import Path

import pytest

_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data_home():
    env = os.environ.get("SKSVD_DATA_HOME")
    return Path(env) if env else _DEFAULT


@pytest.fixture(scope="session")
def data_home():
    """The folder holding ``ml-100k`` and ``ml-latest-small`` (skips when absent)."""
    home = _data_home()
    if not (home / "ml-100k" / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found under {home} (set SKSVD_DATA_HOME)")
    return home


@pytest.fixture(scope="session")
def ml100k(data_home):
    """MovieLens 100K as a Bunch from sksvd.datasets.load_movielens (X: users x items CSR)."""
    from sksvd.datasets import load_movielens

    return load_movielens("100k", data_home=data_home)
