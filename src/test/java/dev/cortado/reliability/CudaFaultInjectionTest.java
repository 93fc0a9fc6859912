package dev.cortado.reliability;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.CudaException;
import dev.cortado.backend.DeviceOutOfMemoryException;
import dev.cortado.backend.cuda.CachingAllocator;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.nn.Activation;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.Sequential;
import dev.cortado.optim.Adam;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Fault injection on the CUDA path (docs/reliability.md#cuda-fault-injection): a device
 * out-of-memory inside a training step is survived (the allocator's flush-and-retry inside the
 * step; a failed step leaves the model as it was and the step retried once the memory is back
 * succeeds with the result an undisturbed step gets); an illegal-address kernel fault (the
 * test-only debug kernel) surfaces as a {@link CudaException} naming the op, after which the
 * device is reported unusable on its next use instead of hanging. The fault breaks the CUDA
 * context for the rest of the process, so it runs in a child JVM ({@link FaultChild}).
 */
@Tag("gpu")
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class CudaFaultInjectionTest {
    private static final Device GPU = Device.cuda(0);
    static final int IN = 512;
    static final int HIDDEN = 1024;
    static final int BATCH = 4096;

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    static Module model(long seed) {
        Module m = new Sequential(new Linear(IN, HIDDEN), Activation.relu(), new Linear(HIDDEN, 10));
        SplittableRandom r = new SplittableRandom(seed);
        for (Tensor p : m.parameters()) {
            try (Tensor v = Tensor.of(TestModels.gaussian(r, (int) p.numel(), 0.05), Device.CPU, p.dims())) {
                p.copyFrom(v);
            }
        }
        return m.to(GPU);
    }

    /** One AdamW step on a fixed batch; its loss. */
    static double step(Module m, Adam opt, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        long[] labels = new long[BATCH];
        for (int i = 0; i < BATCH; i++) {
            labels[i] = r.nextInt(10);
        }
        try (Scope scope = Scope.open()) {
            Tensor x = Tensor.of(TestModels.gaussian(r, BATCH * IN, 1.0), Device.CPU, BATCH, IN).to(GPU);
            Tensor loss = Losses.crossEntropy(m.forward(x), Tensor.of(labels, Device.CPU, BATCH).to(GPU));
            opt.zeroGrad();
            loss.backward();
            opt.step();
            return loss.item();
        }
    }

    static List<float[]> parameters(Module m) {
        List<float[]> out = new ArrayList<>();
        for (Tensor p : m.parameters()) {
            try (Tensor c = p.cpu()) {
                out.add(c.toFloatArray());
            }
        }
        return out;
    }

    /** Allocates device memory in chunks of {@code chunk} bytes (then smaller) until the device is full. */
    static List<Tensor> fillDevice(long chunk) {
        List<Tensor> hog = new ArrayList<>();
        for (long c = chunk; c >= 1L << 20; c /= 4) {
            while (true) {
                try {
                    hog.add(Tensor.zeros(DType.UINT8, GPU, c));
                } catch (DeviceOutOfMemoryException e) {
                    break;
                }
            }
        }
        return hog;
    }

    @Test
    void aStepThatRunsIntoACacheFullOfFreedBlocksFlushesItAndSucceeds() {
        CachingAllocator alloc = CudaBackend.instance().allocator(GPU);
        try (Module pressed = model(1); Module calm = model(1);
             Adam optPressed = Adam.adamW().lr(1e-3).build(pressed.parameters());
             Adam optCalm = Adam.adamW().lr(1e-3).build(calm.parameters())) {
            double want = step(calm, optCalm, 2);
            // every free byte ends up in the cache, in 1 GiB (and smaller) size classes the step never uses
            fillDevice(1L << 30).forEach(Tensor::close);
            long flushes = alloc.stats().cacheFlushes();
            double got = step(pressed, optPressed, 2);
            assertTrue(alloc.stats().cacheFlushes() > flushes, "the step needed the cache flushed: " + alloc.stats());
            assertEquals(want, got, 1e-6 * Math.abs(want), "the loss of the step under pressure");
            List<float[]> a = parameters(calm);
            List<float[]> b = parameters(pressed);
            for (int i = 0; i < a.size(); i++) {
                assertArrayEquals(a.get(i), b.get(i), 1e-6f, "parameter " + i + " after the step");
            }
        }
    }

    @Test
    void aStepThatRunsOutOfDeviceMemoryFailsCleanlyAndSucceedsWhenRetried() {
        CachingAllocator alloc = CudaBackend.instance().allocator(GPU);
        try (Module pressed = model(3); Module calm = model(3);
             Adam optPressed = Adam.adamW().lr(1e-3).build(pressed.parameters());
             Adam optCalm = Adam.adamW().lr(1e-3).build(calm.parameters())) {
            step(calm, optCalm, 4); // the first steps create the optimizers' state
            step(pressed, optPressed, 4);
            List<float[]> before = parameters(pressed);
            long live = alloc.liveAllocations();
            List<Tensor> hog = fillDevice(1L << 30); // live: the flush cannot help
            DeviceOutOfMemoryException oom = assertThrows(DeviceOutOfMemoryException.class,
                    () -> step(pressed, optPressed, 5));
            assertTrue(oom.getMessage().contains("out of memory"), oom.getMessage());
            hog.forEach(Tensor::close);
            assertEquals(live, alloc.liveAllocations(), "the failed step's scope freed what it had allocated");
            List<float[]> after = parameters(pressed);
            for (int i = 0; i < before.size(); i++) {
                assertArrayEquals(before.get(i), after.get(i), 0f, "parameter " + i + " untouched by the failed step");
            }
            alloc.emptyCache();
            double want = step(calm, optCalm, 5);
            double got = step(pressed, optPressed, 5); // the retry
            assertEquals(want, got, 1e-6 * Math.abs(want), "the retried step's loss");
            List<float[]> a = parameters(calm);
            List<float[]> b = parameters(pressed);
            for (int i = 0; i < a.size(); i++) {
                assertArrayEquals(a.get(i), b.get(i), 1e-6f, "parameter " + i + " after the retried step");
            }
        }
    }

    @Test
    void anIllegalAddressFaultNamesTheOpAndTheDeviceIsThenReportedUnusable() throws Exception {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process child = new ProcessBuilder(java.toString(), "-cp", classPath(),
                "-Dcortado.device=cpu", FaultChild.class.getName()).redirectErrorStream(true).start();
        boolean exited = child.waitFor(180, TimeUnit.SECONDS);
        if (!exited) {
            child.destroyForcibly();
        }
        String out = new String(child.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(exited, "the child hung after the kernel fault:\n" + out);
        assertEquals(0, child.exitValue(), "child output:\n" + out);
        assertTrue(out.contains("FAULT-CHILD PASS"), out);
    }

    /**
     * This JVM's class path, with the URLs of the loader that loaded the tests (the JUnit console
     * launcher of scripts/gpu-session.sh loads them through its own loader, not java.class.path).
     */
    static String classPath() {
        StringBuilder cp = new StringBuilder(System.getProperty("java.class.path"));
        for (ClassLoader l = FaultChild.class.getClassLoader(); l != null; l = l.getParent()) {
            if (l instanceof java.net.URLClassLoader u) {
                for (java.net.URL url : u.getURLs()) {
                    try {
                        cp.append(java.io.File.pathSeparator).append(Path.of(url.toURI()));
                    } catch (java.net.URISyntaxException | IllegalArgumentException e) {
                        // not a file: nothing a child JVM could load from
                    }
                }
            }
        }
        return cp.toString();
    }

    /** The child JVM: a healthy op, the fault, then the next op; exits 0 when all went as documented. */
    public static final class FaultChild {
        private FaultChild() {
        }

        /** Entry point of the child JVM. */
        public static void main(String[] args) {
            try (Tensor t = Tensor.full(2.0, DType.FLOAT32, GPU, 1000)) {
                try (Tensor s = t.add(t)) {
                    check(s.toFloatArray()[999] == 4.0f, "a healthy op works before the fault");
                }
                CudaBackend.instance().debugFaultKernelForTesting(GPU, false);
                check(CudaBackend.instance().isUsable(0), "the NONE kind is a correct launch");
                CudaException fault = null;
                try {
                    CudaBackend.instance().debugFaultKernelForTesting(GPU, true);
                } catch (CudaException e) {
                    fault = e;
                }
                check(fault != null, "the fault surfaced as a CudaException");
                System.out.println("fault: " + fault.getMessage());
                check(fault.getMessage().contains("debugFaultKernel(ILLEGAL_ADDRESS) on cuda:0"), "it names the op");
                check(fault.getMessage().contains("700") && fault.getMessage().contains("unusable"),
                        "it names the CUDA error and says the device is now unusable");
                check(!CudaBackend.instance().isUsable(0), "the backend reports cuda:0 unusable");
                CudaException next = null;
                try (Tensor s = t.add(t)) {
                    check(false, "an op ran on a lost device");
                } catch (CudaException e) {
                    next = e;
                }
                System.out.println("next use: " + next.getMessage());
                check(next.getMessage().contains("cuda:0 is unusable"), "the next use fails clearly");
            } catch (Throwable e) {
                e.printStackTrace(System.out);
                System.exit(1);
            }
            // closing the tensors above after the fault did not throw
            System.out.println("FAULT-CHILD PASS");
            System.exit(0);
        }

        private static void check(boolean ok, String what) {
            if (!ok) {
                System.out.println("FAULT-CHILD FAIL: " + what);
                System.exit(1);
            }
            System.out.println("ok: " + what);
        }
    }
}
