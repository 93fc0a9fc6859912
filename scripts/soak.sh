#!/usr/bin/env bash
# The soak test for longer than CI's 30 seconds (docs/reliability.md#soak): trains a small model
# and serves an ONNX model through the dynamic batcher in a loop, and fails when the engine's host
# memory differs from its post-warm-up baseline at the end of any iteration, or resident memory,
# threads or open files grow past their bounds, or the Cleaner safety net frees a tensor.
#
#   scripts/soak.sh [SECONDS]          default 600 (10 minutes)
#   SOAK_INJECT_LEAK=1 scripts/soak.sh 60   leaves one tensor unclosed per iteration: must FAIL
#   SOAK_INJECT_NATIVE_LEAK=1 scripts/soak.sh 30   leaves 128 KiB malloc'd per iteration, outside the
#                                                  engine's accounting: the resident bound must FAIL
#
# Needs the native build (mvn -B -q package -DskipTests -Dnative.cuda=OFF once). The figures are
# printed and written to target/soak-report.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_ARG="${1:-600}"
LOG="target/soak-$(date -u +%Y%m%dT%H%M%SZ).log"
mkdir -p target
status=0
mvn -B verify -Dnative.cuda=OFF -Dtest=SoakTest -Dsurefire.failIfNoSpecifiedTests=false \
    -Dsoak.seconds="$SECONDS_ARG" -Dsoak.injectLeak="$([[ "${SOAK_INJECT_LEAK:-0}" == 1 ]] && echo true || echo false)" \
    -Dsoak.injectNativeLeak="$([[ "${SOAK_INJECT_NATIVE_LEAK:-0}" == 1 ]] && echo true || echo false)" \
    -Dsurefire.timeout=$((SECONDS_ARG * 2 + 600)) > "$LOG" 2>&1 || status=$?
grep -E '^soak:|^after warm-up|Tests run:|FAIL|expected:' "$LOG" | head -n 20 || true
[[ -f target/soak-report.txt ]] && cat target/soak-report.txt
echo "soak: log in $LOG (exit $status)"
exit "$status"
