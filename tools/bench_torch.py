#!/usr/bin/env python3
"""PyTorch/timm side of `dptq bench models`: one (arch, group) measurement as a JSON line.

Groups (the same work as dptq's):
- eval: two modes, iterations interleaved in this process:
  - fp: eval forward under torch.inference_mode;
  - q: the same with SPEC §1 fake quantization: every Conv2d/Linear weight symmetric per
    tensor at 16 bits (recomputed each forward, stem included) and the input of every
    Conv2d/Linear but the stem asymmetric per example at random bits 3..=10
    (vectorised forward pre-hooks);
- train: train-mode forward, cross-entropy, backward, plain SGD update (lr 0.01).

Prints a JSON list of {"arch", "mode", "seconds" (median per iteration), "img_per_s",
"forward_s", "backward_s", "peak_rss_mb"} on stdout. Seeded (torch.manual_seed(0));
writes no file.

Usage: python3 tools/bench_torch.py --arch resnet18 --mode eval [--batch 16 --px 224
       --iters 3 --threads 2]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timm_reference import create_model  # noqa: E402


def fq_weight(w, bits=16):
    qmax = 2 ** (bits - 1) - 1
    s = w.abs().max() / qmax
    return torch.where(s > 0, torch.clamp(torch.round(w / s.clamp_min(1e-30)), -qmax, qmax) * s, w)


def fq_act(x, bits):
    """Per-example asymmetric fake quantization; bits: [N] float tensor."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    lo = flat.amin(1, keepdim=True)
    hi = flat.amax(1, keepdim=True)
    qmax = (2.0 ** bits - 1).reshape(n, 1)
    s = (hi - lo) / qmax
    safe = torch.where(s > 0, s, torch.ones_like(s))
    z = torch.clamp(torch.round(-lo / safe), torch.zeros_like(qmax), qmax)
    q = torch.clamp(torch.round(flat / safe) + z, torch.zeros_like(qmax), qmax)
    out = torch.where(s > 0, safe * (q - z), flat)
    return out.reshape(x.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True)
    ap.add_argument("--mode", choices=["eval", "train"], required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--px", type=int, default=224)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.px, args.px)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # noqa: E731

    def result(mode, times, fwd=(), bwd=()):
        seconds = statistics.median(times)
        return {
            "arch": args.arch,
            "mode": mode,
            "seconds": seconds,
            "img_per_s": args.batch / seconds,
            "forward_s": statistics.median(fwd) if fwd else None,
            "backward_s": statistics.median(bwd) if bwd else None,
            "peak_rss_mb": rss(),
        }

    if args.mode == "eval":
        fp_model = create_model(args.arch, 1000).eval()
        q_model = create_model(args.arch, 1000).eval()
        q_model.load_state_dict(fp_model.state_dict())
        mods = [m for m in q_model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        originals = {m: m.weight.detach().clone() for m in mods}
        bits = torch.randint(3, 11, (args.batch, len(mods) - 1)).double()

        def weight_hook(mod, inputs):
            mod.weight.copy_(fq_weight(originals[mod]))

        for m in mods:
            m.register_forward_pre_hook(weight_hook)
        for l, m in enumerate(mods[1:]):
            m.register_forward_pre_hook(lambda mod, inputs, l=l: (fq_act(inputs[0], bits[:, l].to(inputs[0].dtype)),))
        times = {"fp": [], "q": []}
        with torch.inference_mode():
            for i in range(args.iters + 1):
                for mode, model in (("fp", fp_model), ("q", q_model)):
                    t = time.perf_counter()
                    model(x).sum().item()
                    if i > 0:
                        times[mode].append(time.perf_counter() - t)
        out = [result("fp", times["fp"]), result("q", times["q"])]
    else:
        model = create_model(args.arch, 1000).train()
        labels = torch.arange(args.batch) % 1000
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        times, fwd, bwd = [], [], []
        for i in range(args.iters + 1):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), labels)
            loss.item()
            t_fwd = time.perf_counter() - t
            loss.backward()
            t_bwd = time.perf_counter() - t - t_fwd
            opt.step()
            if i > 0:
                times.append(time.perf_counter() - t)
                fwd.append(t_fwd)
                bwd.append(t_bwd)
        out = [result("train", times, fwd, bwd)]
    print(json.dumps(out))

if __name__ == "__main__":
    main()
