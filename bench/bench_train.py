"""Training-step throughput (clips/s) and peak memory of swin-t and swin-b at 32x224x224.

Each configuration (architecture x gradient checkpointing) runs in its own subprocess, so its peak
memory is its own: `torch.cuda.max_memory_allocated` on CUDA, the process's peak RSS on CPU (model,
optimizer state and activations together). A step is the real one of `vswin train`: bf16 autocast
forward, cross-entropy, backward, AdamW with the recipe's parameter groups. Inputs are random tensors,
so decoding is not measured (see bench_tag.py / the decode benchmark for that).

    python bench/bench_train.py                       # CUDA if available, else a short CPU run
    python bench/bench_train.py --device cpu --batch-size 1 --steps 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def run_one(arch: str, grad_checkpointing: bool, batch_size: int, steps: int, warmup: int, device: str,
            precision: str, clip_len: int, size: int) -> dict:
    """Time `steps` training steps after `warmup` ones; returns clips/s and peak memory in GiB."""
    import torch
    import torch.nn.functional as F

    from models import VideoSwin, get_config
    from vswin_cli.precision import autocast
    from vswin_cli.train import param_groups

    torch.manual_seed(0)
    dev = torch.device(device)
    model = VideoSwin.from_config(get_config(arch)).to(dev)
    model.set_grad_checkpointing(grad_checkpointing)
    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, 1e-3, 0.05, 0.1), lr=1e-3)
    clips = torch.randn(batch_size, 3, clip_len, size, size, device=dev)
    labels = torch.randint(0, model.config.num_classes, (batch_size,), device=dev)

    def step():
        with autocast(dev, precision):
            logits = model(clips)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if dev.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
        memory = "cuda max_memory_allocated"
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
        memory = "peak RSS"
    return {"arch": arch, "grad_checkpointing": grad_checkpointing, "batch_size": batch_size, "steps": steps,
            "seconds": seconds, "clips_per_s": batch_size * steps / seconds, "peak_gib": peak_gib, "memory": memory,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["swin-t", "swin-b"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 on CUDA, 1 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 on CUDA, 2 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3 on CUDA, 1 on CPU)")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--clip-len", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    batch = args.batch_size or (8 if cuda else 1)
    steps = args.steps or (10 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)

    if args.one:
        arch, ckpt = args.one.split(":")
        print(json.dumps(run_one(arch, ckpt == "1", batch, steps, warmup, args.device, args.precision,
                                 args.clip_len, args.size)))
        return

    rows = []
    for arch in args.archs:
        for ckpt in (False, True):
            command = [sys.executable, __file__, "--one", f"{arch}:{int(ckpt)}", "--device", args.device,
                       "--batch-size", str(batch), "--steps", str(steps), "--warmup", str(warmup),
                       "--precision", args.precision, "--clip-len", str(args.clip_len), "--size", str(args.size)]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                tail = (out.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{arch} grad_checkpointing={ckpt}: failed: {tail}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"  done {arch} ckpt={ckpt}: {r['clips_per_s']:.3f} clips/s", file=sys.stderr, flush=True)

    if not rows:
        sys.exit("no configuration ran")
    first = rows[0]
    print(f"\ntraining step, {args.clip_len}x{args.size}x{args.size}, {args.precision}, batch {batch}, {steps} timed "
          f"steps after {warmup}; {first['device']} ({first['threads']} threads), torch {first['torch']}")
    print(f"{'arch':8} {'grad ckpt':>9} {'clips/s':>9} {'peak GiB':>9}  ({first['memory']})")
    for r in rows:
        print(f"{r['arch']:8} {str(r['grad_checkpointing']):>9} {r['clips_per_s']:9.3f} {r['peak_gib']:9.2f}")
    for arch in args.archs:
        pair = {r["grad_checkpointing"]: r for r in rows if r["arch"] == arch}
        if len(pair) == 2:
            print(f"{arch}: checkpointing speed x{pair[True]['clips_per_s'] / pair[False]['clips_per_s']:.2f}, "
                  f"peak memory x{pair[True]['peak_gib'] / pair[False]['peak_gib']:.2f}")


if __name__ == "__main__":
    main()
