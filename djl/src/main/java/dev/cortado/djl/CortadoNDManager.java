package dev.cortado.djl;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.BaseNDManager;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.nio.file.Path;
import ai.djl.util.PairList;

/**
 * DJL's {@link NDManager} for the Cortado engine: creates {@link CortadoNDArray}s (Cortado tensors
 * on this manager's device) and owns them. Closing a manager closes every array attached to it and
 * its sub-managers, which closes their tensors: the memory is freed then, deterministically, not
 * by a garbage collector (Cortado's memory statistics show it, see
 * {@link dev.cortado.Cortado#memoryStats}).
 */
public class CortadoNDManager extends BaseNDManager {
    private static final CortadoNDManager SYSTEM = new SystemManager();

    private CortadoNDManager(NDManager parent, Device device) {
        super(parent, device);
    }

    /** The root manager, never closed; {@link CortadoEngine#newBaseManager()} gives its sub-managers. */
    static CortadoNDManager system() {
        return SYSTEM;
    }

    /** The Cortado device arrays of this manager live on. */
    dev.cortado.tensor.Device cortadoDevice() {
        return Types.device(getDevice());
    }

    /** A new array owning {@code tensor}, attached to this manager. */
    CortadoNDArray wrap(Tensor tensor) {
        return new CortadoNDArray(this, tensor);
    }

    /** {@inheritDoc} */
    @Override
    public ByteBuffer allocateDirect(int capacity) {
        return ByteBuffer.allocateDirect(capacity).order(ByteOrder.nativeOrder());
    }

