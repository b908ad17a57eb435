#!/usr/bin/env python3
"""PyTorch CPU reference for bench_training: the same models (recipes/mlp.pbtxt,
recipes/cnn.pbtxt), batch sizes, optimiser (Adam, lr 1e-3) and thread count,
on random data of Fashion-MNIST's shape (throughput does not depend on values).
Prints a table and one JSON line per result, like bench_training, so the two can
be compared as a ratio measured in one run (see bench/training/compare.sh).

Optional: needs `pip install torch` (CPU wheel). Exits 0 with a note when absent.
"""
import argparse
import json
import sys
import time


def build(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "mlp-deep":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                             nn.Linear(64, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
    raise SystemExit(f"unknown model {name}")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-m", "--models", nargs="+", default=["mlp", "cnn"])
    p.add_argument("-b", "--batches", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("-n", "--steps", type=int, default=40)
    p.add_argument("-w", "--warmup", type=int, default=5)
    p.add_argument("-t", "--threads", type=int, default=0)
    args = p.parse_args()
    try:
        import torch
    except ImportError:
        print("# torch is not installed: pip install torch (CPU) to run the reference", file=sys.stderr)
        return 0
    import os
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"# PyTorch {torch.__version__}, {threads} thread(s)")
    print(f"{'model':<8} {'batch':>6} {'samples/s':>12} {'ms/step':>10}")
    rows = []
    for name in args.models:
        for batch in args.batches:
            model = build(torch, name)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
            loss_fn = torch.nn.CrossEntropyLoss()
            x = torch.rand(batch, 1, 28, 28)
            y = torch.randint(0, 10, (batch,))

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()

            for _ in range(args.warmup):
                step()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            dt = time.perf_counter() - t0
            sps = batch * args.steps / dt
            print(f"{name:<8} {batch:>6} {sps:>12.0f} {dt / args.steps * 1e3:>10.2f}")
            rows.append({"bench": "training_pytorch", "model": name, "batch": batch, "threads": threads,
                         "samples_per_sec": round(sps, 1), "ms_per_step": round(dt / args.steps * 1e3, 3)})
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
