"""Shared fixtures: where MovieLens lives, and small real data sets."""

import os

# The suite runs subprocesses (CLI, examples, Dask workers, torch.distributed ranks) beside
# the main process on 2 cores: OpenMP threads that spin at barriers then slow torch ~10x.
# Passive waiting must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_home():
    """The folder holding ``ml-100k`` and ``ml-latest-small`` (skips when absent)."""
    from sksvd.datasets import get_data_home

    home = get_data_home()
    if not (home / "ml-100k" / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found under {home} (set SKSVD_DATA_HOME)")
    return home


@pytest.fixture(scope="session")
def ml100k(data_home):
    """MovieLens 100K as a Bunch from sksvd.datasets.load_movielens (X: users x items CSR)."""
    from sksvd.datasets import load_movielens

    return load_movielens("100k", data_home=data_home)


def _devices():
    """``cpu`` always, ``cuda`` when torch sees a CUDA GPU."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=_devices())
def device(request):
    """Each device this machine has (``"cpu"``; ``"cuda"`` when available), as a string."""
    return request.param
