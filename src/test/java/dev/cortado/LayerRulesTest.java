package dev.cortado;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;

import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.junit.AnalyzeClasses;
import com.tngtech.archunit.junit.ArchTest;
import com.tngtech.archunit.lang.ArchRule;
import com.tngtech.archunit.library.Architectures.LayeredArchitecture;
import java.util.ArrayList;
import java.util.List;

/**
 * The layer table of docs/architecture.md as a test: a class may use its own layer and the layers
 * below it, never one above it or a peer on its own level. The one arrow that points up is the
 * table's own: {@code tensor} uses {@code backend} through the interface package
 * {@code dev.cortado.backend} ({@code Backend}, {@code Backends}, the exceptions), never the CPU or
 * CUDA implementation packages. Only main classes are checked (tests cross layers on purpose).
 */
@AnalyzeClasses(packages = "dev.cortado", importOptions = ImportOption.DoNotIncludeTests.class)
class LayerRulesTest {

    /** Bottom to top; the layers on one level must not use each other. */
    private static final String[][] LEVELS = {
        {"tensor"},
        {"backend"},
        {"ops"},
        {"autograd", "optim"},
        {"sparse"},
        {"nn", "io", "settings"},
        {"quant", "distributed", "models"},
        {"graph"},
        {"onnx"},
        {"serve"},
        {"cli"},
    };

    private static String packages(String layer) {
        return switch (layer) {
            case "settings" -> "dev.cortado"; // the root package alone: dev.cortado.Cortado
            case "nn" -> "dev.cortado.nn..";  // with nn.functional
            default -> "dev.cortado." + layer + "..";
        };
    }

    @ArchTest
    static final ArchRule arrows_point_down = layers();

    @ArchTest
    static final ArchRule tensor_uses_backend_only_through_its_interface_package = noClasses()
            .that().resideInAPackage("dev.cortado.tensor..")
            .should().dependOnClassesThat().resideInAnyPackage("dev.cortado.backend.cpu..", "dev.cortado.backend.cuda..")
            .because("tensor may use backend through an interface (docs/architecture.md, the layer table)");

    private static ArchRule layers() {
        LayeredArchitecture rule = layeredArchitecture().consideringOnlyDependenciesInLayers();
        for (String[] level : LEVELS) {
            for (String layer : level) {
                rule = rule.layer(layer).definedBy(packages(layer));
            }
        }
        for (int i = 0; i < LEVELS.length; i++) {
            List<String> above = new ArrayList<>();
            for (int j = i + 1; j < LEVELS.length; j++) {
                above.addAll(List.of(LEVELS[j]));
            }
            if (LEVELS[i][0].equals("backend")) {
                above.add("tensor"); // the table's one upward arrow; narrowed by the rule above
            }
            for (String layer : LEVELS[i]) {
                rule = above.isEmpty()
                        ? rule.whereLayer(layer).mayNotBeAccessedByAnyLayer()
                        : rule.whereLayer(layer).mayOnlyBeAccessedByLayers(above.toArray(String[]::new));
            }
        }
        return rule.because("arrows point down the layer table: tensor -> backend -> ops -> autograd/optim "
                + "-> sparse -> nn/io -> quant -> graph -> onnx -> serve -> cli (docs/architecture.md)");
    }
}