    /** {@inheritDoc} An array of another engine is copied into a new Cortado array attached here. */
    @Override
    public CortadoNDArray from(NDArray array) {
        if (array == null || array instanceof CortadoNDArray) {
            return (CortadoNDArray) array;
        }
        CortadoNDArray result = create(array.toByteBuffer(), array.getShape(), array.getDataType());
        result.setName(array.getName());
        return result;
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDArray create(Shape shape, DataType dataType) {
        return zeros(shape, dataType);
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDArray create(Buffer data, Shape shape, DataType dataType) {
        DType dtype = Types.dtype(dataType, "NDManager.create");
        int size = Math.toIntExact(shape.size());
        BaseNDManager.validateBuffer(data, dataType, size);
        ByteBuffer bytes;
        if (data instanceof ByteBuffer) {
            bytes = ((ByteBuffer) data).duplicate();
        } else {
            bytes = allocateDirect(size * dataType.getNumOfBytes());
            copyBuffer(data, bytes);
        }
        bytes.limit(bytes.position() + size * dataType.getNumOfBytes());
        return wrap(Tensor.fromBuffer(bytes, dtype, cortadoDevice(), Types.dims(shape)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray create(String[] data, Charset charset, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.create(String[], Charset, Shape)");
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDArray zeros(Shape shape, DataType dataType) {
        return wrap(Tensor.zeros(Types.dtype(dataType, "NDManager.zeros"), cortadoDevice(), Types.dims(shape)));
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDArray ones(Shape shape, DataType dataType) {
        return wrap(Tensor.ones(Types.dtype(dataType, "NDManager.ones"), cortadoDevice(), Types.dims(shape)));
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDArray full(Shape shape, float value, DataType dataType) {
        return wrap(Tensor.full(value, Types.dtype(dataType, "NDManager.full"), cortadoDevice(), Types.dims(shape)));
    }

    /** {@inheritDoc} An empty range when the step points away from {@code stop}. */
    @Override
    public CortadoNDArray arange(float start, float stop, float step, DataType dataType) {
        DType dtype = Types.dtype(dataType, "NDManager.arange");
        if (step == 0) {
            throw new IllegalArgumentException("NDManager.arange: step must not be 0");
        }
        if (Math.signum(stop - start) != Math.signum(step)) {
            return wrap(Tensor.empty(dtype, cortadoDevice(), 0));
        }
        return wrap(Tensor.arange(start, stop, step, dtype, cortadoDevice()));
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDArray eye(int rows, int cols, int k, DataType dataType) {
        DType dtype = Types.dtype(dataType, "NDManager.eye");
        double[] v = new double[Math.multiplyExact(rows, cols)];
        for (int i = 0; i < rows; i++) {
            int j = i + k;
            if (j >= 0 && j < cols) {
                v[i * cols + j] = 1;
            }
        }
        try (Tensor t = Tensor.of(v, dev.cortado.tensor.Device.CPU, rows, cols)) {
            return wrap(t.to(dtype, cortadoDevice()));
        }
    }

    /** {@inheritDoc} float32, as DJL documents. */
    @Override
    public CortadoNDArray linspace(float start, float stop, int num, boolean endpoint) {
        if (num < 0) {
            throw new IllegalArgumentException("NDManager.linspace: num must be non-negative, got " + num);
        }
        double[] v = new double[num];
        int div = endpoint ? num - 1 : num;
        double step = div > 0 ? ((double) stop - start) / div : 0;
        for (int i = 0; i < num; i++) {
            v[i] = start + i * step;
        }
        if (endpoint && num > 1) {
            v[num - 1] = stop;
        }
        try (Tensor t = Tensor.of(v, dev.cortado.tensor.Device.CPU, num)) {
            return wrap(t.to(DType.FLOAT32, cortadoDevice()));
        }
    }

    /** {@inheritDoc} From the engine's generator (seeded by {@link Engine#setRandomSeed}). */
    @Override
    public CortadoNDArray randomUniform(float low, float high, Shape shape, DataType dataType) {
        DType dtype = Types.dtype(dataType, "NDManager.randomUniform");
        return wrap(engine().generator().uniform(low, high, dtype, cortadoDevice(), Types.dims(shape)));
    }

    /** {@inheritDoc} From the engine's generator (seeded by {@link Engine#setRandomSeed}). */
    @Override
    public CortadoNDArray randomNormal(float loc, float scale, Shape shape, DataType dataType) {
        DType dtype = Types.dtype(dataType, "NDManager.randomNormal");
        return wrap(engine().generator().normal(loc, scale, dtype, cortadoDevice(), Types.dims(shape)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomInteger(long low, long high, Shape shape, DataType dataType) {
        throw CortadoNDArray.unsupported("NDManager.randomInteger");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomPermutation(long n) {
        throw CortadoNDArray.unsupported("NDManager.randomPermutation");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomMultinomial(int n, NDArray pValues) {
        throw CortadoNDArray.unsupported("NDManager.randomMultinomial");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomMultinomial(int n, NDArray pValues, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.randomMultinomial");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray createCSR(Buffer data, long[] indptr, long[] indices, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.createCSR");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray createRowSparse(Buffer data, Shape dataShape, long[] indices, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.createRowSparse");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray createCoo(Buffer data, long[][] indices, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.createCoo");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sampleNormal(NDArray mu, NDArray sigma) {
        throw CortadoNDArray.unsupported("NDManager.sampleNormal");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sampleNormal(NDArray mu, NDArray sigma, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.sampleNormal");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray samplePoisson(NDArray lam) {
        throw CortadoNDArray.unsupported("NDManager.samplePoisson");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray samplePoisson(NDArray lam, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.samplePoisson");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sampleGamma(NDArray alpha, NDArray beta) {
        throw CortadoNDArray.unsupported("NDManager.sampleGamma");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sampleGamma(NDArray alpha, NDArray beta, Shape shape) {
        throw CortadoNDArray.unsupported("NDManager.sampleGamma");
    }

    /** {@inheritDoc} */
    @Override
    public void invoke(String operation, NDArray[] src, NDArray[] dest, PairList<String, ?> params) {
        throw CortadoNDArray.unsupported("NDManager.invoke");
    }

    /** {@inheritDoc} */
    @Override
    public NDList invoke(String operation, NDList src, PairList<String, ?> params) {
        throw CortadoNDArray.unsupported("NDManager.invoke");
    }

    /** {@inheritDoc} */
    @Override
    public NDList load(Path path) {
        throw CortadoNDArray.unsupported("NDManager.load");
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDManager newSubManager(Device device) {
        CortadoNDManager m = new CortadoNDManager(this, device);
        attachUncappedInternal(m.uid, m);
        return m;
    }

    /** {@inheritDoc} */
    @Override
    public CortadoNDManager newSubManager() {
        return newSubManager(device);
    }

    /** {@inheritDoc} */
    @Override
    public final Engine getEngine() {
        return CortadoEngine.instance();
    }

    private static CortadoEngine engine() {
        return CortadoEngine.instance();
    }

    /**
     * The root manager: lives as long as the process, and holds what is detached from other
     * managers (as DJL's other engines do: DJL's optimizers detach their state arrays to it).
     */
    private static final class SystemManager extends CortadoNDManager implements NDManager.SystemNDManager {
        SystemManager() {
            super(null, null);
        }
    }
}
