package dev.cortado.tensor;

import dev.cortado.backend.Backend;
import dev.cortado.backend.kernels.HostMemory;
import java.lang.ref.Cleaner;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An n-dimensional array in off-heap memory (host memory for the CPU, device memory for CUDA).
 *
 * <p>A tensor is a view: storage shared with other views, a dtype, a shape, element strides and
 * an element offset. View operations ({@link #reshape}, {@link #permute}, {@link #narrow},
 * {@link #expand}, ...) create new tensors over the same storage without copying; each view is
 * closed on its own, and the storage is freed when the last view over it is closed.
 *
 * <p>Freeing is deterministic: close tensors ({@code try (var t = ...)}) or open a
 * {@link Scope}, which closes every tensor created inside it. A tensor that becomes unreachable
 * unclosed is freed by a {@link Cleaner} safety net, which logs it as a leak (run with
 * {@code -Dcortado.traceLeaks=true} to log where each leaked tensor was created).
 *
 * <p>Compute ops live in {@code dev.cortado.ops}; this class holds data, views and transfers,
 * and the common ops as methods ({@code x.matmul(w).add(b).relu()}, {@code x.sum(1)},
 * {@code x.softmax(-1)}), each the family call of the same name (see {@link TensorOps}).
 *
 * <p><b>Threads.</b> Reading a tensor (as an op input, {@code toFloatArray()}, views) is safe from
 * any number of threads at once, so one model's weights serve concurrent inference. Writing
 * (in-place ops, {@code copyFrom}, gradients) is not synchronized: one writer at a time, and no
 * reader while it writes. A tensor created inside a {@link Scope} belongs to the scope's thread:
 * closing it, or {@linkplain Scope#keep keeping} it, from another thread throws
 * {@link IllegalStateException} naming the tensor and both threads. Tensors created outside any
 * scope (model parameters, results handed to another thread) may be closed from any thread
 * ({@code docs/reliability.md#concurrency}).
 */
public final class Tensor implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Tensor.class);
    private static final Cleaner CLEANER = Cleaner.create();
    private static final boolean TRACE_LEAKS = Boolean.getBoolean("cortado.traceLeaks");

    private final Storage storage;
    private final DType dtype;
    private final Shape shape;
    private final long[] strides;
    private final long offset;
    private final Resource resource;
    private final Cleaner.Cleanable cleanable;
    private Scope owner;

    // autograd state (see dev.cortado.autograd): a leaf that wants a gradient, its accumulated
    // gradient, or the tape node that produced this tensor
    private boolean requiresGrad;
    private Tensor grad;
    private AutogradHook.Node gradNode;
    private int gradOutput;

    /** What the Cleaner holds: never the tensor itself, so the tensor can become unreachable. */
    private static final class Resource implements Runnable {
        final Storage storage;
        final DType dtype;
        final Shape shape;
        final Throwable createdAt;
        volatile boolean closed;

        /** close() claims the resource with one compare-and-set, so racing closes free once. */
        static final java.lang.invoke.VarHandle CLOSED;

        static {
            try {
                CLOSED = java.lang.invoke.MethodHandles.lookup().findVarHandle(Resource.class, "closed", boolean.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        Resource(Storage storage, DType dtype, Shape shape) {
            this.storage = storage;
            this.dtype = dtype;
            this.shape = shape;
            this.createdAt = TRACE_LEAKS ? new Throwable("tensor created here") : null;
        }

        @Override
        public void run() {
            if (!closed) {
                closed = true;
                if (LeakCounter.LEAKED.incrementAndGet() == 1 && !LOG.isWarnEnabled()) {
                    // leak warnings go through SLF4J; without a provider they would vanish silently
                    System.err.println("Cortado: a tensor was not closed and was freed by the garbage collector; "
                            + "the leak warnings are logged through SLF4J, which has no provider or has WARN off "
                            + "for " + Tensor.class.getName() + " (add one, e.g. org.slf4j:slf4j-simple)");
                }
                if (createdAt != null) {
                    LOG.warn("Tensor {}{} on {} was not closed; freed by the safety net", dtype, shape,
                            storage.device, createdAt);
                } else {
                    LOG.warn("Tensor {}{} on {} was not closed; freed by the safety net "
                            + "(-Dcortado.traceLeaks=true shows where it was created)", dtype, shape, storage.device);
                }
            }
            storage.release();
        }
    }

    /** Counts tensors freed by the safety net instead of close(); tests assert on it. */
    public static final class LeakCounter {
        static final java.util.concurrent.atomic.AtomicLong LEAKED = new java.util.concurrent.atomic.AtomicLong();

        private LeakCounter() {
        }

        public static long leaked() {
            return LEAKED.get();
        }
    }

    /** Takes over one reference of {@code storage}; checks that the view lies inside it. */
    private Tensor(Storage storage, DType dtype, Shape shape, long[] strides, long offset) {
        checkInBounds(storage, dtype, shape, strides, offset);
        this.storage = storage;
        this.dtype = dtype;
        this.shape = shape;
        this.strides = strides;
        this.offset = offset;
        this.resource = new Resource(storage, dtype, shape);
        this.cleanable = CLEANER.register(this, resource);
        Scope scope = Scope.current();
        if (scope != null && scope.register(this)) {
            this.owner = scope;
        }
        TensorTracer tracer = TensorTracer.current();
        if (tracer != null) {
            tracer.created(this);
        }
    }

    private static void checkInBounds(Storage storage, DType dtype, Shape shape, long[] strides, long offset) {
        if (strides.length != shape.rank()) {
            throw new IllegalArgumentException("strides " + Arrays.toString(strides) + " do not match shape " + shape);
        }
        if (offset < 0) {
            throw new IllegalArgumentException("negative storage offset " + offset);
        }
        if (shape.numel() == 0) {
            return;
        }
        long last = offset;
        boolean overflow = false;
        for (int i = 0; i < strides.length; i++) {
            if (strides[i] < 0) {
                throw new IllegalArgumentException("negative stride " + strides[i] + " in dimension " + i);
            }
            try {
                last = Math.addExact(last, Math.multiplyExact(shape.raw()[i] - 1, strides[i]));
            } catch (ArithmeticException e) {
                overflow = true; // the last element's index does not fit in a long: far past any storage
            }
        }
        // elements the storage holds; compared as element indices so that nothing here can overflow
        long capacity = dtype.isPacked() ? storage.bytes * 2 : storage.bytes / dtype.byteSize();
        if (overflow || last >= capacity) {
            throw new IllegalArgumentException("view " + dtype + shape + " with strides " + Arrays.toString(strides)
                    + " and offset " + offset + " reaches past its storage of " + storage.bytes + " bytes");
        }
    }

    // ================================================================ creation

    /** An uninitialised contiguous tensor. */
    public static Tensor empty(DType dtype, Device device, long... dims) {
        Shape shape = Shape.of(dims);
        return new Tensor(Storage.allocate(device, dtype.bytesFor(shape.numel())), dtype, shape,
                shape.contiguousStrides(), 0);
    }

    public static Tensor empty(DType dtype, Device device, Shape shape) {
        return new Tensor(Storage.allocate(device, dtype.bytesFor(shape.numel())), dtype, shape,
                shape.contiguousStrides(), 0);
    }

    public static Tensor empty(DType dtype, long... dims) {
        return empty(dtype, Device.defaultDevice(), dims);
    }

    /** A contiguous tensor over all of {@code storage}, taking over its one reference ({@link MappedFile}). */
    static Tensor over(Storage storage, DType dtype, Shape shape) {
        return new Tensor(storage, dtype, shape, shape.contiguousStrides(), 0);
    }

    public static Tensor full(double value, DType dtype, Device device, long... dims) {
        Tensor t = empty(dtype, device, dims);
        t.fillWith(value);
        return t;
    }

    /** Every element {@code value}, on the default device. */
    public static Tensor full(double value, DType dtype, long... dims) {
        return full(value, dtype, Device.defaultDevice(), dims);
    }

    public static Tensor zeros(DType dtype, Device device, long... dims) {
        return full(0, dtype, device, dims);
    }

    public static Tensor zeros(DType dtype, long... dims) {
        return full(0, dtype, Device.defaultDevice(), dims);
    }

    public static Tensor ones(DType dtype, Device device, long... dims) {
        return full(1, dtype, device, dims);
    }

    public static Tensor ones(DType dtype, long... dims) {
        return full(1, dtype, Device.defaultDevice(), dims);
    }

    /** A 0-dimensional tensor holding {@code value}. */
    public static Tensor scalar(double value, DType dtype, Device device) {
        return full(value, dtype, device);
    }

    /** A 0-dimensional tensor holding {@code value}, on the default device. */
    public static Tensor scalar(double value, DType dtype) {
        return full(value, dtype, Device.defaultDevice());
    }

    /** {@code arange(start, end, step, dtype, device)} on the default device. */
    public static Tensor arange(double start, double end, double step, DType dtype) {
        return arange(start, end, step, dtype, Device.defaultDevice());
    }

    /** {@code start, start + step, ...} below {@code end}, computed in float64 then converted. */
    public static Tensor arange(double start, double end, double step, DType dtype, Device device) {
        if (step == 0 || Double.isNaN(step) || Double.isNaN(start) || Double.isNaN(end)) {
            throw new IllegalArgumentException("arange(" + start + ", " + end + ", " + step + "): invalid range");
        }
        long n = Math.max(0, (long) Math.ceil((end - start) / step));
        double[] values = new double[Math.toIntExact(n)];
        for (int i = 0; i < values.length; i++) {
            values[i] = start + i * step;
        }
        try (Tensor t = of(values, Device.CPU, n)) {
            return t.to(dtype, device);
        }
    }

    /** A float32 tensor of {@code data} (row-major) on the default device. */
    public static Tensor of(float[] data, long... dims) {
        return of(data, Device.defaultDevice(), dims);
    }

    /** A float32 tensor of {@code data} (row-major) on {@code device}. */
    public static Tensor of(float[] data, Device device, long... dims) {
        return fromHost(DType.FLOAT32, device, dims, data.length, address -> HostMemory.write(address, data));
    }

    /** A float64 tensor of {@code data} (row-major) on the default device. */
    public static Tensor of(double[] data, long... dims) {
        return of(data, Device.defaultDevice(), dims);
    }

    /** A float64 tensor of {@code data} (row-major) on {@code device}. */
    public static Tensor of(double[] data, Device device, long... dims) {
        return fromHost(DType.FLOAT64, device, dims, data.length, address -> HostMemory.write(address, data));
    }

    /** An int32 tensor of {@code data} (row-major) on the default device. */
    public static Tensor of(int[] data, long... dims) {
        return of(data, Device.defaultDevice(), dims);
    }

    /** An int32 tensor of {@code data} (row-major) on {@code device}. */
    public static Tensor of(int[] data, Device device, long... dims) {
        return fromHost(DType.INT32, device, dims, data.length, address -> HostMemory.write(address, data));
    }

    /** An int64 tensor of {@code data} (row-major) on the default device. */
    public static Tensor of(long[] data, long... dims) {
        return of(data, Device.defaultDevice(), dims);
    }

    /** An int64 tensor of {@code data} (row-major) on {@code device}. */
    public static Tensor of(long[] data, Device device, long... dims) {
        return fromHost(DType.INT64, device, dims, data.length, address -> HostMemory.write(address, data));
    }

    /** A bool tensor of {@code data} (row-major) on the default device. */
    public static Tensor of(boolean[] data, long... dims) {
        return of(data, Device.defaultDevice(), dims);
    }

    /** A bool tensor of {@code data} (row-major) on {@code device}. */
    public static Tensor of(boolean[] data, Device device, long... dims) {
        byte[] bytes = new byte[data.length];
        for (int i = 0; i < data.length; i++) {
            bytes[i] = (byte) (data[i] ? 1 : 0);
        }
        return fromHost(DType.BOOL, device, dims, data.length, address -> HostMemory.write(address, bytes));
    }

    /**
     * Bytes taken as values of {@code dtype}: INT8, UINT8 (values as unsigned), BOOL (0/1) or
     * INT4 (each byte one value in [-8, 7], packed two per byte on the way in); default device.
     */
    public static Tensor of(byte[] data, DType dtype, long... dims) {
        return of(data, dtype, Device.defaultDevice(), dims);
    }

    /** As {@link #of(byte[], DType, long...)}, on {@code device}. */
    public static Tensor of(byte[] data, DType dtype, Device device, long... dims) {
        if (dtype == DType.INT4) {
            for (int i = 0; i < data.length; i++) {
                if (data[i] < -8 || data[i] > 7) {
                    throw new IllegalArgumentException("int4 value " + data[i] + " at index " + i + " is outside [-8, 7]");
                }
            }
            byte[] packed = new byte[(data.length + 1) / 2];
            for (int i = 0; i < data.length; i++) {
                int nibble = data[i] & 0xF;
                packed[i / 2] |= (byte) ((i % 2 == 0) ? nibble : nibble << 4);
            }
            return fromHost(DType.INT4, device, dims, data.length, address -> HostMemory.write(address, packed));
        }
        if (dtype != DType.INT8 && dtype != DType.UINT8 && dtype != DType.BOOL) {
            throw new IllegalArgumentException("Tensor.of(byte[]): dtype must be int8, uint8, bool or int4, got " + dtype);
        }
        return fromHost(dtype, device, dims, data.length, address -> HostMemory.write(address, data));
    }

    /**
     * Copies {@code buffer}'s remaining bytes (little-endian elements of {@code dtype}, row-major)
     * into a new tensor on {@code device}. The buffer's position is not changed.
     */
    public static Tensor fromBuffer(ByteBuffer buffer, DType dtype, Device device, long... dims) {
        Shape shape = Shape.of(dims);
        long need = dtype.bytesFor(shape.numel());
        if (buffer.remaining() != need) {
            throw new IllegalArgumentException("fromBuffer: " + dtype + shape + " needs " + need
                    + " bytes, the buffer has " + buffer.remaining());
        }
        Tensor host = empty(dtype, Device.CPU, shape);
        ByteBuffer dst = HostMemory.view(host.dataAddress(), need);
        ByteBuffer src = buffer.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        dst.put(src);
        return host.moveTo(device);
    }

    private interface HostWriter {
        void write(long address);
    }

    private static Tensor fromHost(DType dtype, Device device, long[] dims, int count, HostWriter writer) {
        Shape shape = Shape.of(dims);
        if (shape.numel() != count) {
            throw new IllegalArgumentException("data has " + count + " elements but shape " + shape
                    + " needs " + shape.numel());
        }
        Tensor host = empty(dtype, Device.CPU, shape);
        if (count > 0) {
            writer.write(host.dataAddress());
        }
        return host.moveTo(device);
    }

    /** Returns this tensor on {@code device}, closing this one if a copy was made. */
    private Tensor moveTo(Device device) {
        if (device.equals(storage.device)) {
            return this;
        }
        try (this) {
            return to(device);
        }
    }

    // ================================================================ properties

    public DType dtype() {
        return dtype;
    }

    public Shape shape() {
        return shape;
    }

    /** The sizes, as a new array. */
    public long[] dims() {
        return shape.toArray();
    }

    public int rank() {
        return shape.rank();
    }

    /** Size of dimension {@code dim} (negative counts from the end). */
    public long size(int dim) {
        return shape.size(dim);
    }

    public long numel() {
        return shape.numel();
    }

    /** Element strides, as a new array. */
    public long[] strides() {
        return strides.clone();
    }

    /** Offset of the first element in the storage, in elements. */
    public long offset() {
        return offset;
    }

    public Device device() {
        return storage.device;
    }

    public Layout layout() {
        return Layout.STRIDED;
    }

    public boolean isClosed() {
        return resource.closed;
    }

    /** Whether the elements lie in row-major order without gaps. */
    public boolean isContiguous() {
        long expected = 1;
        long[] d = shape.raw();
        for (int i = d.length - 1; i >= 0; i--) {
            if (d[i] != 1 && strides[i] != expected) {
                return false;
            }
            expected *= d[i];
        }
        return true;
    }

    /** Whether both tensors are views of the same storage. */
    public boolean sharesStorageWith(Tensor other) {
        return storage == other.storage;
    }

    /**
     * Native address of the first element, for kernels. The view is checked to lie inside its
     * storage when created, so kernels given this address with {@link #strides()} and
     * {@link #dims()} stay in bounds.
     */
    public long dataAddress() {
        ensureOpen("dataAddress");
        return storage.address + (dtype == DType.INT4 ? offset / 2 : offset * dtype.byteSize());
    }

    /** Throws if this tensor has been closed; {@code op} names who wanted it. */
    public void ensureOpen(String op) {
        if (resource.closed) {
            throw new IllegalStateException(op + ": tensor " + describe() + " is closed and cannot be used");
        }
    }

    /** Throws unless this tensor is dense strided (the sparse layouts are not taken by {@code op}). */
    public void requireStrided(String op) {
        if (layout() != Layout.STRIDED) {
            throw new UnsupportedOperationException(op + " does not support the " + layout() + " layout");
        }
    }

    /** {@code float32[2, 3] on cpu}: what error messages call this tensor. */
    public String describe() {
        return dtype + shape.toString() + " on " + storage.device;
    }

    Scope owner() {
        return owner;
    }

    void setOwner(Scope scope) {
        owner = scope;
    }

    // ================================================================ lifetime

    /**
     * Frees this view's reference to the storage; idempotent. A tensor owned by a {@link Scope}
     * belongs to the scope's thread: closing it from another thread throws
     * {@link IllegalStateException} naming the tensor and both threads (it would race the scope's
     * own close). Unowned tensors may be closed from any thread; of two racing closes exactly one
     * frees.
     */
    @Override
    public void close() {
        if (resource.closed) {
            return;
        }
        Scope scope = owner;
        if (scope != null) {
            scope.checkThread("close", this);
        }
        if (!Resource.CLOSED.compareAndSet(resource, false, true)) {
            return;
        }
        cleanable.clean();
        if (grad != null) {
            grad.close();
            grad = null;
        }
        if (gradNode != null) {
            AutogradHook.Node node = gradNode;
            gradNode = null;
            node.outputClosed();
        }
        if (owner != null) {
            owner.onClosed();
        }
    }

    // ================================================================ autograd

    /**
     * Marks this leaf tensor as a parameter whose gradient backward() accumulates into
     * {@link #grad()}; floating dtypes only. Returns this tensor.
     */
    public Tensor requiresGrad(boolean flag) {
        ensureOpen("requiresGrad");
        if (flag && !dtype.isFloatingPoint()) {
            throw new IllegalArgumentException("requiresGrad: only floating tensors take gradients, " + describe()
                    + " has dtype " + dtype);
        }
        if (gradNode != null) {
            throw new IllegalStateException("requiresGrad: " + describe() + " was computed by " + gradNode.name()
                    + "; only leaf tensors are marked (use detach() for a new leaf)");
        }
        if (flag) {
            AutogradHook.get();
        }
        requiresGrad = flag;
        return this;
    }

    /** True when gradients flow to or through this tensor. */
    public boolean requiresGrad() {
        return requiresGrad || gradNode != null;
    }

    /** True unless an op recorded on the tape produced this tensor. */
    public boolean isLeaf() {
        return gradNode == null;
    }

    /** The gradient accumulated by backward() for this leaf, or null; owned by this tensor. */
    public Tensor grad() {
        return grad;
    }

    /**
     * Drops this tensor's gradient and frees its memory now (the next backward allocates a fresh
     * one); a no-op when there is none. {@code Module.zeroGrad()} and {@code Optimizer.zeroGrad()}
     * do this for every parameter.
     */
    public void zeroGrad() {
        setGrad(null);
    }

    /** Replaces the gradient (this tensor takes ownership; the previous one is closed); null clears it. */
    public void setGrad(Tensor gradient) {
        if (gradient != null && !gradient.shape.equals(shape)) {
            throw new IllegalArgumentException("setGrad: gradient " + gradient.describe() + " does not match "
                    + describe());
        }
        if (grad != null && grad != gradient) {
            grad.close();
        }
        grad = gradient;
    }

    /** The tape node that produced this tensor (null for leaves); used by autograd. */
    public AutogradHook.Node gradNode() {
        return gradNode;
    }

    /** Which output of {@link #gradNode()} this tensor is. */
    public int gradOutput() {
        return gradOutput;
    }

    /** Attaches this freshly computed tensor to the tape; used by autograd. */
    public void attachGradNode(AutogradHook.Node node, int outputIndex) {
        this.gradNode = node;
        this.gradOutput = outputIndex;
    }

    /** True when no other tensor or view shares this tensor's memory (autograd may then keep it). */
    public boolean ownsStorageAlone() {
        return !resource.closed && storage.references() == 1;
    }

    /** The same data as a new leaf with no gradient history. */
    public Tensor detach() {
        ensureOpen("detach");
        Tensor out = view(shape, strides.clone(), offset);
        TensorTracer tracer = TensorTracer.current();
        if (tracer != null) {
            tracer.derived("detach", this, out);
        }
        return out;
    }

    /**
     * A view of this tensor's storage read as {@code dtype} with the given sizes, element strides
     * and storage offset (counted in elements of {@code dtype} from the start of the storage),
     * checked to lie inside the storage. Not recorded by autograd. The graph executor uses it for
     * its memory arena (one storage, many values) and to replay captured views.
     */
    public Tensor asStrided(DType dtype, Shape shape, long[] strides, long storageOffset) {
        ensureOpen("asStrided");
        if (dtype.isPacked() || this.dtype.isPacked()) {
            throw new UnsupportedOperationException("asStrided: packed int4 storage cannot be reinterpreted ("
                    + describe() + " as " + dtype + ")");
        }
        storage.retain();
        try {
            return new Tensor(storage, dtype, shape, strides.clone(), storageOffset);
        } catch (RuntimeException e) {
            storage.release();
            throw e;
        }
    }

    /** Backward from this scalar (the gradient of itself is 1); frees the tape behind it. */
    public void backward() {
        backward(null, false);
    }

    /**
     * Backward from this tensor with {@code seed} as its gradient (same shape as this tensor; null
     * means 1 for a scalar); frees the tape behind it.
     */
    public void backward(Tensor seed) {
        backward(seed, false);
    }

    /**
     * Backward from this tensor with {@code seed} as its gradient (null means 1 for a scalar);
     * {@code retainGraph} keeps the tape for another backward.
     */
    public void backward(Tensor seed, boolean retainGraph) {
        ensureOpen("backward");
        if (!requiresGrad()) {
            throw new IllegalStateException("backward: " + describe()
                    + " does not require gradients (no input was marked requiresGrad, or it was computed under noGrad)");
        }
        AutogradHook.get().backward(this, seed, retainGraph);
    }

    private Tensor traced(String name, Tensor out, AutogradHook.ViewBackward backward) {
        TensorTracer tracer = TensorTracer.current();
        if (tracer != null) {
            tracer.derived(name, this, out);
        }
        if (requiresGrad() && dtype.isFloatingPoint() && out.dtype.isFloatingPoint()) {
            AutogradHook hook = AutogradHook.Installed.current();
            if (hook != null) {
                hook.recordView(name, this, out, backward);
            }
        }
        return out;
    }

    private Tensor reshapedBack(Tensor g) {
        return g.reshape(shape.toArray());
    }

    private Tensor convertedBack(Tensor g) {
        return g.to(dtype, storage.device);
    }

    // ================================================================ views

    private Tensor view(Shape newShape, long[] newStrides, long newOffset) {
        storage.retain();
        try {
            return new Tensor(storage, dtype, newShape, newStrides, newOffset);
        } catch (RuntimeException e) {
            storage.release();
            throw e;
        }
    }

    private void checkViewable(String op) {
        ensureOpen(op);
        if (dtype.isPacked()) {
            throw new UnsupportedOperationException(op + " on " + describe()
                    + ": packed int4 tensors only support reshape/view of contiguous data; convert with to(DType.INT8) first");
        }
    }

    private long[] inferDims(String op, long[] dims) {
        long[] out = dims.clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < out.length; i++) {
            if (out[i] == -1) {
                if (infer >= 0) {
                    throw new IllegalArgumentException(op + ": only one dimension can be -1, got " + Arrays.toString(dims));
                }
                infer = i;
            } else if (out[i] < 0) {
                throw new IllegalArgumentException(op + ": negative size " + out[i] + " in " + Arrays.toString(dims));
            } else {
                known *= out[i];
            }
        }
        if (infer >= 0) {
            if (known == 0 || shape.numel() % known != 0) {
                throw new IllegalArgumentException(op + ": cannot reshape " + describe() + " into " + Arrays.toString(dims));
            }
            out[infer] = shape.numel() / known;
        } else if (known != shape.numel()) {
            throw new IllegalArgumentException(op + ": shape " + Arrays.toString(dims) + " has " + known
                    + " elements, " + describe() + " has " + shape.numel());
        }
        return out;
    }

    /**
     * Strides for viewing this tensor as {@code newDims} without copying, or null if the memory
     * layout does not allow it (the algorithm of PyTorch's computeStride: chunks of dimensions
     * that are contiguous with each other can be re-split freely).
     */
    private long[] viewStrides(long[] newDims) {
        long[] oldDims = shape.raw();
        long[] newStrides = new long[newDims.length];
        if (shape.numel() == 0) {
            return Shape.of(newDims).contiguousStrides();
        }
        int viewD = newDims.length - 1;
        long chunkBase = oldDims.length == 0 ? 1 : strides[oldDims.length - 1];
        long tensorNumel = 1;
        long viewNumel = 1;
        for (int d = oldDims.length - 1; d >= 0; d--) {
            tensorNumel *= oldDims[d];
            if (d == 0 || (oldDims[d - 1] != 1 && strides[d - 1] != tensorNumel * chunkBase)) {
                while (viewD >= 0 && (viewNumel < tensorNumel || newDims[viewD] == 1)) {
                    newStrides[viewD] = viewNumel * chunkBase;
                    viewNumel *= newDims[viewD];
                    viewD--;
                }
                if (viewNumel != tensorNumel) {
                    return null;
                }
                if (d > 0) {
                    chunkBase = strides[d - 1];
                    tensorNumel = 1;
                    viewNumel = 1;
                }
            }
        }
        if (viewD != -1) {
            // remaining leading dims of size 1
            while (viewD >= 0) {
                if (newDims[viewD] != 1) {
                    return null;
                }
                newStrides[viewD] = 1;
                viewD--;
            }
        }
        return newStrides;
    }

    /** Same data, new shape, without copying; throws if the layout does not allow a view. */
    public Tensor view(long... dims) {
        ensureOpen("view");
        long[] newDims = inferDims("view", dims);
        if (dtype.isPacked()) {
            if (!isContiguous()) {
                throw new UnsupportedOperationException("view of a non-contiguous int4 tensor");
            }
            return view(Shape.of(newDims), Shape.of(newDims).contiguousStrides(), offset);
        }
        long[] s = viewStrides(newDims);
        if (s == null) {
            throw new IllegalArgumentException("view: " + describe() + " with strides " + Arrays.toString(strides)
                    + " cannot be viewed as " + Arrays.toString(newDims) + " without a copy; use reshape()");
        }
        return traced("view", view(Shape.wrap(newDims), s, offset), this::reshapedBack);
    }

    /** A view with the new shape when possible, else a contiguous copy. One size may be -1. */
    public Tensor reshape(long... dims) {
        ensureOpen("reshape");
        long[] newDims = inferDims("reshape", dims);
        long[] s = dtype.isPacked() ? (isContiguous() ? Shape.of(newDims).contiguousStrides() : null) : viewStrides(newDims);
        if (s != null) {
            return traced("reshape", view(Shape.wrap(newDims), s, offset), this::reshapedBack);
        }
        try (Tensor c = contiguous()) {
            return c.view(newDims);
        }
    }

    /** Flattens all dimensions into one. */
    public Tensor flatten() {
        return reshape(-1);
    }

    /** Reorders dimensions: result dimension i is this tensor's dimension {@code order[i]}. */
    public Tensor permute(int... order) {
        checkViewable("permute");
        int rank = rank();
        if (order.length != rank) {
            throw new IllegalArgumentException("permute: " + Arrays.toString(order) + " has " + order.length
                    + " entries, " + describe() + " has rank " + rank);
        }
        boolean[] seen = new boolean[rank];
        long[] d = new long[rank];
        long[] s = new long[rank];
        for (int i = 0; i < rank; i++) {
            int src = Shape.normalize(order[i], rank);
            if (seen[src]) {
                throw new IllegalArgumentException("permute: dimension " + src + " repeated in " + Arrays.toString(order));
            }
            seen[src] = true;
            d[i] = shape.raw()[src];
            s[i] = strides[src];
        }
        int[] inverse = new int[rank];
        for (int i = 0; i < rank; i++) {
            inverse[Shape.normalize(order[i], rank)] = i;
        }
        return traced("permute", view(Shape.wrap(d), s, offset), g -> g.permute(inverse));
    }

    /** Swaps two dimensions. */
    public Tensor transpose(int dim0, int dim1) {
        checkViewable("transpose");
        int rank = rank();
        int a = Shape.normalize(dim0, rank);
        int b = Shape.normalize(dim1, rank);
        int[] order = new int[rank];
        for (int i = 0; i < rank; i++) {
            order[i] = i;
        }
        order[a] = b;
        order[b] = a;
        return permute(order);
    }

    /**
     * Elements {@code start .. start+length-1} along {@code dim}, strictly as PyTorch's narrow: a
     * negative start counts from the end, and a range that does not fit the dimension throws
     * (use {@link #slice}, which clamps, for Python-slice semantics).
     *
     * @throws IllegalArgumentException when start is outside [-size, size], length is negative, or
     *     start + length exceeds the size
     */
    public Tensor narrow(int dim, long start, long length) {
        checkViewable("narrow");
        int d = Shape.normalize(dim, rank());
        long size = shape.raw()[d];
        long s = start < 0 ? start + size : start;
        String problem = null;
        if (s < 0 || s > size) {
            problem = "start is outside [" + -size + ", " + size + "]";
        } else if (length < 0) {
            problem = "length must not be negative";
        } else if (s + length > size) {
            problem = "start " + s + " + length " + length + " exceeds the size " + size;
        }
        if (problem != null) {
            throw new IllegalArgumentException("narrow(dim " + dim + ", start " + start + ", length " + length + ") on "
                    + describe() + ": " + problem + " of dimension " + d);
        }
        return slice(d, s, s + length, 1);
    }

    /**
     * Elements {@code start, start+step, ... < end} along {@code dim}; negative start/end count
     * from the end, and both are clamped to the dimension like Python slices.
     */
    public Tensor slice(int dim, long start, long end, long step) {
        checkViewable("slice");
        int d = Shape.normalize(dim, rank());
        if (step <= 0) {
            throw new IllegalArgumentException("slice: step must be positive, got " + step);
        }
        long size = shape.raw()[d];
        long s = start < 0 ? Math.max(start + size, 0) : Math.min(start, size);
        long e = end < 0 ? Math.max(end + size, 0) : Math.min(end, size);
        long len = e > s ? (e - s + step - 1) / step : 0;
        long[] nd = shape.toArray();
        long[] ns = strides.clone();
        nd[d] = len;
        ns[d] = strides[d] * step;
        long first = s;
        return traced("slice", view(Shape.wrap(nd), ns, len == 0 ? offset : offset + s * strides[d]),
                g -> AutogradHook.get().sliceBackward(g, shape, d, first, step));
    }

    /** The sub-tensor at {@code index} of {@code dim}, which is removed. */
    public Tensor select(int dim, long index) {
        checkViewable("select");
        int d = Shape.normalize(dim, rank());
        long size = shape.raw()[d];
        long i = index < 0 ? index + size : index;
        if (i < 0 || i >= size) {
            throw new IndexOutOfBoundsException("select: index " + index + " out of range for dimension " + d
                    + " of size " + size + " in " + describe());
        }
        long[] nd = new long[rank() - 1];
        long[] ns = new long[rank() - 1];
        for (int k = 0, j = 0; k < rank(); k++) {
            if (k != d) {
                nd[j] = shape.raw()[k];
                ns[j++] = strides[k];
            }
        }
        return traced("select", view(Shape.wrap(nd), ns, offset + i * strides[d]),
                g -> {
                    try (Tensor row = g.unsqueeze(d)) {
                        return AutogradHook.get().sliceBackward(row, shape, d, i, 1);
                    }
                });
    }

    /** Broadcasts size-1 dimensions (and new leading ones) to {@code dims}; -1 keeps a size. */
    public Tensor expand(long... dims) {
        checkViewable("expand");
        int rank = dims.length;
        if (rank < rank()) {
            throw new IllegalArgumentException("expand: " + describe() + " cannot be expanded to fewer dimensions "
                    + Arrays.toString(dims));
        }
        long[] nd = new long[rank];
        long[] ns = new long[rank];
        for (int i = 0; i < rank; i++) {
            int src = i - (rank - rank());
            long want = dims[i];
            if (src < 0) {
                if (want < 0) {
                    throw new IllegalArgumentException("expand: -1 is not allowed for the new leading dimension " + i);
                }
                nd[i] = want;
                ns[i] = 0;
                continue;
            }
            long have = shape.raw()[src];
            if (want == -1 || want == have) {
                nd[i] = have;
                ns[i] = strides[src];
            } else if (have == 1 && want >= 0) {
                nd[i] = want;
                ns[i] = 0;
            } else {
                throw new IllegalArgumentException("expand: " + describe() + " cannot be expanded to "
                        + Arrays.toString(dims) + " (dimension " + i + " has size " + have + ")");
            }
        }
        return traced("expand", view(Shape.wrap(nd), ns, offset), g -> AutogradHook.get().sumToShape(g, shape));
    }

    /** Broadcasts to {@code target} (NumPy rules). */
    public Tensor broadcastTo(Shape target) {
        return expand(target.toArray());
    }

    /** Removes every dimension of size 1. */
    public Tensor squeeze() {
        checkViewable("squeeze");
        int keep = 0;
        for (long d : shape.raw()) {
            if (d != 1) {
                keep++;
            }
        }
        long[] nd = new long[keep];
        long[] ns = new long[keep];
        for (int k = 0, j = 0; k < rank(); k++) {
            if (shape.raw()[k] != 1) {
                nd[j] = shape.raw()[k];
                ns[j++] = strides[k];
            }
        }
        return traced("squeeze", view(Shape.wrap(nd), ns, offset), this::reshapedBack);
    }

    /** Removes dimension {@code dim} if its size is 1 (otherwise returns an unchanged view). */
    public Tensor squeeze(int dim) {
        checkViewable("squeeze");
        int d = Shape.normalize(dim, rank());
        if (shape.raw()[d] != 1) {
            return traced("squeeze", view(shape, strides.clone(), offset), this::reshapedBack);
        }
        return select(d, 0);
    }

    /** Inserts a dimension of size 1 at {@code dim} (in [-rank-1, rank]). */
    public Tensor unsqueeze(int dim) {
        checkViewable("unsqueeze");
        int d = Shape.normalize(dim, rank() + 1);
        long[] nd = new long[rank() + 1];
        long[] ns = new long[rank() + 1];
        for (int k = 0, j = 0; k < nd.length; k++) {
            if (k == d) {
                nd[k] = 1;
                ns[k] = d < rank() ? strides[d] * shape.raw()[d] : 1;
            } else {
                nd[k] = shape.raw()[j];
                ns[k] = strides[j++];
            }
        }
        return traced("unsqueeze", view(Shape.wrap(nd), ns, offset), this::reshapedBack);
    }

    // ================================================================ copies and transfers

    /** This data in row-major order: a new view if already contiguous, else a copy. */
    public Tensor contiguous() {
        ensureOpen("contiguous");
        if (isContiguous()) {
            return traced("contiguous", view(shape, strides.clone(), offset), this::convertedBack);
        }
        return traced("contiguous", copyAs(dtype, storage.device), this::convertedBack);
    }

    /** A contiguous copy with its own storage. */
    public Tensor copy() {
        ensureOpen("copy");
        return traced("copy", copyAs(dtype, storage.device), this::convertedBack);
    }

    /** Converts to {@code target} (round to nearest even for 16-bit floats); a view if unchanged. */
    public Tensor to(DType target) {
        ensureOpen("to(" + target + ")");
        if (target == dtype) {
            return traced("to", view(shape, strides.clone(), offset), this::convertedBack);
        }
        return traced("to", copyAs(target, storage.device), this::convertedBack);
    }

    /** Copies to {@code target}; a view if already there. */
    public Tensor to(Device target) {
        ensureOpen("to(" + target + ")");
        if (target.equals(storage.device)) {
            return traced("to", view(shape, strides.clone(), offset), this::convertedBack);
        }
        return traced("to", copyAs(dtype, target), this::convertedBack);
    }

    public Tensor to(DType targetType, Device targetDevice) {
        ensureOpen("to(" + targetType + ", " + targetDevice + ")");
        if (targetDevice.equals(storage.device)) {
            return to(targetType);
        }
        try (Tensor moved = to(targetDevice)) {
            return moved.to(targetType);
        }
    }

    public Tensor cpu() {
        return to(Device.CPU);
    }

    public Tensor cuda() {
        return to(Device.cuda());
    }

    /** Contiguous copy, possibly to another dtype and device. */
    private Tensor copyAs(DType targetType, Device targetDevice) {
        if (!targetDevice.equals(storage.device)) {
            targetDevice.backend();   // an unavailable device fails first (BackendUnavailableException), whatever the view
            // Cross-device: make it contiguous here, move the bytes, convert there.
            try (Tensor src = isContiguous() ? view(shape, strides.clone(), offset) : copyAs(dtype, storage.device)) {
                Tensor dst = empty(dtype, targetDevice, shape);
                try {
                    long bytes = dtype.bytesFor(numel());
                    if (bytes > 0) {
                        if (targetDevice.isCpu()) {
                            storage.backend().copyToHost(storage.device, dst.dataAddress(), src.dataAddress(), bytes);
                        } else if (storage.device.isCpu()) {
                            dst.storage.backend().copyFromHost(targetDevice, dst.dataAddress(), src.dataAddress(), bytes);
                        } else {
                            try (Tensor viaHost = src.to(Device.CPU)) {
                                dst.storage.backend().copyFromHost(targetDevice, dst.dataAddress(),
                                        viaHost.dataAddress(), bytes);
                            }
                        }
                    }
                } catch (RuntimeException e) {
                    dst.close();
                    throw e;
                }
                if (targetType == dtype) {
                    return dst;
                }
                try (dst) {
                    return dst.to(targetType);
                }
            }
        }
        if (dtype.isPacked() || targetType.isPacked()) {
            return PackedInt4.convert(this, targetType);
        }
        if ((dtype.isFloat8() || targetType.isFloat8()) && dtype != targetType) {
            throw new UnsupportedOperationException("to(" + targetType + ") of " + describe() + ": float8 is a storage "
                    + "type; convert with dev.cortado.quant.Quantization (quantize / dequantize)");
        }
        Tensor dst = empty(targetType, targetDevice, shape);
        try {
            if (numel() > 0) {
                DType bytes = dtype.isFloat8() ? DType.UINT8 : dtype; // fp8 copies keep the bytes
                storage.backend().copy(storage.device, dtype == targetType ? bytes : targetType, dst.dataAddress(),
                        dst.strides, bytes, dataAddress(), strides, shape.raw());
            }
        } catch (RuntimeException e) {
            dst.close();
            throw e;
        }
        return dst;
    }

    /**
     * Copies {@code src} (broadcast to this shape, converted to this dtype, moved to this device)
     * into this view's elements, in place.
     */
    public void copyFrom(Tensor src) {
        ensureOpen("copyFrom");
        src.ensureOpen("copyFrom");
        TensorTracer tracer = TensorTracer.current();
        if (tracer != null) {
            tracer.copying(this, src);
        }
        if (dtype.isPacked() || src.dtype.isPacked()) {
            throw new UnsupportedOperationException("copyFrom: packed int4 tensors are not written in place");
        }
        if (!src.device().equals(device())) {
            try (Tensor moved = src.to(device())) {
                copyFrom(moved);
            }
            return;
        }
        try (Tensor b = src.expand(shape.toArray())) {
            if (numel() > 0) {
                storage.backend().copy(storage.device, dtype, dataAddress(), strides, b.dtype, b.dataAddress(),
                        b.strides, shape.raw());
            }
        }
    }

    /** Sets every element of this view to {@code value}. */
    public void fillWith(double value) {
        ensureOpen("fill");
        TensorTracer tracer = TensorTracer.current();
        if (tracer != null) {
            tracer.writing("fill", this);
        }
        if (numel() == 0) {
            return;
        }
        if (dtype.isPacked()) {
            PackedInt4.fill(this, value);
            return;
        }
        if (isContiguous()) {
            storage.backend().fill(storage.device, dtype, dataAddress(), numel(), value);
            return;
        }
        try (Tensor v = full(value, dtype, storage.device)) {
            copyFrom(v);
        }
    }

    // ================================================================ ops
    // The common ops as methods, PyTorch style: x.matmul(w).add(b).relu(). Each is exactly the
    // family call of the same name in dev.cortado.ops (Elementwise, Reductions, Normalization,
    // LinearAlgebra), reached through TensorOps so that this package does not depend on ops. Each
    // returns a new tensor (the caller closes it) and records on the autograd tape like the call.

    /** The ops, installed by dev.cortado.ops; loaded on the first op method call. */
    private static final class Ops {
        static final TensorOps IMPL = TensorOps.get();
    }

    /** {@code this + other}, broadcasting (type promotion as {@code Elementwise.add}). */
    public Tensor add(Tensor other) {
        return Ops.IMPL.add(this, other);
    }

    /** {@code this + value}; the number does not widen this dtype within its kind. */
    public Tensor add(double value) {
        return Ops.IMPL.add(this, value);
    }

    /** {@code this - other}, broadcasting. */
    public Tensor sub(Tensor other) {
        return Ops.IMPL.sub(this, other);
    }

    /** {@code this - value}. */
    public Tensor sub(double value) {
        return Ops.IMPL.sub(this, value);
    }

    /** {@code this * other} elementwise, broadcasting (use {@link #matmul} for the matrix product). */
    public Tensor mul(Tensor other) {
        return Ops.IMPL.mul(this, other);
    }

    /** {@code this * value}. */
    public Tensor mul(double value) {
        return Ops.IMPL.mul(this, value);
    }

    /** {@code this / other}, broadcasting; true division (integer inputs give float32). */
    public Tensor div(Tensor other) {
        return Ops.IMPL.div(this, other);
    }

    /** {@code this / value}; true division. */
    public Tensor div(double value) {
        return Ops.IMPL.div(this, value);
    }

    /** {@code this ^ exponent} elementwise. */
    public Tensor pow(double exponent) {
        return Ops.IMPL.pow(this, exponent);
    }

    /** {@code this ^ exponent} elementwise, broadcasting. */
    public Tensor pow(Tensor exponent) {
        return Ops.IMPL.pow(this, exponent);
    }

    /** The larger of each pair of elements, broadcasting ({@link #max()} is the reduction). */
    public Tensor maximum(Tensor other) {
        return Ops.IMPL.maximum(this, other);
    }

    /** The smaller of each pair of elements, broadcasting ({@link #min()} is the reduction). */
    public Tensor minimum(Tensor other) {
        return Ops.IMPL.minimum(this, other);
    }

    /** {@code -this}. */
    public Tensor neg() {
        return Ops.IMPL.neg(this);
    }

    /** {@code |this|}. */
    public Tensor abs() {
        return Ops.IMPL.abs(this);
    }

    /** {@code e^this}. */
    public Tensor exp() {
        return Ops.IMPL.exp(this);
    }

    /** Natural logarithm. */
    public Tensor log() {
        return Ops.IMPL.log(this);
    }

    /** Square root. */
    public Tensor sqrt() {
        return Ops.IMPL.sqrt(this);
    }

    /** {@code 1 / sqrt(this)}. */
    public Tensor rsqrt() {
        return Ops.IMPL.rsqrt(this);
    }

    /** {@code 1 / this}. */
    public Tensor reciprocal() {
        return Ops.IMPL.reciprocal(this);
    }

    /** Sine. */
    public Tensor sin() {
        return Ops.IMPL.sin(this);
    }

    /** Cosine. */
    public Tensor cos() {
        return Ops.IMPL.cos(this);
    }

    /** Hyperbolic tangent. */
    public Tensor tanh() {
        return Ops.IMPL.tanh(this);
    }

    /** {@code 1 / (1 + e^-this)}. */
    public Tensor sigmoid() {
        return Ops.IMPL.sigmoid(this);
    }

    /** {@code max(this, 0)}. */
    public Tensor relu() {
        return Ops.IMPL.relu(this);
    }

    /** GELU, exact form {@code x * Phi(x)} (PyTorch's default). */
    public Tensor gelu() {
        return Ops.IMPL.gelu(this);
    }

    /** SiLU (swish): {@code x * sigmoid(x)}. */
    public Tensor silu() {
        return Ops.IMPL.silu(this);
    }

    /** Clamps into [min, max] (NaN stays NaN); use ±infinity for one side. */
    public Tensor clamp(double min, double max) {
        return Ops.IMPL.clamp(this, min, max);
    }

    /** {@code this == other} elementwise, as a bool tensor, broadcasting. */
    public Tensor eq(Tensor other) {
        return Ops.IMPL.eq(this, other);
    }

    /** {@code this == value} elementwise, as a bool tensor. */
    public Tensor eq(double value) {
        return Ops.IMPL.eq(this, value);
    }

    /** {@code this != other} elementwise, as a bool tensor, broadcasting. */
    public Tensor ne(Tensor other) {
        return Ops.IMPL.ne(this, other);
    }

    /** {@code this != value} elementwise, as a bool tensor. */
    public Tensor ne(double value) {
        return Ops.IMPL.ne(this, value);
    }

    /** {@code this < other} elementwise, as a bool tensor, broadcasting. */
    public Tensor lt(Tensor other) {
        return Ops.IMPL.lt(this, other);
    }

    /** {@code this < value} elementwise, as a bool tensor. */
    public Tensor lt(double value) {
        return Ops.IMPL.lt(this, value);
    }

    /** {@code this <= other} elementwise, as a bool tensor, broadcasting. */
    public Tensor le(Tensor other) {
        return Ops.IMPL.le(this, other);
    }

    /** {@code this <= value} elementwise, as a bool tensor. */
    public Tensor le(double value) {
        return Ops.IMPL.le(this, value);
    }

    /** {@code this > other} elementwise, as a bool tensor, broadcasting. */
    public Tensor gt(Tensor other) {
        return Ops.IMPL.gt(this, other);
    }

    /** {@code this > value} elementwise, as a bool tensor. */
    public Tensor gt(double value) {
        return Ops.IMPL.gt(this, value);
    }

    /** {@code this >= other} elementwise, as a bool tensor, broadcasting. */
    public Tensor ge(Tensor other) {
        return Ops.IMPL.ge(this, other);
    }

    /** {@code this >= value} elementwise, as a bool tensor. */
    public Tensor ge(double value) {
        return Ops.IMPL.ge(this, value);
    }

    /** Logical not of a bool tensor. */
    public Tensor logicalNot() {
        return Ops.IMPL.logicalNot(this);
    }

    /** Logical and of bool tensors, broadcasting. */
    public Tensor logicalAnd(Tensor other) {
        return Ops.IMPL.logicalAnd(this, other);
    }

    /** Logical or of bool tensors, broadcasting. */
    public Tensor logicalOr(Tensor other) {
        return Ops.IMPL.logicalOr(this, other);
    }

    /** {@code condition ? this : other} elementwise, broadcasting all three (PyTorch's {@code x.where(c, y)}). */
    public Tensor where(Tensor condition, Tensor other) {
        return Ops.IMPL.where(condition, this, other);
    }

    /** Sum of all elements, a 0-dim tensor (integer inputs sum in int64). */
    public Tensor sum() {
        return Ops.IMPL.sum(this, false);
    }

    /** Sum over {@code dims} (negative counts from the end), which are removed. */
    public Tensor sum(int... dims) {
        return Ops.IMPL.sum(this, false, requireDims("sum", dims));
    }

    /** Sum over {@code dim}; {@code keepDim} keeps it with size 1. */
    public Tensor sum(int dim, boolean keepDim) {
        return Ops.IMPL.sum(this, keepDim, dim);
    }

    /** Mean of all elements, a 0-dim tensor (floating inputs). */
    public Tensor mean() {
        return Ops.IMPL.mean(this, false);
    }

    /** Mean over {@code dims}, which are removed. */
    public Tensor mean(int... dims) {
        return Ops.IMPL.mean(this, false, requireDims("mean", dims));
    }

    /** Mean over {@code dim}; {@code keepDim} keeps it with size 1. */
    public Tensor mean(int dim, boolean keepDim) {
        return Ops.IMPL.mean(this, keepDim, dim);
    }

    /** Largest element, a 0-dim tensor ({@link #maximum} is the elementwise form). */
    public Tensor max() {
        return Ops.IMPL.max(this, false);
    }

    /** Largest values over {@code dims}, which are removed (values only; {@link #argmax(int)} gives indices). */
    public Tensor max(int... dims) {
        return Ops.IMPL.max(this, false, requireDims("max", dims));
    }

    /** Largest values over {@code dim}; {@code keepDim} keeps it with size 1. */
    public Tensor max(int dim, boolean keepDim) {
        return Ops.IMPL.max(this, keepDim, dim);
    }

    /** Smallest element, a 0-dim tensor ({@link #minimum} is the elementwise form). */
    public Tensor min() {
        return Ops.IMPL.min(this, false);
    }

    /** Smallest values over {@code dims}, which are removed. */
    public Tensor min(int... dims) {
        return Ops.IMPL.min(this, false, requireDims("min", dims));
    }

    /** Smallest values over {@code dim}; {@code keepDim} keeps it with size 1. */
    public Tensor min(int dim, boolean keepDim) {
        return Ops.IMPL.min(this, keepDim, dim);
    }

    /** Flat (row-major) index of the largest element, an int64 0-dim tensor. */
    public Tensor argmax() {
        return Ops.IMPL.argmax(this);
    }

    /** Index of the largest value along {@code dim} (first on ties), int64, {@code dim} removed. */
    public Tensor argmax(int dim) {
        return Ops.IMPL.argmax(this, dim, false);
    }

    /** Index of the largest value along {@code dim}; {@code keepDim} keeps it with size 1. */
    public Tensor argmax(int dim, boolean keepDim) {
        return Ops.IMPL.argmax(this, dim, keepDim);
    }

    /** Flat (row-major) index of the smallest element, an int64 0-dim tensor. */
    public Tensor argmin() {
        return Ops.IMPL.argmin(this);
    }

    /** Index of the smallest value along {@code dim} (first on ties), int64, {@code dim} removed. */
    public Tensor argmin(int dim) {
        return Ops.IMPL.argmin(this, dim, false);
    }

    /** Index of the smallest value along {@code dim}; {@code keepDim} keeps it with size 1. */
    public Tensor argmin(int dim, boolean keepDim) {
        return Ops.IMPL.argmin(this, dim, keepDim);
    }

    /** Softmax along {@code dim} (negative counts from the end: {@code softmax(-1)}). */
    public Tensor softmax(int dim) {
        return Ops.IMPL.softmax(this, dim);
    }

    /** Log-softmax along {@code dim}, computed stably in one pass. */
    public Tensor logSoftmax(int dim) {
        return Ops.IMPL.logSoftmax(this, dim);
    }

    /** Matrix product, NumPy rules: 1-d operands are vectors, leading dimensions broadcast as batches. */
    public Tensor matmul(Tensor other) {
        return Ops.IMPL.matmul(this, other);
    }

    /** An empty dims list would mean "all" to the family call; here it must name at least one. */
    private int[] requireDims(String op, int[] dims) {
        if (dims.length == 0) {
            throw new IllegalArgumentException(op + "(int... dims) on " + describe()
                    + ": name at least one dimension, or call " + op + "() to reduce all of them");
        }
        return dims;
    }

    // ================================================================ export

    /** A contiguous host tensor of {@code type} with this data (a view when nothing needs to change). */
    private Tensor hostContiguous(DType type, String op) {
        ensureOpen(op);
        TensorTracer tracer = TensorTracer.current();
        if (tracer != null) {
            tracer.reading(op, this);
        }
        try (TensorTracer.Pause paused = TensorTracer.pause(); Tensor host = to(Device.CPU)) {
            if (host.dtype == type && host.isContiguous()) {
                return host.view(host.shape, host.strides.clone(), host.offset);
            }
            if (host.dtype.isFloat8()) {
                try (Tensor raw = host.copyAs(host.dtype, Device.CPU)) {
                    return Float8.decodeToHost(raw, type);
                }
            }
            return host.copyAs(type, Device.CPU);
        }
    }

    private static int arrayLength(Tensor t, String op) {
        if (t.numel() > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException(op + ": " + t.describe() + " has too many elements for a Java array");
        }
        return (int) t.numel();
    }

    public float[] toFloatArray() {
        try (Tensor h = hostContiguous(DType.FLOAT32, "toFloatArray")) {
            float[] out = new float[arrayLength(h, "toFloatArray")];
            if (out.length > 0) {
                HostMemory.read(h.dataAddress(), out);
            }
            return out;
        }
    }

    public double[] toDoubleArray() {
        try (Tensor h = hostContiguous(DType.FLOAT64, "toDoubleArray")) {
            double[] out = new double[arrayLength(h, "toDoubleArray")];
            if (out.length > 0) {
                HostMemory.read(h.dataAddress(), out);
            }
            return out;
        }
    }

    public int[] toIntArray() {
        try (Tensor h = hostContiguous(DType.INT32, "toIntArray")) {
            int[] out = new int[arrayLength(h, "toIntArray")];
            if (out.length > 0) {
                HostMemory.read(h.dataAddress(), out);
            }
            return out;
        }
    }

    public long[] toLongArray() {
        try (Tensor h = hostContiguous(DType.INT64, "toLongArray")) {
            long[] out = new long[arrayLength(h, "toLongArray")];
            if (out.length > 0) {
                HostMemory.read(h.dataAddress(), out);
            }
            return out;
        }
    }

    public boolean[] toBooleanArray() {
        try (Tensor h = hostContiguous(DType.BOOL, "toBooleanArray")) {
            byte[] raw = new byte[arrayLength(h, "toBooleanArray")];
            if (raw.length > 0) {
                HostMemory.read(h.dataAddress(), raw);
            }
            boolean[] out = new boolean[raw.length];
            for (int i = 0; i < raw.length; i++) {
                out[i] = raw[i] != 0;
            }
            return out;
        }
    }

    /** The raw little-endian bytes of this data in row-major order, in this dtype (int4 stays packed). */
    public byte[] toByteArray() {
        try (Tensor h = hostContiguous(dtype, "toByteArray")) {
            long bytes = dtype.bytesFor(h.numel());
            if (bytes > Integer.MAX_VALUE - 8) {
                throw new IllegalStateException("toByteArray: " + describe() + " is larger than a Java array");
            }
            byte[] out = new byte[(int) bytes];
            if (out.length > 0) {
                HostMemory.read(h.dataAddress(), out);
            }
            return out;
        }
    }

    /** Writes the raw bytes (as {@link #toByteArray()}) into {@code buffer} at its position, advancing it. */
    public void copyTo(ByteBuffer buffer) {
        try (Tensor h = hostContiguous(dtype, "copyTo")) {
            long bytes = dtype.bytesFor(h.numel());
            if (buffer.remaining() < bytes) {
                throw new IllegalArgumentException("copyTo: " + describe() + " needs " + bytes
                        + " bytes, the buffer has " + buffer.remaining());
            }
            if (bytes > 0) {
                buffer.put(HostMemory.view(h.dataAddress(), bytes));
            }
        }
    }

    /** The value of a one-element tensor, as a double. */
    public double item() {
        ensureOpen("item");
        if (numel() != 1) {
            throw new IllegalStateException("item: " + describe() + " has " + numel() + " elements, not 1");
        }
        return toDoubleArray()[0];
    }

    // ================================================================ printing

    /** PyTorch-style: values (elided past 1000 elements), shape, dtype and device. */
    @Override
    public String toString() {
        if (resource.closed) {
            return "tensor(<closed>, shape=" + shape + ", dtype=" + dtype + ", device=" + storage.device + ")";
        }
        return TensorFormat.format(this);
    }

    /** Reads the elements at the given flat indices of this tensor's row-major order, as doubles. */
    double[] valuesAt(long[] flatIndices) {
        try (Tensor h = hostContiguous(DType.FLOAT64, "toString")) {
            double[] out = new double[flatIndices.length];
            double[] one = new double[1];
            for (int i = 0; i < flatIndices.length; i++) {
                HostMemory.read(h.dataAddress() + flatIndices[i] * 8, one);
                out[i] = one[0];
            }
            return out;
        }
    }

    /** Package access for the int4 helper. */
    Backend backend() {
        return storage.backend();
    }
}
