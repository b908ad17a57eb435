#!/usr/bin/env python3
"""PyTorch CPU reference for bench_lm: the two character-level language models of
recipes/charlm-lstm.pbtxt and recipes/charlm-transformer.pbtxt with the same
vocabulary size, batch (32), sequence length (64), optimiser (Adam / AdamW,
lr 2e-3, global-norm clipping 1.0) and thread count, trained on random windows of
the corpus (throughput does not depend on which windows). Prints a table and one
JSON line per model with tokens_per_sec = steps x batch x seq_len / time, so that
bench/lm/run_lm_bench.sh can report lockstep/PyTorch ratios measured in one run.

The vocabulary is the distinct code points of the corpus read as lockstep reads
it (regular files of the folder in name order; hidden files, symbolic links,
subfolders and `X.dat` next to `X` skipped), or --vocab when given.

Optional: needs `pip install torch` (CPU wheel). Exits 0 with a note when absent.
"""
import argparse
import json
import os
import sys
import time

DEFAULT_CORPUS = "/usr/share/games/fortunes"


def read_corpus(path):
    """The corpus text as TextDataset::Load concatenates it."""
    if os.path.isfile(path):
        files = [path]
    else:
        names = sorted(os.listdir(path))
        present = set(names)
        files = []
        for n in names:
            full = os.path.join(path, n)
            if n.startswith(".") or os.path.islink(full) or not os.path.isfile(full):
                continue
            if n.endswith(".dat") and n[:-4] in present:
                continue
            files.append(full)
    return "".join(open(f, "rb").read().decode("utf-8") for f in files)


def build(torch, name, vocab, seq_len):
    nn = torch.nn
    if name == "charlm-lstm":
        class Lstm(nn.Module):  # Embedding 64 -> LSTM 256 (whole sequence) -> Linear vocab
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(vocab, 64)
                self.lstm = nn.LSTM(64, 256, batch_first=True)
                self.head = nn.Linear(256, vocab)

            def forward(self, x):  # (B, T) -> (B, T, V)
                h, _ = self.lstm(self.embed(x))
                return self.head(h)
        return Lstm()
    if name == "charlm-transformer":
        class Transformer(nn.Module):  # 128-d tokens + learned positions, 2 pre-LN blocks
            def __init__(self):
                super().__init__()
                d = 128
                self.embed = nn.Embedding(vocab, d)
                self.pos = nn.Parameter(torch.zeros(seq_len, d))
                self.blocks = nn.ModuleList(
                    nn.TransformerEncoderLayer(d, 4, dim_feedforward=4 * d, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True) for _ in range(2))
                self.norm = nn.LayerNorm(d)
                self.head = nn.Linear(d, vocab)
                self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq_len))

            def forward(self, x):  # (B, T) -> (B, T, V)
                h = self.embed(x) + self.pos[: x.shape[1]]
                for b in self.blocks:
                    h = b(h, src_mask=self.mask, is_causal=True)
                return self.head(self.norm(h))
        return Transformer()
    raise SystemExit(f"unknown model {name}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--models", nargs="+", default=["charlm-lstm", "charlm-transformer"])
    p.add_argument("-n", "--steps", type=int, default=20, help="timed steps per model")
    p.add_argument("-w", "--warmup", type=int, default=3, help="untimed warm-up steps")
    p.add_argument("-t", "--threads", type=int, default=0, help="torch.set_num_threads (0 = all cores)")
    p.add_argument("-b", "--batch", type=int, default=32)
    p.add_argument("-s", "--seq-len", type=int, default=64)
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help="text file or folder (vocabulary and windows)")
    p.add_argument("--vocab", type=int, default=0, help="vocabulary size (0 = from the corpus)")
    args = p.parse_args()
    try:
        import torch
    except ImportError:
        print("# torch is not installed: pip install torch (CPU) to run the reference", file=sys.stderr)
        return 0
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    text = read_corpus(args.corpus) if os.path.exists(args.corpus) else ""
    if args.vocab:
        vocab = args.vocab
    elif text:
        vocab = len(set(text))
    else:
        raise SystemExit(f"corpus {args.corpus} not found: pass --corpus or --vocab")
    if text:
        ids = {c: i for i, c in enumerate(sorted(set(text)))}
        tokens = torch.tensor([ids[c] % vocab for c in text], dtype=torch.long)
    else:
        tokens = torch.randint(0, vocab, (1 << 20,))
    B, T = args.batch, args.seq_len

    print(f"# PyTorch {torch.__version__}, {threads} thread(s), vocab {vocab}, batch {B}, seq_len {T}")
    print(f"{'model':<20} {'threads':>7} {'params':>9} {'tokens/s':>12} {'ms/step':>10}")
    rows = []
    for name in args.models:
        model = build(torch, name, vocab, T)
        params = sum(q.numel() for q in model.parameters())
        if name == "charlm-transformer":
            opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(1)

        def step():
            starts = torch.randint(0, tokens.numel() - T - 1, (B,), generator=gen)
            window = tokens[starts[:, None] + torch.arange(T + 1)]  # (B, T + 1)
            x, y = window[:, :-1], window[:, 1:]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x).reshape(B * T, vocab), y.reshape(B * T))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        for _ in range(args.warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        dt = time.perf_counter() - t0
        tps = args.steps * B * T / dt
        ms = dt / args.steps * 1e3
        print(f"{name:<20} {threads:>7} {params:>9} {tps:>12.0f} {ms:>10.2f}", flush=True)
        rows.append({"bench": "lm_pytorch", "model": name, "threads": threads, "params": params, "vocab": vocab,
                     "global_batch": B, "seq_len": T, "steps": args.steps, "tokens_per_sec": round(tps, 1),
                     "ms_per_step": round(ms, 3), "torch": torch.__version__})
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
