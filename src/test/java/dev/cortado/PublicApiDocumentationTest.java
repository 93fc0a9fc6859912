package dev.cortado;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Every public type of every exported package has a javadoc comment (the published javadoc jar,
 * {@code mvn -Ppublish package}, documents each of them; doclint's syntax checks run there).
 */
class PublicApiDocumentationTest {
    private static final Path SOURCES = Path.of("src/main/java");
    private static final Pattern EXPORTS = Pattern.compile("(?m)^\\s*exports\\s+([\\w.]+)\\s*;");
    private static final Pattern PUBLIC_TYPE = Pattern.compile(
            "(?m)^[ \\t]*public\\s+(?:(?:final|abstract|sealed|non-sealed|static|strictfp)\\s+)*"
                    + "(?:class|interface|record|enum|@interface)\\s+(\\w+)");
    private static final Pattern TRAILING_ANNOTATION = Pattern.compile("@[\\w.]+(?:\\([^()]*\\))?\\s*$");
    private static final Pattern LINE_COMMENT = Pattern.compile("(?m)[ \\t]*//[^\\n]*$");

    @Test
    void everyPublicTypeOfTheExportedPackagesHasAJavadocComment() throws IOException {
        List<String> packages = exportedPackages();
        assertTrue(packages.contains("dev.cortado.tensor"), "module-info.java exports " + packages);
        List<String> undocumented = new ArrayList<>();
        int checked = 0;
        for (String pkg : packages) {
            Path dir = SOURCES.resolve(pkg.replace('.', '/'));
            if (!Files.isDirectory(dir)) {
                continue; // generated sources (the protoc classes)
            }
            try (Stream<Path> files = Files.list(dir)) {
                for (Path file : files.filter(f -> f.toString().endsWith(".java")).sorted().toList()) {
                    String source = LINE_COMMENT.matcher(Files.readString(file)).replaceAll("");
                    Matcher type = PUBLIC_TYPE.matcher(source);
                    while (type.find()) {
                        checked++;
                        if (!documented(source.substring(0, type.start()))) {
                            undocumented.add(SOURCES.relativize(file) + ": " + type.group(1));
                        }
                    }
                }
            }
        }
        assertTrue(checked > 200, "only " + checked + " public types found: is " + SOURCES.toAbsolutePath() + " right?");
        assertEquals(List.of(), undocumented, "public types without a javadoc comment");
    }

    @Test
    void theCheckSeesAMissingComment() {
        String source = "package p;\n\n/** Documented. */\npublic final class A {\n    /* not javadoc */\n    public static final class B {\n    }\n}\n";
        Matcher type = PUBLIC_TYPE.matcher(source);
        assertTrue(type.find());
        assertTrue(documented(source.substring(0, type.start())), "A has a comment");
        assertTrue(type.find());
        assertFalse(documented(source.substring(0, type.start())), "B has none");
    }

    /** Whether the text before a declaration ends with a javadoc comment, annotations skipped. */
    private static boolean documented(String before) {
        String text = before.stripTrailing();
        for (String stripped = strip(text); !stripped.equals(text); stripped = strip(text)) {
            text = stripped;
        }
        return text.endsWith("*/") && text.startsWith("/**", text.lastIndexOf("/*"));
    }

    private static String strip(String text) {
        return TRAILING_ANNOTATION.matcher(text).replaceFirst("").stripTrailing();
    }

    private static List<String> exportedPackages() throws IOException {
        Matcher m = EXPORTS.matcher(Files.readString(SOURCES.resolve("module-info.java")));
        List<String> packages = new ArrayList<>();
        while (m.find()) {
            packages.add(m.group(1));
        }
        return packages;
    }
}
