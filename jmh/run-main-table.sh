#!/usr/bin/env bash
# Runs the main table of docs/benchmarks.md: Cortado next to its peers (raw OpenBLAS cblas_sgemm,
# PyTorch 2.7.1 through DJL) and next to the machine's ceilings (CeilingBenchmark: FMA peak, copy and
# read bandwidth), each ceiling measured inside the same JMH run as the rows it bounds. Then prints
# the table (jmh/summarize.py --table). 68 forks; with the default iterations (4 s per fork plus
# JVM start and setup) an estimated 8-11 minutes on an idle 2-core machine (the smoke run with
# 0.1 s iterations took 5.6 minutes under a load of 15). Run it when `uptime` shows a 1-minute
# load below ~1.
#
#   jmh/run-main-table.sh                        # build (library into ~/.m2, then jmh/), run, summarize
#   SKIP_BUILD=1 jmh/run-main-table.sh           # reuse the last build
#   JMH_OPTS="-f 1 -wi 0 -i 1 -w 100ms -r 100ms" SKIP_BUILD=1 jmh/run-main-table.sh   # smoke test
#   OUT_DIR=/tmp/mt jmh/run-main-table.sh        # where the JSON, logs and table go
#
# Three JMH invocations, because JMH applies a -p value to every benchmark of a run and cannot
# give its forks a different environment:
#   A  matmul n = 1024 (Cortado vs raw cblas_sgemm), 1 and 2 threads, with OPENBLAS_CORETYPE and
#      OPENBLAS_L2_SIZE unset in this JVM only, so that OpenBLAS picks its best kernels for this CPU
#      (the project's rule for ratios against our own float32 matmul; never in tests or CI);
#      + FMA, read and copy ceilings at 1 and 2 threads.
#   B  dispatch (1-element add), bandwidth (add, softmax, ctMemcpy), training steps (MLP, CNN in
#      NCHW and NHWC, PyTorch), 1 and 2 threads, the environment as it is; + copy ceilings.
#   C  convolution (the five ResNet-50 shapes, batch 32, both layouts, PyTorch) and attention
#      (causal, L = 2048, fused, unfused, PyTorch), 2 threads; + the 2-thread FMA ceiling.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=${OUT_DIR:-$ROOT/jmh/target/main-table-$(date -u +%Y%m%dT%H%M%SZ)}
JMH_OPTS=${JMH_OPTS:--f 1 -wi 1 -i 3 -w 1s -r 1s}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && mvn -B -q install -DskipTests -Dnative.cuda=OFF)
    (cd "$ROOT/jmh" && mvn -B -q package -DskipTests)
fi
CP="$ROOT/jmh/target/classes:$(cat "$ROOT/jmh/target/classpath.txt")"

# DJL: libtorch 2.7.1 CPU from the classpath, nothing downloaded. OMP/OpenBLAS start at 2 threads
# (the core count); each benchmark's `threads` param sets the count it measures through the APIs.
export DJL_OFFLINE=true PYTORCH_FLAVOR=cpu PYTORCH_VERSION=2.7.1 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2

cd "$OUT_DIR"   # JMH writes its temporary files into the working directory
{
    echo "# $(date -u +%FT%TZ) commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+dirty')"
    echo "# $(uptime)"
    echo "# JMH_OPTS=$JMH_OPTS"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-<unset>} (runs B and C; A unsets both)"
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread|L2|L3)' || true
    java -version 2>&1 | head -1
} > env.txt

run() {  # run NAME [env args...] -- JMH args...
    local name=$1 start=$SECONDS
    shift
    local pre=()
    while [ "$1" != -- ]; do pre+=("$1"); shift; done
    shift
    echo "== run $name: $*" | tee -a env.txt
    # shellcheck disable=SC2086
    env "${pre[@]}" java -cp "$CP" org.openjdk.jmh.Main "$@" $JMH_OPTS -rf json -rff "$name.json" > "$name.log" 2>&1 \
        || echo "   run $name exited with $? (see $OUT_DIR/$name.log)" | tee -a env.txt
    echo "   $((SECONDS - start)) s, uptime: $(uptime)" | tee -a env.txt
}

B='dev\.cortado\.bench\.'
run A -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -- \
    "${B}MatmulBenchmark\.(cortadoMatmul|rawCblasSgemm)\$|${B}CeilingBenchmark\.(fma|readSum|copy)\$" \
    -p n=1024 -p threads=1,2
run B -- \
    "${B}DispatchBenchmark\.add1\$|${B}BandwidthBenchmark\.(add|softmax|ctMemcpy)\$|${B}TrainingStepBenchmark\.(cortadoStep|torchStep|Nhwc\.cortadoStepNHWC)\$|${B}CeilingBenchmark\.copy\$" \
    -p threads=1,2 -p model=mlp,cnn
run C -- \
    "${B}ConvBenchmark\.(cortadoForwardNCHW|cortadoForwardNHWC|cortadoBackwardNCHW|cortadoBackwardNHWC|torchForward|torchForwardBackward)\$|${B}AttentionBenchmark\.(cortadoFusedForward|cortadoFusedBackward|cortadoUnfusedForward|torchForward|torchForwardBackward)\$|${B}CeilingBenchmark\.fma\$" \
    -p threads=2 -p shape=r3x3_64_56,r3x3_128_28,r3x3_256_14,r1x1_64_256_56,r7x7_3_64_224 \
    -p len=2048 -p causal=true -p softcap=0

python3 "$ROOT/jmh/summarize.py" --table A.json B.json C.json | tee table.md
echo "JSON, logs and table.md in $OUT_DIR"
