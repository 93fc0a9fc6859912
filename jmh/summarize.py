#!/usr/bin/env python3
"""Turns JMH JSON result files (java -jar benchmarks.jar -rf json -rff FILE) into markdown tables.

    python3 jmh/summarize.py results.json [more.json ...]
        the detailed tables of the journal (docs/dev/performance-journal.md): GFLOP/s and
        Cortado / raw cblas_sgemm ratios for matmul, ns/op for dispatch, GB/s and the fraction of
        the measured copy ceiling for the bandwidth benchmarks. Later files override earlier ones
        for the same benchmark + parameters (for reruns).

    python3 jmh/summarize.py --table run-a.json run-b.json ...
        the main table of docs/benchmarks.md (what jmh/run-main-table.sh runs): ms, the ratio
        against the peer of the same JMH run (peer time / Cortado time, > 1 = Cortado faster) and
        the fraction of the ceiling (CeilingBenchmark: FMA peak, copy and read bandwidth) measured
        in the same JMH run (file) as the row. Each file is one JMH run.

Bytes moved (minimum, read + write, MiB = 2^20 bytes, GB = 10^9 bytes):
  add, addKernel: 2 x 64 MiB read + 64 MiB written; softmax*, copy*, *Memcpy: 64 MiB + 64 MiB.
"""
import json
import sys

MIB = 1 << 20
BYTES = {
    "add": 192 * MIB, "addKernel": 192 * MIB,
    "softmax": 128 * MIB, "softmaxKernel": 128 * MIB,
    "copyTensor": 128 * MIB, "copyInto": 128 * MIB, "ctMemcpy": 128 * MIB, "javacppMemcpy": 128 * MIB,
}
CEILINGS = ("copyInto", "ctMemcpy", "javacppMemcpy")  # preallocated copies; copyTensor allocates


def load(paths):
    rows = {}
    for path in paths:
        with open(path) as f:
            for r in json.load(f):
                cls, method = r["benchmark"].rsplit(".", 1)
                cls = cls.split("dev.cortado.bench.", 1)[-1]   # "MatmulBenchmark", "TrainingStepBenchmark.Nhwc"
                params = tuple(sorted((r.get("params") or {}).items()))
                m = r["primaryMetric"]
                rows[(cls, method, params)] = (float(m["score"]), float(m["scoreError"]), m["scoreUnit"])
    return rows


def get(rows, cls, method, **params):
    key = (cls, method, tuple(sorted((k, str(v)) for k, v in params.items())))
    return rows.get(key)


def fmt(v, e):
    return f"{v:.3f} ± {e:.3f}" if e == e else f"{v:.3f}"  # NaN error when Cnt < 2


