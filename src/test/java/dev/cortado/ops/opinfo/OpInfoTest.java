package dev.cortado.ops.opinfo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.ops.Op;
import dev.cortado.ops.OpRegistry;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Registry-driven tests. {@link #everyRegisteredOpIsCovered} walks {@link OpRegistry#all()} and
 * fails for an op without (1) an OpInfo entry (samples and a float64 reference, run by
 * {@link #referenceComparisons}), (2) a gradient check when it has a backward rule (run by
 * {@link #gradientChecks}) or an explicit "covered by the gradient of X" / "not
 * differentiable", (3) coverage by the CUDA twin {@link OpInfoCudaTest} when it has a CUDA
 * kernel, (4) its row in docs/reference/ops.md, which must equal what {@link OpTable} generates.
 *
 * <p>System property {@code opinfo.families} (comma-separated) limits the sample tests to some
 * families (the reference-kernel execution in pom.xml uses it); {@code opinfo.writeDocs=true}
 * rewrites docs/reference/ops.md instead of comparing it.
 */
class OpInfoTest {
    static final long SEED = 1234;

    @Test
    void everyRegisteredOpIsCovered() throws IOException {
        if (Boolean.getBoolean("opinfo.writeDocs")) {
            OpTable.main(new String[0]);
        }
        List<String> problems = new ArrayList<>();
        Set<String> twin = OpInfoCudaTest.coveredOps();
        String page = Files.exists(OpTable.FILE) ? Files.readString(OpTable.FILE) : "";
        for (Op<?> op : OpRegistry.all()) {
            String n = op.name();
            OpInfo e = Catalogue.get(n);
            if (e == null) {
                problems.add(n + ": no OpInfo entry (samples and a float64 reference); add one to the family's *Samples.java"
                        + " in src/test/java/dev/cortado/ops/opinfo/");
                continue;
            }
            boolean differentiable = op.backward() != null;
            // a backward rule on an op whose outputs are integers (argmax) never runs: "not differentiable" is right
            boolean checked = e.grad() == OpInfo.Grad.CHECK || e.grad() == OpInfo.Grad.SURROGATE;
            if (differentiable && !checked && (e.grad() != OpInfo.Grad.NONE || e.floatingOutputs())) {
                problems.add(n + ": has a backward rule but its OpInfo entry declares no gradient check (.gradCheck())");
            }
            if (!differentiable && checked) {
                problems.add(n + ": its OpInfo entry asks for a gradient check but the op has no backward rule");
            }
            if (e.grad() == OpInfo.Grad.COVERED_BY) {
                OpInfo forward = Catalogue.get(e.gradNote());
                if (forward == null || (forward.grad() != OpInfo.Grad.CHECK && forward.grad() != OpInfo.Grad.SURROGATE)) {
                    problems.add(n + ": declared covered by the gradient of '" + e.gradNote()
                            + "', which has no gradient check");
                }
            }
            if (op.backends().contains(DeviceType.CUDA) && !twin.contains(n)) {
                problems.add(n + ": has a CUDA kernel but no CUDA twin test (OpInfoCudaTest runs the entries with cudaTwin)");
            }
            if (!page.contains("\n" + OpTable.row(op) + "\n")) {
                problems.add(n + ": no up-to-date row in " + OpTable.FILE);
            }
        }
        for (OpInfo e : Catalogue.all()) {
            try {
                OpRegistry.get(e.name());
            } catch (IllegalArgumentException x) {
                problems.add(e.name() + ": OpInfo entry for an op that is not registered");
            }
        }
        if (!problems.isEmpty()) {
            fail(problems.size() + " op(s) not covered:\n  " + String.join("\n  ", problems)
                    + (problems.stream().anyMatch(p -> p.contains(OpTable.FILE.toString())) ? "\nregenerate the op table: "
                            + OpTable.REGENERATE : ""));
        }
        assertEquals(OpTable.markdown(), page, OpTable.FILE + " differs from the registry; regenerate it: " + OpTable.REGENERATE);
    }

    /** Families selected by -Dopinfo.families (all when unset). */
    static boolean selected(OpInfo e) {
        String f = System.getProperty("opinfo.families", "");
        return f.isBlank() || Set.of(f.split(",")).contains(e.family());
    }

    @TestFactory
    List<DynamicTest> referenceComparisons() {
        List<DynamicTest> tests = new ArrayList<>();
        for (OpInfo e : Catalogue.all()) {
            if (!selected(e)) {
                continue;
            }
            for (DType t : e.dtypes()) {
                tests.add(dynamicTest(e.name() + " " + t.name().toLowerCase(), () -> {
                    for (Sample s : e.samples(SEED, t)) {
                        e.checkAgainstReference(s, t, Device.CPU);
                    }
                }));
            }
        }
        return tests;
    }

    @TestFactory
    List<DynamicTest> gradientChecks() {
        List<DynamicTest> tests = new ArrayList<>();
        for (OpInfo e : Catalogue.all()) {
            if ((e.grad() != OpInfo.Grad.CHECK && e.grad() != OpInfo.Grad.SURROGATE) || !selected(e)) {
                continue;
            }
            tests.add(dynamicTest(e.name(), () -> {
                int checked = 0;
                for (Sample s : e.samples(SEED + 1, DType.FLOAT64)) {
                    if (s.gradOutput() >= 0 && !s.isEmpty()) {
                        if (e.grad() == OpInfo.Grad.SURROGATE) {
                            e.checkSurrogateGradient(s, SEED + 2 + checked);
                        } else {
                            e.checkGradient(s);
                        }
                        checked++;
                    }
                }
                if (checked == 0) {
                    fail(e.name() + ": no sample for the gradient check");
                }
            }));
        }
        return tests;
    }
}
