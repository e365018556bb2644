#!/usr/bin/env python3
"""Write the class-balanced Fashion-MNIST subset embedded by dptq-data.

Reads the official IDX files (Debian package `dataset-fashion-mnist`, installed under
/usr/share/datasets/fashion-mnist) and writes, with a fixed seed:

  fixtures/fashion-mnist/train-images-idx3-ubyte.gz   10,000 images (1,000 per class)
  fixtures/fashion-mnist/train-labels-idx1-ubyte.gz
  fixtures/fashion-mnist/t10k-images-idx3-ubyte.gz     5,000 images (500 per class)
  fixtures/fashion-mnist/t10k-labels-idx1-ubyte.gz

Sampling: for each class, a uniformly random subset (numpy default_rng(20240611))
of that class's images in the official split, kept in the original file order.
Usage: python3 tools/make_fashion_subset.py [--src DIR] [--out DIR]
"""

import argparse
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

SEED = 20240611
PER_CLASS = {"train": 1000, "t10k": 500}


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, f"{path}: not a u8 IDX file"
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    # mtime=0 and a fixed file name in the header: the output is byte-for-byte reproducible.
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(header + array.astype(np.uint8).tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "fixtures/fashion-mnist"))
    args = parser.parse_args()
    src, out = Path(args.src), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for split, per_class in PER_CLASS.items():
        images = read_idx(src / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(src / f"{split}-labels-idx1-ubyte.gz")
        keep = []
        for c in range(10):
            members = np.flatnonzero(labels == c)
            keep.append(rng.choice(members, size=per_class, replace=False))
        keep = np.sort(np.concatenate(keep))
        write_idx(out / f"{split}-images-idx3-ubyte.gz", images[keep])
        write_idx(out / f"{split}-labels-idx1-ubyte.gz", labels[keep])
        counts = np.bincount(labels[keep], minlength=10)
        print(f"{split}: {len(keep)} images, per class {counts.tolist()}")
    for f in sorted(out.glob("*.gz")):
        print(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}")


if __name__ == "__main__":
    main()