def main():
    if sys.argv[1:2] == ["--table"]:
        main_table(sys.argv[2:])
        return
    rows = load(sys.argv[1:])

    print("## Matmul (square float32, ms/op; GFLOP/s = 2 n^3 / time)\n")
    print("| n | threads | cortadoMatmul ms | rawCblasSgemm ms | cortadoGemmKernel ms "
          "| Cortado GFLOP/s | raw GFLOP/s | Cortado / raw (throughput) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (512, 1024, 2048):
        for t in (1, 2):
            c = get(rows, "MatmulBenchmark", "cortadoMatmul", n=n, threads=t)
            r = get(rows, "MatmulBenchmark", "rawCblasSgemm", n=n, threads=t)
            k = get(rows, "MatmulBenchmark", "cortadoGemmKernel", n=n, threads=t)
            if not (c and r):
                continue
            flop = 2.0 * n ** 3
            print(f"| {n} | {t} | {fmt(c[0], c[1])} | {fmt(r[0], r[1])} | {fmt(k[0], k[1]) if k else '-'} "
                  f"| {flop / (c[0] * 1e-3) / 1e9:.1f} | {flop / (r[0] * 1e-3) / 1e9:.1f} | {r[0] / c[0] * 100:.1f}% |")

    print("\n## Dispatch (1-element float32, ns/op)\n")
    print("| benchmark | threads | ns/op |")
    print("|---|---|---|")
    for m in ("add1", "add1Scoped", "emptyClose", "nativeAllocFree", "jniTrivial"):
        for t in (1, 2):
            v = get(rows, "DispatchBenchmark", m, threads=t)
            if v:
                print(f"| {m} | {t} | {fmt(v[0], v[1])} |")

    print("\n## Bandwidth (16M float32 = 64 MiB per tensor)\n")
    ceiling = 0.0
    ceiling_name = None
    for m in CEILINGS:
        for t in (1, 2):
            v = get(rows, "BandwidthBenchmark", m, threads=t)
            if v:
                gbs = BYTES[m] / (v[0] * 1e-3) / 1e9
                if gbs > ceiling:
                    ceiling, ceiling_name = gbs, f"{m}, {t} thread(s)"
    print(f"measured ceiling: {ceiling:.1f} GB/s ({ceiling_name})\n")
    print("| benchmark | threads | ms/op | bytes moved | GB/s | fraction of ceiling |")
    print("|---|---|---|---|---|---|")
    for m in ("add", "addKernel", "softmax", "softmaxKernel") + CEILINGS + ("copyTensor",):
        for t in (1, 2):
            v = get(rows, "BandwidthBenchmark", m, threads=t)
            if v:
                gbs = BYTES[m] / (v[0] * 1e-3) / 1e9
                print(f"| {m} | {t} | {fmt(v[0], v[1])} | {BYTES[m] // MIB} MiB | {gbs:.1f} "
                      f"| {gbs / ceiling * 100:.0f}% |")


# ---- the main table of docs/benchmarks.md ------------------------------------------------------

# ConvBenchmark's shapes: (c, k, groups, kernel, stride, pad, h) of the convolution x [n, c, h, h] -> y [n, k, oh, oh]
CONV_SHAPES = {
    "r3x3_64_56": (64, 64, 1, 3, 1, 1, 56), "r3x3_128_28": (128, 128, 1, 3, 1, 1, 28),
    "r3x3_256_14": (256, 256, 1, 3, 1, 1, 14), "r1x1_64_256_56": (64, 256, 1, 1, 1, 0, 56),
    "r7x7_3_64_224": (3, 64, 1, 7, 2, 3, 224),
}
RESNET50 = tuple(CONV_SHAPES)  # the five ResNet-50 shapes the table sums
FMA_FLOP_PER_THREAD = 3 << 29  # CeilingBenchmark.FLOP_PER_THREAD


def conv_flops_per_pass(shape, n=32):
    """Direct-convolution FLOPs of one pass, as ConvBenchmark.flopsPerPass counts them."""
    c, k, g, ks, st, pad, h = CONV_SHAPES[shape]
    oh = (h + 2 * pad - ks) // st + 1
    return 2.0 * n * k * (c // g) * ks * ks * oh * oh


def attention_flops(length, causal, b=4, heads=8, d=64):
    """AttentionBenchmark.flops: 4 B H L^2 D, half when causal."""
    f = 4.0 * b * heads * length * length * d
    return f / 2 if causal else f


class Run:
    """One JMH run (one JSON file): rows matched on a subset of their parameters."""

    def __init__(self, path, label):
        self.label = label
        with open(path) as f:
            self.rows = json.load(f)

    def find(self, bench, **params):
        want = {k: str(v) for k, v in params.items()}
        for r in self.rows:
            if r["benchmark"].split("dev.cortado.bench.", 1)[-1] != bench:
                continue
            have = r.get("params") or {}
            if all(have.get(k) == v for k, v in want.items()):
                m = r["primaryMetric"]
                scale = {"ms/op": 1.0, "us/op": 1e-3, "ns/op": 1e-6, "s/op": 1e3}[m["scoreUnit"]]
                return float(m["score"]) * scale, float(m["scoreError"]) * scale  # ms (error "NaN" with one iteration)
        return None

    def fma_gflops(self, threads):
        """Peak float32 FMA GFLOP/s at this thread count, from CeilingBenchmark.fma."""
        v = self.find("CeilingBenchmark.fma", threads=threads)
        if not v:
            return None
        return FMA_FLOP_PER_THREAD * threads / (v[0] * 1e-3) / 1e9

    def copy_gbs(self):
        """Best copy bandwidth of the run (GB/s, 64 MiB read + 64 MiB written) and where it came from."""
        best = (None, None)
        for bench in ("CeilingBenchmark.copy", "BandwidthBenchmark.ctMemcpy", "BandwidthBenchmark.copyInto",
                      "BandwidthBenchmark.javacppMemcpy"):
            for t in (1, 2):
                v = self.find(bench, threads=t)
                if v:
                    gbs = 128 * MIB / (v[0] * 1e-3) / 1e9
                    if best[0] is None or gbs > best[0]:
                        best = (gbs, f"{bench.split('.')[-1]}, {t} thr")
        return best

    def read_gbs(self, threads):
        v = self.find("CeilingBenchmark.readSum", threads=threads)
        return 64 * MIB / (v[0] * 1e-3) / 1e9 if v else None


def ms(v):
    if v is None:
        return "missing"
    val, err = v
    digits = 3 if val < 10 else (2 if val < 100 else 1)
    e = f" ± {err:.{digits}f}" if err == err else ""  # NaN error when only one iteration
    return f"{val:.{digits}f}{e}"


def main_table(paths):
    runs = [Run(p, chr(ord("A") + i)) for i, p in enumerate(paths)]
    out = []
    row = out.append

    print("Ceilings, each measured in its own JMH run (CeilingBenchmark; copy = best of the run's copies):\n")
    print("| run | file | FMA peak 1 thr GFLOP/s | FMA peak 2 thr GFLOP/s | read 1 / 2 thr GB/s | copy GB/s |")
    print("|---|---|---|---|---|---|")
    for r, p in zip(runs, paths):
        f1, f2 = r.fma_gflops(1), r.fma_gflops(2)
        r1, r2 = r.read_gbs(1), r.read_gbs(2)
        c, cwhere = r.copy_gbs()
        fmt1 = lambda x: f"{x:.0f}" if x else "—"
        print(f"| {r.label} | {p.rsplit('/', 1)[-1]} | {fmt1(f1)} | {fmt1(f2)} | {fmt1(r1)} / {fmt1(r2)} "
              f"| {f'{c:.1f} ({cwhere})' if c else '—'} |")
    print()

    def of_peak(run, flop, t_ms, threads):
        peak = run.fma_gflops(threads)
        gf = flop / (t_ms * 1e-3) / 1e9
        return f"{gf:.0f} GFLOP/s = {gf / peak * 100:.0f}% of FMA peak" if peak else f"{gf:.0f} GFLOP/s"

    def of_copy(run, nbytes, t_ms):
        c, _ = run.copy_gbs()
        gbs = nbytes / (t_ms * 1e-3) / 1e9
        return f"{gbs:.1f} GB/s = {gbs / c * 100:.0f}% of copy" if c else f"{gbs:.1f} GB/s"

    def first(bench, **params):
        for r in runs:
            v = r.find(bench, **params)
            if v:
                return r, v
        return None, None

    def ratio(peer, mine):
        return f"**{peer[0] / mine[0]:.2f}×**" if peer and mine else "—"

    # matmul against raw cblas_sgemm
    for t in (1, 2):
        r, c = first("MatmulBenchmark.cortadoMatmul", n=1024, threads=t)
        _, b = first("MatmulBenchmark.rawCblasSgemm", n=1024, threads=t)
        if c or b:
            row((f"matmul 1024² float32 (Cortado vs raw `cblas_sgemm`)", t, ms(c), "raw sgemm " + ms(b),
                 ratio(b, c), of_peak(r, 2.0 * 1024 ** 3, c[0], t) if c else "—", r.label if r else ""))
    for t in (1, 2):
        r, v = first("DispatchBenchmark.add1", threads=t)
        if v:
            err = f" ± {v[1] * 1e6:.0f}" if v[1] == v[1] else ""
            row(("1-element add, dispatch (bar < 1 µs)", t, f"{v[0] * 1e6:.0f}{err} ns", "—", "—", "—", r.label))
    for name, bench, nbytes in (("add 16M float32 (allocating)", "BandwidthBenchmark.add", 192 * MIB),
                                ("softmax [16384, 1024] (allocating)", "BandwidthBenchmark.softmax", 128 * MIB)):
        for t in (1, 2):
            r, v = first(bench, threads=t)
            if v:
                row((name, t, ms(v), "—", "—", of_copy(r, nbytes, v[0]), r.label))

    # convolutions: the five ResNet-50 shapes summed, batch 32
    for t in (1, 2):
        for passes, label, mine, peer in (
                (1, "forward", ("ConvBenchmark.cortadoForwardNCHW", "ConvBenchmark.cortadoForwardNHWC"),
                 "ConvBenchmark.torchForward"),
                (2, "backward (data + weight)", ("ConvBenchmark.cortadoBackwardNCHW", "ConvBenchmark.cortadoBackwardNHWC"),
                 None)):
            tp = [first(peer or "ConvBenchmark.torchForward", shape=s, threads=t) for s in RESNET50]
            if passes == 2:
                fb = [first("ConvBenchmark.torchForwardBackward", shape=s, threads=t) for s in RESNET50]
                tp = [(a[0], (b[1][0] - a[1][0], (a[1][1] ** 2 + b[1][1] ** 2) ** 0.5)) if a[1] and b[1] else (None, None)
                      for a, b in zip(tp, fb)]
            torch = (sum(v[1][0] for v in tp), float("nan")) if all(v[1] for v in tp) else None
            for bench in mine:
                got = [first(bench, shape=s, threads=t) for s in RESNET50]
                if not any(v[1] for v in got):
                    continue
                if not all(v[1] for v in got):
                    row((f"conv {label} {bench[-4:]}, ResNet-50 shapes summed", t, "incomplete", "", "", "", ""))
                    continue
                total = (sum(v[1][0] for v in got), float("nan"))
                flop = passes * sum(conv_flops_per_pass(s) for s in RESNET50)
                run = got[0][0]
                row((f"conv {label} {bench[-4:]}, 5 ResNet-50 shapes summed, batch 32", t, ms(total),
                     "PyTorch " + ms(torch), ratio(torch, total), of_peak(run, flop, total[0], t), run.label))

    # attention, causal, L = 2048
    for t in (1, 2):
        p = dict(len=2048, causal="true", threads=t)
        r, fused = first("AttentionBenchmark.cortadoFusedForward", **p)
        _, unfused = first("AttentionBenchmark.cortadoUnfusedForward", **p)
        _, tf = first("AttentionBenchmark.torchForward", **p)
        _, tfb = first("AttentionBenchmark.torchForwardBackward", **p)
        _, bwd = first("AttentionBenchmark.cortadoFusedBackward", **p)
        flop = attention_flops(2048, True)
        if fused:
            row(("attention forward, fused, causal L 2048 (B 4, H 8, D 64)", t, ms(fused), "PyTorch composed " + ms(tf),
                 ratio(tf, fused), of_peak(r, flop, fused[0], t), r.label))
        if unfused:
            row(("attention forward, Cortado unfused composition", t, ms(unfused), "fused " + ms(fused),
                 ratio(unfused, fused) + " (fused vs unfused)" if fused else "—", "", r.label))
        if bwd:
            tb = (tfb[0] - tf[0], float("nan")) if tf and tfb else None
            row(("attention backward, fused", t, ms(bwd), "PyTorch (fwd+bwd − fwd) " + ms(tb), ratio(tb, bwd),
                 of_peak(r, 2.5 * flop, bwd[0], t), r.label))

    # training steps
    for model, name in (("mlp", "MLP 784-1024-1024-10, batch 256"), ("cnn", "MNIST CNN, batch 128")):
        for t in (1, 2):
            r, c = first("TrainingStepBenchmark.cortadoStep", model=model, threads=t)
            _, tp = first("TrainingStepBenchmark.torchStep", model=model, threads=t)
            _, nh = first("TrainingStepBenchmark.Nhwc.cortadoStepNHWC", model=model, threads=t)
            if c:
                row((f"training step, {name}" + (", NCHW" if model == "cnn" else ""), t, ms(c), "PyTorch " + ms(tp),
                     ratio(tp, c), "", r.label))
            if nh and model == "cnn":
                row((f"training step, {name}, NHWC", t, ms(nh), "PyTorch " + ms(tp), ratio(tp, nh), "", r.label))

    print("| benchmark | threads | Cortado ms | peer ms (same run) | peer / Cortado | vs the run's ceiling | run |")
    print("|---|---|---|---|---|---|---|")
    for r in out:
        print("| " + " | ".join(str(x) for x in r) + " |")

    # what jmh/run-main-table.sh runs: say which results are absent (a failed fork, a filter typo)
    expected = [("CeilingBenchmark.fma", dict(threads=t)) for t in (1, 2)]
    expected += [(f"CeilingBenchmark.{m}", dict(threads=t)) for m in ("readSum", "copy") for t in (1, 2)]
    expected += [(f"MatmulBenchmark.{m}", dict(n=1024, threads=t)) for m in ("cortadoMatmul", "rawCblasSgemm")
                 for t in (1, 2)]
    expected += [(f"{b}", dict(threads=t)) for b in ("DispatchBenchmark.add1", "BandwidthBenchmark.add",
                                                      "BandwidthBenchmark.softmax", "BandwidthBenchmark.ctMemcpy")
                 for t in (1, 2)]
    expected += [(f"TrainingStepBenchmark.{m}", dict(model=mo, threads=t))
                 for m in ("cortadoStep", "torchStep") for mo in ("mlp", "cnn") for t in (1, 2)]
    expected += [("TrainingStepBenchmark.Nhwc.cortadoStepNHWC", dict(model="cnn", threads=t)) for t in (1, 2)]
    expected += [(f"ConvBenchmark.{m}", dict(shape=sh, threads=2))
                 for m in ("cortadoForwardNCHW", "cortadoForwardNHWC", "cortadoBackwardNCHW", "cortadoBackwardNHWC",
                           "torchForward", "torchForwardBackward") for sh in RESNET50]
    expected += [(f"AttentionBenchmark.{m}", dict(len=2048, causal="true", threads=2))
                 for m in ("cortadoFusedForward", "cortadoFusedBackward", "cortadoUnfusedForward", "torchForward",
                           "torchForwardBackward")]
    missing = [f"{b} {p}" for b, p in expected if not first(b, **p)[1]]
    if missing:
        print(f"\nMissing from these runs ({len(missing)} of {len(expected)}; see the run's .log):")
        for m in missing:
            print("  " + m)


if __name__ == "__main__":
    main()
