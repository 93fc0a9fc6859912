package dev.cortado.djl;

import ai.djl.Model;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.EasyTrain;
import ai.djl.training.Trainer;
import ai.djl.training.dataset.Batch;
import ai.djl.translate.Batchifier;
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

/**
 * One DJL-API training step (forward, softmax cross-entropy, backward through the
 * GradientCollector, Adam update through {@code Trainer.step}) on a batch of 64 MNIST digits, the
 * same DJL code with Cortado or PyTorch (libtorch 2.7.1 CPU, offline) as the engine, for the MLP
 * and the small CNN of {@link MnistModels}. Each engine runs in its own fork, with 2 threads
 * (OMP/OpenBLAS for Cortado; at::set_num_threads for PyTorch, one inter-op thread).
 *
 * <pre>
 * mvn -B -f djl/pom.xml verify -DskipTests
 * OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 java -cp \
 *   "djl/target/test-classes:djl/target/classes:$(cat djl/target/test-classpath.txt)" \
 *   org.openjdk.jmh.Main DjlTrainingStepBenchmark
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"-Dai.djl.pytorch.num_threads=2", "-Dai.djl.pytorch.num_interop_threads=1",
    "-Dai.djl.pytorch.graph_optimizer=false", "-DDJL_OFFLINE=true", "-DPYTORCH_FLAVOR=cpu", "-DPYTORCH_VERSION=2.7.1"})
public class DjlTrainingStepBenchmark {
    /** The DJL engine. */
    @Param({"Cortado", "PyTorch"})
    public String engine;

    /** The model: {@code mlp} (784-128-64-10) or {@code cnn} (two conv-BN-ReLU-pool stages, linear). */
    @Param({"mlp", "cnn"})
    public String model;

    private Model djlModel;
    private Trainer trainer;
    private NDManager data;
    private NDArray x;
    private NDArray y;

    /** Builds the model and trainer and one fixed batch. */
    @Setup(Level.Trial)
    public void setUp() {
        Engine e = Engine.getEngine(engine);
        boolean flat = model.equals("mlp");
        djlModel = Model.newInstance(model, ai.djl.Device.cpu(), engine);
        trainer = MnistModels.trainer(e, djlModel, flat ? MnistModels.mlp() : MnistModels.cnn(), 42,
                flat ? new Shape(1, 784) : new Shape(1, 1, 28, 28));
        MnistModels.Digits batch = MnistModels.train().first(64);
        data = trainer.getManager().newSubManager();
        x = batch.images(data, flat);
        y = batch.labels(data);
    }

    /** Closes the trainer, model and batch. */
    @TearDown(Level.Trial)
    public void tearDown() {
        data.close();
        trainer.close();
        djlModel.close();
    }

    /** One step; everything it creates is freed with its manager. */
    @Benchmark
    public void trainingStep() {
        try (NDManager step = data.newSubManager()) {
            NDIndex all = new NDIndex(":");
            Batch b = new Batch(step, new NDList(x.get(step, all)), new NDList(y.get(step, all)), 64,
                    Batchifier.STACK, Batchifier.STACK, -1, -1);
            EasyTrain.trainBatch(trainer, b);
            trainer.step();
        }
    }
}
