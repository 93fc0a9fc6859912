#!/usr/bin/env bash
# Builds and runs a project that uses Cortado the way docs/getting-started.md tells a Maven user
# to: the BOM imported in <dependencyManagement>, the library declared without a version, and the
# "A first tensor" example of that page compiled and run as written. Then, when `gradle` is on the
# PATH (.ci/run installs Debian's), the same example as a Gradle build in the form that page gives
# for any Gradle version (the BOM through Spring's dependency-management plugin), also resolving
# the CUDA natives by their classifier. Needs the library and the BOM in ~/.m2 (mvn install;
# mvn -f bom/pom.xml install).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's|^  <version>\(.*\)</version>|\1|p' "$root/pom.xml" | head -1)"
dir="$(mktemp -d)"
mkdir -p "$dir/src/main/java"
cat > "$dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId>
  <artifactId>uses-cortado</artifactId>
  <version>1</version>
  <properties>
    <maven.compiler.source>17</maven.compiler.source>
    <maven.compiler.target>17</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>dev.cortado</groupId>
        <artifactId>cortado-bom</artifactId>
        <version>$version</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>dev.cortado</groupId>
      <artifactId>cortado</artifactId>
    </dependency>
  </dependencies>
</project>
POM
# The page's first java block: its imports stay at the top, its statements become main's body.
awk '/^## A first tensor/ { on = 1 } on && /^```java/ { inblock = 1; next } inblock && /^```/ { exit } inblock { print }' \
  "$root/docs/getting-started.md" > "$dir/snippet.txt"
[ -s "$dir/snippet.txt" ] || { echo "check-consumer: no java block under '## A first tensor'" >&2; exit 1; }
{
  grep '^import ' "$dir/snippet.txt"
  echo 'public class FirstTensor {'
  echo '    public static void main(String[] args) {'
  grep -v '^import ' "$dir/snippet.txt"
  echo '    }'
  echo '}'
} > "$dir/src/main/java/FirstTensor.java"
( cd "$dir" && mvn -B -q package dependency:build-classpath -Dmdep.outputFile=cp.txt >/dev/null \
    && java -cp "target/classes:$(cat cp.txt)" FirstTensor > out.txt 2>&1 ) \
  || { cat "$dir/out.txt" 2>/dev/null; echo "check-consumer: the getting-started example failed in $dir" >&2; exit 1; }
last="$(tail -1 "$dir/out.txt")"
awk -v v="$last" 'BEGIN { exit !(v > 0.999 && v < 1.001) }' \
  || { cat "$dir/out.txt"; echo "check-consumer: expected the last line to print 1.0, got '$last'" >&2; exit 1; }
echo "check-consumer: a Maven project importing cortado-bom $version ran the getting-started example (printed $last)"

command -v gradle >/dev/null || { echo "check-consumer: gradle not on the PATH, the Gradle form was not checked"; exit 0; }
gdir="$(mktemp -d)"
mkdir -p "$gdir/src/main/java"
cp "$dir/src/main/java/FirstTensor.java" "$gdir/src/main/java/"
# The build file of docs/getting-started.md ("Gradle, any version"), plus the run wiring.
awk '/^Gradle, any version/ { on = 1 } on && /^```groovy/ { inblock = 1; next } inblock && /^```/ { exit } inblock { print }' \
  "$root/docs/getting-started.md" \
  | sed -e "s/0\.1\.0-SNAPSHOT/$version/g" -e "s|// on a GPU: ||" > "$gdir/build.gradle"
grep -q "cortado-bom" "$gdir/build.gradle" \
  || { echo "check-consumer: no groovy block under 'Gradle, any version' in getting-started.md" >&2; exit 1; }
cat >> "$gdir/build.gradle" <<'GRADLE'
apply plugin: 'application'
mainClassName = 'FirstTensor'
task runtimeJars { doLast { configurations.runtimeClasspath.each { println "jar: " + it.name } } }
GRADLE
( cd "$gdir" && gradle -q --no-daemon run runtimeJars > out.txt 2>&1 ) \
  || { cat "$gdir/out.txt"; echo "check-consumer: the Gradle build of the getting-started example failed in $gdir" >&2; exit 1; }
glast="$(grep -v '^jar: ' "$gdir/out.txt" | tail -1)"
awk -v v="$glast" 'BEGIN { exit !(v > 0.999 && v < 1.001) }' \
  || { cat "$gdir/out.txt"; echo "check-consumer: Gradle: expected the example to print 1.0, got '$glast'" >&2; exit 1; }
grep -q "^jar: cortado-$version-linux-x86_64-cuda.jar" "$gdir/out.txt" \
  || { cat "$gdir/out.txt"; echo "check-consumer: Gradle did not resolve the CUDA natives (classifier linux-x86_64-cuda)" >&2; exit 1; }
echo "check-consumer: a Gradle $(gradle --version 2>/dev/null | sed -n 's/^Gradle //p') build importing cortado-bom $version ran the example (printed $glast) with the CUDA natives resolved"
