"""The thread module: shared torch/BLAS counts, worker counts and pools."""

import threading

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from sksvd._threads import (
    blas_threads,
    n_workers,
    outer_threads,
    single_threaded,
    thread_map,
    threads_for,
    torch_threads,
)


def _blas_counts():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_nested_requests_restore_torch_exactly(two_torch_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        assert outer_threads() == 2
        with single_threaded() as threads:
            assert threads == 2 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_inner_request_of_a_thread_is_its_ask(two_torch_threads):
    # One thread alone: its innermost request is in force (a threaded step inside a
    # single-threaded region).
    with torch_threads(1):
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1


def test_overlapping_threads_keep_the_smallest_ask_and_the_last_restores(two_torch_threads):
    # A enters (1 thread), B enters (asks 2: 1 stays in force while A is inside),
    # A leaves first (B's 2 applies), B leaves (the original comes back).
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with torch_threads(1):
            a_in.set()
            b_in.wait()
            seen["a_with_b"] = torch.get_num_threads()
        a_out.set()

    def b():
        a_in.wait()
        with torch_threads(2):
            b_in.set()
            a_out.wait()
            seen["b_alone"] = torch.get_num_threads()

    ts = [threading.Thread(target=f) for f in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen == {"a_with_b": 1, "b_alone": 2}
    assert torch.get_num_threads() == 2


def test_blas_threads_restore_the_libraries_counts():
    before = _blas_counts()
    with blas_threads(1):
        assert all(n == 1 for n in _blas_counts())
        with single_threaded():
            assert all(n == 1 for n in _blas_counts())
    assert _blas_counts() == before


def test_many_overlapping_callers_leave_the_counts_as_found(two_torch_threads):
    before = _blas_counts()

    def work(i):
        with single_threaded() if i % 2 else torch_threads(1):
            return float(np.ones((50, 50)).sum())

    assert thread_map(work, range(16), workers=4) == [2500.0] * 16
    assert torch.get_num_threads() == 2
    assert _blas_counts() == before


def test_threads_for_small_cpu_steps_only(two_torch_threads):
    cpu = torch.device("cpu")
    with threads_for(cpu, 10):
        assert torch.get_num_threads() == 1
    with threads_for(cpu, 2**22):
        assert torch.get_num_threads() == 2
    with threads_for(torch.device("meta"), 10):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


def test_n_workers_rule(two_torch_threads):
    import os

    assert n_workers(10) == 2  # torch's count by default
    assert n_workers(1) == 1 and n_workers(0) == 1
    assert n_workers(10, n_jobs=3) == 3
    assert n_workers(100, n_jobs=-1) == max(1, os.cpu_count() or 1)
    with pytest.raises(ValueError, match="n_jobs=0"):
        n_workers(4, n_jobs=0)
    with pytest.raises(ValueError, match="n=0"):
        with torch_threads(0):
            pass


def test_thread_map_keeps_order():
    assert thread_map(lambda x: x * x, range(7), workers=3) == [x * x for x in range(7)]
    assert thread_map(lambda x: x, [], workers=3) == []
