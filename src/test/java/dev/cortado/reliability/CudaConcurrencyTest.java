package dev.cortado.reliability;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.cortado.backend.cuda.CachingAllocator;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.onnx.InferenceSession;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The concurrency rules on a GPU (docs/reliability.md#concurrency): the CUDA caching allocator
 * under 16 threads allocating, filling, checking and freeing tensors of random sizes (no block
 * held twice: every tensor still holds its own thread's value when read back; the allocator's
 * counters balance), and 16 threads on one CUDA inference session getting bitwise the results
 * of one thread.
 */
@Tag("gpu")
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class CudaConcurrencyTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    @Test
    void theCachingAllocatorHandsNoBlockOutTwiceUnderSixteenThreads() throws Exception {
        CachingAllocator alloc = CudaBackend.instance().allocator(GPU);
        long live = alloc.liveAllocations();
        long bytes = alloc.stats().allocatedBytes();
        AtomicLong wrong = new AtomicLong();
        ConcurrencyTest.onThreads(ConcurrencyTest.THREADS, t -> {
            SplittableRandom r = new SplittableRandom(300 + t);
            Tensor[] held = new Tensor[4];
            float[] value = new float[4];
            for (int it = 0; it < 400; it++) {
                int slot = r.nextInt(held.length);
                if (held[slot] != null) {
                    float[] back = held[slot].toFloatArray();
                    if (back[0] != value[slot] || back[back.length - 1] != value[slot] || back[back.length / 2] != value[slot]) {
                        wrong.incrementAndGet();
                    }
                    held[slot].close();
                    held[slot] = null;
                } else {
                    long n = Math.max(1, ConcurrencyTest.randomSize(r) / 4);
                    value[slot] = t * 1000 + it;
                    held[slot] = Tensor.full(value[slot], DType.FLOAT32, GPU, n);
                }
            }
            for (Tensor h : held) {
                if (h != null) {
                    h.close();
                }
            }
            return null;
        });
        assertEquals(0, wrong.get(), "tensors whose block another thread wrote");
        assertEquals(live, alloc.liveAllocations(), "live blocks balance: " + alloc.stats());
        assertEquals(bytes, alloc.stats().allocatedBytes(), "allocated bytes balance: " + alloc.stats());
        System.out.println("CUDA caching allocator stress: " + alloc.stats());
    }

    @Test
    void sixteenThreadsOnOneCudaInferenceSessionGetBitwiseTheSingleThreadResults() throws Exception {
        int in = 784;
        float[][] inputs = new float[4][];
        SplittableRandom r = new SplittableRandom(40);
        for (int i = 0; i < inputs.length; i++) {
            inputs[i] = TestModels.gaussian(r, (i + 1) * in, 1.0);
        }
        try (InferenceSession s = InferenceSession.builder(TestModels.mlp(7, in, 256, 10)).device(GPU)
                .maxConcurrentRuns(ConcurrencyTest.THREADS).build()) {
            Function<Integer, float[][]> all = t -> {
                float[][] out = new float[inputs.length][];
                for (int k = 0; k < inputs.length; k++) {
                    int i = (k + t) % inputs.length;
                    try (Scope scope = Scope.open()) {
                        out[i] = s.run(Map.of("x", Tensor.of(inputs[i], Device.CPU, i + 1, in).to(GPU))).get("y")
                                .toFloatArray();
                    }
                }
                return out;
            };
            float[][] single = all.apply(0);
            List<float[][]> many = ConcurrencyTest.onThreads(ConcurrencyTest.THREADS, all);
            for (int t = 0; t < many.size(); t++) {
                for (int i = 0; i < inputs.length; i++) {
                    assertArrayEquals(single[i], many.get(t)[i], 0f, "thread " + t + ", request " + i);
                }
            }
        }
    }
}
