#!/usr/bin/env bash
# Fuzzes Cortado's untrusted-input parsers and its op API with Jazzer (docs/reliability.md#fuzzing),
# one target per JVM (Jazzer's JUnit mode fuzzes one @FuzzTest per run), and prints a table of
# what each target did: inputs run, inputs accepted, inputs refused with a declared exception,
# undeclared exceptions (findings) and JVM crashes.
#
#   scripts/fuzz.sh                      every target for 10^6 inputs (the documented pass)
#   scripts/fuzz.sh -n 100000            every target for 10^5 inputs
#   scripts/fuzz.sh -t 60 idx op-api     two targets for 60 s each
#   scripts/fuzz.sh -k -t 15             the CI budget: stop at the first finding, as a failure
#
# Targets: safetensors checkpoint idx text-corpus onnx-import tokenizer-json tokenizer-encode
# http-request http-server op-api.
#
# By default every input is counted and a finding does not stop the run: its stack trace (and the
# input of a byte[] target) goes to target/fuzz/<target>-findings/. With -k the first finding ends
# the run and Jazzer saves the input as crash-* beside the target's corpus in src/test/resources
# (add it there as a regression input once fixed). Exit status: 0 only with no finding and no crash.
# Needs the test classes built (mvn -B test-compile -Dnative.cuda=OFF, or any earlier build);
# runs Maven offline.
set -euo pipefail
cd "$(dirname "$0")/.."

inputs=1000000
seconds=""
keep_going=1
while getopts "n:t:kh" opt; do
  case "$opt" in
    n) inputs="$OPTARG"; seconds="" ;;
    t) seconds="$OPTARG" ;;
    k) keep_going=0 ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

declare -A TESTS=(
  [safetensors]="dev.cortado.io.SafetensorsFuzzTest#read"
  [checkpoint]="dev.cortado.io.CheckpointFuzzTest#load"
  [idx]="dev.cortado.io.IdxReaderFuzzTest#read"
  [text-corpus]="dev.cortado.io.TextCorpusFuzzTest#read"
  [onnx-import]="dev.cortado.onnx.OnnxImportFuzzTest#load"
  [tokenizer-json]="dev.cortado.serve.WordPieceTokenizerFuzzTest#fromJson"
  [tokenizer-encode]="dev.cortado.serve.WordPieceTokenizerFuzzTest#encode"
  [http-request]="dev.cortado.serve.EmbeddingRequestFuzzTest#parse"
  [http-server]="dev.cortado.serve.EmbeddingHttpFuzzTest#request"
  [op-api]="dev.cortado.ops.opinfo.OpApiFuzzTest#call"
)
ORDER=(safetensors checkpoint idx text-corpus onnx-import tokenizer-json tokenizer-encode http-request http-server op-api)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ORDER[@]}")
for t in "${targets[@]}"; do
  [ -n "${TESTS[$t]:-}" ] || { echo "unknown target '$t' (targets: ${ORDER[*]})" >&2; exit 2; }
done

out="$PWD/target/fuzz"
mkdir -p "$out"
if [ -n "$seconds" ]; then
  budget=(-Djazzer.internal.arg.1=-max_total_time="$seconds")
  what="$seconds s per target"
else
  budget=(-Djazzer.internal.arg.1=-runs="$inputs" -Djazzer.internal.arg.2=-max_total_time=0)
  what="$inputs inputs per target"
fi
count_args=(-Dfuzz.countsDir="$out")
[ "$keep_going" = 1 ] && count_args+=(-Dfuzz.keepGoing=true)

table="$out/report.md"
{
  echo "Fuzzing, $what ($(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores)"
  echo
  echo "| target | inputs | accepted | declared exceptions | undeclared | JVM crashes | seconds |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
} > "$table"
status=0
for t in "${targets[@]}"; do
  rm -rf "$out/$t.counts" "$out/$t-findings"
  log="$out/$t.log"
  start=$(date +%s)
  set +e
  JAZZER_FUZZ=1 mvn -B -o -q surefire:test -Dnative.cuda=OFF -Dtest="${TESTS[$t]}" \
    -Dsurefire.failIfNoSpecifiedTests=false -Djazzer.instrument='dev.cortado.**' \
    -Djazzer.internal.arg.0=fuzz "${budget[@]}" "${count_args[@]}" > "$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  counts="$(cat "$out/$t.counts" 2>/dev/null || true)"
  get() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<< "$counts"; }
  n="$(get inputs)"; acc="$(get accepted)"; rej="$(get rejected)"; und="$(get undeclared)"
  crash=0
  if [ "$rc" != 0 ]; then
    if grep -q "crashed\|terminated without properly saying goodbye\|hs_err_pid\|SIGSEGV" "$log"; then
      crash=1
    elif [ "$keep_going" = 0 ] && [ "${und:-0}" != 0 ]; then
      :                   # the first finding stopped the run (see the log and the crash-* input)
    else
      crash="?"           # failed otherwise: see the log
    fi
    status=1
  fi
  [ "${und:-0}" = 0 ] || status=1
  echo "| $t | ${n:-?} | ${acc:-?} | ${rej:-?} | ${und:-?} | $crash | $secs |" >> "$table"
  echo "$t: inputs=${n:-?} accepted=${acc:-?} declared=${rej:-?} undeclared=${und:-?} crashes=$crash (${secs}s, log $log)"
done
echo
cat "$table"
exit "$status"
