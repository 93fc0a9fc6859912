#!/usr/bin/env bash
# Runs CrashSafetyTest with N SIGKILL trials (docs/reliability.md, "Crash-safe files").
# Usage: scripts/crash-safety.sh [N]     (default 1000; mvn verify runs 120)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-1000}"
mvn -B verify -Dnative.cuda=OFF -Dtest=CrashSafetyTest -Dsurefire.failIfNoSpecifiedTests=false \
  -Dcortado.skipReferenceKernels=true -Dcortado.crashTrials="$N" 2>&1 |
  tee target/crash-safety.log | grep -E 'CrashSafetyTest|Tests run:|FAIL|BUILD'
