#!/usr/bin/python3
"""Independent PyTorch reference for anneal's trainer (tests/unit/test_train_ref.c).

A tiny llama (GQA, untied output) written from the equations in float64: RMSNorm, RoPE
rotating adjacent pairs (2i, 2i+1) as llama GGUF files need, causal attention where query
head h reads kv head h // (n_head / n_head_kv), SwiGLU, cross-entropy. Writes fixtures so
CI does not need torch:

  fixtures/train_tiny.json  the shape, hyper-parameters, loss of one batch, the 10-step
                            loss and gradient-norm trace
  fixtures/train_tiny.bin   little-endian: initial params (float32, in the order of
                            anneal_train_model's list, no padding), the gradient of the
                            mean loss for batch 0 (float32, same order), then int32 tokens
                            and targets of batch 0, then of the trace's micro-batches.

Run with Debian's torch: /usr/bin/python3 tests/reference/train_ref.py
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

CFG = dict(n_vocab=48, n_embd=16, n_layer=2, n_head=4, n_head_kv=2, n_ff=32, norm_eps=1e-5,
           rope_base=10000.0, n_batch=2, n_seq=8)
HP = dict(steps=10, accum=2, lr=1e-2, min_lr=1e-3, warmup=3, beta1=0.9, beta2=0.95, eps=1e-8,
          weight_decay=0.1, clip=1.0)


def param_shapes(c):
    """(name, [n_out, n_in] or [n]) in anneal's order (as `anneal init` writes them)."""
    E, F, V = c["n_embd"], c["n_ff"], c["n_vocab"]
    hd = E // c["n_head"]
    Q, K = c["n_head"] * hd, c["n_head_kv"] * hd
    out = [("token_embd.weight", [V, E])]
    for l in range(c["n_layer"]):
        b = f"blk.{l}."
        out += [(b + "attn_norm.weight", [E]), (b + "attn_q.weight", [Q, E]),
                (b + "attn_k.weight", [K, E]), (b + "attn_v.weight", [K, E]),
                (b + "attn_output.weight", [E, Q]), (b + "ffn_norm.weight", [E]),
                (b + "ffn_gate.weight", [F, E]), (b + "ffn_up.weight", [F, E]),
                (b + "ffn_down.weight", [E, F])]
    out += [("output_norm.weight", [E]), ("output.weight", [V, E])]
    return out


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, base):
    # x: [B, T, H, hd]; pairs (2i, 2i+1) rotated by pos * base^(-2i/hd)
    B, T, H, hd = x.shape
    inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # [T, hd/2]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y = torch.empty_like(x)
    y[..., 0::2] = x0 * c - x1 * s
    y[..., 1::2] = x0 * s + x1 * c
    return y


def forward(p, tokens, targets, c):
    B, T = tokens.shape
    E, H, Hk = c["n_embd"], c["n_head"], c["n_head_kv"]
    hd = E // H
    x = p["token_embd.weight"][tokens]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(c["n_layer"]):
        b = f"blk.{l}."
        xn = rmsnorm(x, p[b + "attn_norm.weight"], c["norm_eps"])
        q = (xn @ p[b + "attn_q.weight"].T).view(B, T, H, hd)
        k = (xn @ p[b + "attn_k.weight"].T).view(B, T, Hk, hd)
        v = (xn @ p[b + "attn_v.weight"].T).view(B, T, Hk, hd)
        q, k = rope(q, c["rope_base"]), rope(k, c["rope_base"])
        rep = H // Hk
        k = k.repeat_interleave(rep, dim=2)  # query head h -> kv head h // rep
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, hd]
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(mask, float("-inf"))
        a = torch.softmax(s, -1) @ v
        a = a.transpose(1, 2).reshape(B, T, H * hd)
        x = x + a @ p[b + "attn_output.weight"].T
        xn = rmsnorm(x, p[b + "ffn_norm.weight"], c["norm_eps"])
        h = torch.nn.functional.silu(xn @ p[b + "ffn_gate.weight"].T) * (xn @ p[b + "ffn_up.weight"].T)
        x = x + h @ p[b + "ffn_down.weight"].T
    x = rmsnorm(x, p["output_norm.weight"], c["norm_eps"])
    logits = x @ p["output.weight"].T
    return torch.nn.functional.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))


