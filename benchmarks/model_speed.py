"""Size and speed of UnrolledPeronaMalik: parameters, MACs per pixel, forward time per slice.

Prints a Markdown table: for each K, parameters, convolution MACs per pixel (torch's
FlopCounterMode, multiply-adds = FLOPs / 2), and the median forward time of one 256x256 slice on
the CPU (``--threads`` threads; eager, channels_last and torch.compile) and, when a GPU is
present, on the GPU in float32 and with bf16/fp16 autocast (AMP).

    python benchmarks/model_speed.py                 # K = 8 and 16, 256x256
    python benchmarks/model_speed.py --steps 8 --no-compile
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from nad_monai.networks import UnrolledPeronaMalik


def median_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after two warm-up runs."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def macs_per_pixel(net: torch.nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
    return counter.get_total_flops() / 2 / x[0, 0].numel()


def cpu_timings(net: torch.nn.Module, x: torch.Tensor, repeats: int, compile_model: bool) -> dict[str, float]:
    out = {}
    with torch.inference_mode():
        out["cpu eager"] = median_seconds(lambda: net(x), repeats)
        net_cl, x_cl = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
        out["cpu channels_last"] = median_seconds(lambda: net_cl(x_cl), repeats)
        net.to(memory_format=torch.contiguous_format)
    if compile_model:
        compiled = torch.compile(net)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
            print(f"  (torch.compile took {time.perf_counter() - start:.0f} s)", flush=True)
            out["cpu compiled"] = median_seconds(lambda: compiled(x), repeats)
    return out


def gpu_timings(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    net, x = net.cuda(), x.cuda()
    sync = torch.cuda.synchronize
    out = {}
    with torch.inference_mode():
        out["gpu fp32"] = median_seconds(lambda: net(x), repeats, sync)
        for dtype in (torch.bfloat16, torch.float16):
            with torch.autocast("cuda", dtype=dtype):
                out[f"gpu amp {str(dtype).split('.')[-1]}"] = median_seconds(lambda: net(x), repeats, sync)
    net.cpu()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16], help="values of K to measure")
    parser.add_argument("--size", type=int, default=256, help="slice side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per setting (median reported)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(1, 1, args.size, args.size)
    rows = []
    for steps in args.steps:
        print(f"measuring K = {steps} ...", flush=True)
        net = UnrolledPeronaMalik(steps=steps).eval()
        row = {
            "K": steps,
            "parameters": sum(p.numel() for p in net.parameters()),
            "MACs/pixel": round(macs_per_pixel(net, x)),
        }
        timings = cpu_timings(net, x, args.repeats, not args.no_compile)
        if torch.cuda.is_available():
            timings |= gpu_timings(net, x, args.repeats)
        row |= {f"{name} (ms/slice)": f"{seconds * 1000:.1f}" for name, seconds in timings.items()}
        rows.append(row)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"\nUnrolledPeronaMalik, {args.size}x{args.size} slice, batch 1, {args.threads} CPU threads, torch {torch.__version__}, {device}\n")
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")


if __name__ == "__main__":
    main()
