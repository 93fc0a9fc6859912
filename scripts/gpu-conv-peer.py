#!/usr/bin/env python3
"""cuDNN peer timings for bench_conv() (native/tests/gpu_check_conv.cuh).

PyTorch on the GPU machine: torch.backends.cudnn.benchmark = True, channels_last, bfloat16, batch 32,
the same shapes and passes as Cortado's bench_conv (forward, backward-data, backward-weight), timed
with CUDA events: 5 warm-ups, median of 20 runs. Prints the same markdown table columns so the cuDNN
numbers can be pasted next to Cortado's. FLOPs per pass: 2*N*K*(C/g)*kh*kw*oh*ow.

Usage: python3 scripts/gpu-conv-peer.py [--dtype bf16|f16|f32] [--runs 20]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F

SHAPES = [
    # name, N, C, K, groups, H(=W), kernel, stride, padding
    ("64->64 3x3 @56", 32, 64, 64, 1, 56, 3, 1, 1),
    ("128->128 3x3 @28", 32, 128, 128, 1, 28, 3, 1, 1),
    ("256->256 3x3 @14", 32, 256, 256, 1, 14, 3, 1, 1),
    ("64->256 1x1 @56", 32, 64, 256, 1, 56, 1, 1, 0),
    ("3->64 7x7 s2 @224", 32, 3, 64, 1, 224, 7, 2, 3),
    ("dw 128 3x3 @56", 32, 128, 128, 128, 56, 3, 1, 1),
]


def time_ms(fn, runs, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.dtype]
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print(f"### cuDNN peer: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"cuDNN {torch.backends.cudnn.version()}, {args.dtype}, channels_last, batch 32\n")
    print("| shape | pass | cortado ms | cortado TFLOP/s | cuDNN ms | cuDNN TFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name, n, c, k, g, hw, ks, s, p in SHAPES:
        x = torch.randn(n, c, hw, hw, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        w = torch.randn(k, c // g, ks, ks, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        y = F.conv2d(x, w, stride=s, padding=p, groups=g)
        dy = torch.randn_like(y).contiguous(memory_format=torch.channels_last)
        oh, ow = y.shape[2], y.shape[3]
        flops = 2.0 * n * k * (c // g) * ks * ks * oh * ow
        passes = [
            ("forward", lambda: F.conv2d(x, w, stride=s, padding=p, groups=g)),
            ("backward-data", lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, stride=s, padding=p, groups=g)),
            ("backward-weight", lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=s, padding=p, groups=g)),
        ]
        for pname, fn in passes:
            with torch.no_grad():
                ms = time_ms(fn, args.runs)
            print(f"| {name} | {pname} | | | {ms:.3f} | {flops / (ms * 1e-3) / 1e12:.1f} |")


if __name__ == "__main__":
    main()
