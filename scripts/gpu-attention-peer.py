"""PyTorch's fused attention on the GPU machine: the peer of Cortado's CUDA flash attention.

torch.nn.functional.scaled_dot_product_attention with the flash backend (FlashAttention-2 inside
PyTorch), bfloat16, [B, H, L, D] with B*H*L = 131072 rows kept constant (B*H = 131072 / L),
head dims 64 and 128, L = 1k..16k, causal and not. CUDA events, median of 20 after 3 warm-ups.
FLOPs as FlashAttention-2's paper counts them: forward 4*B*H*L*L*D (halved when causal),
backward 2.5x the forward. Prints a markdown table (ms, TFLOP/s) to paste next to
cortado_gpu_check's bench_attention table in docs/gpu-status.md.
"""
import statistics

import torch
import torch.nn.functional as F


def timed(fn, reps=20, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    torch.manual_seed(0)
    print("\n## PyTorch SDPA (flash backend), bf16\n")
    print("| D | L | B*H | causal | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for d in (64, 128):
        for L in (1024, 2048, 4096, 8192, 16384):
            bh = max(1, 131072 // L)
            b, h = max(1, bh // 16), min(16, bh)
            for causal in (False, True):
                q, k, v = (torch.randn(b, h, L, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
                    fwd = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    g = torch.randn_like(o)
                    bwd = timed(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True))
                flops = 4.0 * b * h * L * L * d * (0.5 if causal else 1.0)
                print(f"| {d} | {L} | {b * h} | {causal} | {fwd:.3f} | {flops / fwd / 1e9:.0f} | {bwd:.3f} | "
                      f"{2.5 * flops / bwd / 1e9:.0f} |")
                del q, k, v, o, g
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
