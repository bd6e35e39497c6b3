"""Benchmark the AISEL selector (eq. 10): m = 1000 support points from 20000 weighted candidates in r = 8.

Times the vectorised, chunked `support_points` against `support_points_reference` (the same fixed-point update
written one point at a time) on the same problem and the same number of iterations, checks that they agree, and
appends rows (what, profile, seconds) to build/bench.csv. Run: python tests/bench_selector.py [--iters 10]
"""

from __future__ import annotations

import argparse
import time

import torch

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.runner import append_bench
from latentlab.samplers.energy import energy_distance, support_points, support_points_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=20000)
    parser.add_argument("--fixed", type=int, default=400)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    target = torch.rand(args.candidates, args.r, generator=gen) * 2 - 1
    weights = torch.rand(args.candidates, generator=gen) ** 4  # a peaky stand-in for entropies
    fixed = torch.rand(args.fixed, args.r, generator=gen) * 2 - 1
    kw = dict(weights=weights, fixed=fixed, iters=args.iters, tol=0.0, seed=0)  # tol=0: exactly `iters` steps

    rows = []
    results = {}
    for what, fn in [("selector_vectorised", support_points), ("selector_reference", support_points_reference)]:
        start = time.perf_counter()
        results[what] = fn(target, args.m, **kw)
        seconds = time.perf_counter() - start
        rows.append({"what": f"{what}_m{args.m}_N{args.candidates}_r{args.r}_it{args.iters}", "profile": "default",
                     "seconds": round(seconds, 3)})
        print(f"{what:<22} {seconds:8.2f} s  ({args.iters} iterations)", flush=True)
    fast, slow = results["selector_vectorised"], results["selector_reference"]
    ratio = rows[1]["seconds"] / max(rows[0]["seconds"], 1e-9)
    print(f"speed-up (reference / vectorised): {ratio:.1f}x; max |difference| {float((fast - slow).abs().max()):.2e}")
    start = time.perf_counter()  # the chunked energy distance on 20k x 20k points (never a full 20k^2 matrix)
    energy_distance(target, torch.rand(args.candidates, args.r, generator=gen) * 2 - 1, weights_x=weights)
    seconds = time.perf_counter() - start
    rows.append({"what": f"energy_distance_{args.candidates}x{args.candidates}_r{args.r}", "profile": "default",
                 "seconds": round(seconds, 3)})
    print(f"energy_distance {args.candidates} x {args.candidates}: {seconds:.2f} s")
    ed = energy_distance(torch.cat([fast, fixed]), target, weights_y=weights)
    ed_random = energy_distance(torch.cat([target[:args.m], fixed]), target, weights_y=weights)
    print(f"energy distance to the target: selected {ed:.4f}, random candidates {ed_random:.4f}")

    append_bench(rows)


if __name__ == "__main__":
    main()
