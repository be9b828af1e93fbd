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


# torch's OpenMP backend keeps the count per thread: torch.set_num_threads sets the
# calling thread's OpenMP count and the process-wide count that a new thread copies on
# its first torch call (at::init_num_threads); torch.get_num_threads reads the calling
# thread's own. The tests below order threads with events and read every thread.


def _wait(event):
    assert event.wait(timeout=30), "a thread of the test did not get there"


def _run_threads(*targets):
    """Run each target on its own thread, wait for all, re-raise the first error here."""
    errors = []

    def run(target):
        try:
            target()
        except BaseException as e:  # noqa: BLE001 -- reported in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(f,)) for f in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _new_thread_count():
    """torch.get_num_threads() read in a new thread: the count new threads start with."""
    out = []
    _run_threads(lambda: out.append(torch.get_num_threads()))
    return out[0]


def test_a_thread_leaving_first_gets_its_count_back(two_torch_threads):
    # A and B each ask one thread; A leaves while B is inside (A's own count must come
    # back at once), then A makes a request alone after B has left.
    a_in, b_in, a_out, b_out = (threading.Event() for _ in range(4))
    seen = {}

    def a():
        with torch_threads(1):
            a_in.set()
            _wait(b_in)
            seen["a_inside"] = torch.get_num_threads()
        seen["a_left_first"] = torch.get_num_threads()
        a_out.set()
        _wait(b_out)
        with torch_threads(1):
            seen["a_alone"] = torch.get_num_threads()
        seen["a_after"] = torch.get_num_threads()

    def b():
        _wait(a_in)
        with torch_threads(1):
            seen["b_inside"] = torch.get_num_threads()
            b_in.set()
            _wait(a_out)
        b_out.set()

    _run_threads(a, b)
    assert seen == {"a_inside": 1, "b_inside": 1, "a_left_first": 2, "a_alone": 1,
                    "a_after": 2}
    assert (torch.get_num_threads(), _new_thread_count()) == (2, 2)


def test_a_count_inherited_during_a_request_is_not_the_users(two_torch_threads):
    # C's first torch call comes while A holds one thread, so OpenMP starts C on one
    # thread. After A leaves, C's own request must end at the user's two, in C and in
    # new threads, and outer_threads() in C is the user's two.
    a_in, c_started, a_out = (threading.Event() for _ in range(3))
    seen = {}

    def a():
        with torch_threads(1):
            a_in.set()
            _wait(c_started)
        a_out.set()

    def c():
        _wait(a_in)
        seen["c_inherited"] = torch.get_num_threads()
        c_started.set()
        _wait(a_out)
        seen["c_outer"] = outer_threads()
        with torch_threads(1):
            seen["c_inside"] = torch.get_num_threads()
        seen["c_after"] = torch.get_num_threads()

    _run_threads(a, c)
    assert seen == {"c_inherited": 1, "c_outer": 2, "c_inside": 1, "c_after": 2}
    assert (torch.get_num_threads(), _new_thread_count()) == (2, 2)


def test_a_second_thread_asking_one_runs_on_one(two_torch_threads):
    # B's torch starts on two threads before A asks one; B then asks one as well while
    # A is inside (the smallest ask does not change): B itself must run on one thread.
    b_ready, a_in, b_done = (threading.Event() for _ in range(3))
    seen = {}

    def a():
        _wait(b_ready)
        with torch_threads(1):
            seen["a"] = torch.get_num_threads()
            a_in.set()
            _wait(b_done)

    def b():
        seen["b_before"] = torch.get_num_threads()
        b_ready.set()
        _wait(a_in)
        with torch_threads(1):
            seen["b"] = torch.get_num_threads()
        seen["b_after"] = torch.get_num_threads()
        b_done.set()

    _run_threads(a, b)
    assert seen == {"b_before": 2, "a": 1, "b": 1, "b_after": 2}
    assert (torch.get_num_threads(), _new_thread_count()) == (2, 2)


def test_a_thread_keeps_its_own_count_and_new_threads_get_the_users(two_torch_threads):
    # T sets three threads for itself after a request; the user then sets two in this
    # thread. T's next request ends with T on its three and new threads on the two.
    t_set, user_set = threading.Event(), threading.Event()
    seen = {}

    def t():
        with torch_threads(1):
            pass
        torch.set_num_threads(3)
        t_set.set()
        _wait(user_set)
        with torch_threads(1):
            seen["t_inside"] = torch.get_num_threads()
        seen["t_after"] = torch.get_num_threads()

    def user():
        _wait(t_set)
        torch.set_num_threads(2)
        user_set.set()

    threads = [threading.Thread(target=t)]
    threads[0].start()
    user()
    threads[0].join()
    assert seen == {"t_inside": 1, "t_after": 3}
    assert (torch.get_num_threads(), _new_thread_count()) == (2, 2)
