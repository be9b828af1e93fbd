"""The library's Adam (``sksvd._optim.Adam``) beside ``torch.optim.Adam`` and ``SparseAdam``.

Run ``python -m benchmarks.bench_optim [--quick] [--device cpu|cuda]``.

Why the library carries its own Adam: each optimizer takes its first step in a
fresh interpreter (a ``forkserver`` child that has imported torch and numpy,
nothing else), so ``first step`` includes whatever the optimizer loads or
compiles on first use; ``per step`` is then the median of 200 further steps.
The tensors are those of one AsySVD mini-batch on MovieLens 100K: an item
table of 1,682 x 64 (``y``) and of 1,682 x 65 (``q`` with the bias), of which
a batch touches 500 random rows.

- dense rule (FunkSVD ``solver="adam"``): ``torch.optim.Adam`` on the two
  tables vs ``Adam.step``, gradients dense;
- lazy rule (AsySVD): ``torch.optim.SparseAdam`` (a coalesced sparse gradient
  built per step) vs ``Adam.step_rows`` on the touched rows.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import _harness as H

N_ITEMS, K, ROWS, STEPS = 1682, 64, 500, 200


def _run(name, device, steps):
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(0)
    shapes = {"y": (N_ITEMS, K), "q": (N_ITEMS, K + 1)}
    params = {n: torch.randn(s, generator=g).to(device) for n, s in shapes.items()}
    rows = torch.randperm(N_ITEMS, generator=g)[:ROWS].sort().values.to(device)
    grads = {n: torch.randn((ROWS, s[1]), generator=g).to(device) for n, s in shapes.items()}
    dense = {n: torch.zeros_like(p).index_copy_(0, rows, grads[n]) for n, p in params.items()}
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)

    if name == "torch.optim.Adam":
        tensors = {n: p.clone().requires_grad_() for n, p in params.items()}
        opt = torch.optim.Adam(list(tensors.values()), lr=1e-3)

        def step():
            for n, p in tensors.items():
                p.grad = dense[n]
            opt.step()
    elif name == "torch.optim.SparseAdam":
        tensors = {n: p.clone().requires_grad_() for n, p in params.items()}
        opt = torch.optim.SparseAdam(list(tensors.values()), lr=1e-3)

        def step():
            for n, p in tensors.items():
                p.grad = torch.sparse_coo_tensor(rows[None], grads[n], p.shape).coalesce()
            opt.step()
    else:
        from sksvd._optim import Adam

        opt = Adam({n: p.clone() for n, p in params.items()}, lr=1e-3)
        if name == "sksvd Adam.step (dense)":
            def step():
                opt.step(dense)
        else:
            def step():
                opt.step_rows(rows, grads)

    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"first_step_s": first, "per_step_us": float(np.median(times)) * 1e6}


PAIRS = {"dense rule": ("torch.optim.Adam", "sksvd Adam.step (dense)"),
         "lazy rule": ("torch.optim.SparseAdam", "sksvd Adam.step_rows (lazy)")}


def main(quick=False, device="cpu"):
    steps = 50 if quick else STEPS
    rows, ratios = [], {}
    for rule, (peer, ours) in PAIRS.items():
        res = {}
        for name in (peer, ours):
            out = H.measure(_run, name, device, steps, start_method="forkserver", timeout=600)
            res[name] = out["result"]
            rows.append({"rule": rule, "optimizer": name, **out["result"]})
            print(rows[-1], flush=True)
        for key in ("first_step_s", "per_step_us"):
            ratios[f"{rule} {key} sksvd / torch.optim"] = {
                "value": res[ours][key] / res[peer][key], "better": "lower"}
    notes = (f"{N_ITEMS} x {K} and {N_ITEMS} x {K + 1} tables, {ROWS} touched rows a step; "
             f"per step: median of {steps} steps after the first. Each optimizer in a fresh "
             "forkserver child. See the module docstring of `benchmarks/bench_optim.py`.")
    name = "optim_quick" if quick else "optim"
    print(H.write_results(name, rows, device=device, notes=notes, ratios=ratios,
                          ratios_title="Ratios (sksvd / torch.optim)"))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    main(quick=args.quick, device=args.device)
