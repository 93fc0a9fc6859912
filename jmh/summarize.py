#!/usr/bin/env python3
"""Turns a JMH JSON result file (java -jar benchmarks.jar -rf json -rff FILE) into the derived
tables of docs/performance.md: GFLOP/s and Cortado / raw cblas_sgemm ratios for matmul, ns/op for
dispatch, GB/s and the fraction of the measured copy ceiling for the bandwidth benchmarks.

    python3 jmh/summarize.py results.json [more.json ...]

Later files override earlier ones for the same benchmark + parameters (for reruns).
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
                cls = cls.rsplit(".", 1)[1]
                params = tuple(sorted((r.get("params") or {}).items()))
                m = r["primaryMetric"]
                rows[(cls, method, params)] = (m["score"], m["scoreError"], m["scoreUnit"])
    return rows


def get(rows, cls, method, **params):
    key = (cls, method, tuple(sorted((k, str(v)) for k, v in params.items())))
    return rows.get(key)


def fmt(v, e):
    return f"{v:.3f} ± {e:.3f}" if e == e else f"{v:.3f}"  # NaN error when Cnt < 2


def main():
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


if __name__ == "__main__":
    main()
