"""Thread counts of torch and BLAS, and the worker pools of the CPU kernels: one place.

torch's intra-op thread count and BLAS's (numpy/scipy's OpenBLAS, set through
:mod:`threadpoolctl`) are process-wide settings. The kernels ask for counts
through :func:`torch_threads`, :func:`blas_threads` and :func:`single_threaded`,
which share them between overlapping callers instead of serialising them:
while any request is active the count in force is the smallest that any
thread asks for (each thread's innermost request is its ask), and the last
request to end restores the count found before the first began. So calls
overlapping from several Python threads never leave torch or BLAS at a
count nobody asked for, and a caller that asks for one thread (for results
that do not depend on the thread count) gets one thread whatever the others do.

Worker pools for work that releases the GIL (scipy's sparse kernels, numpy's
reductions, BLAS calls on one thread each) come from :func:`thread_map`,
sized by :func:`n_workers`.
"""

from __future__ import annotations

import contextlib
import threading

import torch

__all__ = ["torch_threads", "blas_threads", "single_threaded", "threads_for", "outer_threads",
           "n_workers", "thread_map"]

# Below this many elements a CPU step runs on one thread (threads_for).
_SERIAL_ELEMENTS = 2**22


class _SharedCount:
    """A process-wide thread count shared by overlapping requests from several threads.

    ``save()`` returns a token of the setting before the first request,
    ``apply(n)`` sets ``n``, ``restore(token)`` puts the saved setting back.
    """

    def __init__(self, save, apply, restore):
        self._save, self._apply, self._restore = save, apply, restore
        self._lock = threading.Lock()
        self._asks = {}  # thread id -> stack of requested counts
        self._saved = self._current = None

    @contextlib.contextmanager
    def __call__(self, n):
        n = int(n)
        if n < 1:
            raise ValueError(f"n={n}: expected a thread count >= 1")
        tid = threading.get_ident()
        with self._lock:
            if not self._asks:
                self._saved, self._current = self._save(), None
            self._asks.setdefault(tid, []).append(n)
            self._set()
        try:
            yield
        finally:
            with self._lock:
                stack = self._asks[tid]
                stack.pop()
                if not stack:
                    del self._asks[tid]
                if self._asks:
                    self._set()
                else:
                    self._restore(self._saved)
                    self._saved = self._current = None

    def _set(self):
        n = min(stack[-1] for stack in self._asks.values())
        if n != self._current:
            self._apply(n)
            self._current = n

    def saved(self):
        """The setting before the active requests (None when there is none)."""
        with self._lock:
            return self._saved if self._asks else None


_TORCH = _SharedCount(torch.get_num_threads, torch.set_num_threads, torch.set_num_threads)
_CONTROLLER = None


def _controller():
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


# threadpoolctl's limiter records the libraries' counts when made (limits=None sets
# nothing) and puts them back with restore_original_limits.
_BLAS = _SharedCount(lambda: _controller().limit(limits=None, user_api="blas"),
                     lambda n: _controller().limit(limits=n, user_api="blas"),
                     lambda saved: saved.restore_original_limits())


def torch_threads(n):
    """Context manager: torch on ``n`` intra-op threads (shared with overlapping callers).

    The count in force is the smallest any active caller asks for; the last
    caller out restores :func:`torch.get_num_threads` as it was.

    Examples
    --------
    >>> import torch
    >>> from sksvd._threads import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    return _TORCH(n)


def blas_threads(n):
    """Context manager: numpy/scipy's BLAS on ``n`` threads (threadpoolctl), shared as :func:`torch_threads`.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd._threads import blas_threads
    >>> with blas_threads(1):
    ...     float((np.ones((2, 2)) @ np.ones(2)).sum())
    4.0
    """
    return _BLAS(n)


def outer_threads():
    """torch's thread count outside the active requests: the count the user set.

    Worker pools are sized from it, so a call made while another thread holds
    torch at one thread still uses the machine's cores.

    Examples
    --------
    >>> import torch
    >>> from sksvd._threads import outer_threads, torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     outer_threads() == before
    True
    """
    saved = _TORCH.saved()
    return int(saved) if saved is not None else torch.get_num_threads()


@contextlib.contextmanager
def single_threaded():
    """Context manager: torch and BLAS on one thread; yields :func:`outer_threads` from before.

    For CPU steps whose small LAPACK/BLAS calls and elementwise ops stall on
    thread-pool barriers, and for results that must not depend on the
    thread count (OpenBLAS rounds differently on one and several threads).

    Examples
    --------
    >>> import torch
    >>> from sksvd._threads import single_threaded
    >>> with single_threaded() as threads:
    ...     torch.get_num_threads(), threads >= 1
    (1, True)
    """
    threads = outer_threads()
    with _TORCH(1), _BLAS(1):
        yield threads


@contextlib.contextmanager
def threads_for(device, elements, serial_elements=_SERIAL_ELEMENTS):
    """Context manager: torch on one thread for a small CPU step, else unchanged.

    Small mini-batch steps (fewer than ``serial_elements`` elements) on the
    CPU run on one thread, which avoids thread-pool wake-ups that cost more
    than the step; other devices, large steps and a torch already on one
    thread are left alone.

    Examples
    --------
    >>> import torch
    >>> from sksvd._threads import threads_for
    >>> with threads_for(torch.device("cpu"), 10):
    ...     torch.get_num_threads()
    1
    """
    if device.type != "cpu" or elements >= serial_elements or torch.get_num_threads() == 1:
        yield
        return
    with _TORCH(1):
        yield


def n_workers(n_tasks, n_jobs=None):
    """Worker threads for ``n_tasks`` independent tasks, scikit-learn's ``n_jobs`` rule.

    ``n_jobs=None`` uses :func:`outer_threads` (torch's thread count, which
    the user sets with :func:`torch.set_num_threads`); a positive int is that
    many; ``-1`` is every core, ``-2`` all but one, and so on. Never more than
    ``n_tasks``, never fewer than 1.

    Examples
    --------
    >>> from sksvd._threads import n_workers
    >>> n_workers(3, n_jobs=8), n_workers(0, n_jobs=2), n_workers(5, n_jobs=1)
    (3, 1, 1)
    """
    if n_jobs is None:
        n = outer_threads()
    else:
        n = int(n_jobs)
        if n == 0:
            raise ValueError("n_jobs=0: expected an int >= 1, or < 0 to count back from "
                             "the number of cores")
        if n < 0:
            import os

            n = max(1, (os.cpu_count() or 1) + 1 + n)
    return max(1, min(n, int(n_tasks)))


def thread_map(fn, items, workers):
    """``list(map(fn, items))``, on ``workers`` threads when ``workers >= 2``.

    For work that releases the GIL (numpy, scipy's sparse kernels, torch ops).

    Examples
    --------
    >>> from sksvd._threads import thread_map
    >>> thread_map(abs, [-1, 2, -3], workers=2)
    [1, 2, 3]
    """
    items = list(items)
    if workers < 2 or len(items) < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(int(workers), len(items))) as pool:
        return list(pool.map(fn, items))
