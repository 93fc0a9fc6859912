package dev.cortado.backend.cuda;

import dev.cortado.backend.Backend;
import dev.cortado.backend.BackendUnavailableException;
import dev.cortado.backend.CudaException;
import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.backend.kernels.NativeStatus;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The CUDA backend: device discovery, one caching allocator per device, the current stream of
 * each thread, transfers. Probed once, lazily: on a machine without a GPU, without a driver, or
 * with a library built without nvcc, {@link #isAvailable()} is false and
 * {@link #unavailableReason()} says which; nothing crashes.
 */
public final class CudaBackend implements Backend {
    private static volatile CudaBackend instance;

    private final String unavailableReason;
    private final List<CudaDeviceInfo> devices;
    private final CachingAllocator[] allocators;
    private final ThreadLocal<int[]> currentDevice = ThreadLocal.withInitial(() -> new int[] {-1});
    private final ThreadLocal<CudaStream> currentStream = new ThreadLocal<>();
    /** Per device: why its CUDA context is lost (a kernel fault), or null while it is usable. */
    private final String[] lost;
    /** Whether any entry of {@link #lost} is set: the one read {@link #activate} adds per launch. */
    private volatile boolean anyLost;

    private CudaBackend() {
        String reason = null;
        List<CudaDeviceInfo> found = new ArrayList<>();
        try {
            NativeCuda.ensureLoaded();
            if (NativeCuda.ct_cuda_built() == 0) {
                reason = NativeCuda.ct_cuda_last_error().getString();
            } else {
                int[] count = new int[1];
                int status = NativeCuda.ct_cuda_device_count(count);
                if (status != NativeStatus.OK) {
                    reason = "no usable CUDA driver or device: " + NativeCuda.ct_cuda_last_error().getString();
                } else if (count[0] == 0) {
                    reason = "no CUDA device found";
                } else {
                    for (int i = 0; i < count[0]; i++) {
                        found.add(queryDevice(i));
                    }
                }
            }
        } catch (LinkageError e) {
            reason = nativesMissing() ? missingNativesMessage() : "libcortado_cuda could not be loaded: " + e;
        }
        unavailableReason = reason;
        devices = List.copyOf(found);
        allocators = new CachingAllocator[devices.size()];
        lost = new String[devices.size()];
        for (int i = 0; i < allocators.length; i++) {
            int index = i;
            allocators[i] = new CachingAllocator("cuda:" + i, new CachingAllocator.RawMemory() {
                @Override
                public long malloc(long bytes) {
                    activate(index);
                    long[] out = new long[1];
                    int status = NativeCuda.ct_cuda_malloc(bytes, out);
                    if (status == NativeStatus.OUT_OF_MEMORY) {
                        return 0;
                    }
                    check(status, "cudaMalloc(" + bytes + " bytes) on cuda:" + index);
                    return out[0];
                }

                @Override
                public void free(long address) {
                    if (lostReason(index) != null) {
                        return; // the context is gone, and its memory with it
                    }
                    activate(index);
                    check(NativeCuda.ct_cuda_free(address), "cudaFree on cuda:" + index);
                }

                @Override
                public long[] memInfo() {
                    activate(index);
                    long[] free = new long[1];
                    long[] total = new long[1];
                    if (NativeCuda.ct_cuda_mem_info(free, total) != NativeStatus.OK) {
                        return new long[] {-1, -1};
                    }
                    return new long[] {free[0], total[0]};
                }
            });
        }
    }

    /** The CUDA natives ship in their own artifact; true when it is on neither path. */
    private static boolean nativesMissing() {
        String resource = "dev/cortado/backend/cuda/" + org.bytedeco.javacpp.Loader.getPlatform() + "/"
                + System.mapLibraryName("cortado_cuda");
        ClassLoader loader = CudaBackend.class.getClassLoader();
        return (loader != null ? loader.getResource(resource) : ClassLoader.getSystemResource(resource)) == null;
    }

    /** Names the artifact to add, with this build's coordinates (dev/cortado/cortado.properties). */
    static String missingNativesMessage() {
        java.util.Properties p = new java.util.Properties();
        try (java.io.InputStream in = CudaBackend.class.getResourceAsStream("/dev/cortado/cortado.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (java.io.IOException ignored) {
            // the defaults below name the artifact without its version
        }
        String platform = p.getProperty("platform", org.bytedeco.javacpp.Loader.getPlatform());
        return "the CUDA natives of Cortado (libcortado_cuda) are not on the class path or module path: add the "
                + "artifact " + p.getProperty("groupId", "dev.cortado") + ":" + p.getProperty("artifactId", "cortado")
                + ":" + p.getProperty("version", "<version>") + ":" + platform + "-cuda (in Maven: the cortado "
                + "dependency again with <classifier>" + platform + "-cuda</classifier>; on the module path also "
                + "--add-modules dev.cortado.cuda.linux.x86_64)";
    }

    private static CudaDeviceInfo queryDevice(int index) {
        byte[] name = new byte[256];
        long[] info = new long[8];
        check(NativeCuda.ct_cuda_device_info(index, name, name.length, info), "device info of cuda:" + index);
        int len = 0;
        while (len < name.length && name[len] != 0) {
            len++;
        }
        return new CudaDeviceInfo(index, new String(name, 0, len, StandardCharsets.UTF_8), info[0], (int) info[1],
                (int) info[2], (int) info[3], (int) info[4], info[5], info[6], (int) info[7]);
    }

    public static CudaBackend instance() {
        CudaBackend b = instance;
        if (b == null) {
            synchronized (CudaBackend.class) {
                b = instance;
                if (b == null) {
                    b = new CudaBackend();
                    instance = b;
                }
            }
        }
        return b;
    }

    public static RuntimeException failure(int status, String context) {
        RuntimeException e = NativeStatus.toException(status, NativeCuda.ct_cuda_last_error().getString(), context);
        CudaBackend b = instance;
        return b == null ? e : b.afterFailure(status, e);
    }

    /**
     * CUDA errors after which the device's context stays broken for the rest of the process
     * ("sticky"): a kernel fault (illegal address 700, launch timeout 702, device-side assert 710,
     * hardware stack 714, illegal instruction 715, misaligned address 716, invalid address space
     * 717, invalid PC 718, launch failure 719).
     */
    static boolean isSticky(int cudaError) {
        return switch (cudaError) {
            case 700, 702, 710, 714, 715, 716, 717, 718, 719 -> true;
            default -> false;
        };
    }

    /**
     * Looks at a failed CUDA call of this thread: when its error is sticky, marks this thread's
     * current device as lost, so that every later use of it fails at once with a clear
     * {@link CudaException} instead of running (or hanging) on a broken context, and returns the
     * exception with that said; other failures come back unchanged.
     */
    public RuntimeException afterFailure(int status, RuntimeException e) {
        if (status != NativeStatus.CUDA_ERROR) {
            return e;
        }
        int code = NativeCuda.ct_cuda_last_error_code();
        if (!isSticky(code)) {
            return e;
        }
        int device = Math.max(currentDevice.get()[0], 0);
        String reason = e.getMessage();
        synchronized (lost) {
            if (device < lost.length && lost[device] == null) {
                lost[device] = reason;
                anyLost = true;
            }
        }
        return new CudaException(reason + "; cuda:" + device + " is now unusable (sticky CUDA error " + code
                + ": its context is lost until the process exits)");
    }

    /** Why {@code cuda:index} can no longer be used (an earlier kernel fault), or null while it can. */
    public String lostReason(int index) {
        if (!anyLost) {
            return null;
        }
        synchronized (lost) {
            return index >= 0 && index < lost.length ? lost[index] : null;
        }
    }

    /** Whether {@code cuda:index} exists here and has not been lost to a kernel fault. */
    public boolean isUsable(int index) {
        return unavailableReason == null && index >= 0 && index < devices.size() && lostReason(index) == null;
    }

    private void requireNotLost(int index) {
        String reason = lostReason(index);
        if (reason != null) {
            throw new CudaException("cuda:" + index + " is unusable: an earlier kernel fault broke its CUDA context ("
                    + reason + "); restart the process to use it again");
        }
    }

    /**
     * TEST-ONLY fault injection (docs/reliability.md#cuda-fault-injection): runs the native debug
     * kernel on {@code device}'s current stream and waits for it. With {@code illegalAddress}
     * false it is a correct launch; with true it writes through an address no allocation holds,
     * which faults (CUDA error 700), throws a {@link CudaException} naming this op, and leaves
     * the device unusable for the rest of the process. Never called by the engine.
     */
    public void debugFaultKernelForTesting(Device device, boolean illegalAddress) {
        CachingAllocator alloc = allocator(device);
        activate(device.index());
        long scratch = alloc.allocate(4, currentStream());
        try {
            check(NativeCuda.ct_cuda_debug_fault_kernel(illegalAddress ? NativeCodes.DEBUG_FAULT_ILLEGAL_ADDRESS
                            : NativeCodes.DEBUG_FAULT_NONE, scratch, currentStream()),
                    "debugFaultKernel(" + (illegalAddress ? "ILLEGAL_ADDRESS" : "NONE") + ") on " + device);
        } finally {
            alloc.free(scratch);
        }
    }

    public static void check(int status, String context) {
        if (status != NativeStatus.OK) {
            throw failure(status, context);
        }
    }

    public int deviceCount() {
        return devices.size();
    }

    public List<CudaDeviceInfo> devices() {
        return devices;
    }

    private void requireAvailable() {
        if (unavailableReason != null) {
            throw new BackendUnavailableException("CUDA is not usable: " + unavailableReason);
        }
    }

    /** Makes {@code index} the current device of this thread (cheap when it already is). */
    public void activate(int index) {
        if (anyLost) {
            requireNotLost(index);
        }
        int[] cur = currentDevice.get();
        if (cur[0] != index) {
            check(NativeCuda.ct_cuda_set_device(index), "cudaSetDevice(" + index + ")");
            cur[0] = index;
        }
    }

    /** The stream this thread's CUDA work goes to: the one set by {@link CudaStream#use()}, else 0. */
    public long currentStream() {
        CudaStream s = currentStream.get();
        return s == null ? 0 : s.handle();
    }

    CudaStream swapStream(CudaStream stream) {
        CudaStream previous = currentStream.get();
        currentStream.set(stream);
        return previous;
    }

    /** The caching allocator of {@code device}. */
    public CachingAllocator allocator(Device device) {
        requireAvailable();
        if (!device.isCuda() || device.index() >= allocators.length) {
            throw new BackendUnavailableException("device " + device + " does not exist: " + allocators.length
                    + " CUDA device(s) found");
        }
        return allocators[device.index()];
    }

    public void synchronize(Device device) {
        activate(device.index());
        check(NativeCuda.ct_cuda_device_synchronize(), "cudaDeviceSynchronize on " + device);
    }

    @Override
    public long allocate(Device device, long bytes) {
        return allocator(device).allocate(bytes, currentStream());
    }

    @Override
    public void free(Device device, long address, long bytes) {
        allocator(device).free(address);
    }

    @Override
    public void copyFromHost(Device device, long dst, long hostSrc, long bytes) {
        activate(device.index());
        check(NativeCuda.ct_cuda_memcpy(dst, hostSrc, bytes, NativeCodes.MEMCPY_HOST_TO_DEVICE, currentStream()),
                "copy of " + bytes + " bytes from the host to " + device);
    }

    @Override
    public void copyToHost(Device device, long hostDst, long src, long bytes) {
        activate(device.index());
        check(NativeCuda.ct_cuda_memcpy(hostDst, src, bytes, NativeCodes.MEMCPY_DEVICE_TO_HOST, currentStream()),
                "copy of " + bytes + " bytes from " + device + " to the host");
    }

    @Override
    public void copy(Device device, DType dstType, long dst, long[] dstStrides,
                     DType srcType, long src, long[] srcStrides, long[] shape) {
        activate(device.index());
        NativeArgs args = NativeArgs.get();
        int status = NativeCuda.ct_cuda_copy(dstType.code(), srcType.code(), shape.length, args.put(shape), dst,
                args.put(dstStrides), src, args.put(srcStrides), currentStream());
        if (status != NativeStatus.OK) {
            throw failure(status, "copy(" + srcType + " -> " + dstType + ", shape "
                    + java.util.Arrays.toString(shape) + ") on " + device);
        }
    }

    @Override
    public void fill(Device device, DType type, long address, long count, double value) {
        activate(device.index());
        check(NativeCuda.ct_cuda_fill(type.code(), count, address, value, currentStream()),
                "fill(" + type + ", " + value + ") on " + device);
    }

    @Override
    public void unpackInt4(Device device, long count, long packedSrc, long int8Dst) {
        activate(device.index());
        check(NativeCuda.ct_cuda_int4_unpack(count, packedSrc, int8Dst, currentStream()), "int4 unpack on " + device);
    }

    @Override
    public void packInt4(Device device, long count, long int8Src, long packedDst) {
        activate(device.index());
        check(NativeCuda.ct_cuda_int4_pack(count, int8Src, packedDst, currentStream()), "int4 pack on " + device);
    }

    /** Whether CUDA can run here (a device lost to a fault is reported by {@link #isUsable(int)}). */
    @Override
    public boolean isAvailable() {
        return unavailableReason == null;
    }

    @Override
    public String unavailableReason() {
        return unavailableReason == null ? "" : unavailableReason;
    }
}
