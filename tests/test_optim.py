"""sksvd._optim.Adam: the dense step against torch.optim.Adam, the lazy row step against
torch.optim.SparseAdam, and the state carried from one optimizer to the next."""

import numpy as np
import torch

from sksvd._optim import Adam


def test_adam_matches_torch_optim_adam():
    rng = np.random.default_rng(0)
    ours = {"a": torch.from_numpy(rng.normal(size=(5, 3))), "b": torch.from_numpy(rng.normal(size=5))}
    ref = {k: v.clone().requires_grad_(True) for k, v in ours.items()}
    opt, torch_opt = Adam(ours, 0.1), torch.optim.Adam(list(ref.values()), lr=0.1)
    for _ in range(5):
        grads = {k: torch.from_numpy(rng.normal(size=v.shape)) for k, v in ours.items()}
        for k, p in ref.items():
            p.grad = grads[k].clone() / 7.0
        torch_opt.step()
        opt.step_rows(torch.arange(5), {k: g.clone() for k, g in grads.items()}, 1.0 / 7.0)
    for k in ours:
        np.testing.assert_allclose(ours[k].numpy(), ref[k].detach().numpy(), rtol=1e-12,
                                   atol=1e-12)


def test_row_adam_matches_torch_sparse_adam_and_sums_repeated_rows():
    # Lazy Adam: only the rows given move; a row listed twice gets its gradients summed.
    rng = np.random.default_rng(1)
    start = rng.normal(size=(6, 3))
    ours = {"a": torch.from_numpy(start.copy())}
    ref = torch.from_numpy(start.copy()).requires_grad_(True)
    # (SparseAdam adds eps outside the bias correction, Adam inside: eps ~ 0 compares them.)
    opt, torch_opt = Adam(ours, 0.1, eps=1e-30), torch.optim.SparseAdam([ref], lr=0.1, eps=1e-30)
    for rows in ([0, 2, 2, 5], [1, 2], [5, 0, 3]):
        rows = torch.tensor(rows)
        g = torch.from_numpy(rng.normal(size=(rows.shape[0], 3)))
        ref.grad = torch.sparse_coo_tensor(rows[None], g / 4.0, (6, 3),
                                           check_invariants=True).coalesce()
        torch_opt.step()
        opt.step_rows(rows, {"a": g.clone()}, 0.25)
    np.testing.assert_allclose(ours["a"].numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours["a"].numpy()[4], start[4])  # never in a step


def test_dense_step_matches_torch_optim_adam_with_changing_lr():
    rng = np.random.default_rng(2)
    ours = {"a": torch.from_numpy(rng.normal(size=(4, 3)))}
    ref = ours["a"].clone().requires_grad_(True)
    opt, torch_opt = Adam(ours, 0.1), torch.optim.Adam([ref], lr=0.1)
    for lr in (0.1, 0.05, 0.02):
        opt.lr = lr
        torch_opt.param_groups[0]["lr"] = lr
        g = torch.from_numpy(rng.normal(size=(4, 3)))
        ref.grad = g.clone()
        torch_opt.step()
        opt.step({"a": g})
    np.testing.assert_allclose(ours["a"].numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_state_continues_and_new_rows_start_at_zero():
    # Two steps, then the state loaded into a larger optimizer: its first rows take the same
    # third step as an optimizer that never stopped; the new row steps as a fresh one would.
    rng = np.random.default_rng(3)
    grads = [torch.from_numpy(rng.normal(size=(3, 2))) for _ in range(3)]
    whole = {"w": torch.zeros(3, 2, dtype=torch.float64)}
    opt = Adam(whole, 0.1)
    for g in grads:
        opt.step({"w": g})
    part = {"w": torch.zeros(3, 2, dtype=torch.float64)}
    first = Adam(part, 0.1)
    for g in grads[:2]:
        first.step({"w": g})
    grown = {"w": torch.cat([part["w"], torch.zeros(1, 2, dtype=torch.float64)])}
    second = Adam(grown, 0.1)
    second.load(first.state())
    assert second.t == 2
    second.step({"w": torch.cat([grads[2], torch.ones(1, 2, dtype=torch.float64)])})
    np.testing.assert_allclose(grown["w"][:3].numpy(), whole["w"].numpy(), rtol=1e-12)
    # a new row's moments start at zero, the bias correction counts every step
    b1, b2, t = 0.9, 0.999, 3
    m, v = 1 - b1, 1 - b2
    step = 0.1 * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
    np.testing.assert_allclose(grown["w"][3].numpy(), [-step, -step], rtol=1e-12)
