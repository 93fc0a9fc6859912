#!/usr/bin/env bash
# Builds and runs the native GPU check (native/tests/gpu_check.cu) on a machine with a GPU.
#
# Usage (from anywhere):
#   scripts/gpu-check.sh [--check-only | --bench-only]
# Environment:
#   OPENBLAS_DIR  folder with libopenblas.so.0 and include/cblas.h (default: the one Maven
#                 unpacks, <repo>/target/openblas/org/bytedeco/openblas/linux-x86_64)
#   CUDA_ARCHS    overrides CMAKE_CUDA_ARCHITECTURES (e.g. "90"); default: CMake's "80-real;90"
#   SANITIZE=1    afterwards runs compute-sanitizer memcheck and racecheck over --check-only
#   BUILD_DIR     build folder (default <repo>/build/gpu-check)
# Needs nvcc and cuBLAS (CUDA toolkit), cmake >= 3.22, a C++17 compiler with OpenMP.
# Output is also written to $BUILD_DIR/report.md (markdown tables for docs/gpu-status.md).
# Exit status: that of the check binary (non-zero when any check failed, 2 without a GPU), and 1
# when the report shows no passing run of at least one check.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO/build/gpu-check}"
OPENBLAS_DIR="${OPENBLAS_DIR:-$REPO/target/openblas/org/bytedeco/openblas/linux-x86_64}"

die() { echo "gpu-check: $*" >&2; exit 1; }

NVCC="$(command -v nvcc || true)"
if [[ -z "$NVCC" ]]; then
  for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do
    [[ -x "$c" ]] && NVCC="$c" && break
  done
fi
[[ -n "$NVCC" ]] || die "nvcc not found (put the CUDA toolkit's bin/ on PATH)"
command -v cmake >/dev/null || die "cmake not found"
[[ -f "$OPENBLAS_DIR/libopenblas.so.0" && -f "$OPENBLAS_DIR/include/cblas.h" ]] ||
  die "OPENBLAS_DIR='$OPENBLAS_DIR' lacks libopenblas.so.0 or include/cblas.h; run 'mvn -q process-resources' (which unpacks the JavaCPP openblas jar) or set OPENBLAS_DIR"

ARCH_ARGS=()
[[ -n "${CUDA_ARCHS:-}" ]] && ARCH_ARGS=(-DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS")

echo "gpu-check: nvcc $("$NVCC" --version | tail -1), building in $BUILD_DIR" >&2
cmake -S "$REPO/native" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DCORTADO_GPU_CHECK=ON -DOPENBLAS_DIR="$OPENBLAS_DIR" "${ARCH_ARGS[@]}" >&2
cmake --build "$BUILD_DIR" -j "$(nproc)" --target cortado_gpu_check >&2

BIN="$BUILD_DIR/bin/cortado_gpu_check"
[[ -x "$BIN" ]] || die "build produced no $BIN"
export LD_LIBRARY_PATH="$BUILD_DIR/lib:$OPENBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true

REPORT="$BUILD_DIR/report.md"
status=0
"$BIN" "$@" 2>&1 | tee "$REPORT" || status=$?
# A check run must have run checks: no "RESULT: PASS (0 of N checks failed)" with N > 0 is a failure.
if [[ " $* " != *" --bench-only "* ]]; then
  n="$(sed -n 's/^RESULT: PASS (0 of \([0-9]*\) checks failed)$/\1/p' "$REPORT" | tail -1)"
  if [[ -z "$n" || "$n" == 0 ]]; then
    echo "gpu-check: no passing check run reported (exit $status)" >&2
    [[ "$status" == 0 ]] && status=1
  fi
fi

# The destructive half of gpu_check_fault.cuh (an illegal-address fault breaks the process's CUDA
# context), in its own process: it must report the fault and the lost context, and not hang.
if [[ " $* " != *" --bench-only "* ]]; then
  { echo; echo "## fault injection (--fault-only)"; echo; echo '```'
    timeout 120 "$BIN" --fault-only 2>&1 | tail -n 12; echo "exit ${PIPESTATUS[0]}"; echo '```'; } | tee -a "$REPORT"
  grep -q '^exit 0$' <(tail -n 2 "$REPORT") || { echo "gpu-check: the fault-injection check failed" >&2; status=1; }
fi

if [[ "${SANITIZE:-0}" == "1" ]]; then
  SAN="$(command -v compute-sanitizer || echo "$(dirname "$NVCC")/compute-sanitizer")"
  [[ -x "$SAN" ]] || die "compute-sanitizer not found next to nvcc"
  for tool in memcheck racecheck; do
    echo "gpu-check: compute-sanitizer --tool $tool" >&2
    # (the tool's own exit status decides: inside a { ...; } | tee group it would be lost)
    san_log="$BUILD_DIR/compute-sanitizer-$tool.log"
    san_status=0
    "$SAN" --tool "$tool" --error-exitcode 3 "$BIN" --check-only >"$san_log" 2>&1 || san_status=$?
    {
      echo
      echo "## compute-sanitizer --tool $tool (--check-only): exit $san_status"
      echo
      echo '```'
      grep -v '^|' "$san_log" | tail -n 30
      echo '```'
    } | tee -a "$REPORT"
    [[ "$san_status" == 0 ]] || status="$san_status"
  done
fi
echo "gpu-check: report in $REPORT (exit $status)" >&2
exit "$status"
