package dev.cortado.tensor;

import dev.cortado.backend.Backend;
import dev.cortado.backend.Backends;
import java.util.Locale;

/**
 * A device: the host ({@code cpu}) or a CUDA GPU ({@code cuda:n}).
 *
 * <p>The default device for new tensors is chosen at run time: the system property
 * {@code cortado.device} ({@code auto}, {@code cpu}, {@code cuda}, {@code cuda:1}); {@code auto}
 * (the default) picks {@code cuda:0} when a usable GPU exists, else the CPU.
 */
public record Device(DeviceType type, int index) {
    public static final Device CPU = new Device(DeviceType.CPU, 0);

    private static volatile Device defaultDevice;

    public Device {
        if (type == null) {
            throw new IllegalArgumentException("device type must not be null");
        }
        if (index < 0 || (type == DeviceType.CPU && index != 0)) {
            throw new IllegalArgumentException("invalid device index " + index + " for " + type);
        }
    }

    public static Device cuda() {
        return new Device(DeviceType.CUDA, 0);
    }

    public static Device cuda(int index) {
        return new Device(DeviceType.CUDA, index);
    }

    /** Parses {@code cpu}, {@code cuda}, {@code cuda:N} or {@code auto}. */
    public static Device parse(String text) {
        String s = text.trim().toLowerCase(Locale.ROOT);
        if (s.equals("auto")) {
            return auto();
        }
        if (s.equals("cpu")) {
            return CPU;
        }
        if (s.equals("cuda") || s.equals("gpu")) {
            return cuda();
        }
        if (s.startsWith("cuda:")) {
            try {
                return cuda(Integer.parseInt(s.substring(5)));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("invalid device '" + text + "': expected cuda:N", e);
            }
        }
        throw new IllegalArgumentException("invalid device '" + text + "': expected cpu, cuda, cuda:N or auto");
    }

    /** cuda:0 when a usable CUDA device exists, else the CPU. */
    public static Device auto() {
        Device gpu = cuda(0);
        return gpu.isAvailable() ? gpu : CPU;
    }

    /** The device new tensors go to when none is named. */
    public static Device defaultDevice() {
        Device d = defaultDevice;
        if (d == null) {
            d = parse(System.getProperty("cortado.device", "auto"));
            defaultDevice = d;
        }
        return d;
    }

    public static void setDefault(Device device) {
        defaultDevice = device;
    }

    public boolean isCpu() {
        return type == DeviceType.CPU;
    }

    public boolean isCuda() {
        return type == DeviceType.CUDA;
    }

    /** Whether this device can be used on this machine. */
    public boolean isAvailable() {
        Backend backend = Backends.of(type);
        return backend.isAvailable() && (type == DeviceType.CPU || index < Backends.cudaDeviceCount());
    }

    /** The backend serving this device; throws a clear exception if it cannot run here. */
    public Backend backend() {
        Backend backend = Backends.of(type);
        if (!backend.isAvailable()) {
            throw new dev.cortado.backend.BackendUnavailableException(
                    "device " + this + " is not usable on this machine: " + backend.unavailableReason());
        }
        if (type == DeviceType.CUDA && index >= Backends.cudaDeviceCount()) {
            throw new dev.cortado.backend.BackendUnavailableException(
                    "device " + this + " does not exist: " + Backends.cudaDeviceCount() + " CUDA device(s) found");
        }
        return backend;
    }

    @Override
    public String toString() {
        return type == DeviceType.CPU ? "cpu" : "cuda:" + index;
    }
}
