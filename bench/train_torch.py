#!/usr/bin/python3
"""PyTorch side of bench_train: the same llama shape trained in F32 eager mode on the CPU
(forward, backward, clip_grad_norm_, AdamW), in tokens/s.

Run with Debian's torch and OpenBLAS told the CPU type, as bench/bench_train is:
  OPENBLAS_CORETYPE=Cooperlake /usr/bin/python3 bench/train_torch.py --threads 2
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def rope_tables(T, hd, base=10000.0):
    inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]


def rope(x, c, s):  # adjacent pairs (2i, 2i+1), as llama GGUF files need
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Llama(torch.nn.Module):
    def __init__(self, V, E, L, H, Hk, Fd):
        super().__init__()
        self.H, self.Hk, self.hd = H, Hk, E // H
        self.emb = torch.nn.Embedding(V, E)
        self.layers = torch.nn.ModuleList()
        for _ in range(L):
            m = torch.nn.Module()
            m.an = torch.nn.Parameter(torch.ones(E))
            m.q = torch.nn.Linear(E, H * self.hd, bias=False)
            m.k = torch.nn.Linear(E, Hk * self.hd, bias=False)
            m.v = torch.nn.Linear(E, Hk * self.hd, bias=False)
            m.o = torch.nn.Linear(H * self.hd, E, bias=False)
            m.fn = torch.nn.Parameter(torch.ones(E))
            m.g = torch.nn.Linear(E, Fd, bias=False)
            m.u = torch.nn.Linear(E, Fd, bias=False)
            m.d = torch.nn.Linear(Fd, E, bias=False)
            self.layers.append(m)
        self.on = torch.nn.Parameter(torch.ones(E))
        self.out = torch.nn.Linear(E, V, bias=False)

    @staticmethod
    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def forward(self, tok, tgt, c, s, mask):
        B, T = tok.shape
        x = self.emb(tok)
        for m in self.layers:
            h = self.norm(x, m.an)
            q = rope(m.q(h).view(B, T, self.H, self.hd), c, s).transpose(1, 2)
            k = rope(m.k(h).view(B, T, self.Hk, self.hd), c, s).transpose(1, 2)
            v = m.v(h).view(B, T, self.Hk, self.hd).transpose(1, 2)
            if self.Hk != self.H:
                k = k.repeat_interleave(self.H // self.Hk, dim=1)
                v = v.repeat_interleave(self.H // self.Hk, dim=1)
            a = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
            a = torch.softmax(a.masked_fill(mask, float("-inf")), -1) @ v
            x = x + m.o(a.transpose(1, 2).reshape(B, T, -1))
            h = self.norm(x, m.fn)
            x = x + m.d(F.silu(m.g(h)) * m.u(h))
        logits = self.out(self.norm(x, self.on))
        return F.cross_entropy(logits.view(B * T, -1), tgt.view(-1))


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(dim=288, layers=6, heads=6, kv_heads=0, ffn=768, vocab=4096, seq=256,
                     batch=8, threads=2, steps=5, warmup=1).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    Hk = a.kv_heads or a.heads
    model = Llama(a.vocab, a.dim, a.layers, a.heads, Hk, a.ffn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tok = torch.randint(0, a.vocab, (a.batch, a.seq))
    tgt = torch.randint(0, a.vocab, (a.batch, a.seq))
    c, s = rope_tables(a.seq, a.dim // a.heads)
    mask = torch.triu(torch.ones(a.seq, a.seq, dtype=torch.bool), 1)
    n = a.batch * a.seq
    times, cpu = [], []
    for it in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = model(tok, tgt, c, s, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if it >= a.warmup:
            times.append(dt)
            cpu.append(dc)
            print("step %d: %.3f s, %.0f tokens/s, loss %.4f" % (it - a.warmup, dt, n / dt,
                                                                   loss.item()))
    tps = n * len(times) / sum(times)
    print("torch %s: %.0f tokens/s (mean of %d steps; best %.0f), %d threads, "
          "%.0f tokens per CPU second" % (torch.__version__, tps, len(times), n / min(times),
                                          a.threads, n * len(cpu) / sum(cpu)))


if __name__ == "__main__":
    main()
