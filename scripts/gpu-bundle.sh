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
# the `gpu` tests need neither the demos' charts and progress bar nor the ONNX tests' protobuf:
# leaving them (and java.desktop / java.sql) out keeps the bundle within the device tool's 64 MiB
rm -f "$T"/test-libs/protobuf-*.jar "$T"/test-libs/jfreechart-*.jar "$T"/test-libs/jline-*.jar \
      "$T"/test-libs/progressbar-*.jar "$T"/test-libs/openblas-*-linux-x86_64.jar
rm -rf "$T/jre"
jlink --add-modules java.base,java.logging,java.management,java.xml,jdk.unsupported \
      --strip-debug --no-header-files --no-man-pages --compress=2 --output "$T/jre"
# the OpenBLAS native jar (a build-plugin dependency, not in test scope) travels once, beside the tarball
# without the two full-LAPACK JNI libraries Cortado does not load (48 of its 91 MB)
OB_JAR="$(ls ~/.m2/repository/org/bytedeco/openblas/*/openblas-*-linux-x86_64.jar | tail -1)"
python3 - "$OB_JAR" "$B/openblas.jar" <<'PY'
import sys, zipfile
drop = ("libjniopenblas_full.so", "libjniopenblas.so")
with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if not item.filename.endswith(drop):
            dst.writestr(item, src.read(item.filename))
PY
# the JUnit console jar carries JUnit itself: its separate jars would only be duplicates
rm -f "$T"/test-libs/junit-jupiter*.jar "$T"/test-libs/junit-platform-commons-*.jar \
      "$T"/test-libs/junit-platform-engine-*.jar "$T"/test-libs/opentest4j-*.jar "$T"/test-libs/apiguardian-*.jar
# libcortado_cuda.so (sm_80 + sm_90, ~60 MB) stays behind: gpu-session.sh builds it there for the
# GPU at hand (the native check needs that build anyway) and puts it in its place
tar czf "$B/cortado-gpu.tgz" -C "$T" --exclude='libcortado_cuda.so' jre classes test-classes test-libs
echo "gpu-bundle: $(du -sh "$B" | cut -f1) in $B (the device tool carries at most 64 MiB with the tree)"
ls -la "$B"
grep -q '^/.gpu-bundle/$' "$REPO/.gitignore" || echo "gpu-bundle: add /.gpu-bundle/ to .gitignore" >&2
