"""Adam on a dict of tensors, dense or lazy (touched rows only), for the trained recommenders.

One optimizer serves FunkSVD (``solver="adam"``: every row steps, as
``torch.optim.Adam``) and AsySVD (a step moves only the item rows of its
batch, as ``torch.optim.SparseAdam``). Both update rules share the moment
update and the step of Kingma and Ba (2015), and the state (moments and step
count) is one dict of numpy arrays that ``partial_fit`` and ``warm_start``
carry from one call to the next, rows for new users and items starting at
zero.

Why not ``torch.optim``: ``SparseAdam`` wants a coalesced sparse gradient
tensor per step, built and sorted each time, where the lazy rule here indexes
the touched rows directly; the dense rule here folds the bias corrections
into one step size; and neither torch optimizer keeps the dense and the lazy
rule on one state that can be saved as numpy arrays and grown with new rows.
``benchmarks/bench_optim.py`` measures both rules against ``torch.optim`` in a
fresh process (first step and per step; ``benchmarks/results/optim.md``):
neither torch optimizer pays a first-use cost that matters beside a fit, so
the choice rests on the per-step times and on the one shared state.
"""

from __future__ import annotations

import torch

from ._backend import to_numpy

__all__ = ["Adam"]


class Adam:
    """Adam (Kingma and Ba 2015) on a dict of tensors, updated in place.

    For a parameter ``p`` with gradient ``g`` (times ``scale``) at step ``t``:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g**2,
        p <- p - lr sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps sqrt(1 - b2**t)),

    which is ``torch.optim.Adam``'s ``p - lr m_hat / (sqrt(v_hat) + eps)``
    with the bias corrections folded into the step size.

    Parameters
    ----------
    params : dict of str to Tensor
        Updated in place; ``params[k]`` has shape ``(n_rows_k, ...)``.
    lr : float
        Step size (may be changed between steps, e.g. per epoch).
    betas : (float, float), default=(0.9, 0.999)
    eps : float, default=1e-8

    Examples
    --------
    >>> import torch
    >>> from sksvd._optim import Adam
    >>> p = {"w": torch.zeros(3, 2)}
    >>> opt = Adam(p, lr=0.1)
    >>> opt.step({"w": torch.ones(3, 2)})
    >>> p["w"][0]
    tensor([-0.1000, -0.1000])
    >>> opt.step_rows(torch.tensor([2]), {"w": torch.ones(1, 2)})
    >>> opt.t, bool((p["w"][2] < p["w"][0]).all())
    (2, True)
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def state(self):
        """The moments (numpy, by parameter) and the step count.

        Returns
        -------
        state : dict
            ``{"t": int, "m": {name: ndarray}, "v": {name: ndarray}}``. On
            the CPU the arrays share the moments' memory (no copy of two
            model-sized tables): take the state when the optimizer is done.
        """
        return {"t": self.t,
                "m": {k: to_numpy(v) for k, v in self.m.items()},
                "v": {k: to_numpy(v) for k, v in self.v.items()}}

    def load(self, state):
        """Continue from :meth:`state`; rows beyond its arrays (new rows) start at zero."""
        self.t = int(state["t"])
        for name in ("m", "v"):
            for k, t in getattr(self, name).items():
                old = state[name][k]
                t[:old.shape[0]] = torch.as_tensor(old).to(device=t.device, dtype=t.dtype)

    def _advance(self):
        """Count a step; return ``(step size, eps)`` with the bias corrections folded in."""
        self.t += 1
        b1, b2 = self.betas
        root_c2 = (1.0 - b2**self.t) ** 0.5
        return self.lr * root_c2 / (1.0 - b1**self.t), self.eps * root_c2

    def _moments_(self, m, v, g, scale):
        b1, b2 = self.betas
        m.mul_(b1).add_(g, alpha=(1.0 - b1) * scale)
        v.mul_(b2).addcmul_(g, g, value=(1.0 - b2) * scale * scale)

    def step(self, grads, scale=1.0):
        """A dense step: every row of every parameter moves (``torch.optim.Adam``).

        Parameters
        ----------
        grads : dict of str to Tensor
            ``grads[k]`` has the shape of ``params[k]``.
        scale : float, default=1.0
            Multiplies the gradients (e.g. ``1 / batch entries``).
        """
        size, eps = self._advance()
        for k, p in self.params.items():
            m, v = self.m[k], self.v[k]
            self._moments_(m, v, grads[k], scale)
            p.add_(m.div(torch.sqrt(v).add_(eps)), alpha=-size)

    def step_rows(self, rows, grads, scale=1.0):
        """A lazy step on the parameter rows ``rows`` only (``torch.optim.SparseAdam``).

        The other rows, and their moments, are left as they are; the bias
        correction uses the global step count.

        Parameters
        ----------
        rows : int Tensor (R,)
            Row ids, in any order; a row listed more than once has its
            gradients summed.
        grads : dict of str to Tensor
            ``grads[k]`` (R, ...) holds the gradient of ``params[k][rows]``.
        scale : float, default=1.0
            Multiplies the gradients.
        """
        uniq, inv = torch.unique(rows, return_inverse=True)
        size, eps = self._advance()
        dup = not torch.equal(uniq, rows)  # repeated or unsorted rows
        for k, p in self.params.items():
            g = grads[k]
            if dup:  # summed per distinct row, in the order of ``uniq``
                g = torch.zeros((uniq.shape[0],) + g.shape[1:], dtype=g.dtype,
                                device=g.device).index_add_(0, inv, g)
            m, v = self.m[k][uniq], self.v[k][uniq]
            self._moments_(m, v, g, scale)
            self.m[k][uniq] = m
            self.v[k][uniq] = v
            p.index_add_(0, uniq, m.div_(torch.sqrt(v).add_(eps)), alpha=-size)
