"""Data-parallel training of the SGD-trained recommenders on ``torch.distributed``.

:class:`~sksvd.FunkSVD` and :class:`~sksvd.AsySVD` train data-parallel when
a ``torch.distributed`` process group is initialised (``torchrun``, or
:func:`spawn` on one machine) or when given ``distributed=True``. Every rank
calls ``fit`` with a matrix of the same shape; rank ``r`` keeps the users
``u`` with ``u % world_size == r`` (:func:`shard_rows`: the rows of the other
users are ignored, so a rank may load its own rows only). The item
parameters are replicated: at each step every rank computes the update of
its users' ratings, the item updates are summed over the ranks
(:func:`allreduce_`: gloo on CPU, NCCL on GPUs), and every rank applies the
same sum. The user parameters live on the rank that owns the user and are
gathered once at the end, so every rank (rank 0 included) holds the whole
fitted model.

A step on ``world_size`` ranks, each with ``batch_size / world_size``
ratings (FunkSVD) or users (AsySVD), is the step a single process takes on
the union of those batches (the per-rating updates are summed in both), so a
distributed fit is a single-process fit with the same effective
``batch_size``; only the order in which the ratings are drawn differs.

This module holds the generic machinery: whether a group is running, the
sharding, the all-reduces (no-ops without a group), and :func:`spawn`, a
launcher of a gloo group of local processes over 127.0.0.1.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["is_distributed", "get_rank", "get_world_size", "shard_rows", "allreduce_",
           "allreduce_values", "owned_rows", "rank_seed", "resolve_distributed", "spawn",
           "fit_parallel"]


def is_distributed():
    """True when a ``torch.distributed`` process group is initialised in this process.

    Returns
    -------
    bool
        Whether this process belongs to an initialised process group.

    Examples
    --------
    >>> from sksvd.distributed import is_distributed
    >>> is_distributed()
    False
    """
    return bool(torch.distributed.is_available() and torch.distributed.is_initialized())


def get_rank():
    """This process's rank in the default group (0 without a group).

    Returns
    -------
    int
        ``torch.distributed.get_rank()`` inside a group, else 0.

    Examples
    --------
    >>> from sksvd.distributed import get_rank
    >>> get_rank()
    0
    """
    return torch.distributed.get_rank() if is_distributed() else 0


def get_world_size():
    """Number of processes in the default group (1 without a group).

    The ``world_size`` that :func:`owned_rows` splits the rows by.

    Examples
    --------
    >>> from sksvd.distributed import get_world_size
    >>> get_world_size()
    1
    """
    return torch.distributed.get_world_size() if is_distributed() else 1


def owned_rows(n_rows, rank=None, world_size=None):
    """Boolean mask of the rows ``u`` with ``u % world_size == rank``.

    Parameters
    ----------
    n_rows : int
    rank, world_size : int, default=None
        Default: those of the running group (0 and 1 without one).

    Returns
    -------
    mask : ndarray of bool, shape (n_rows,)

    Examples
    --------
    >>> from sksvd.distributed import owned_rows
    >>> owned_rows(5, rank=1, world_size=2)
    array([False,  True, False,  True, False])
    """
    rank = get_rank() if rank is None else int(rank)
    world_size = get_world_size() if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: expected 0 <= rank < "
                         "world_size")
    return np.arange(n_rows) % world_size == rank


def shard_rows(X, rank=None, world_size=None):
    """The rows of a CSR matrix that belong to ``rank``, the others emptied.

    Rank ``r`` of ``world_size`` keeps row ``u`` when ``u % world_size == r``;
    the result has the shape of ``X`` (row ``u`` is still user ``u``) and
    shares nothing with it. Vectorised, no densifying.

    Parameters
    ----------
    X : scipy.sparse matrix of shape (n_rows, n_cols)
    rank, world_size : int, default=None
        Default: those of the running group (0 and 1 without one).

    Returns
    -------
    X_shard : scipy.sparse.csr_matrix of shape (n_rows, n_cols)

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd.distributed import shard_rows
    >>> X = sp.csr_matrix([[1, 0], [0, 2], [3, 0]])
    >>> shard_rows(X, rank=0, world_size=2).toarray()
    array([[1, 0],
           [0, 0],
           [3, 0]])
    """
    if not sp.issparse(X):
        raise TypeError(f"X: expected a scipy sparse matrix, got {type(X).__name__}")
    X = sp.csr_matrix(X)
    keep = owned_rows(X.shape[0], rank, world_size)
    counts = np.diff(X.indptr)
    entries = np.repeat(keep, counts)
    indptr = np.zeros(X.shape[0] + 1, dtype=X.indptr.dtype)
    np.cumsum(np.where(keep, counts, 0), out=indptr[1:])
    return sp.csr_matrix((X.data[entries], X.indices[entries], indptr), shape=X.shape)


_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


def allreduce_(tensors, op="sum"):
    """All-reduce tensors in place across the default group (a no-op without one).

    Tensors of one dtype and device are flattened into one buffer and reduced
    by a single collective call (as DDP buckets its gradients).

    Parameters
    ----------
    tensors : Tensor or sequence of Tensors
        Contiguous tensors; on CUDA with the NCCL backend, on CPU with gloo.
    op : {"sum", "max", "min"}, default="sum"

    Returns
    -------
    tensors : the same object, reduced

    Examples
    --------
    >>> import torch
    >>> from sksvd.distributed import allreduce_
    >>> allreduce_(torch.ones(3))  # no group: unchanged
    tensor([1., 1., 1.])
    """
    if op not in _OPS:
        raise ValueError(f"op={op!r}: expected one of {sorted(_OPS)}")
    if not is_distributed() or get_world_size() == 1:
        return tensors
    dist = torch.distributed
    red = getattr(dist.ReduceOp, _OPS[op])
    single = isinstance(tensors, torch.Tensor)
    items = [tensors] if single else list(tensors)
    groups = {}
    for t in items:
        groups.setdefault((t.dtype, t.device), []).append(t)
    # NCCL reduces CUDA tensors only: CPU tensors (counts, sums) travel through the GPU.
    staging = torch.device("cuda", torch.cuda.current_device()) if (
        dist.get_backend() == "nccl") else None
    for (_, device), group in groups.items():
        if len(group) == 1 and group[0].is_contiguous() and (
                staging is None or device.type == "cuda"):
            dist.all_reduce(group[0], op=red)
            continue
        flat = torch.cat([t.reshape(-1) for t in group])
        if staging is not None and device.type != "cuda":
            flat = flat.to(staging)
        dist.all_reduce(flat, op=red)
        flat = flat.to(device)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
    return tensors


def allreduce_values(values, op="sum"):
    """All-reduce a few numbers across the default group, in float64.

    Parameters
    ----------
    values : sequence of float or int
    op : {"sum", "max", "min"}, default="sum"

    Returns
    -------
    reduced : ndarray of float64, shape (len(values),)

    Examples
    --------
    >>> from sksvd.distributed import allreduce_values
    >>> allreduce_values([1, 2.5])
    array([1. , 2.5])
    """
    buf = torch.tensor(np.asarray(values, dtype=np.float64).reshape(-1))
    return allreduce_(buf, op=op).numpy()


def resolve_distributed(distributed, device=None):
    """Decide whether a fit runs data-parallel, initialising the group if asked.

    Parameters
    ----------
    distributed : {"auto", True, False}
        "auto": when a process group is initialised. True: a group must be
        initialised, or the ``torchrun`` variables (``RANK``, ``WORLD_SIZE``,
        ``MASTER_ADDR``, ``MASTER_PORT``) must be set, and then this call
        initialises it (NCCL when ``device`` is CUDA, else gloo; on CUDA each
        rank takes the GPU ``LOCAL_RANK``). False: never.
    device : torch.device, default=None

    Returns
    -------
    bool
        Whether the fit is data-parallel over the default process group.

    Examples
    --------
    >>> from sksvd.distributed import resolve_distributed
    >>> resolve_distributed("auto"), resolve_distributed(False)
    (False, False)
    """
    if distributed is False or distributed is None:
        return False
    if isinstance(distributed, str) and distributed == "auto":
        return is_distributed()
    if distributed is not True:
        raise ValueError(f"distributed={distributed!r}: expected 'auto', True or False")
    if is_distributed():
        return True
    if not torch.distributed.is_available():
        raise ValueError("distributed=True: this torch build has no torch.distributed")
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if v not in os.environ]
    if missing:
        raise ValueError(
            "distributed=True: no torch.distributed process group is initialised and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; launch "
            "with torchrun, or call torch.distributed.init_process_group (or use "
            "sksvd.distributed.spawn) first"
        )
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return True


# ------------------------------------------------------------------------- launcher
def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, fn, args, world_size, port, backend, threads, out_dir):
    # The result goes to a file: a pipe would block a large result until the parent reads.
    dist = torch.distributed
    if threads is not None:
        torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world_size)
    try:
        result = fn(*args)
    finally:
        dist.destroy_process_group()
    path = os.path.join(out_dir, f"rank{rank}.pkl")
    with open(path + ".tmp", "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(path + ".tmp", path)


def spawn(fn, nprocs=2, args=(), *, backend="gloo", threads=None):
    """Run ``fn(*args)`` in ``nprocs`` local processes forming one process group.

    Each process initialises a ``torch.distributed`` group of ``nprocs``
    ranks over ``tcp://127.0.0.1`` (a free port; nothing listens beyond this
    machine), calls ``fn(*args)`` and destroys the group. It is the
    one-machine stand-in for ``torchrun --nproc_per_node nprocs``.

    Parameters
    ----------
    fn : callable
        Importable by name (a module-level function): it is pickled to the
        processes, which are started with the "spawn" method. Its return
        value must be picklable.
    nprocs : int, default=2
    args : tuple, default=()
    backend : {"gloo", "nccl"}, default="gloo"
    threads : int or None, default=None
        ``torch.set_num_threads`` in each process (e.g. the machine's cores
        divided by ``nprocs``); None leaves torch's default.

    Returns
    -------
    results : list
        ``fn``'s return value on each rank, by rank.

    Raises
    ------
    RuntimeError
        When a process fails; the message holds its traceback.

    Examples
    --------
    >>> from sksvd.distributed import spawn, get_world_size
    >>> spawn(get_world_size, nprocs=2)  # doctest: +SKIP
    [2, 2]
    """
    nprocs = int(nprocs)
    if nprocs < 1:
        raise ValueError(f"nprocs={nprocs}: expected an int >= 1")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend={backend!r}: expected 'gloo' or 'nccl'")
    import torch.multiprocessing as tmp
    from torch.multiprocessing.spawn import ProcessException

    with tempfile.TemporaryDirectory(prefix="sksvd_spawn_") as out_dir:
        try:
            tmp.spawn(_worker, args=(fn, tuple(args), nprocs, _free_port(), backend, threads,
                                     out_dir), nprocs=nprocs, join=True)
        except ProcessException as exc:
            raise RuntimeError(f"spawn: a process failed:\n{exc}") from None
        results = []
        for rank in range(nprocs):
            # Written by our own child processes a moment ago, in this private folder.
            with open(os.path.join(out_dir, f"rank{rank}.pkl"), "rb") as fh:
                results.append(pickle.load(fh))
    return results


def _fit_rank(estimator, X, return_all):
    from sklearn.base import clone

    est = clone(estimator).set_params(distributed=True).fit(X)
    return est if return_all or get_rank() == 0 else None


def fit_parallel(estimator, X, nprocs=2, *, threads=None, return_all=False):
    """Fit a FunkSVD or AsySVD data-parallel in ``nprocs`` local processes (gloo).

    A convenience around :func:`spawn`: each process fits a clone of
    ``estimator`` with ``distributed=True`` on ``X`` (keeping its users,
    ``u % nprocs == rank``), and rank 0's fitted estimator is returned.

    Parameters
    ----------
    estimator : FunkSVD or AsySVD
    X : sparse matrix of shape (n_users, n_items)
        Pickled to every process.
    nprocs : int, default=2
    threads : int or None, default=None
        torch threads per process.
    return_all : bool, default=False
        Return the list of every rank's fitted estimator instead.

    Returns
    -------
    estimator : fitted clone (or a list of them, by rank)

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sksvd import FunkSVD
    >>> from sksvd.distributed import fit_parallel
    >>> X = sp.random(50, 20, density=0.3, format="csr", random_state=0) * 5
    >>> rec = fit_parallel(FunkSVD(n_components=4, loss="mse", device="cpu"), X, nprocs=2)  # doctest: +SKIP
    >>> rec.item_factors_.shape  # doctest: +SKIP
    (20, 4)
    """
    if "distributed" not in estimator.get_params():
        raise TypeError(f"estimator: {type(estimator).__name__} has no distributed training; "
                        "use FunkSVD or AsySVD")
    results = spawn(_fit_rank, nprocs, (estimator, X, return_all), threads=threads)
    return results if return_all else results[0]


def rank_seed(seed, rank=None):
    """A seed for this rank's own random draws (its shuffles), derived from ``seed``.

    The parameters are initialised from ``seed`` itself, identically on
    every rank; the order in which a rank visits its ratings comes from
    this seed, which differs between ranks.

    Examples
    --------
    >>> from sksvd.distributed import rank_seed
    >>> rank_seed(0, 0) != rank_seed(0, 1)
    True
    """
    rank = get_rank() if rank is None else int(rank)
    state = np.random.SeedSequence([int(seed), 0x5EED, rank]).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))
