package dev.cortado.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.convolutional.Conv2d;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.BatchNorm;
import ai.djl.nn.pooling.Pool;
import dev.cortado.autograd.Autograd;
import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.CompiledFunction;
import dev.cortado.graph.Graphs;
import dev.cortado.models.ResNet;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.BenchmarkParams;

/**
 * ResNet-18 inference (ImageNet shape: 3 x 224 x 224, 1000 classes, float32, eval mode: batch norm
 * on running statistics) at batch {@code batch}, where pre-packed weights matter: at batch 1 the
 * late stages (256 and 512 channels at 14 x 14 and 7 x 7) do little arithmetic per weight, and
 * Winograd's filter transform (16/9 of the weight written, then read) or DIRECT_NHWC's packing at
 * every call is most of a convolution's time.
 * <ul>
 *   <li>{@code eager}: {@code model.forward} without recording;</li>
 *   <li>{@code compiled}: {@code Graphs.compile} with frozen parameters (batch norms folded, NHWC
 *       chains, fused epilogues) and {@code prepackWeights(false)};</li>
 *   <li>{@code compiledPrepacked}: the same with the weights packed at compile time
 *       ({@code WeightPrepacking}, the default);</li>
 *   <li>{@code torch}: the same network in PyTorch 2.7.1 (eager, through DJL: aten convolution,
 *       batch norm in inference, relu, max and average pooling, linear; NCHW as PyTorch keeps it),
 *       on copies of the same weights, running statistics and input; its setup checks the logits
 *       against Cortado's (1e-3 relative).</li>
 * </ul>
 * ResNet-18 at 224 x 224 is 1.814 G multiply-adds per image, 3.63 GFLOP of direct convolution
 * (Winograd's 3x3 layers do 2.25x fewer multiplications, so a rate against the FMA ceiling can
 * pass 100%).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 2, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class ResNetInferenceBenchmark {
    @Param({"1"})
    public int batch;

    @Param({"1", "2"})
    public int threads;

    private Module net;
    private Tensor x;
    private CompiledFunction compiled;
    private NDManager torch;
    private Map<String, NDArray> tw;
    private NDArray tx;

    @Setup(Level.Trial)
    public void setup(BenchmarkParams params) {
        BenchSupport.setThreads(threads);
        net = ResNet.builder(ResNet.Depth.R18).classes(1000).params(ParamOptions.seeded(1)).build();
        net.eval();
        Generator g = Generator.seeded(2);
        for (Map.Entry<String, Tensor> e : net.namedBuffers().entrySet()) { // non-trivial running statistics
            if (e.getKey().endsWith("running_mean")) {
                try (Tensor r = g.normal(0, 0.1, DType.FLOAT32, Device.CPU, e.getValue().dims())) {
                    e.getValue().copyFrom(r);
                }
            } else if (e.getKey().endsWith("running_var")) {
                try (Tensor r = g.uniform(0.5, 1.5, DType.FLOAT32, Device.CPU, e.getValue().dims())) {
                    e.getValue().copyFrom(r);
                }
            }
        }
        x = g.normal(0, 1, DType.FLOAT32, Device.CPU, batch, 3, 224, 224);
        String name = params.getBenchmark();
        if (name.endsWith(".compiled") || name.endsWith(".compiledPrepacked")) {
            compiled = Graphs.compile(net, x, CompileOptions.builder().freezeParameters(true)
                    .prepackWeights(name.endsWith(".compiledPrepacked")).build());
            System.out.printf("%n%s: %d nodes, %d on pre-packed weights%n", name, compiled.graph().nodes().size(),
                    compiled.graph().nodes().stream().filter(n -> n.toString().contains("conv_prepacked")).count());
        } else if (name.endsWith(".torch")) {
            setupTorch();
        }
    }

    private void setupTorch() {
        torch = TorchPeer.start(threads);
        tw = new java.util.HashMap<>();
        net.namedParameters().forEach((k, v) -> tw.put(k, TorchPeer.copyOf(torch, v)));
        net.namedBuffers().forEach((k, v) -> {
            if (v != null && v.dtype() == DType.FLOAT32) {
                tw.put(k, TorchPeer.copyOf(torch, v));
            }
        });
        tx = TorchPeer.copyOf(torch, x);
        float[] want;
        try (Autograd.GradMode off = Autograd.noGrad(); Tensor y = net.forward(x)) {
            want = y.toFloatArray();
        }
        try (NDManager m = torch.newSubManager()) {
            tx.tempAttach(m); // every intermediate array is made in the input's manager: freed with m
            float[] got = torchForward(tx).toFloatArray();
            double scale = 0;
            for (float v : want) {
                scale = Math.max(scale, Math.abs(v));
            }
            for (int i = 0; i < want.length; i++) {
                if (Math.abs(got[i] - want[i]) > 1e-3 * scale) {
                    throw new IllegalStateException("PyTorch's ResNet-18 differs from Cortado's at logit " + i + ": " + got[i]
                            + " vs " + want[i]);
                }
            }
        }
    }

    private NDArray conv(NDArray in, String name, int stride, int pad) {
        return Conv2d.conv2d(in, tw.get(name), null, new Shape(stride, stride), new Shape(pad, pad), new Shape(1, 1), 1)
                .singletonOrThrow();
    }

    private NDArray bn(NDArray in, String name) {
        return BatchNorm.batchNorm(in, tw.get(name + ".running_mean"), tw.get(name + ".running_var"),
                tw.get(name + ".weight"), tw.get(name + ".bias"), 1, 0.1f, 1e-5f, false).singletonOrThrow();
    }

    /** ResNet-18 on the copied weights, named as Cortado's modules name them. */
    private NDArray torchForward(NDArray in) {
        NDArray h = ai.djl.nn.Activation.relu(bn(conv(in, "stem.0.weight", 2, 3), "stem.1"));
        h = Pool.maxPool2d(h, new Shape(3, 3), new Shape(2, 2), new Shape(1, 1), false);
        for (int s = 0; s < 4; s++) {
            for (int i = 0; i < 2; i++) {
                String p = "stages." + s + "." + i + ".";
                int stride = i == 0 && s > 0 ? 2 : 1;
                NDArray b = ai.djl.nn.Activation.relu(bn(conv(h, p + "body.0.weight", stride, 1), p + "body.1"));
                b = bn(conv(b, p + "body.3.weight", 1, 1), p + "body.4");
                NDArray sc = tw.containsKey(p + "shortcut.0.weight")
                        ? bn(conv(h, p + "shortcut.0.weight", stride, 0), p + "shortcut.1") : h;
                h = ai.djl.nn.Activation.relu(b.add(sc));
            }
        }
        NDArray pooled = Pool.globalAvgPool2d(h);
        return Linear.linear(pooled, tw.get("head.1.weight"), tw.get("head.1.bias")).singletonOrThrow();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (compiled != null) {
            compiled.close();
        }
        if (torch != null) {
            torch.close();
        }
        x.close();
        net.close();
    }

    @Benchmark
    public float eager() {
        try (Autograd.GradMode off = Autograd.noGrad(); Tensor y = net.forward(x)) {
            return y.toFloatArray()[0];
        }
    }

    @Benchmark
    public float compiled() {
        try (Tensor y = compiled.apply(x)) {
            return y.toFloatArray()[0];
        }
    }

    @Benchmark
    public float compiledPrepacked() {
        try (Tensor y = compiled.apply(x)) {
            return y.toFloatArray()[0];
        }
    }

    @Benchmark
    public float torch() {
        try (NDManager m = torch.newSubManager()) {
            tx.tempAttach(m); // every intermediate array is made in the input's manager: freed with m
            return torchForward(tx).getFloat(0, 0);
        }
    }
}
