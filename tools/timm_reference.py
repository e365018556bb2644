#!/usr/bin/env python3
"""Golden outputs of timm for the dptq-models parity tests.

For each of the paper's four architectures (timm `resnet18`, `resnet50`,
`mobilenetv4_conv_medium`, `regnetx_016`, built with num_classes=37) and dptq's small
variants `resnet_tiny` and `resnet_small` (timm BasicBlocks behind a 3x3 stride-1 stem,
`SmallResNet` below) this script

1. fills every state-dict tensor from a seeded generator that dptq-models implements
   bit for bit in Rust (`dptq_models::seeded`: SplitMix64 streams keyed by FNV-1a of
   the tensor name, scaled per tensor: BN running_var 0.5 + u, running_mean
   0.2 (2u - 1), norm weight 0.75 + 0.5 u, bias 0.1 (2u - 1), conv/linear weight
   sqrt(6 / fan_in) (2u - 1));
2. runs 2 seeded images (uniform in [-2, 2), 64 x 64 px) in eval mode, in float64:
   - `logits_fp`: full precision;
   - `logits_q`: SPEC §1 quantization: every Conv2d/Linear weight (stem included)
     symmetric per tensor at 16 bits, the input of every Conv2d/Linear but the stem
     asymmetric per example at seeded bits in 3..=10 (`bits` [N, L]), through forward
     pre-hooks;
   - `logits_q_half`: the same with only the first L // 2 layers' inputs quantized
     (the layer mask);
3. records every quantizable layer's name (execution order) and input shape.

Output: `fixtures/timm/parity_<arch>.safetensors` (tensors above, f64; `bits` u32... as
int64; metadata: `layers`, `in_shapes` as JSON, seed, px, versions). The Rust tests
regenerate weights, images and bits from the seed and compare.

Also `preprocess_input.png` (a smooth 61 x 47 image) and `preprocess.safetensors`: timm's
evaluation transform of it (PIL resize of the shorter side to floor(size / crop_pct),
center crop, normalise) for a bicubic and a bilinear case.

Usage: python3 tools/timm_reference.py [--out fixtures/timm]   (seed 20250101, fixed)
"""

import argparse
import json
import os

import numpy as np
import timm
import torch
from safetensors.torch import save_file

SEED = 20250101
PX = 64
BATCH = 2
NUM_CLASSES = 37
BITS_LO, BITS_HI = 3, 10
WEIGHT_BITS = 16
ARCHS = ["resnet18", "resnet50", "mobilenetv4_conv_medium", "regnetx_016", "resnet_tiny", "resnet_small"]

# dptq's small CPU variants: timm BasicBlocks behind a 3x3 stride-1 stem without max-pool,
# (blocks per stage, widths); module names as timm's ResNet.
SMALL_RESNETS = {
    "resnet_tiny": ((1, 1, 1), (16, 32, 64)),
    "resnet_small": ((1, 1, 1, 1), (16, 32, 64, 128)),
    "resnet_tiny_wide": ((2, 2, 2), (32, 64, 128)),
}


class SmallResNet(torch.nn.Module):
    """A dptq small ResNet in PyTorch, built from timm's BasicBlock."""

    def __init__(self, layers, widths, num_classes):
        super().__init__()
        from timm.models.resnet import BasicBlock

        nn = torch.nn
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        inplanes = widths[0]
        for i, (depth, width) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                downsample = None
                if stride != 1 or inplanes != width:
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, width, 1, stride, bias=False), nn.BatchNorm2d(width)
                    )
                blocks.append(BasicBlock(inplanes, width, stride=stride, downsample=downsample))
                inplanes = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(x.mean((2, 3)))


def create_model(arch: str, num_classes: int):
    """timm's model, or dptq's small variant in PyTorch."""
    if arch in SMALL_RESNETS:
        layers, widths = SMALL_RESNETS[arch]
        return SmallResNet(layers, widths, num_classes)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)

