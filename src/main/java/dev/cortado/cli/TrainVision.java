package dev.cortado.cli;

import dev.cortado.io.Batch;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Dataset;
import dev.cortado.io.Example;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.models.MaskedAutoencoder;
import dev.cortado.models.RandAugment;
import dev.cortado.models.ResNet;
import dev.cortado.models.VisionTransformer;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.optim.Adam;
import dev.cortado.optim.CosineWithWarmup;
import dev.cortado.optim.Optimizer;
import dev.cortado.optim.ParamGroup;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;

/**
 * {@code train-vision}: the vision models of {@code dev.cortado.models} trained on the shipped
 * 10,000 MNIST digits and evaluated on the genuine t10k split after every epoch.
 * <ul>
 *   <li>{@code --model resnet18}: ResNet-18 (basic blocks 2-2-2-2, widths {@code w}-2w-4w-8w, the
 *       3x3 stride-1 stem of small images, the last batch norm of each block starting at zero);</li>
 *   <li>{@code --model vit-tiny}: a ViT-Tiny-sized transformer (width 192, depth 12, 3 heads, MLP
 *       4x) on {@code p x p} patches, fixed sine-cosine positions, mean-pooled patch tokens;</li>
 *   <li>{@code --model vit-tiny --mae-epochs M}: the same ViT, first pre-trained for {@code M} of the
 *       {@code --epochs} as a masked autoencoder (75% of the patches removed, a 2-block decoder of
 *       width 128, per-patch normalised pixel targets) on the same images without their labels, then
 *       fine-tuned as a classifier for the remaining epochs: the same number of steps in all.
 *       {@code --mae-lr}, {@code --mask-ratio} and {@code --mae-batch-scale} set the pre-training's
 *       rate, mask and batch (a multiple of the classifier's), {@code --layer-decay} the fine-tuning's
 *       layer-wise rate decay.</li>
 * </ul>
 * Every run: RandAugment (two of rotation, shears, translations and identity per image, magnitude
 * 6, in the loader's prefetch thread), AdamW (weight decay 0.05), a cosine schedule after a linear
 * warm-up, cross-entropy with label smoothing 0.1.
 */
final class TrainVision {
    /** The architectures. */
    enum Arch {
        RESNET18, VIT_TINY;

        static Arch parse(String name) {
            return switch (name) {
                case "resnet18" -> RESNET18;
                case "vit-tiny" -> VIT_TINY;
                default -> throw new IllegalArgumentException("train-vision: --model must be resnet18 or vit-tiny, got "
                        + name);
            };
        }
    }

    /**
     * MAE pre-training before the classifier: {@code epochs} of the run's epochs (0: none) at peak
     * rate {@code lr}, {@code maskRatio} of the patches removed; the fine-tuning that follows scales
     * the rate of block {@code i} of {@code depth} by {@code layerDecay^(depth - i)} (embeddings
     * {@code layerDecay^(depth + 1)}, the final norm and head 1), as BEiT and MAE fine-tune.
     */
    record Pretraining(int epochs, double lr, double maskRatio, double layerDecay, int batchScale) {
        static final Pretraining NONE = new Pretraining(0, 1e-3, 0.75, 1, 1);

        Pretraining {
            if (epochs < 0 || !(lr > 0) || !(maskRatio > 0 && maskRatio < 1) || !(layerDecay > 0 && layerDecay <= 1)
                    || batchScale < 1) {
                throw new IllegalArgumentException("train-vision: MAE pre-training needs --mae-epochs >= 0, --mae-lr > 0,"
                        + " 0 < --mask-ratio < 1, 0 < --layer-decay <= 1 and --mae-batch-scale >= 1, got " + epochs + ", "
                        + lr + ", " + maskRatio + ", " + layerDecay + " and " + batchScale);
            }
        }
    }

