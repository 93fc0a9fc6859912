package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.onnx.InferenceSession;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A CUDA inference session serving several threads: each run executing at once has a stream of its
 * own (the session makes one per concurrent run, no more), replays its memory pattern on that
 * stream, and gives the CPU session's outputs (1e-4 relative + 1e-5 absolute: cuBLAS and OpenBLAS
 * sum in different orders).
 */
@Tag("gpu")
class CudaServingTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    @Test
    void concurrentRunsGetAStreamEachAndTheCpuResults(@TempDir Path dir) throws Exception {
        Path file = writeMlp(dir);
        int threads = 4;
        SplittableRandom r = new SplittableRandom(7);
        List<float[]> inputs = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            float[] x = new float[8 * 64];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) r.nextDouble(-1, 1);
            }
            inputs.add(x);
        }
        try (InferenceSession cpu = InferenceSession.builder(file).device(Device.CPU).build();
             InferenceSession gpu = InferenceSession.builder(file).device(GPU).maxConcurrentRuns(threads).build()) {
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            CyclicBarrier start = new CyclicBarrier(threads);
            try {
                List<Future<float[]>> got = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    float[] x = inputs.get(t);
                    got.add(pool.submit(() -> {
                        start.await();
                        float[] last = null;
                        for (int i = 0; i < 20; i++) {
                            try (Tensor in = Tensor.of(x, GPU, 8, 64);
                                 Tensor out = Tensor.empty(DType.FLOAT32, GPU, 8, 64)) {
                                gpu.run(Map.of("x", in), Map.of("y", out));
                                last = out.toFloatArray();
                            }
                        }
                        return last;
                    }));
                }
                for (int t = 0; t < threads; t++) {
                    float[] want;
                    try (Tensor in = Tensor.of(inputs.get(t), Device.CPU, 8, 64)) {
                        Map<String, Tensor> o = cpu.run(Map.of("x", in));
                        want = o.get("y").toFloatArray();
                        o.values().forEach(Tensor::close);
                    }
                    float[] have = got.get(t).get();
                    for (int i = 0; i < want.length; i++) {
                        assertEquals(want[i], have[i], 1e-5 + 1e-4 * Math.abs(want[i]), "thread " + t + " element " + i);
                    }
                }
            } finally {
                pool.shutdown();
            }
            assertTrue(gpu.streamsCreated() >= 2 && gpu.streamsCreated() <= threads,
                    "streams: " + gpu.streamsCreated());
            assertTrue(gpu.memoryPatterns() >= 1);
        }
    }

    /** y = relu(x @ W + b) @ W2, x [8, 64]. */
    private static Path writeMlp(Path dir) throws IOException {
        SplittableRandom r = new SplittableRandom(3);
        var g = dev.cortado.onnx.proto.Onnx.GraphProto.newBuilder().setName("mlp");
        g.addInput(dev.cortado.onnx.proto.Onnx.ValueInfoProto.newBuilder().setName("x"));
        g.addOutput(dev.cortado.onnx.proto.Onnx.ValueInfoProto.newBuilder().setName("y"));
        g.addInitializer(floats("w", r, 64, 64));
        g.addInitializer(floats("b", r, 64));
        g.addInitializer(floats("w2", r, 64, 64));
        g.addNode(node("MatMul", "h0", "x", "w"));
        g.addNode(node("Add", "h1", "h0", "b"));
        g.addNode(node("Relu", "h2", "h1"));
        g.addNode(node("MatMul", "y", "h2", "w2"));
        var m = dev.cortado.onnx.proto.Onnx.ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(dev.cortado.onnx.proto.Onnx.OperatorSetIdProto.newBuilder().setVersion(17)).setGraph(g).build();
        Path file = dir.resolve("mlp.onnx");
        Files.write(file, m.toByteArray());
        return file;
    }

    private static dev.cortado.onnx.proto.Onnx.NodeProto node(String op, String out, String... in) {
        return dev.cortado.onnx.proto.Onnx.NodeProto.newBuilder().setOpType(op).addAllInput(List.of(in)).addOutput(out).build();
    }

    private static dev.cortado.onnx.proto.Onnx.TensorProto floats(String name, SplittableRandom r, long... dims) {
        int n = 1;
        for (long d : dims) {
            n *= (int) d;
        }
        var t = dev.cortado.onnx.proto.Onnx.TensorProto.newBuilder().setName(name)
                .setDataType(dev.cortado.onnx.proto.Onnx.TensorProto.DataType.FLOAT_VALUE);
        for (long d : dims) {
            t.addDims(d);
        }
        for (int i = 0; i < n; i++) {
            t.addFloatData((float) r.nextDouble(-0.3, 0.3));
        }
        return t.build();
    }
}
