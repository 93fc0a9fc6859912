package dev.cortado.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.kernels.NativeCodes;
import java.util.function.LongFunction;
import org.junit.jupiter.api.Test;

/**
 * The compute-ceiling probes (native/cpu/probe.cpp) that the JMH ratios divide by: each must
 * actually run its instruction chains, which their exact lane sums prove (a probe whose loop the
 * compiler folded, or that ran fewer steps, sums to something else), or answer
 * CT_ERR_UNSUPPORTED where this CPU lacks the instruction; bad step counts are refused.
 */
class CeilingProbeTest {
    interface Probe {
        int run(long steps, double[] sum);
    }

    private static void check(String name, Probe probe, long steps, LongFunction<Double> want) {
        double[] sum = new double[1];
        int status = probe.run(steps, sum);
        if (status == NativeCodes.ERR_UNSUPPORTED) {
            String msg = NativeCpu.ct_cpu_last_error().getString();
            assertTrue(msg.contains("this CPU has no"), name + ": " + msg);
            return;
        }
        assertEquals(0, status, name + ": " + NativeCpu.ct_cpu_last_error().getString());
        assertEquals(want.apply(steps), sum[0], 0.0, name + " with " + steps + " steps");
        assertEquals(NativeCodes.ERR_INVALID_ARG, probe.run(-1, sum), name + " with -1 steps");
        assertEquals(NativeCodes.ERR_INVALID_ARG, probe.run(1L << 40, sum), name + " with 2^40 steps");
    }

    private static double chains(double perStep, long steps) {
        double s = 0;
        for (int j = 0; j < 24; j++) {
            s += 16 * (j + perStep * steps);
        }
        return s;
    }

    @Test
    void probesSumExactlyOrSayTheCpuLacksTheInstruction() {
        for (long steps : new long[] {0, 1, 1000, 12345}) {
            check("bf16_dot", NativeCpu::ct_cpu_probe_bf16_dot, steps, n -> chains(0x1p-12, n));
            check("fma_f32", NativeCpu::ct_cpu_probe_fma_f32, steps, n -> chains(0x1p-12, n));
            check("vnni_u8s8", NativeCpu::ct_cpu_probe_vnni_u8s8, steps, n -> chains(4, n));
            check("amx_bf16", NativeCpu::ct_cpu_probe_amx_bf16, steps, n -> 4.0 * 256 * 32 * n);
            check("amx_int8", NativeCpu::ct_cpu_probe_amx_int8, steps, n -> 4.0 * 256 * 64 * n);
        }
    }
}
