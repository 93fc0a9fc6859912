package dev.cortado.cli;

import dev.cortado.Cortado;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.backend.cuda.CudaDeviceInfo;
import dev.cortado.ops.Attention;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Op;
import dev.cortado.ops.Pooling;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Locale;

/**
 * The command line a new user runs first.
 * <pre>
 *   java -jar cortado-cli.jar train-mnist  [--epochs N] [--batch-size N] [--lr X] [--compile] [--device D] [--threads N] [--seed S] [--out DIR]
 *   java -jar cortado-cli.jar train-charlm [--steps N] [--batch-size N] [--lr X] [--compile] [--experts E --top-k K] [--device D] [--threads N] [--seed S] [--out DIR]
 *   java -jar cortado-cli.jar train-vision --model resnet18|vit-tiny [--mae-epochs M] [--epochs N] [--width W] [--patch P] [--batch-size N] [--lr X] [--threads N] [--seed S] [--out DIR]
 *   java -jar cortado-cli.jar prune-mnist [--epochs N] [--batch-size N] [--lr X] [--threads N] [--seed S]
 *   java -jar cortado-cli.jar quantize-mnist [--epochs N] [--checkpoint FILE] [--calibration-batches N] [--qat-epochs N] [--threads N] [--seed S]
 *   java -jar cortado-cli.jar quantize-charlm [--checkpoint FILE] [--steps N] [--group G] [--seed S]
 *   java -jar cortado-cli.jar demo [--device auto|cpu|cuda:N] [--threads N] [--size N] [--seed S]
 *   java -jar cortado-cli.jar info
 *   java -jar cortado-cli.jar launch --nproc N [--threads T] -- train-mnist ...   (data-parallel over MPI)
 *   java -jar cortado-cli.jar serve --model DIR|JAR|G:A:V [--port 8080] ...          (an embedding server)
 *   java -jar cortado-cli.jar bench-serve --model DIR|JAR|G:A:V [--clients 1,4,16,64] (its load generator)
 * </pre>
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) throws java.io.IOException, InterruptedException {
        System.setProperty("java.awt.headless", "true");
        if (args.length > 0 && args[0].equals("launch")) {
            System.exit(Launch.run(java.util.Arrays.copyOfRange(args, 1, args.length)));
        }
        if (args.length > 0 && (args[0].equals("serve") || args[0].equals("bench-serve"))) {
            int status = Serve.run(args);
            if (status != 0) {
                System.exit(status);
            }
            return;
        }
        String command = "demo";
        Device device = null;
        int threads = 0;
        int size = 1024;
        long seed = Generator.DEFAULT_SEED;
        int epochs = -1;
        int steps = -1;
        int batchSize = -1;
        double lr = Double.NaN;
        java.nio.file.Path out = null;
        boolean compile = false;
        java.nio.file.Path checkpoint = null;
        java.nio.file.Path resume = null;
        int calibrationBatches = 8;
        int qatEpochs = 1;
        int binaryEpochs = QuantizeMnist.BINARY_EPOCHS;
        int group = 32;
        int experts = 0;
        int topK = 2;
        String model = "resnet18";
        int maeEpochs = 0;
        double maeLr = Double.NaN;
        double maskRatio = 0.75;
        double layerDecay = 1;
        int maeBatchScale = 1;
        int width = -1;
        int dim = -1;
        int depth = -1;
        int heads = -1;
        int patch = -1;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "demo", "info", "train-mnist", "train-charlm", "train-vision", "prune-mnist", "quantize-mnist", "quantize-charlm" -> command = a;
                case "--checkpoint" -> checkpoint = java.nio.file.Path.of(value(args, ++i, a));
                case "--resume" -> resume = java.nio.file.Path.of(value(args, ++i, a));
                case "--calibration-batches" -> calibrationBatches = Integer.parseInt(value(args, ++i, a));
                case "--qat-epochs" -> qatEpochs = Integer.parseInt(value(args, ++i, a));
                case "--binary-epochs" -> binaryEpochs = Integer.parseInt(value(args, ++i, a));
                case "--group" -> group = Integer.parseInt(value(args, ++i, a));
                case "--device" -> device = Device.parse(value(args, ++i, a));
                case "--threads" -> threads = Integer.parseInt(value(args, ++i, a));
                case "--size" -> size = Integer.parseInt(value(args, ++i, a));
                case "--seed" -> seed = Long.parseLong(value(args, ++i, a));
                case "--epochs" -> epochs = Integer.parseInt(value(args, ++i, a));
                case "--steps" -> steps = Integer.parseInt(value(args, ++i, a));
                case "--batch-size" -> batchSize = Integer.parseInt(value(args, ++i, a));
                case "--lr" -> lr = Double.parseDouble(value(args, ++i, a));
                case "--compile" -> compile = true;
                case "--experts" -> experts = Integer.parseInt(value(args, ++i, a));
                case "--top-k" -> topK = Integer.parseInt(value(args, ++i, a));
                case "--model" -> model = value(args, ++i, a);
                case "--mae-epochs" -> maeEpochs = Integer.parseInt(value(args, ++i, a));
                case "--mae-lr" -> maeLr = Double.parseDouble(value(args, ++i, a));
                case "--mask-ratio" -> maskRatio = Double.parseDouble(value(args, ++i, a));
                case "--layer-decay" -> layerDecay = Double.parseDouble(value(args, ++i, a));
                case "--mae-batch-scale" -> maeBatchScale = Integer.parseInt(value(args, ++i, a));
                case "--width" -> width = Integer.parseInt(value(args, ++i, a));
                case "--dim" -> dim = Integer.parseInt(value(args, ++i, a));
                case "--depth" -> depth = Integer.parseInt(value(args, ++i, a));
                case "--heads" -> heads = Integer.parseInt(value(args, ++i, a));
                case "--patch" -> patch = Integer.parseInt(value(args, ++i, a));
                case "--out" -> out = java.nio.file.Path.of(value(args, ++i, a));
                case "-h", "--help" -> {
                    usage();
                    return;
                }
                default -> {
                    System.err.println("unknown argument: " + a);
                    usage();
                    System.exit(2);
                }
            }
        }
        if (threads > 0) {
            Cortado.setThreads(threads);
        }
        Device target = device != null ? device : Device.auto();
        switch (command) {
            case "info" -> info();
            case "train-mnist" -> TrainMnist.run(new TrainMnist.Settings(epochs > 0 ? epochs : 8,
                    batchSize > 0 ? batchSize : 64, Double.isNaN(lr) ? 2e-3 : lr, seed,
                    trainingDevice(device, "train-mnist", Convolution.CONV_OP, Pooling.MAX_POOL_OP,
                            BatchNorm.BATCH_NORM_TRAINING_OP),
                    out != null ? out : java.nio.file.Path.of("runs", "train-mnist"), compile, resume));
            case "train-charlm" -> TrainCharLm.run(new TrainCharLm.Settings(steps > 0 ? steps : 400,
                    batchSize > 0 ? batchSize : 16, Double.isNaN(lr) ? 3e-3 : lr, seed,
                    trainingDevice(device, "train-charlm", Attention.SDPA_OP, Attention.ROPE_OP),
                    out != null ? out : java.nio.file.Path.of("runs", "train-charlm"), compile, experts, topK));
            case "train-vision" -> {
                TrainVision.Arch arch = TrainVision.Arch.parse(model);
                TrainVision.Settings d = TrainVision.Settings.defaults(arch,
                        out != null ? out : java.nio.file.Path.of("runs", "train-vision-" + model));
                double rate = Double.isNaN(lr) ? d.lr() : lr;
                TrainVision.run(d.with(epochs > 0 ? epochs : d.epochs(), new TrainVision.Pretraining(maeEpochs,
                                Double.isNaN(maeLr) ? rate : maeLr, maskRatio, layerDecay, maeBatchScale),
                        batchSize > 0 ? batchSize : d.batchSize(), rate,
                        width > 0 ? width : d.width(), patch > 0 ? patch : d.patch(), seed)
                        .withTransformer(dim > 0 ? dim : d.dim(), depth > 0 ? depth : d.depth(),
                                heads > 0 ? heads : d.heads()));
            }
            case "prune-mnist" -> PruneMnist.run(new PruneMnist.Settings(epochs > 0 ? epochs : 8,
                    batchSize > 0 ? batchSize : 64, Double.isNaN(lr) ? 2e-3 : lr, seed, 0.9));
            case "quantize-mnist" -> QuantizeMnist.run(new QuantizeMnist.Settings(epochs > 0 ? epochs : 3,
                    batchSize > 0 ? batchSize : 64, Double.isNaN(lr) ? 2e-3 : lr, seed, checkpoint, calibrationBatches,
                    qatEpochs, binaryEpochs));
            case "quantize-charlm" -> QuantizeCharLm.run(new QuantizeCharLm.Settings(checkpoint, steps > 0 ? steps : 400,
                    batchSize > 0 ? batchSize : 16, Double.isNaN(lr) ? 3e-3 : lr, seed,
                    out != null ? out : java.nio.file.Path.of("runs", "train-charlm"), group,
                    Integer.MAX_VALUE));
            default -> demo(target, size, seed);
        }
    }

    /**
     * The device a demo trains on: the one asked for, else the CPU (saying why when a GPU is usable).
     * The convolution, pooling, batch-norm and attention CUDA kernels the demos need are compiled but
     * have not yet run on a GPU (docs/gpu-status.md), so a GPU is used only when asked for with
     * {@code --device cuda:N}; an op without a CUDA kernel is refused there before training starts.
     */
    private static Device trainingDevice(Device asked, String demo, Op<?>... needs) {
        Device auto = asked != null ? asked : Device.auto();
        if (auto.isCpu()) {
            return auto;
        }
        for (Op<?> op : needs) {
            if (!op.backends().contains(dev.cortado.tensor.DeviceType.CUDA)) {
                throw new IllegalArgumentException(demo + ": " + op.name() + " has no CUDA kernel; use --device cpu");
            }
        }
        if (asked == null) {
            System.out.println(demo + ": " + auto + " is usable, but the CUDA kernels of " + names(needs)
                    + " are not yet verified on a GPU (docs/gpu-status.md); training on the CPU"
                    + " (--device " + auto + " uses them)");
            return Device.CPU;
        }
        return auto;
    }

    private static String names(Op<?>... ops) {
        StringBuilder b = new StringBuilder();
        for (Op<?> op : ops) {
            b.append(b.length() == 0 ? "" : ", ").append(op.name());
        }
        return b.toString();
    }

    static String value(String[] args, int i, String flag) {
        if (i >= args.length) {
            throw new IllegalArgumentException(flag + " needs a value");
        }
        return args[i];
    }

    private static void usage() {
        System.out.println("""
                usage: java -jar cortado-cli.jar COMMAND [options]
                  train-mnist   train a small CNN on 10k MNIST digits, test on the t10k split
                                [--epochs 8] [--batch-size 64] [--lr 2e-3]
                                [--compile] (train and evaluate through compiled graphs: dev.cortado.graph)
                  train-vision  ResNet-18 or a ViT-Tiny-sized transformer on the same digits, RandAugment,
                                label smoothing, AdamW with a cosine schedule
                                --model resnet18 [--epochs 10] [--width 64] [--lr 2e-3]
                                --model vit-tiny [--epochs 30] [--patch 7] [--lr 1e-3] [--dim 192] [--depth 12]
                                [--heads 3] [--mae-epochs M] (MAE
                                pre-training for M of the epochs, then fine-tuning) [--mae-lr X]
                                [--mask-ratio 0.75] [--layer-decay 1] (fine-tuning rates by depth)
                                [--mae-batch-scale 1] (MAE batches this many times the classifier's)
                                [--batch-size 64]
                  prune-mnist   the train-mnist CNN dense, 2:4 with SR-STE (and with mask decay) and pruned
                                to 90% gradually; then run on sparse modules (a table of accuracy,
                                non-zeros, size and inference time) [--epochs 8] [--batch-size 64] [--lr 2e-3]
                  train-charlm  train a small GPT-style character model on Jane Austen, then sample from it
                                [--steps 400] [--batch-size 16] [--lr 3e-3]
                                [--compile] (train and evaluate through compiled graphs)
                                [--experts E --top-k K] (a mixture of E experts, top-K, in every block,
                                at the dense model's active parameter count; docs/sparse.md)
                  quantize-mnist  the MNIST CNN (trained, or --checkpoint FILE from train-mnist) quantized:
                                int8 post-training and 4-bit QAT on the integer kernels; accuracy,
                                size and time per variant [--epochs 3] [--calibration-batches 8] [--qat-epochs 1]
                                [--binary-epochs 4] (binary-weight rows: XNOR-Net and BiPer)
                  quantize-charlm the train-charlm model (--checkpoint FILE, else trained first into --out)
                                with int4 weight-only attention and FFN projections: validation loss
                                and size [--group 32]
                  demo          a few ops and a timed matmul [--size 1024]
                  info          devices and CPU features
                  launch        run a training command data-parallel as N MPI processes on this machine:
                                launch --nproc 2 [--threads T] [--bind core|none] -- train-mnist --epochs 1
                  serve         an OpenAI-compatible embedding server for a sentence-embedding model
                                --model DIR|JAR|GROUP:ARTIFACT:VERSION [--port 8080] (serve --help lists all)
                  bench-serve   throughput and p50/p99 latency at 1-64 clients: in-process, batched, HTTP
                common: [--device auto|cpu|cuda:N] [--threads N] [--seed S] [--out DIR]""");
    }

    private static void info() {
        System.out.println("Cortado 0.1.0");
        System.out.printf("cpu: %d threads, AVX-512 paths %s, bfloat16 GEMM on %s%n", Cortado.threads(),
                CpuBackend.avx512() ? "on" : "off (AVX2 baseline)", CpuBackend.bf16GemmKernel());
        CudaBackend cuda = CudaBackend.instance();
        if (cuda.isAvailable()) {
            for (CudaDeviceInfo d : cuda.devices()) {
                System.out.println(d);
            }
        } else {
            System.out.println("cuda: not usable (" + cuda.unavailableReason() + ")");
        }
    }

    private static void demo(Device device, int n, long seed) {
        info();
        System.out.println();
        System.out.println("device: " + device);
        Generator gen = Generator.seeded(seed);
        try (var scope = Scope.open()) {
            Tensor x = Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3).to(device);
            Tensor w = gen.normal(0, 1, DType.FLOAT32, device, 3, 4);
            Tensor y = Elementwise.relu(LinearAlgebra.matmul(x, w));
            System.out.println("x =\n" + x);
            System.out.println("relu(x @ w) =\n" + y);
            System.out.println("softmax(relu(x @ w), -1) =\n" + Normalization.softmax(y, -1));
            System.out.println("sum over rows = " + Reductions.sum(y, false, 0));
            System.out.println("as bfloat16 = " + y.to(DType.BFLOAT16));
        }
        // Timed: one n x n float32 matmul (2 n^3 FLOPs) after a warm-up.
        try (var scope = Scope.open()) {
            Tensor a = gen.uniform(-1, 1, DType.FLOAT32, device, n, n);
            Tensor b = gen.uniform(-1, 1, DType.FLOAT32, device, n, n);
            LinearAlgebra.matmul(a, b).close();
            int reps = 5;
            long best = Long.MAX_VALUE;
            for (int r = 0; r < reps; r++) {
                long t0 = System.nanoTime();
                try (Tensor c = LinearAlgebra.matmul(a, b)) {
                    c.toFloatArray(); // waits for the device and proves the result is there
                }
                best = Math.min(best, System.nanoTime() - t0);
            }
            double gflops = 2.0 * n * n * n / best;
            System.out.printf(Locale.ROOT, "%nmatmul %dx%d float32 on %s: %.2f ms, %.1f GFLOP/s (best of %d)%n",
                    n, n, device, best / 1e6, gflops, reps);
        }
    }
}
