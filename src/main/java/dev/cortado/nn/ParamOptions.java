package dev.cortado.nn;

import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;

/**
 * Where and how a layer creates its parameters: dtype (default float32), device (default
 * {@link Device#defaultDevice()}) and the generator its initialisation draws from (default
 * {@link Generator#global()}; pass {@code Generator.seeded(s)} for reproducible models).
 */
public record ParamOptions(DType dtype, Device device, Generator generator) {
    public ParamOptions {
        if (dtype == null) {
            dtype = DType.FLOAT32;
        }
        if (!dtype.isFloatingPoint()) {
            throw new IllegalArgumentException("ParamOptions: parameters are floating point, got " + dtype);
        }
        if (device == null) {
            device = Device.defaultDevice();
        }
        if (generator == null) {
            generator = Generator.global();
        }
    }

    public static ParamOptions defaults() {
        return new ParamOptions(null, null, null);
    }

    public static ParamOptions seeded(long seed) {
        return new ParamOptions(null, null, Generator.seeded(seed));
    }

    public ParamOptions withDType(DType t) {
        return new ParamOptions(t, device, generator);
    }

    public ParamOptions withDevice(Device d) {
        return new ParamOptions(dtype, d, generator);
    }

    public ParamOptions withGenerator(Generator g) {
        return new ParamOptions(dtype, device, g);
    }
}
