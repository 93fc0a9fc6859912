package dev.cortado.backend;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.tensor.DeviceType;

/** Resolves the backend for a device type. The CUDA backend is probed lazily, once. */
public final class Backends {
    private Backends() {
    }

    public static Backend of(DeviceType type) {
        return switch (type) {
            case CPU -> CpuBackend.INSTANCE;
            case CUDA -> CudaBackend.instance();
        };
    }

    /** Number of usable CUDA devices (0 without GPU, driver or CUDA build). */
    public static int cudaDeviceCount() {
        return CudaBackend.instance().deviceCount();
    }
}
