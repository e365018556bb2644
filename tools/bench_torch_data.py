#!/usr/bin/env python3
"""Loader throughput, dptq-data against torchvision + PIL, measured in the same run.

Writes a seeded synthetic set of Pets-sized JPEGs (500x375, quality 90, two classes) as
an ImageFolder under --dir, measures a torchvision DataLoader (2 workers, batch 32) over
it for three pipelines, then runs dptq-data's criterion bench on the very same files
(`cargo bench -p dptq-data --bench loader -- pets_jpeg_224`, with DPTQ_BENCH_JPEG_DIR),
measures torchvision once more, and prints images/s and the ratio dptq / torchvision.

Pipelines (224 px, ImageNet mean/std):
  crop_flip      RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize
  paper_augment  crop_flip + RandomCrop(224, padding=4) + RandAugment(2, 9)
                 + ColorJitter(0.4, 0.4, 0.4) (SPEC §6, mixup excluded: batch level)
  eval           Resize(256) + CenterCrop(224) + ToTensor + Normalize

Outputs: a Markdown table on stdout; nothing else is written outside --dir and
cargo's target/criterion.
Usage: python3 tools/bench_torch_data.py [--images 128] [--dir /tmp/dptq-bench-jpegs]
"""

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets, transforms

SEED = 0
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_jpegs(root: Path, n: int) -> None:
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:375, 0:500]
    for split in ("train", "test"):
        for i in range(n):
            d = root / split / f"c{i % 2}"
            d.mkdir(parents=True, exist_ok=True)
            fx, fy = rng.uniform(0.01, 0.05, 2)
            base = 128 + 60 * np.sin(x * fx) * np.cos(y * fy) + ((x * 7 + y * 13) % 17 - 8) * 3
            img = np.stack([base - 30, base, base + 30], -1).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:04}.jpg", quality=90)


def pipelines():
    tail = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    crop_flip = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
    return {
        "crop_flip": ("train", transforms.Compose(crop_flip + tail)),
        "paper_augment": (
            "train",
            transforms.Compose(
                crop_flip
                + [
                    transforms.RandomCrop(224, padding=4),
                    transforms.RandAugment(2, 9),
                    transforms.ColorJitter(0.4, 0.4, 0.4),
                ]
                + tail
            ),
        ),
        "eval": ("test", transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)] + tail)),
    }


def torch_rate(root: Path, split: str, transform, epochs: int) -> float:
    torch.manual_seed(SEED)
    ds = datasets.ImageFolder(str(root / split), transform=transform)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=32, shuffle=split == "train", num_workers=2, persistent_workers=True
    )
    for _ in loader:  # warm-up epoch: worker start-up, page cache
        pass
    t = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for images, _ in loader:
            n += images.shape[0]
    return n / (time.perf_counter() - t)


def rust_rates(root: Path, repo: Path) -> dict:
    env = dict(os.environ, DPTQ_BENCH_JPEG_DIR=str(root))
    subprocess.run(
        ["cargo", "bench", "-p", "dptq-data", "--bench", "loader", "--", "pets_jpeg_224"],
        cwd=repo,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    n = sum(1 for _ in (root / "train").rglob("*.jpg"))
    out = {}
    for name in pipelines():
        est = json.loads((repo / "target/criterion/pets_jpeg_224" / name / "new/estimates.json").read_text())
        out[name] = n / (est["mean"]["point_estimate"] / 1e9)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/dptq-bench-jpegs")
    args = parser.parse_args()
    root = Path(args.dir)
    repo = Path(__file__).resolve().parent.parent
    if not (root / "train").exists():
        write_jpegs(root, args.images)
    torch.set_num_threads(1)
    before = {k: torch_rate(root, s, t, args.epochs) for k, (s, t) in pipelines().items()}
    rust = rust_rates(root, repo)
    after = {k: torch_rate(root, s, t, args.epochs) for k, (s, t) in pipelines().items()}
    print(f"cores: {os.cpu_count()}, images: {args.images} JPEG 500x375 -> 224 px, batch 32")
    print("| pipeline | torchvision 2 workers (img/s) | dptq-data (img/s) | ratio |")
    print("|---|---|---|---|")
    for k in pipelines():
        base = (before[k] + after[k]) / 2
        print(f"| {k} | {base:.0f} ({before[k]:.0f} / {after[k]:.0f}) | {rust[k]:.0f} | {rust[k] / base:.2f}x |")


if __name__ == "__main__":
    main()
