package dev.cortado.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.convolutional.Conv2d;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.BatchNorm;
import ai.djl.nn.norm.LayerNorm;
import ai.djl.training.GradientCollector;
import dev.cortado.models.ResNet;
import dev.cortado.nn.MLP;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.TransformerBlock;
import dev.cortado.ops.Generator;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
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
 * Training throughput of the blocks that make up most of ResNet-50 and ViT-B/16, float32, Cortado
 * next to PyTorch (libtorch 2.7.1 CPU through DJL, {@link TorchPeer}) on the same shapes and weights:
 * <ul>
 *   <li>{@code resnet50}: a stage-3 bottleneck of ResNet-50 (6 of its 16 blocks are this one):
 *       1x1 1024 -> 256, BN, ReLU, 3x3 256 -> 256, BN, ReLU, 1x1 256 -> 1024, BN, identity shortcut,
 *       ReLU, on [16, 1024, 14, 14] (NCHW, batch norm in training mode). About 2 x 196 x 1.11M =
 *       0.44 GFLOP per image forward, 1.31 GFLOP per image per step;</li>
 *   <li>{@code vit_b16}: a ViT-B/16 block (pre-norm: LayerNorm eps 1e-6, 12-head attention with
 *       separate Q, K, V and output projections, LayerNorm, MLP 768 -> 3072 -> 768 with exact GELU,
 *       both residuals) on [8, 197, 768]. About 2 x 197 x 7.08M + 4 x 197^2 x 768 = 2.91 GFLOP per
 *       image forward, 8.7 GFLOP per image per step.</li>
 * </ul>
 * One step: forward, backward from a fixed random output gradient (the input requires a gradient, as
 * a block inside a network does, so the data gradient is computed too), SGD update of the block's
 * parameters (lr 1e-4), gradients cleared. Cortado runs its own modules ({@code ResNet}'s
 * bottleneck, {@code TransformerBlock} as {@code VisionTransformer} builds it, attention through its
 * fused scaled-dot-product kernel); PyTorch runs the same computation written with DJL's functional
 * ops ({@code Conv2d.conv2d}, {@code BatchNorm.batchNorm}, {@code LayerNorm.layerNorm},
 * {@code Linear.linear}, matmul-softmax-matmul attention: DJL exposes no fused attention) under
 * autograd. Blocks per second = 1000 / (ms per step); images per second = batch x that.
 *
 * <p>Sanity, in the PyTorch forks' setup: from the same weights and input, the two forward
 * outputs and the input gradients agree within 1e-3 relative.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 2, time = 3, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 3, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class VisionBlocksBenchmark {
    static final double LR = 1e-4;

    @Param({"resnet50", "vit_b16"})
    public String block;

    @Param({"1", "2"})
    public int threads;

    private Module owner;
    private Module cortado;
    private Sgd sgd;
    private Tensor x;
    private Tensor dy;

    private NDManager torch;
    private Map<String, NDArray> tp;
    private NDArray tx;
    private NDArray tdy;

    @Setup(Level.Trial)
    public void setup(BenchmarkParams params) {
        BenchSupport.setThreads(threads);
        ParamOptions p = ParamOptions.seeded(11);
        long[] in;
        if (block.equals("resnet50")) {
            owner = ResNet.builder(ResNet.Depth.R50).params(p).build();
            cortado = owner.child("stages").child("2").child("1");   // stage 3, an identity-shortcut block
            in = new long[] {16, 1024, 14, 14};
        } else {
            cortado = TransformerBlock.builder(768, 12).mlp(MLP.Kind.GELU, 3072)
                    .norm(TransformerBlock.Norm.LAYER_NORM, 1e-6).params(p).build();
            owner = cortado;
            in = new long[] {8, 197, 768};
        }
        cortado.train();
        sgd = Sgd.builder().lr(LR).build(cortado.parameters());
        try (dev.cortado.tensor.Scope ignored = dev.cortado.tensor.Scope.detached()) {
            x = Generator.seeded(12).normal(0, 1, DType.FLOAT32, Device.CPU, in).requiresGrad(true);
            dy = Generator.seeded(13).normal(0, 1, DType.FLOAT32, Device.CPU, in);
        }
        if (params.getBenchmark().endsWith(".torchStep")) {
            torch = TorchPeer.start(threads);
            tp = new LinkedHashMap<>();
            for (Map.Entry<String, Tensor> e : cortado.state().entrySet()) {
                if (!e.getKey().endsWith("num_batches_tracked")) {
                    NDArray a = TorchPeer.copyOf(torch, e.getValue());
                    a.setRequiresGradient(e.getValue().requiresGrad());
                    tp.put(e.getKey(), a);
                }
            }
            tx = TorchPeer.copyOf(torch, x);
            tdy = TorchPeer.copyOf(torch, dy);
            check();
        }
    }

    /** Forward outputs and input gradients of both, from the same weights and input (before any update). */
    private void check() {
        float[] cy;
        float[] cdx;
        try (dev.cortado.tensor.Scope s = dev.cortado.tensor.Scope.open()) {
            Tensor y = cortado.forward(x);
            cy = y.toFloatArray();
            y.backward(dy);
            cdx = x.grad().toFloatArray();
            x.zeroGrad();
            cortado.zeroGrad();
        }
        float[] ty;
        float[] tdx;
        try (NDManager m = torch.newSubManager(); GradientCollector gc = torch.getEngine().newGradientCollector()) {
            NDArray lx = TorchPeer.leaf(tx, m);
            NDArray y = torchForward(lx);
            ty = y.toFloatArray();
            TorchPeer.backward(y, tdy);
            tdx = lx.getGradient().toFloatArray();
            for (NDArray a : tp.values()) {
                if (a.hasGradient()) {
                    a.getGradient().subi(a.getGradient());
                }
            }
        }
        TorchPeer.check(block + " forward", cy, ty, 1e-3);
        TorchPeer.check(block + " input gradient", cdx, tdx, 1e-3);
    }

    /** The PyTorch forward of the block on {@code in} (batch norm in training mode, as Cortado's). */
    private NDArray torchForward(NDArray in) {
        if (block.equals("resnet50")) {
            NDArray h = Activation.relu(bn(Conv2d.conv2d(in, tp.get("body.0.weight"), null).head(), "body.1"));
            h = Activation.relu(bn(Conv2d.conv2d(h, tp.get("body.3.weight"), null, new Shape(1, 1), new Shape(1, 1))
                    .head(), "body.4"));
            h = bn(Conv2d.conv2d(h, tp.get("body.6.weight"), null).head(), "body.7");
            return Activation.relu(h.add(in));
        }
        long b = in.getShape().get(0);
        long t = in.getShape().get(1);
        NDArray h = LayerNorm.layerNorm(in, new Shape(768), tp.get("norm1.weight"), tp.get("norm1.bias"), 1e-6f).head();
        NDArray q = heads(Linear.linear(h, tp.get("attn.wq.weight"), tp.get("attn.wq.bias")).head(), b, t);
        NDArray k = heads(Linear.linear(h, tp.get("attn.wk.weight"), tp.get("attn.wk.bias")).head(), b, t);
        NDArray v = heads(Linear.linear(h, tp.get("attn.wv.weight"), tp.get("attn.wv.bias")).head(), b, t);
        NDArray att = q.matMul(k.transpose(0, 1, 3, 2)).mul(0.125f).softmax(-1).matMul(v);
        NDArray merged = att.transpose(0, 2, 1, 3).reshape(b, t, 768);
        NDArray r = in.add(Linear.linear(merged, tp.get("attn.wo.weight"), tp.get("attn.wo.bias")).head());
        NDArray h2 = LayerNorm.layerNorm(r, new Shape(768), tp.get("norm2.weight"), tp.get("norm2.bias"), 1e-6f).head();
        NDArray f = Activation.gelu(Linear.linear(h2, tp.get("mlp.fc1.weight"), tp.get("mlp.fc1.bias")).head());
        return r.add(Linear.linear(f, tp.get("mlp.fc2.weight"), tp.get("mlp.fc2.bias")).head());
    }

    private static NDArray heads(NDArray a, long b, long t) {
        return a.reshape(b, t, 12, 64).transpose(0, 2, 1, 3);
    }

    private NDArray bn(NDArray in, String name) {
        // DJL's momentum 0.9 is PyTorch's 0.1 (the weight of the old running value)
        return BatchNorm.batchNorm(in, tp.get(name + ".running_mean"), tp.get(name + ".running_var"),
                tp.get(name + ".weight"), tp.get(name + ".bias"), 1, 0.9f, 1e-5f, true).head();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        sgd.close();
        owner.close();
        x.close();
        dy.close();
        if (torch != null) {
            torch.close();
        }
    }

    @Benchmark
    public void cortadoStep() {
        try (dev.cortado.tensor.Scope s = dev.cortado.tensor.Scope.open()) {
            Tensor y = cortado.forward(x);
            y.backward(dy);
            sgd.step();
            sgd.zeroGrad();
            x.zeroGrad();
        }
    }

    @Benchmark
    public NDArray torchStep() {
        try (NDManager m = torch.newSubManager()) {
            try (GradientCollector gc = torch.getEngine().newGradientCollector()) {
                NDArray lx = TorchPeer.leaf(tx, m);
                NDArray y = torchForward(lx);
                TorchPeer.backward(y, tdy);
            }
            List<NDArray> grads = new ArrayList<>();
            for (NDArray a : tp.values()) {
                if (a.hasGradient()) {
                    NDArray g = a.getGradient();
                    a.subi(g.mul((float) LR));
                    g.subi(g);
                    grads.add(g);
                }
            }
            return grads.get(0);
        }
    }
}
