package dev.cortado.ops.opinfo;

import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.TestFactory;

/**
 * The CUDA twin of {@link OpInfoTest#referenceComparisons}: the same samples of every op with a
 * CUDA kernel, run on {@code cuda:0} in every dtype of the entry and compared with the float64
 * reference. Tagged {@code gpu} (run with {@code mvn verify -Pgpu}).
 */
@Tag("gpu")
class OpInfoCudaTest {

    /** The ops this test covers: the entries of ops with a CUDA kernel that keep their CUDA twin. */
    static Set<String> coveredOps() {
        Set<String> names = new TreeSet<>();
        for (OpInfo e : Catalogue.all()) {
            if (e.cudaTwin() && e.op().backends().contains(DeviceType.CUDA)) {
                names.add(e.name());
            }
        }
        return names;
    }

    @TestFactory
    List<DynamicTest> referenceComparisonsOnCuda() {
        Set<String> covered = coveredOps();
        Device cuda = Device.cuda(0);
        List<DynamicTest> tests = new ArrayList<>();
        for (OpInfo e : Catalogue.all()) {
            if (!covered.contains(e.name())) {
                continue;
            }
            for (DType t : e.dtypes(cuda)) {
                tests.add(dynamicTest(e.name() + " " + t.name().toLowerCase() + " cuda", () -> {
                    for (Sample s : e.samples(OpInfoTest.SEED, t)) {
                        e.checkAgainstReference(s, t, cuda);
                    }
                }));
            }
        }
        return tests;
    }
}
