package dev.cortado.ops;

import dev.cortado.backend.kernels.Kernels;
import dev.cortado.backend.kernels.NativeStatus;
import dev.cortado.backend.cpu.CpuKernels;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.backend.cuda.CudaKernels;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Tensor;

/**
 * Where one kernel call runs (every op declaration and the fused optimizers go through it): the
 * kernels of a tensor's backend (one generated interface per family, implemented by
 * {@link CpuKernels} and {@link CudaKernels}) and the stream of its device, made current.
 * An op's kernel body is written once for both backends:
 * <pre>{@code
 * Launch l = Launch.on(out);
 * int status = l.kernels.unary(code, dtype, ndim, shape, out, os, x, xs, p0, p1, l.stream);
 * if (status != 0) throw l.failure(status, "gelu(" + x.describe() + ")");
 * }</pre>
 */
public final class Launch {
    private static final Launch CPU = new Launch(CpuKernels.INSTANCE, 0);

    /** The backend's kernels. */
    final Kernels kernels;
    /** The CUDA stream (0 on the CPU, which ignores it). */
    final long stream;

    private Launch(Kernels kernels, long stream) {
        this.kernels = kernels;
        this.stream = stream;
    }

    /** The backend of {@code t}'s device; on CUDA the device is made current on this thread. */
    public static Launch on(Tensor t) {
        return on(t.device());
    }

    /** The backend of {@code device}; on CUDA the device is made current on this thread. */
    public static Launch on(Device device) {
        if (device.type() == DeviceType.CPU) {
            return CPU;
        }
        CudaBackend be = CudaBackend.instance();
        be.activate(device.index());
        return new Launch(CudaKernels.INSTANCE, be.currentStream());
    }

    /** The backend's kernels (for other packages; ops read the field). */
    public Kernels kernels() {
        return kernels;
    }

    /** The stream to pass last to every kernel. */
    public long stream() {
        return stream;
    }

    /** Whether the kernels are CUDA's (for the few ops that call a vendor library: cuBLAS, cuDNN). */
    public boolean isCuda() {
        return kernels == CudaKernels.INSTANCE;
    }

    /** The exception for a failed call: the native message with {@code context} (op and arguments). */
    public RuntimeException failure(int status, String context) {
        RuntimeException e = NativeStatus.toException(status, kernels.lastError(), context);
        // a kernel fault breaks the device's context: CudaBackend marks it unusable from now on
        return isCuda() ? CudaBackend.instance().afterFailure(status, e) : e;
    }

    /** Throws {@link #failure} unless {@code status} is OK; build {@code context} only on failure paths. */
    public void check(int status, String context) {
        if (status != NativeStatus.OK) {
            throw failure(status, context);
        }
    }
}
