package dev.cortado.ops.opinfo;

import dev.cortado.ops.Op;
import dev.cortado.ops.OpRegistry;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;

/**
 * Writes {@code docs/reference/ops.md}: one row per registered op, from the registry (name,
 * inputs, backends, differentiable) and its OpInfo entry (family, dtypes checked, description).
 * {@link OpInfoTest} fails when the file differs; regenerate with {@link #REGENERATE}.
 */
public final class OpTable {
    private OpTable() {
    }

    public static final Path FILE = Path.of("docs/reference/ops.md");
    public static final String REGENERATE =
            "mvn -B verify -Dnative.cuda=OFF -Dtest=OpInfoTest -Dsurefire.failIfNoSpecifiedTests=false -Dopinfo.writeDocs=true";

    /** The page; an op without an OpInfo entry gets a row that says so (the walk fails for it anyway). */
    public static String markdown() {
        StringBuilder sb = new StringBuilder();
        sb.append("# Op reference\n\n")
                .append("<!-- Generated from the op registry by dev.cortado.ops.opinfo.OpTable; do not edit by hand.\n")
                .append("     Regenerate: ").append(REGENERATE).append(" -->\n\n")
                .append("Every registered op (`OpRegistry.all()`), with its tensor inputs, the\n")
                .append("backends that have a kernel, whether it has a backward rule, and the dtypes its OpInfo entry checks\n")
                .append("against a float64 reference (`src/test/java/dev/cortado/ops/opinfo/`). Backward ops (`*_backward`,\n")
                .append("`*_grad`) are checked through the gradient check of the op named in the differentiable column.\n\n")
                .append("| op | family | inputs | backends | differentiable | dtypes checked | description |\n")
                .append("|---|---|---|---|---|---|---|\n");
        for (Op<?> op : OpRegistry.all()) {
            sb.append(row(op)).append('\n');
        }
        return sb.toString();
    }

    static String row(Op<?> op) {
        OpInfo e = Catalogue.get(op.name());
        String family = e == null ? "?" : e.family();
        String dtypes = "?";
        if (e != null) {
            dtypes = e.dtypes().stream().map(OpTable::dtype).collect(Collectors.joining(", "));
            List<DType> cudaOnly = e.dtypes(Device.cuda(0)).stream().filter(t -> !e.dtypes().contains(t)).toList();
            if (op.backends().contains(DeviceType.CUDA) && !cudaOnly.isEmpty()) {
                dtypes += "; CUDA also " + cudaOnly.stream().map(OpTable::dtype).collect(Collectors.joining(", "));
            }
        }
        String diff;
        if (e == null) {
            diff = op.backward() != null ? "yes" : "no";
        } else {
            diff = switch (e.grad()) {
                case CHECK -> "yes";
                case SURROGATE -> "surrogate: " + e.gradNote();
                case COVERED_BY -> "backward of `" + e.gradNote() + "`";
                case NONE -> "no (" + e.gradNote() + ")";
            };
        }
        String backends = op.backends().stream().map(b -> b.name()).collect(Collectors.joining(", "));
        return "| `" + op.name() + "` | " + family + " | " + inputs(op) + " | " + backends + " | " + diff + " | " + dtypes
                + " | " + (e == null ? "(no OpInfo entry)" : e.description().replace("|", "\\|")) + " |";
    }

    private static String inputs(Op<?> op) {
        List<String> names = op.inputNames();
        if (names.isEmpty()) {
            return "—";
        }
        return names.stream().collect(Collectors.joining(", "));
    }

    private static String dtype(DType t) {
        return t.name().toLowerCase();
    }

    /** Writes the page (run from the repository root). */
    public static void main(String[] args) throws IOException {
        Files.createDirectories(FILE.getParent());
        Files.writeString(FILE, markdown());
        System.out.println("wrote " + FILE.toAbsolutePath());
    }
}