    /**
     * A run. {@code width}: ResNet's first-stage channels (64 in the paper); {@code dim},
     * {@code depth}, {@code heads}, {@code patch}: the ViT's (192, 12, 3 for ViT-Tiny);
     * {@code mae}: how many of the {@code epochs} pre-train the ViT as a masked autoencoder, and how;
     * {@code trainImages}, {@code testImages}: so many of each split, evenly spaced (shortened runs).
     */
    record Settings(Arch arch, int epochs, Pretraining mae, int batchSize, double lr, int width, int dim, int depth,
                    int heads, int patch, long seed, int trainImages, int testImages, Path out) {
        Settings {
            if (epochs < 1 || mae.epochs() >= epochs) {
                throw new IllegalArgumentException("train-vision: need --epochs >= 1 and 0 <= --mae-epochs < --epochs, got "
                        + epochs + " and " + mae.epochs());
            }
            if (mae.epochs() > 0 && arch != Arch.VIT_TINY) {
                throw new IllegalArgumentException("train-vision: --mae-epochs pre-trains a ViT; --model is " + arch);
            }
            if (28 % patch != 0) {
                throw new IllegalArgumentException("train-vision: --patch " + patch + " must divide 28");
            }
        }

        /** The command-line defaults for {@code arch}. */
        static Settings defaults(Arch arch, Path out) {
            boolean resnet = arch == Arch.RESNET18;
            return new Settings(arch, resnet ? 10 : 30, Pretraining.NONE, 64, resnet ? 2e-3 : 1e-3, 64, 192, 12, 3, 7, 1,
                    10_000, 10_000, out);
        }

        Settings with(int epochs, Pretraining mae, int batchSize, double lr, int width, int patch, long seed) {
            return new Settings(arch, epochs, mae, batchSize, lr, width, dim, depth, heads, patch, seed,
                    trainImages, testImages, out);
        }

        /** The same run with a transformer of width {@code dim}, {@code depth} blocks and {@code heads} heads. */
        Settings withTransformer(int dim, int depth, int heads) {
            return new Settings(arch, epochs, mae, batchSize, lr, width, dim, depth, heads, patch, seed, trainImages,
                    testImages, out);
        }

        int maeEpochs() {
            return mae.epochs();
        }
    }

    /**
     * What a run reached: the mean MAE reconstruction loss of each pre-training epoch (none without
     * pre-training), the t10k accuracy after each classifier epoch, and the wall time.
     */
    record Result(double[] maeLoss, double[] testAccuracy, double seconds) {
        double last() {
            return testAccuracy[testAccuracy.length - 1];
        }
    }

    private TrainVision() {
    }

    /** The classifier of {@code s}: [N, 1, 28, 28] -> [N, 10] logits. */
    static Module model(Settings s) {
        ParamOptions p = ParamOptions.seeded(s.seed());
        if (s.arch() == Arch.RESNET18) {
            return ResNet.builder(ResNet.Depth.R18).smallImages(true).inChannels(1).classes(10).width(s.width())
                    .zeroInitResidual(true).params(p).build();
        }
        return VisionTransformer.builder(28, s.patch()).inChannels(1).classes(10).dim(s.dim()).depth(s.depth())
                .heads(s.heads()).positions(VisionTransformer.Positions.SINCOS)
                .pooling(VisionTransformer.Pooling.MEAN).params(p).build();
    }

