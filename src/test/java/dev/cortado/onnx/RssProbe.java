package dev.cortado.onnx;

import dev.cortado.Cortado;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;

/**
 * The child process of {@link InferenceSessionTest#residentMemorySettlesOverLoadCloseCyclesAndRequests}:
 * {@code RssProbe MODEL CYCLES SETTLE_CYCLES REQUESTS_PER_CYCLE SESSION_REQUESTS} runs two phases,
 * each of load/close cycles with REQUESTS_PER_CYCLE requests per cycle followed by
 * SESSION_REQUESTS requests on one session: the first phase has SETTLE_CYCLES cycles and ends by
 * printing {@code settled <VmRSS kB>}, the second has the other cycles and prints
 * {@code end <VmRSS kB>}. The model's input is x [batch, seq, in]. Exits 1 when a close leaves
 * engine memory allocated.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
public final class RssProbe {
    private final Path file;
    private final int perCycle;
    private final long allocated;
    private int in = -1;
    private float[] x;

    private RssProbe(Path file, int perCycle) {
        this.file = file;
        this.perCycle = perCycle;
        this.allocated = Cortado.memoryStats(Device.CPU).allocatedBytes();
    }

    static long residentKb() throws java.io.IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        throw new IllegalStateException("no VmRSS in /proc/self/status");
    }

    private InferenceSession open() throws java.io.IOException {
        InferenceSession s = InferenceSession.builder(file).device(Device.CPU).shapeBuckets(1, 4, 8).build();
        if (x == null) {
            in = (int) s.model().inputInfo("x").getType().getTensorType().getShape().getDim(2).getDimValue();
            x = InferenceSessionTest.random(new java.util.Random(6), 2 * 8 * in);
        }
        return s;
    }

    private void requests(InferenceSession s, int n) {
        for (int i = 0; i < n; i++) {
            int batch = 1 + i % 2;
            int seq = 1 + i % 8;
            try (Scope scope = Scope.open()) {
                s.run(Map.of("x", Tensor.of(Arrays.copyOf(x, batch * seq * in), Device.CPU, batch, seq, in)));
            }
        }
    }

    private void phase(int cycles, int sessionRequests) throws java.io.IOException {
        for (int c = 0; c < cycles; c++) {
            try (InferenceSession s = open()) {
                requests(s, perCycle);
            }
            long left = Cortado.memoryStats(Device.CPU).allocatedBytes() - allocated;
            if (left != 0) {
                System.out.println("a load/close cycle left " + left + " bytes allocated");
                System.exit(1);
            }
        }
        try (InferenceSession s = open()) {
            requests(s, sessionRequests);
        }
        System.gc();
    }

    /** Runs the probe (arguments above). */
    public static void main(String[] args) throws Exception {
        RssProbe p = new RssProbe(Path.of(args[0]), Integer.parseInt(args[3]));
        int cycles = Integer.parseInt(args[1]);
        int settle = Integer.parseInt(args[2]);
        int sessionRequests = Integer.parseInt(args[4]);
        p.phase(settle, sessionRequests);
        System.out.println("settled " + residentKb());
        p.phase(cycles - settle, sessionRequests);
        System.out.println("end " + residentKb());
    }
}
