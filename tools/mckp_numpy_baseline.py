#!/usr/bin/env python3
"""numpy baseline for dptq's exact-budget multiple-choice knapsack (dptq-mckp).

The same problem and the same answers as `dptq mckp`: for each example choose one bit
option per layer so that the total bits equal (or stay within) the budget and the summed
score is largest. The dynamic program is vectorised over the batch:

    V_L(s) = 0 if s == 0 (exact) / s >= 0 (at_most), else -inf
    V_i(s) = max_j p[i, j] + V_{i+1}(s - w_j)         (w_j = option_j - min option)

and the choice is read forwards, taking the first option whose candidate equals V_i(s):
the same float expressions, in the same order, as dptq-mckp, so choices and profits match
exactly (ties: the lexicographically smallest optimal choice).

Subcommands (all seeded; results go to stdout as JSON, nothing is written to disk):

  bench   --groups 20 --options 3..10 --budget 80 --batch 20000 --seed 0 [--dtype float32]
          [--seconds 1.0]
          time the solver on random scores (whole batches, repeated for at least --seconds);
          prints {"instances_per_s": ..., "instances_per_cpu_s": ..., ...} (wall clock and
          process CPU time; numpy's elementwise kernels run on one thread)
  solve   read a `dptq mckp` request on stdin, print the response
  compare read {"request": ..., "response": ...} on stdin (a `dptq mckp` request and the
          Rust response) and check every example; exit 1 on any difference
  check   --dptq target/release/dptq [--instances 200] [--seed 0]
          generate random requests, run `dptq mckp` on them and compare; exit 1 on mismatch

Used by `dptq bench mckp`, which runs `bench` and `compare` in the same run as its own
measurements.
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np


class Infeasible(ValueError):
    pass


def parse_options(text):
    """`3..10` (inclusive) or `2,4,8,16`."""
    if ".." in text:
        lo, hi = text.split("..")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def solve_batch(options, budget, mode, profits, chunk=None):
    """profits [N, L, K] (float32 or float64) -> (choices [N, L] int64, totals [N])."""
    profits = np.asarray(profits)
    n, layers, k = profits.shape
    w = np.asarray(options, dtype=np.int64)
    if k != len(w):
        raise ValueError(f"profits have {k} options, expected {len(w)}")
    if (w <= 0).any():
        raise ValueError("options must be positive")
    shifted = w - w.min()
    low, high = layers * int(w.min()), layers * int(w.max())
    if budget < low or (mode == "exact" and budget > high):
        raise Infeasible(f"budget {budget} is outside the reachable range [{low}, {high}]")
    cap = min(budget - low, high - low)
    pad = int(shifted.max())
    width = pad + cap + 1
    if chunk is None:
        chunk = max(1, 4_000_000 // max(1, layers * width))
    choices = np.zeros((n, layers), dtype=np.int64)
    totals = np.zeros(n, dtype=profits.dtype)
    for start in range(0, n, chunk):
        p = profits[start:start + chunk]
        c, t = _solve_chunk(shifted, cap, pad, mode, p)
        if mode == "exact" and not np.isfinite(t).all():
            raise Infeasible(f"budget {budget} is inside the reachable range [{low}, {high}] "
                             "but no choice reaches it")
        choices[start:start + chunk] = c
        totals[start:start + chunk] = t
    return choices, totals


def _solve_chunk(shifted, cap, pad, mode, p):
    m, layers, k = p.shape
    dtype = p.dtype
    width = pad + cap + 1
    rows = [None] * (layers + 1)
    last = np.full((m, width), -np.inf, dtype=dtype)
    if mode == "exact":
        last[:, pad] = 0
    else:
        last[:, pad:] = 0
    rows[layers] = last
    for i in range(layers - 1, -1, -1):
        nxt = rows[i + 1]
        best = p[:, i, 0, None] + nxt[:, pad - shifted[0]:pad - shifted[0] + cap + 1]
        for j in range(1, k):
            cand = p[:, i, j, None] + nxt[:, pad - shifted[j]:pad - shifted[j] + cap + 1]
            np.maximum(best, cand, out=best)
        row = np.full((m, width), -np.inf, dtype=dtype)
        row[:, pad:] = best
        rows[i] = row
    totals = rows[0][:, pad + cap].copy()
    s = np.full(m, cap, dtype=np.int64)
    idx = np.arange(m)
    choices = np.zeros((m, layers), dtype=np.int64)
    for i in range(layers):
        target = rows[i][idx, pad + s]
        cand = p[:, i, :] + rows[i + 1][idx[:, None], pad + s[:, None] - shifted[None, :]]
        j = np.argmax(cand == target[:, None], axis=1)
        choices[:, i] = j
        s = s - shifted[j]
    return choices, totals


def solve_request(request):
    options = request["options"]
    profits = np.asarray(request["profits"], dtype=np.float64)
    if profits.size == 0:
        return {"bits": [], "choices": [], "profit": []}
    choices, totals = solve_batch(options, request["budget"], request.get("mode", "exact"), profits)
    bits = np.asarray(options)[choices]
    return {"bits": bits.tolist(), "choices": choices.tolist(), "profit": totals.tolist()}


def compare(request, response):
    """Number of examples whose choices or profit differ (exact comparison)."""
    ours = solve_request(request)
    bad = 0
    for e, (c, p) in enumerate(zip(ours["choices"], ours["profit"])):
        if c != response["choices"][e] or p != response["profit"][e]:
            if bad < 5:
                print(f"example {e}: numpy {c} {p!r}, rust {response['choices'][e]} "
                      f"{response['profit'][e]!r}", file=sys.stderr)
            bad += 1
    if len(response["choices"]) != len(ours["choices"]):
        bad += 1
    return len(ours["choices"]), bad


def cmd_bench(args):
    rng = np.random.default_rng(args.seed)
    options = parse_options(args.options)
    profits = rng.uniform(-1, 1, size=(args.batch, args.groups, len(options))).astype(args.dtype)
    solve_batch(options, args.budget, args.mode, profits[: min(64, args.batch)])  # warm-up
    solved, t0, c0 = 0, time.perf_counter(), time.process_time()
    while solved == 0 or time.perf_counter() - t0 < args.seconds:
        solve_batch(options, args.budget, args.mode, profits)
        solved += args.batch
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"instances_per_s": solved / seconds, "instances_per_cpu_s": solved / cpu,
                      "cpu_seconds": cpu, "batch": args.batch,
                      "instances": solved, "seconds": seconds, "groups": args.groups,
                      "budget": args.budget, "dtype": args.dtype, "numpy": np.__version__}))


def cmd_solve(_args):
    try:
        print(json.dumps(solve_request(json.load(sys.stdin))))
    except (Infeasible, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def cmd_compare(_args):
    pair = json.load(sys.stdin)
    n, bad = compare(pair["request"], pair["response"])
    print(json.dumps({"examples": n, "mismatches": bad}))
    sys.exit(1 if bad else 0)


def cmd_check(args):
    rng = np.random.default_rng(args.seed)
    cases = [(20, "3..10", 80, "exact"), (77, "3..10", 308, "exact"), (20, "4..10", 110, "exact"),
             (9, "2,4,8,16", 60, "exact"), (12, "3..10", 70, "at_most"), (5, "1,1,3,9", 17, "exact")]
    total = bad = 0
    for layers, opts, budget, mode in cases:
        options = parse_options(opts)
        profits = rng.uniform(-1, 1, size=(args.instances, layers, len(options)))
        if rng.random() < 0.5:
            profits = np.round(profits * 2)  # integer scores: many ties
        request = {"options": options, "budget": budget, "mode": mode, "profits": profits.tolist()}
        out = subprocess.run([args.dptq, "mckp"], input=json.dumps(request), capture_output=True,
                             text=True, check=True)
        n, b = compare(request, json.loads(out.stdout))
        print(f"L={layers} options={opts} B={budget} {mode}: {n} examples, {b} mismatches")
        total, bad = total + n, bad + b
    print(json.dumps({"examples": total, "mismatches": bad}))
    sys.exit(1 if bad else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--groups", type=int, default=20)
    b.add_argument("--options", default="3..10")
    b.add_argument("--budget", type=int, default=80)
    b.add_argument("--mode", default="exact", choices=["exact", "at_most"])
    b.add_argument("--batch", type=int, default=20000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    b.add_argument("--seconds", type=float, default=1.0, help="repeat whole batches until then")
    sub.add_parser("solve")
    sub.add_parser("compare")
    c = sub.add_parser("check")
    c.add_argument("--dptq", default="target/release/dptq")
    c.add_argument("--instances", type=int, default=200)
    c.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    {"bench": cmd_bench, "solve": cmd_solve, "compare": cmd_compare, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
