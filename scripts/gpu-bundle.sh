#!/usr/bin/env bash
# Packs what a GPU machine without a JDK or Maven needs to run Cortado's GPU checks, into
# .gpu-bundle/ (git-ignored), for the device tool's `carry`:
#   .gpu-bundle/cortado-gpu.tgz   jre/ (jlink), classes/ (with libcortado_cpu/cuda.so and the JNI
#                                 glue), test-classes/, test-libs/ (test-scope jars + JUnit console)
#   .gpu-bundle/openblas.jar      the JavaCPP OpenBLAS jar (libopenblas.so.0 + cblas.h), used by the
#                                 Java tests and by the native check's CPU twins
# Then on the GPU machine:  scripts/gpu-session.sh  (see there).
# Usage: scripts/gpu-bundle.sh        (builds with nvcc: several minutes on 2 cores)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
B="$REPO/.gpu-bundle"
T="${BUNDLE_BUILD_DIR:-/tmp/cortado-gpu-bundle-target}"
rm -rf "$B" && mkdir -p "$B"
mvn -B -q -o package test-compile -DskipTests -Dnative.cuda=ON -Dcortado.build.dir="$T"
mvn -B -q -o dependency:copy-dependencies -DincludeScope=test -DoutputDirectory="$T/test-libs" -Dcortado.build.dir="$T"
mvn -B -q dependency:copy -Dartifact=org.junit.platform:junit-platform-console-standalone:1.11.4 \
    -DoutputDirectory="$T/test-libs" -Dcortado.build.dir="$T"
# the Java tests need only these modules (jdeps --print-module-deps over classes and test-libs)
rm -rf "$T/jre"
jlink --add-modules java.base,java.logging,java.management,jdk.unsupported,java.desktop,java.sql \
      --strip-debug --no-header-files --no-man-pages --compress=2 --output "$T/jre"
# the OpenBLAS jar travels once, beside the tarball
OB_JAR="$(ls "$T"/test-libs/openblas-*-linux-x86_64.jar | head -1)"
cp "$OB_JAR" "$B/openblas.jar"
rm -f "$T"/test-libs/openblas-*-linux-x86_64.jar
# DJL/PyTorch jars are JMH-only and never in test scope; drop anything larger than needed
tar czf "$B/cortado-gpu.tgz" -C "$T" jre classes test-classes test-libs
( cd "$B" && cp "$OB_JAR" /dev/null && echo "gpu-bundle: $(du -sh . | cut -f1) in $B" && ls -la )
grep -q '^/.gpu-bundle/$' "$REPO/.gitignore" || echo "gpu-bundle: add /.gpu-bundle/ to .gitignore" >&2
