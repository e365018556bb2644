"""Writes losses.json and optimizers.json, the PyTorch references of dptq-distill's
loss and optimizer tests. Seeded; run from this directory with `python3 make_golden.py`.
"""
import json

import torch
import torch.nn.functional as F

torch.manual_seed(19551105)
out = {}

teacher = torch.randn(4, 5, dtype=torch.float64) * 2
student = torch.randn(4, 5, dtype=torch.float64) * 2


def kd(t, s, T):
    return T * T * F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1),
                            reduction="batchmean", log_target=True)


for T in (1.0, 2.5):
    s = student.clone().requires_grad_(True)
    loss = kd(teacher, s, T)
    loss.backward()
    out[f"kd_T{T}"] = {"loss": loss.item(), "grad": s.grad.tolist()}


def hinge(kind, t, s, m):
    p = F.softmax(s, -1)
    top = t.topk(2, -1).indices
    y1, y2 = top[:, 0], top[:, 1]
    py1 = p.gather(1, y1[:, None])[:, 0]
    if kind == "robust":
        diff = py1 - p.gather(1, y2[:, None])[:, 0]
    else:
        masked = s.detach().clone()
        masked.scatter_(1, y1[:, None], float("-inf"))
        yq = masked.argmax(-1)
        diff = p.gather(1, yq[:, None])[:, 0] - py1
    return torch.clamp(m - diff, min=0).mean()


# A margin large enough that every example is inside it, and one where some are not.
for kind in ("robust", "detrimental"):
    for m in (0.1, 2.0):
        s = student.clone().requires_grad_(True)
        loss = hinge(kind, teacher, s, m)
        loss.backward()
        out[f"{kind}_m{m}"] = {"loss": loss.item(), "grad": s.grad.tolist()}

labels = torch.tensor([0, 3, 4, 1])
for eps in (0.0, 0.1):
    s = student.clone().requires_grad_(True)
    loss = F.cross_entropy(s, labels, label_smoothing=eps)
    loss.backward()
    out[f"ce_ls{eps}"] = {"loss": loss.item(), "grad": s.grad.tolist()}

out["teacher"] = teacher.tolist()
out["student"] = student.tolist()
out["labels"] = labels.tolist()
with open("losses.json", "w") as f:
    json.dump(out, f, indent=1)

# Optimizers: three steps with fixed gradients on a weight [2, 3] and a bias [3];
# a "running_mean" buffer has no gradient and must not move.
torch.manual_seed(7)
w0 = torch.randn(2, 3)
b0 = torch.randn(3)
grads = [(torch.randn(2, 3), torch.randn(3)) for _ in range(3)]
lrs = [0.1, 0.05, 0.02]
opt_out = {"w0": w0.tolist(), "b0": b0.tolist(), "lrs": lrs,
           "grads": [[g.tolist(), h.tolist()] for g, h in grads]}
for name, make in (
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4)),
    ("adamw", lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)),
):
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = make([w, b])
    traj = []
    for (gw, gb), lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        w.grad = gw.clone()
        b.grad = gb.clone()
        opt.step()
        traj.append([w.detach().tolist(), b.detach().tolist()])
    opt_out[name] = traj
with open("optimizers.json", "w") as f:
    json.dump(opt_out, f, indent=1)
