package dev.cortado.backend.cuda;

/** Properties of one CUDA device. */
public record CudaDeviceInfo(int index, String name, long totalMemoryBytes, int computeMajor, int computeMinor,
                             int multiprocessors, int maxThreadsPerBlock, long sharedMemoryPerBlock,
                             long l2CacheBytes, int memoryBusWidthBits) {
    @Override
    public String toString() {
        return String.format("cuda:%d %s (sm_%d%d, %d SMs, %s)", index, name, computeMajor, computeMinor,
                multiprocessors, CachingAllocator.human(totalMemoryBytes));
    }
}
