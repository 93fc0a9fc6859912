#!/usr/bin/env bash
# Everything a GPU session should run, in one command on the GPU machine (no JDK or Maven needed
# there: scripts/gpu-bundle.sh packs them here first). Through the device tool:
#   run(command="bash scripts/gpu-session.sh", carry=[".gpu-bundle"], timeout_s=600)
# Steps (each under its own time limit, the whole well under 10 minutes; results under $OUT):
#   1. scripts/gpu-check.sh: the native check (every CUDA kernel against its CPU twin) and the
#      CUDA-event timings                                   -> gpu-check.md, gpu-check.log
#   2. the Java `gpu` tests (JUnit console, bundled JRE)     -> junit.log (tree), TEST-junit-jupiter.xml
#   3. the PyTorch peers on the same shapes (cuDNN convolution, flash attention)
#                                                            -> peers.md
# Environment: STEPS="1 2 3" (default all), CUDA_ARCHS (default 90: Hopper only, the fastest build).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-$REPO/build/gpu-session}"
mkdir -p "$OUT"
STEPS="${STEPS:-1 2 3}"
W=/tmp/cortado-gpu
B="$REPO/.gpu-bundle"
[[ -f "$B/cortado-gpu.tgz" && -f "$B/openblas.jar" ]] || { echo "gpu-session: run scripts/gpu-bundle.sh first and carry .gpu-bundle" >&2; exit 2; }
rm -rf "$W" && mkdir -p "$W/openblas"
tar xzf "$B/cortado-gpu.tgz" -C "$W"
(cd "$W/openblas" && python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall('.')" "$B/openblas.jar")
OBDIR="$W/openblas/org/bytedeco/openblas/linux-x86_64"
chmod +x "$W"/jre/bin/* 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/device.txt"
date -u +%FT%TZ >> "$OUT/device.txt"

# CUDA libraries of the PyTorch wheels (cuBLAS, cuDNN, ...) for the JavaCPP presets
NVLIBS="$(python3 - <<'PY'
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for so in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(so))
print(":".join(sorted(dirs)))
PY
)"
export LD_LIBRARY_PATH="${NVLIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0

if [[ " $STEPS " == *" 1 "* ]]; then
  echo "== 1. native GPU check" >&2
  OPENBLAS_DIR="$OBDIR" BUILD_DIR="$W/gpu-check" CUDA_ARCHS="${CUDA_ARCHS:-90}" \
    timeout 330 bash scripts/gpu-check.sh > "$OUT/gpu-check.log" 2>&1 || status=1
  cp "$W/gpu-check/report.md" "$OUT/gpu-check.md" 2>/dev/null
  tail -n 5 "$OUT/gpu-check.log" >&2
fi

if [[ " $STEPS " == *" 2 "* ]]; then
  echo "== 2. Java gpu tests" >&2
  cp "$B/openblas.jar" "$W/test-libs/"
  # the CUDA library built in step 1 (or now) for this GPU, where the bundle left it out
  if [[ ! -f "$W/gpu-check/lib/libcortado_cuda.so" ]]; then
    cmake -S native -B "$W/gpu-check" -DCMAKE_BUILD_TYPE=Release -DOPENBLAS_DIR="$OBDIR" \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" >> "$OUT/gpu-check.log" 2>&1
    cmake --build "$W/gpu-check" -j "$(nproc)" --target cortado_cuda >> "$OUT/gpu-check.log" 2>&1
  fi
  cp "$W/gpu-check/lib/libcortado_cuda.so" "$W/classes/dev/cortado/backend/cuda/linux-x86_64/" || status=1
  (cd "$W" && timeout 240 jre/bin/java -Xmx8g -Dcortado.requireGpu=true -jar test-libs/junit-platform-console-standalone-*.jar execute \
      -cp "classes:test-classes:$(ls test-libs/*.jar | tr '\n' ':')" --select-package dev.cortado --include-tag gpu \
      --details=tree --disable-banner --reports-dir "$W/junit-reports") > "$OUT/junit.log" 2>&1 || status=1
  cp "$W/junit-reports/TEST-junit-jupiter.xml" "$OUT/" 2>/dev/null  # the device tool returns at most 8 files
  grep -E 'tests (found|successful|failed|skipped|aborted)|✘' "$OUT/junit.log" | head -n 60 >&2
  # A session where no GPU test ran (no device, a library that did not load, nothing selected)
  # is a failure, not a pass: require successful tests and none aborted.
  ok="$(sed -n 's/.*\[ *\([0-9]*\) tests successful *\].*/\1/p' "$OUT/junit.log" | tail -1)"
  aborted="$(sed -n 's/.*\[ *\([0-9]*\) tests aborted *\].*/\1/p' "$OUT/junit.log" | tail -1)"
  if [[ -z "$ok" || "$ok" == 0 || "${aborted:-0}" != 0 ]]; then
    echo "gpu-session: ${ok:-0} GPU tests succeeded, ${aborted:-?} aborted: no GPU test ran to completion" >&2
    status=1
  fi
fi

if [[ " $STEPS " == *" 3 "* ]]; then
  echo "== 3. PyTorch peers" >&2
  {
    echo "# PyTorch peers, $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())')"
    [[ -f scripts/gpu-conv-peer.py ]] && timeout 120 python3 scripts/gpu-conv-peer.py
    timeout 120 python3 scripts/gpu-attention-peer.py
  } > "$OUT/peers.md" 2>&1 || status=1
  tail -n 30 "$OUT/peers.md" >&2
fi
exit $status
