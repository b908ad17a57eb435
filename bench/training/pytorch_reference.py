#!/usr/bin/env python3
"""PyTorch CPU reference for bench_training: the same models (recipes/mlp.pbtxt,
recipes/cnn.pbtxt), batch sizes, optimiser (Adam, lr 1e-3) and thread count,
on random data of Fashion-MNIST's shape (throughput does not depend on values).
Prints a table and one JSON line per result, like bench_training, so the two can
be compared as a ratio measured in one run (see bench/training/compare.sh).

Optional: needs `pip install torch` (CPU wheel). Exits 0 with a note when absent.

--device cuda: the same models on the GPU against bench_training_cuda (see
bench/training/compare_pytorch_cuda.sh): default batches 32 64 128 256, 200 timed
steps after 20 warm-ups; each step uploads its batch from a pinned host tensor with
.to(device, non_blocking=True), as bench_training_cuda (and the trainer) does with
backend.CopyFromHostAsync from page-locked memory; the clock is read after torch.cuda.synchronize(); peak device memory is
torch.cuda.max_memory_allocated() (the caching allocator's peak of bytes in use,
like memory_stats() on our side), reset per configuration. fp32 by default: TF32 is
switched off for matmuls AND cuDNN convolutions (PyTorch allows it for convolutions
by default; our cuDNN path never uses it); --tf32 allows both. The data is learnable
(a class-dependent brightness ramp plus noise) like bench_training_cuda's. JSON lines
add "device", "tf32", "params" (compare_pytorch_cuda.sh checks both sides train the
same network), "peak_device_mib", "peak_reserved_mib" and "last_loss". Without torch or
without a usable CUDA device: a message and exit 2.
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
    p.add_argument("-b", "--batches", nargs="+", type=int, default=None,
                   help="default 32 64 128 (cpu), 32 64 128 256 (cuda)")
    p.add_argument("-n", "--steps", type=int, default=None, help="default 40 (cpu), 200 (cuda)")
    p.add_argument("-w", "--warmup", type=int, default=None, help="default 5 (cpu), 20 (cuda)")
    p.add_argument("-t", "--threads", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--tf32", action="store_true", help="cuda: allow TF32 in matmuls and convolutions")
    args = p.parse_args()
    cuda = args.device == "cuda"
    if args.batches is None:
        args.batches = [32, 64, 128, 256] if cuda else [32, 64, 128]
    if args.steps is None:
        args.steps = 200 if cuda else 40
    if args.warmup is None:
        args.warmup = 20 if cuda else 5
    try:
        import torch
    except ImportError:
        if cuda:
            print("pytorch_reference.py: no usable CUDA device: torch is not installed", file=sys.stderr)
            return 2
        print("# torch is not installed: pip install torch (CPU) to run the reference", file=sys.stderr)
        return 0
    if cuda:
        return run_cuda(torch, args)
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


def learnable_batches(torch, batches, batch):
    """`batches` host batches like bench_training_cuda's: a per-class brightness ramp
    over the columns plus uniform noise; NCHW (28x28x1: the same bytes as NHWC)."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (batches, batch), generator=g)
    ramp = torch.arange(28, dtype=torch.float32) / 28
    x = 0.08 * y.float()[:, :, None, None, None] * ramp + 0.2 * torch.rand(batches, batch, 1, 28, 28, generator=g)
    return x.contiguous(), y


def run_cuda(torch, args):
    import warnings
    if not torch.cuda.is_available():
        print(f"pytorch_reference.py: no usable CUDA device: torch {torch.__version__} (CUDA build "
              f"{torch.version.cuda}) reports torch.cuda.is_available() == False", file=sys.stderr)
        return 2
    if args.steps < 1 or args.warmup < 0:
        print("pytorch_reference.py: --steps must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 1
    dev = torch.device("cuda", 0)
    with warnings.catch_warnings():  # newer releases prefer fp32_precision; these still work
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(0)
    host_batches = 8  # cycled, as bench_training_cuda does
    print(f"# PyTorch {torch.__version__} eager on {torch.cuda.get_device_name(dev)}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}; tf32 {'on' if args.tf32 else 'off'}; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(f"{'model':<8} {'batch':>6} {'samples/s':>12} {'ms/step':>10} {'peak_MiB':>10}")
    print(f"{'':<8} {'':>6} {'':>12} {'':>10} {'(device)':>10}")
    rows = []
    for name in args.models:
        for batch in args.batches:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            model = build(torch, name).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
            loss_fn = torch.nn.CrossEntropyLoss()
            # Pinned host tensors (labels int64, as CrossEntropyLoss wants them).
            hx, hy = learnable_batches(torch, host_batches, batch)
            hx = [t.pin_memory() for t in hx]
            hy = [t.pin_memory() for t in hy]
            steps_done = [0]

            def step():
                i = steps_done[0] % host_batches
                steps_done[0] += 1
                x = hx[i].to(dev, non_blocking=True)
                y = hy[i].to(dev, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                return loss

            for _ in range(args.warmup):
                step()
            torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                loss = step()
            torch.cuda.synchronize(dev)
            dt = time.perf_counter() - t0
            last_loss = float(loss.item())
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            reserved = torch.cuda.max_memory_reserved(dev) / 2**20
            sps = batch * args.steps / dt
            print(f"{name:<8} {batch:>6} {sps:>12.0f} {dt / args.steps * 1e3:>10.3f} {peak:>10.1f}", flush=True)
            rows.append({"bench": "training_pytorch", "model": name, "batch": batch, "device": "cuda",
                         "tf32": args.tf32, "params": sum(p.numel() for p in model.parameters()),
                         "samples_per_sec": round(sps, 1),
                         "ms_per_step": round(dt / args.steps * 1e3, 4), "peak_device_mib": round(peak, 2),
                         "peak_reserved_mib": round(reserved, 2), "last_loss": round(last_loss, 4)})
            del model, opt, hx, hy, loss
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
