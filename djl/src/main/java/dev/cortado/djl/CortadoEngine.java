package dev.cortado.djl;

import ai.djl.Device;
import ai.djl.Model;
import ai.djl.engine.Engine;
import ai.djl.engine.StandardCapabilities;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import dev.cortado.backend.Backends;
import dev.cortado.ops.Generator;

/**
 * Cortado as a DJL {@link Engine} named {@value #ENGINE_NAME}: arrays are Cortado tensors
 * ({@link CortadoNDArray}, managed by {@link CortadoNDManager}), gradients come from Cortado's tape
 * ({@link CortadoGradientCollector}), and DJL's optimizers run Cortado's fused update kernels.
 *
 * <p>Select it with {@code Engine.getEngine("Cortado")}, {@code Model.newInstance(name, device,
 * "Cortado")}, or as the process default with {@code -Dai.djl.default_engine=Cortado} (its rank
 * {@value #RANK} lets an engine with a lower rank, PyTorch's 2, stay the default when both are on
 * the class path). What is supported is listed in docs/djl.md.
 */
public final class CortadoEngine extends Engine {
    /** The name DJL knows this engine by. */
    public static final String ENGINE_NAME = "Cortado";
    /** DJL's default-engine rank (lower wins); above PyTorch's so that adding Cortado changes no default. */
    public static final int RANK = 10;

    private static volatile CortadoEngine instance;

    private volatile Generator generator = Generator.global();

    private CortadoEngine() {
    }

    /** The engine (one per process). */
    static CortadoEngine instance() {
        CortadoEngine e = instance;
        if (e == null) {
            synchronized (CortadoEngine.class) {
                e = instance;
                if (e == null) {
                    e = new CortadoEngine();
                    instance = e;
                }
            }
        }
        return e;
    }

    /** {@inheritDoc} */
    @Override
    public Engine getAlternativeEngine() {
        return null;
    }

    /** {@inheritDoc} */
    @Override
    public String getEngineName() {
        return ENGINE_NAME;
    }

    /** {@inheritDoc} */
    @Override
    public int getRank() {
        return RANK;
    }

    /** {@inheritDoc} */
    @Override
    public String getVersion() {
        String v = dev.cortado.Cortado.class.getPackage().getImplementationVersion();
        return v == null ? "0.1.0-SNAPSHOT" : v;
    }

    /** {@inheritDoc} Cortado reports {@code CUDA} when its CUDA backend found a GPU. */
    @Override
    public boolean hasCapability(String capability) {
        return StandardCapabilities.CUDA.equals(capability) && getGpuCount() > 0;
    }

    /** {@inheritDoc} */
    @Override
    public int getGpuCount() {
        return Backends.cudaDeviceCount();
    }

    /** {@inheritDoc} */
    @Override
    public Device defaultDevice() {
        return getGpuCount() > 0 ? Device.gpu() : Device.cpu();
    }

    /** {@inheritDoc} Cortado reads no framework model files through DJL. */
    @Override
    public ai.djl.nn.SymbolBlock newSymbolBlock(NDManager manager) {
        throw CortadoNDArray.unsupported("Engine.newSymbolBlock");
    }

    /** {@inheritDoc} */
    @Override
    public Model newModel(String name, Device device) {
        return new CortadoModel(name, device);
    }

    /** {@inheritDoc} */
    @Override
    public NDManager newBaseManager() {
        return CortadoNDManager.system().newSubManager();
    }

    /** {@inheritDoc} */
    @Override
    public NDManager newBaseManager(Device device) {
        return CortadoNDManager.system().newSubManager(device);
    }

    /** {@inheritDoc} */
    @Override
    public GradientCollector newGradientCollector() {
        return new CortadoGradientCollector();
    }

    /** {@inheritDoc} Also reseeds the generator behind the manager's random arrays and dropout. */
    @Override
    public void setRandomSeed(int seed) {
        super.setRandomSeed(seed);
        generator = Generator.seeded(seed);
    }

    /** The generator behind random arrays and dropout ({@link #setRandomSeed} replaces it). */
    Generator generator() {
        return generator;
    }

    /** {@inheritDoc} */
    @Override
    public String toString() {
        return ENGINE_NAME + ":" + getVersion() + ", GPUs: " + getGpuCount();
    }
}