    /** Trains and evaluates as {@code s} says, printing the progress; writes metrics and curves under {@code s.out()}. */
    static Result run(Settings s) throws IOException {
        System.out.printf(Locale.ROOT, "train-vision: %s, %d epochs%s, batch %d, AdamW lr %.3g, seed %d, %,d training"
                        + " images, %,d test images%n", s.arch() == Arch.RESNET18 ? "ResNet-18 (width " + s.width() + ")"
                        : String.format(Locale.ROOT, "ViT (dim %d, depth %d, %d heads, %dx%d patches)", s.dim(), s.depth(),
                        s.heads(), s.patch(), s.patch()),
                s.epochs(), s.maeEpochs() > 0 ? " (" + s.maeEpochs() + " of them MAE pre-training)" : "", s.batchSize(),
                s.lr(), s.seed(), s.trainImages(), s.testImages());
        long t0 = System.nanoTime();
        try (TensorDataset train = Mnist.train10k(false); TensorDataset test = Mnist.test(false);
             Module model = model(s);
             DataLoader loader = DataLoader.builder(augmented(spread(train, s.trainImages()), s.seed()))
                     .batchSize(s.batchSize()).shuffle(s.seed()).dropLast(true).prefetch(2).build();
             DataLoader testLoader = DataLoader.builder(spread(test, s.testImages())).batchSize(500).build();
             TrainingLog log = new TrainingLog(s.out(), "accuracy")) {
            System.out.printf(Locale.ROOT, "model: %,d parameters%n", model.numParameters());
            // the autoencoder (closed last) holds the decoder; its encoder is the model fine-tuned next
            double[] maeLoss = new double[s.maeEpochs()];
            MaskedAutoencoder mae = s.maeEpochs() > 0 ? pretrain((VisionTransformer) model,
                    augmented(spread(train, s.trainImages()), s.seed() + 4), loader.size(), s, log, maeLoss) : null;
            int epochs = s.epochs() - s.maeEpochs();
            double[] accuracy = new double[epochs];
            Optimizer opt = Adam.adamW().lr(s.lr()).weightDecay(0.05).buildGroups(layerGroups(model, s));
            try (mae; opt) {
                int stepsPerEpoch = loader.size();
                long total = (long) stepsPerEpoch * epochs;
                CosineWithWarmup schedule = CosineWithWarmup.of(Math.min(200, total / 10), total);
                long step = 0;
                // the log counts steps from the start of the run, pre-training included
                long loggedBefore = (long) stepsPerEpoch * s.maeEpochs();
                Function<Tensor, Tensor> forward = x -> {
                    try (Tensor normalized = normalize(x)) {
                        return model.forward(normalized);
                    }
                };
                for (int e = 1; e <= epochs; e++) {
                    int epoch = s.maeEpochs() + e;
                    model.train();
                    log.startEpoch(epoch, s.epochs(), stepsPerEpoch);
                    try (DataLoader.Epoch batches = loader.epoch(epoch - 1)) {
                        for (Batch b : batches) {
                            long ts = System.nanoTime();
                            schedule.apply(opt, step);
                            double loss;
                            double correct;
                            try (b; Scope scope = Scope.open()) {
                                Tensor logits = forward.apply(b.input());
                                Tensor l = Losses.crossEntropy(logits, b.target(), Losses.Reduction.MEAN,
                                        Losses.IGNORE_INDEX, 0.1);
                                opt.zeroGrad();
                                l.backward();
                                opt.step();
                                loss = l.item();
                                correct = TrainMnist.countCorrect(logits, b.target());
                            }
                            // the last group is the head's: the run's rate (the lower blocks' scaled by --layer-decay)
                            log.step(epoch, loggedBefore + step, loss, correct / b.size(),
                                    b.size() / ((System.nanoTime() - ts) / 1e9),
                                    opt.groups().get(opt.groups().size() - 1).lr());
                            step++;
                        }
                    }
                    log.endEpoch();
                    double[] eval = TrainMnist.evaluate(model, forward, testLoader, 10, Integer.MAX_VALUE);
                    accuracy[e - 1] = eval[1];
                    log.evaluation(epoch, loggedBefore + step, eval[0], eval[1], "t10k test");
                }
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            System.out.printf(Locale.ROOT, "test accuracy %.2f%% after %d epochs in %.1f s%nwrote %s, %s%n",
                    100 * accuracy[epochs - 1], s.epochs(), seconds, s.out().resolve("metrics.csv"),
                    s.out().resolve("training-curves.png"));
            return new Result(maeLoss, accuracy, seconds);
        }
    }

    /**
     * MAE pre-training of {@code vit} for {@code s.maeEpochs()} epochs' worth of the classifier's
     * steps ({@code stepsPerEpoch} each) on {@code images} (labels unused), each step a batch
     * {@code s.mae().batchScale()} times the classifier's; the reconstruction loss on the removed
     * patches is logged as the training loss and its mean per epoch written to {@code meanLoss}.
     * Returns the autoencoder, which the caller closes after fine-tuning {@code vit}.
     */
    private static MaskedAutoencoder pretrain(VisionTransformer vit, Dataset<Example> images, int stepsPerEpoch,
            Settings s, TrainingLog log, double[] meanLoss) {
        MaskedAutoencoder mae = MaskedAutoencoder.builder(vit).channels(1).decoder(128, 2, 4).maskRatio(s.mae().maskRatio())
                .generator(dev.cortado.ops.Generator.seeded(s.seed() + 1))
                .params(ParamOptions.seeded(s.seed() + 2)).build();
        Optimizer opt = Adam.adamW().lr(s.mae().lr()).betas(0.9, 0.95).weightDecay(0.05).build(mae.parameters());
        try (opt; DataLoader loader = DataLoader.builder(images).batchSize(s.batchSize() * s.mae().batchScale())
                .shuffle(s.seed() + 3).dropLast(true).prefetch(2).build()) {
            if (loader.size() == 0) {
                throw new IllegalArgumentException("train-vision: an MAE batch of " + s.batchSize() * s.mae().batchScale()
                        + " images is more than the " + images.size() + " training images");
            }
            long total = (long) stepsPerEpoch * s.maeEpochs();
            CosineWithWarmup schedule = CosineWithWarmup.of(Math.min(200, total / 10), total);
            long step = 0;
            int pass = 0;
            DataLoader.Epoch batches = loader.epoch(pass++);
            mae.train();
            try {
                for (int epoch = 1; epoch <= s.maeEpochs(); epoch++) {
                    log.startEpoch(epoch, s.epochs(), stepsPerEpoch);
                    double sum = 0;
                    for (int i = 0; i < stepsPerEpoch; i++) {
                        if (!batches.hasNext()) {
                            batches.close();
                            batches = loader.epoch(pass++);
                        }
                        long ts = System.nanoTime();
                        schedule.apply(opt, step);
                        double loss;
                        try (Batch b = batches.next(); Scope scope = Scope.open()) {
                            Tensor l = mae.forward(normalize(b.input()));
                            opt.zeroGrad();
                            l.backward();
                            opt.step();
                            loss = l.item();
                            log.step(epoch, step, loss, Double.NaN, b.size() / ((System.nanoTime() - ts) / 1e9),
                                    opt.groups().get(0).lr());
                        }
                        sum += loss;
                        step++;
                    }
                    log.endEpoch();
                    meanLoss[epoch - 1] = sum / stepsPerEpoch;
                    System.out.printf(Locale.ROOT, "MAE pre-training epoch %d: mean reconstruction loss %.4f%n", epoch,
                            meanLoss[epoch - 1]);
                }
            } finally {
                batches.close();
            }
        } catch (RuntimeException | Error e) {
            mae.close();
            throw e;
        }
        return mae;
    }

    /**
     * The classifier's parameter groups: one group at the run's rate, or with layer-wise decay
     * ({@code s.mae().layerDecay() < 1} after pre-training) one group per depth, each its scaled rate.
     */
    static List<ParamGroup> layerGroups(Module model, Settings s) {
        double decay = s.mae().layerDecay();
        if (s.maeEpochs() == 0 || decay == 1) {
            return List.of(ParamGroup.of(model.parameters()));
        }
        int top = s.depth() + 1;
        List<List<Tensor>> byLayer = new ArrayList<>();
        for (int i = 0; i <= top; i++) {
            byLayer.add(new ArrayList<>());
        }
        model.namedParameters().forEach((name, p) -> {
            int layer;
            if (name.startsWith("blocks.")) {
                layer = Integer.parseInt(name.substring(7, name.indexOf('.', 7))) + 1;
            } else if (name.startsWith("patch_embed.") || name.equals("cls_token") || name.equals("pos_embed")) {
                layer = 0;
            } else {
                layer = top;
            }
            byLayer.get(layer).add(p);
        });
        List<ParamGroup> groups = new ArrayList<>();
        for (int i = 0; i <= top; i++) {
            if (!byLayer.get(i).isEmpty()) {
                groups.add(ParamGroup.of(byLayer.get(i)).lr(s.lr() * Math.pow(decay, top - i)));
            }
        }
        return groups;
    }

    /** Pixels in [0, 1] to MNIST's standardised values. */
    private static Tensor normalize(Tensor x) {
        return Elementwise.affine(x, 1 / Mnist.STD, -Mnist.MEAN / Mnist.STD);
    }

    /** Two of rotation, shears, translations and identity per image, magnitude 6 (at most 6 degrees, 2.5 pixels). */
    private static Dataset<Example> augmented(Dataset<Example> images, long seed) {
        return RandAugment.builder(images).n(2).magnitude(6).seed(seed)
                .ops(List.of(RandAugment.Op.IDENTITY, RandAugment.Op.ROTATE, RandAugment.Op.SHEAR_X,
                        RandAugment.Op.SHEAR_Y, RandAugment.Op.TRANSLATE_X, RandAugment.Op.TRANSLATE_Y))
                .build();
    }

    /**
     * {@code n} examples of {@code data} evenly spaced through it (all when {@code n} is at least its
     * size): the shipped training digits are sorted by label, so every class keeps its share.
     */
    private static Dataset<Example> spread(Dataset<Example> data, int n) {
        if (n >= data.size()) {
            return data;
        }
        return new Dataset<>() {
            @Override
            public int size() {
                return n;
            }

            @Override
            public Example get(int index) {
                return data.get((int) ((long) Dataset.checkIndex(index, n, "train-vision subset") * data.size() / n));
            }
        };
    }
}
