#!/usr/bin/env python3
"""Times the training-kernel cases of `crates/dptq-models/benches/ops.rs` in PyTorch (CPU)
and prints a Markdown table of ratios against the criterion estimates of that bench.

Run right after the Rust bench, in the same session (the machine is shared and noisy):

    cargo bench -p dptq-models --bench ops
    python3 tools/bench_torch_ops.py --criterion target/criterion [--threads 2] [--json out.json]

or, single-threaded with process CPU time (robust when other processes share the cores):

    RAYON_NUM_THREADS=1 DPTQ_BENCH_CLOCK=cpu cargo bench -p dptq-models --bench ops
    python3 tools/bench_torch_ops.py --threads 1 --clock cpu

Outputs: the table on stdout; with --json, the PyTorch timings (ms per case and phase)
as JSON. Inputs are seeded (torch.manual_seed(0)); nothing else is written.

Every time is the fastest run (per iteration, from criterion's samples for Rust): on a
shared machine the minimum is the estimate least disturbed by other processes.

Phases match the bench: `fwd` is the forward pass without autograd; `bwd` is
`backward()` alone, the graph being built outside the clock, with gradients for the same
inputs as in the bench.
"""

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F


def conv(stride, padding, groups):
    return lambda x, w: F.conv2d(x, w, None, stride, padding, 1, groups)


def bn_train(x, w, b):
    return F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)


# (case, input shapes, which inputs get gradients, function) -- the same as benches/ops.rs.
CASES = [
    ("conv3x3_64_56_b16_input_grad", [(16, 64, 56, 56), (64, 64, 3, 3)], [True, False], conv(1, 1, 1)),
    ("conv3x3_64_56_b16_weight_grad", [(16, 64, 56, 56), (64, 64, 3, 3)], [False, True], conv(1, 1, 1)),
    ("conv7x7s2_stem_224_b16", [(16, 3, 224, 224), (64, 3, 7, 7)], [False, True], conv(2, 3, 1)),
    ("depthwise3x3_480_28_b16", [(16, 480, 28, 28), (480, 1, 3, 3)], [True, True], conv(1, 1, 480)),
    ("grouped3x3_168g7_28_b16", [(16, 168, 28, 28), (168, 24, 3, 3)], [True, True], conv(1, 1, 7)),
    ("tiny_conv3x3_16_28_b64", [(64, 16, 28, 28), (16, 16, 3, 3)], [True, True], conv(1, 1, 1)),
    ("tiny_conv3x3_32_14_b64", [(64, 32, 14, 14), (32, 32, 3, 3)], [True, True], conv(1, 1, 1)),
    ("tiny_conv3x3_64_7_b64", [(64, 64, 7, 7), (64, 64, 3, 3)], [True, True], conv(1, 1, 1)),
    ("tiny_conv3x3_16_28_b64_input_grad", [(64, 16, 28, 28), (16, 16, 3, 3)], [True, False], conv(1, 1, 1)),
    ("tiny_conv3x3_16_28_b64_weight_grad", [(64, 16, 28, 28), (16, 16, 3, 3)], [False, True], conv(1, 1, 1)),
    ("tiny_conv3x3_128_4_b64", [(64, 128, 4, 4), (128, 128, 3, 3)], [True, True], conv(1, 1, 1)),
    ("tiny_conv3x3s2_16to32_28_b64", [(64, 16, 28, 28), (32, 16, 3, 3)], [True, True], conv(2, 1, 1)),
    ("tiny_stem3x3_1to16_28_b64", [(64, 1, 28, 28), (16, 1, 3, 3)], [False, True], conv(1, 1, 1)),
    ("bn_train_64_56_b16", [(16, 64, 56, 56), (64,), (64,)], [True, True, True], bn_train),
    ("tiny_bn_train_16_28_b64", [(64, 16, 28, 28), (16,), (16,)], [True, True, True], bn_train),
    ("relu_64_56_b16", [(16, 64, 56, 56)], [True], F.relu),
    ("maxpool3x3s2_64_112_b16", [(16, 64, 112, 112)], [True], lambda x: F.max_pool2d(x, 3, 2, 1)),
]


CLOCK = time.perf_counter


def best_ms(run, setup=lambda: None, warmup=2, min_runs=10, min_seconds=2.0):
    for _ in range(warmup):
        run(setup())
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        arg = setup()
        t0 = CLOCK()
        run(arg)
        times.append((CLOCK() - t0) * 1e3)
    return min(times)


def torch_times():
    torch.manual_seed(0)
    out = {}
    for case, shapes, grads, f in CASES:
        inputs = [torch.rand(s) * 2 - 1 for s in shapes]
        with torch.no_grad():
            fwd = best_ms(lambda _: f(*inputs))

        def graph():
            ts = [t.clone().requires_grad_(g) for t, g in zip(inputs, grads)]
            y = f(*ts)
            return y, torch.ones_like(y)

        bwd = best_ms(lambda yg: yg[0].backward(yg[1]), setup=graph)
        out[case] = {"fwd": fwd, "bwd": bwd}
    return out


def criterion_ms(root, case, phase, imp):
    path = os.path.join(root, case, f"{phase}-{imp}", "new", "sample.json")
    try:
        with open(path) as f:
            sample = json.load(f)
    except FileNotFoundError:
        return None
    return min(t / n for t, n in zip(sample["times"], sample["iters"])) / 1e6


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion", default="target/criterion", help="criterion's output folder")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time (use with --threads 1)")
    ap.add_argument("--json", help="also write the PyTorch timings here")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    times = torch_times()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "ms": times}, f, indent=1)
    print(f"PyTorch {torch.__version__}, {args.threads} threads, {args.clock} clock; fastest run in ms.\n")
    print("| case | phase | ours | candle | PyTorch | candle / ours | PyTorch / ours |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for case, *_ in CASES:
        for phase in ("fwd", "bwd"):
            ours = criterion_ms(args.criterion, case, phase, "ours")
            cand = criterion_ms(args.criterion, case, phase, "candle")
            pt = times[case][phase]
            r_c = cand / ours if ours and cand else None
            r_t = pt / ours if ours else None
            print(f"| {case} | {phase} | {fmt(ours)} | {fmt(cand)} | {fmt(pt)} | {fmt(r_c)} | {fmt(r_t)} |")


if __name__ == "__main__":
    main()