def lr_at(step):
    if step < HP["warmup"]:
        return HP["lr"] * (step + 1) / HP["warmup"]
    if step >= HP["steps"]:
        return HP["min_lr"]
    pr = (step - HP["warmup"]) / (HP["steps"] - HP["warmup"])
    return HP["min_lr"] + 0.5 * (HP["lr"] - HP["min_lr"]) * (1 + math.cos(math.pi * pr))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = os.path.join(here, "fixtures")
    os.makedirs(outdir, exist_ok=True)
    rs = np.random.RandomState(20261129)
    shapes = param_shapes(CFG)
    init = {}
    for name, shp in shapes:
        if len(shp) == 1:
            a = 1.0 + 0.1 * rs.standard_normal(shp)
        else:
            a = 0.3 * rs.standard_normal(shp)
        init[name] = a.astype(np.float32)
    B, T, V = CFG["n_batch"], CFG["n_seq"], CFG["n_vocab"]
    n_micro = HP["steps"] * HP["accum"]
    # Learnable data: each sequence follows t -> (5 t + 3) mod V from a random start, so the
    # trace goes down.
    seqs = np.zeros((1 + n_micro, B, T + 1), dtype=np.int32)
    seqs[:, :, 0] = rs.randint(0, V, size=(1 + n_micro, B))
    for j in range(1, T + 1):
        seqs[:, :, j] = (5 * seqs[:, :, j - 1] + 3) % V
    toks, tgts = seqs[:, :, :-1], seqs[:, :, 1:]

    # Loss and gradient of batch 0.
    p = {n: torch.tensor(init[n].astype(np.float64), requires_grad=True) for n, _ in shapes}
    loss0 = forward(p, torch.tensor(toks[0], dtype=torch.long),
                    torch.tensor(tgts[0], dtype=torch.long), CFG)
    loss0.backward()
    grads = {n: p[n].grad.detach().numpy().astype(np.float32) for n, _ in shapes}

    # 10 steps: AdamW (decay on matrices only), warmup + cosine, clipping, accumulation.
    p = {n: torch.tensor(init[n].astype(np.float64), requires_grad=True) for n, _ in shapes}
    decay = [p[n] for n, s in shapes if len(s) == 2]
    nodecay = [p[n] for n, s in shapes if len(s) == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["weight_decay"]},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    trace, norms = [], []
    for step in range(HP["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad()
        total = 0.0
        for a in range(HP["accum"]):
            i = 1 + step * HP["accum"] + a
            l = forward(p, torch.tensor(toks[i], dtype=torch.long),
                        torch.tensor(tgts[i], dtype=torch.long), CFG)
            (l / HP["accum"]).backward()
            total += l.item() / HP["accum"]
        n = torch.nn.utils.clip_grad_norm_([p[n] for n, _ in shapes], HP["clip"])
        opt.step()
        trace.append(total)
        norms.append(float(n))

    with open(os.path.join(outdir, "train_tiny.bin"), "wb") as f:
        for n, _ in shapes:
            f.write(init[n].astype("<f4").tobytes())
        for n, _ in shapes:
            f.write(grads[n].astype("<f4").tobytes())
        f.write(toks.astype("<i4").tobytes())
        f.write(tgts.astype("<i4").tobytes())
    meta = dict(config=CFG, hparams=HP, n_params=int(sum(np.prod(s) for _, s in shapes)),
                n_micro=n_micro, loss0=loss0.item(), trace=trace, grad_norms=norms,
                torch=torch.__version__)
    with open(os.path.join(outdir, "train_tiny.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("loss0 %.9f trace %s" % (loss0.item(), " ".join("%.6f" % t for t in trace)))


if __name__ == "__main__":
    sys.exit(main())
