"""Thread counts of torch and BLAS, and the worker pools of the CPU kernels: one place.

BLAS's thread count (numpy/scipy's OpenBLAS, set through :mod:`threadpoolctl`)
is one setting for the whole process. torch's intra-op count is one too on
torch's native backend, but on its OpenMP backend (the default of the CPU
builds; ``torch.__config__.parallel_info()`` reports ``ATen parallel backend:
OpenMP``) each thread has its own: :func:`torch.set_num_threads` sets the
calling thread's OpenMP count (``omp_set_num_threads``) and a process-wide
count that a thread copies on its first torch call (``at::init_num_threads``),
and :func:`torch.get_num_threads` reads the calling thread's own count
(``omp_get_max_threads``).

The kernels ask for counts through :func:`torch_threads`, :func:`blas_threads`
and :func:`single_threaded`, which share them between callers overlapping from
several Python threads instead of serialising them:

* One count for the process (BLAS; torch off OpenMP): while any request is
  active the count in force is the smallest that any thread asks for (each
  thread's innermost request is its ask), and the last request to end
  restores the count found before the first began.
* torch on OpenMP: a request sets the count of the thread that makes it to its
  ask (its innermost request's). A thread leaving its outermost request gets
  back the count it had before, whatever other threads still do; a count it
  had copied from another thread's request is replaced by the user's setting.
  When the last of the overlapping requests ends, new threads start from the
  user's setting again. The user's setting is the count new threads start
  with when the first of the overlapping requests begins. It is read in a
  short-lived new thread when the requesting thread's own count differs from
  the one this module last left there (or, in a thread with no request
  before, from the one it last restored); otherwise it is the one last
  restored. So a :func:`torch.set_num_threads` made between requests is seen
  when made in the thread that opens the next one, or when that thread's
  count differs. A thread whose first torch call comes while another
  thread's request is active copies that request's count and keeps it until
  it makes a request itself: OpenMP sets no thread's count from another
  thread.

So calls overlapping from several Python threads never leave torch or BLAS at
a count nobody asked for, and a caller that asks for one thread (for results
that do not depend on the thread count) runs on one thread whatever the others
do.

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

    def outer(self):
        """The setting outside the active requests: the saved one, else ``save()`` now."""
        with self._lock:
            return self._saved if self._asks else self._save()


def _in_new_thread(fn, *args):
    """``fn(*args)`` called on a short-lived thread, whose torch count starts from the process-wide one."""
    out = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)), name="sksvd-torch-threads")
    thread.start()
    thread.join()
    return out[0]


class _Request:
    """Context manager of one request to a :class:`_PerThreadCount`."""

    __slots__ = ("_count", "_n")

    def __init__(self, count, n):
        self._count, self._n = count, n

    def __enter__(self):
        self._count._enter(self._n)

    def __exit__(self, *exc):
        self._count._exit()
        return False


class _PerThreadCount:
    """torch's intra-op count on OpenMP, shared by overlapping requests from several threads.

    ``set(n)`` is :func:`torch.set_num_threads`: it sets the calling thread's
    count and the process-wide count that new threads copy; ``get()`` is
    :func:`torch.get_num_threads`, the calling thread's count (on a thread's
    first torch call it copies the process-wide count first). A request sets
    its thread's count to its ask; a thread's outermost request puts the
    thread's count back when it ends, and the last request to end leaves the
    process-wide count at the user's setting (see the module's docstring).

    Each thread records the count it is to get back (``before``) and the count
    this class last left it with (``left``). The user's setting is read when
    the first of overlapping requests begins: it is the count the previous
    requests restored when the requesting thread's count tells nothing new
    (it is the one this class left there, or, in a thread with no request
    before, that restored count); otherwise it is read from a short-lived new
    thread, as the requesting thread's count may be its own or one it copied
    from an earlier request.
    """

    def __init__(self, get, set_):
        self._get, self._set = get, set_
        self._lock = threading.Lock()  # held for the threads' outermost entries and exits
        self._local = threading.local()  # .asks (stack), .before, .left of each thread
        self._active = 0  # threads inside a request
        self._user = None  # the user's setting while requests are active
        self._restored = None  # the user's setting the last requests restored

    def __call__(self, n):
        n = int(n)
        if n < 1:
            raise ValueError(f"n={n}: expected a thread count >= 1")
        return _Request(self, n)

    def _user_count(self, count, left):
        # The user's setting with no request active, from the calling thread's count.
        restored = self._restored
        expected = restored if left is None else left
        if expected is None:  # no request has ended: no count of this class to tell apart
            return count
        if count == expected:
            return restored
        return _in_new_thread(self._get)

    def _enter(self, n):
        local = self._local
        asks = getattr(local, "asks", None)
        if asks:  # nested in this thread: the thread is counted as active already
            asks.append(n)
            self._set(n)
            return
        with self._lock:
            count = self._get()
            left = getattr(local, "left", None)
            user = self._user if self._active else self._user_count(count, left)
            self._set(n)
            self._user = user
            # A thread with no request before holds the user's setting or a count it
            # copied from a request of another thread: it gets the user's setting back.
            local.before = count if left is not None or count == user else user
            local.asks = [n]
            self._active += 1

    def _exit(self):
        local = self._local
        asks = local.asks
        asks.pop()
        if asks:
            self._set(asks[-1])
            return
        with self._lock:
            self._active -= 1
            before = local.before
            self._set(before)
            local.left = before
            if not self._active:
                user = self._user
                if before != user:  # the process-wide count from a thread of its own
                    _in_new_thread(self._set, user)
                self._restored, self._user = user, None

    def saved(self):
        """The user's setting while requests are active (None when there is none)."""
        with self._lock:
            return self._user if self._active else None

    def outer(self):
        """The user's setting: while requests are active, else as the next request would read it."""
        with self._lock:
            if self._active:
                return self._user
            return self._user_count(self._get(), getattr(self._local, "left", None))


def _openmp_torch():
    """Whether torch runs its intra-op work on OpenMP (a count per thread)."""
    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


if _openmp_torch():
    _TORCH = _PerThreadCount(torch.get_num_threads, torch.set_num_threads)
else:
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

    On torch's OpenMP backend the calling thread runs on ``n`` threads and
    gets its count back when its outermost request ends; when the last of the
    overlapping callers ends, new threads start from the user's setting again.
    On a backend with one count for the process, the count in force is the
    smallest any active caller asks for, and the last caller out restores
    :func:`torch.get_num_threads` as it was (see the module's docstring).

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
    return int(_TORCH.outer())


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