MASK64 = (1 << 64) - 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def fnv1a64(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK64
    return h


def uniforms(seed: int, name: str, n: int) -> np.ndarray:
    """n uniforms in [0, 1): SplitMix64 of (seed ^ fnv1a64(name)) + i * GOLDEN, i = 1.."""
    s = np.uint64(seed ^ fnv1a64(name))
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = s + i * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def seeded_value(name: str, shape, u: np.ndarray) -> np.ndarray:
    if name.endswith("running_var"):
        return 0.5 + u
    if name.endswith("running_mean"):
        return 0.2 * (2.0 * u - 1.0)
    if name.endswith("bias"):
        return 0.1 * (2.0 * u - 1.0)
    if len(shape) == 1:
        return 0.75 + 0.5 * u
    fan_in = int(np.prod(shape)) // shape[0]
    return np.sqrt(6.0 / fan_in) * (2.0 * u - 1.0)


def seeded_tensor(seed: int, name: str, shape) -> torch.Tensor:
    n = int(np.prod(shape)) if len(shape) else 1
    v = seeded_value(name, list(shape), uniforms(seed, name, n))
    return torch.from_numpy(v.reshape(shape))


def fake_quant_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """SPEC §1 symmetric per tensor."""
    qmax = 2 ** (bits - 1) - 1
    s = w.abs().max() / qmax
    if s == 0:
        return w
    q = torch.clamp(torch.round(w / s), -qmax, qmax)
    return s * q


def fake_quant_activation(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """SPEC §1 asymmetric per example; bits: [N] (0 = full precision)."""
    out = x.clone()
    for n in range(x.shape[0]):
        b = int(bits[n])
        if b == 0:
            continue
        xn = x[n]
        lo, hi = xn.min(), xn.max()
        qmax = 2.0**b - 1
        s = (hi - lo) / qmax
        if s == 0:
            continue
        z = torch.clamp(torch.round(-lo / s), 0, qmax)
        q = torch.clamp(torch.round(xn / s) + z, 0, qmax)
        out[n] = s * (q - z)
    return out


def quant_modules(model):
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return mods[0], mods[1:]  # (stem, the rest in registration = execution order)


def run(model, images, bits=None, layer_mask=None, record=None):
    """Forward with optional activation quantization through pre-hooks."""
    stem, layers = quant_modules(model)
    handles = []
    order = []
    for l, (name, mod) in enumerate(layers):

        def hook(mod, args, l=l, name=name):
            x = args[0]
            order.append(name)
            if record is not None:
                record.append(list(x.shape[1:]))
            if bits is None or (layer_mask is not None and not layer_mask[l]):
                return None
            return (fake_quant_activation(x, bits[:, l]),)

        handles.append(mod.register_forward_pre_hook(hook))
    with torch.no_grad():
        logits = model(images)
    for h in handles:
        h.remove()
    assert order == [n for n, _ in layers], "pre-hooks did not fire in registration order"
    return logits


# Preprocessing cases: (name, input_size, crop_pct, interpolation).
PREPROCESS_CASES = [("bicubic_32", 32, 0.875, "bicubic"), ("bilinear_40", 40, 0.95, "bilinear")]


def preprocess_reference(out_dir):
    """A smooth 61 x 47 RGB image and timm's eval transform of it (PIL resize + crop)."""
    from PIL import Image
    from timm.data import create_transform

    w, h = 61, 47
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack(
        [
            127.5 + 120 * np.sin(xx / 7.0) * np.cos(yy / 11.0),
            255.0 * xx / (w - 1),
            127.5 + 100 * np.cos((xx + yy) / 9.0),
        ],
        axis=-1,
    )
    img = Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB")
    img_path = os.path.join(out_dir, "preprocess_input.png")
    img.save(img_path)
    tensors, meta = {}, {"generator": "tools/timm_reference.py", "timm": timm.__version__}
    for name, size, crop_pct, interpolation in PREPROCESS_CASES:
        t = create_transform(
            input_size=(3, size, size), crop_pct=crop_pct, interpolation=interpolation,
            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        )
        tensors[name] = t(Image.open(img_path).convert("RGB")).contiguous()
        meta[name] = json.dumps({"size": size, "crop_pct": crop_pct, "interpolation": interpolation})
    path = os.path.join(out_dir, "preprocess.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"preprocessing: {len(tensors)} cases -> {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "timm"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    preprocess_reference(args.out)
    torch.set_default_dtype(torch.float64)
    images = torch.from_numpy((4.0 * uniforms(SEED, "images", BATCH * 3 * PX * PX) - 2.0).reshape(BATCH, 3, PX, PX))
    for arch in ARCHS:
        model = create_model(arch, NUM_CLASSES).double().eval()
        sd = model.state_dict()
        new_sd = {}
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                new_sd[k] = v
            else:
                new_sd[k] = seeded_tensor(SEED, k, tuple(v.shape)).to(v.dtype)
        model.load_state_dict(new_sd, strict=True)
        _, layers = quant_modules(model)
        num_layers = len(layers)

        shapes = []
        logits_fp = run(model, images, record=shapes)

        u = uniforms(SEED, "bits", BATCH * num_layers)
        bits = torch.from_numpy(
            (BITS_LO + np.minimum(np.floor(u * (BITS_HI - BITS_LO + 1)), BITS_HI - BITS_LO)).astype(np.int64)
        ).reshape(BATCH, num_layers)

        # 16-bit weights for every Conv2d and Linear (stem included).
        qmodel = create_model(arch, NUM_CLASSES).double().eval()
        qmodel.load_state_dict(new_sd, strict=True)
        with torch.no_grad():
            for _, m in qmodel.named_modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                    m.weight.copy_(fake_quant_weight(m.weight, WEIGHT_BITS))
        logits_q = run(qmodel, images, bits=bits)
        mask = [l < num_layers // 2 for l in range(num_layers)]
        logits_q_half = run(qmodel, images, bits=bits, layer_mask=mask)

        meta = {
            "arch": arch,
            "seed": str(SEED),
            "px": str(PX),
            "num_classes": str(NUM_CLASSES),
            "weight_bits": str(WEIGHT_BITS),
            "bits_range": f"{BITS_LO}..={BITS_HI}",
            "layers": json.dumps([n for n, _ in layers]),
            "in_shapes": json.dumps(shapes),
            "timm": timm.__version__,
            "torch": torch.__version__,
            "generator": "tools/timm_reference.py",
        }
        tensors = {
            "logits_fp": logits_fp.contiguous(),
            "logits_q": logits_q.contiguous(),
            "logits_q_half": logits_q_half.contiguous(),
            "bits": bits.contiguous(),
        }
        path = os.path.join(args.out, f"parity_{arch}.safetensors")
        save_file(tensors, path, metadata=meta)
        drift = (logits_q - logits_fp).abs().max().item()
        print(f"{arch}: L={num_layers} |logits|max={logits_fp.abs().max().item():.3g} "
              f"|q - fp|max={drift:.3g} -> {path}")


if __name__ == "__main__":
    main()
