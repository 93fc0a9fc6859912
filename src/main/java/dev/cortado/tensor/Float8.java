package dev.cortado.tensor;

import dev.cortado.backend.kernels.HostMemory;

/**
 * Reading the fp8 storage types ({@link DType#FLOAT8_E4M3}, {@link DType#FLOAT8_E5M2}) on the
 * host: decoding a code to its value (OCP 8-bit floating point specification) and copies that
 * keep the bytes. Writing fp8 from other dtypes rounds, and belongs to the quantization kernels.
 */
final class Float8 {
    private Float8() {
    }

    /** The exact value of fp8 code {@code bits} (0..255) of {@code type}. */
    static double decode(DType type, int bits) {
        int mant = type == DType.FLOAT8_E4M3 ? 3 : 2;
        int bias = type == DType.FLOAT8_E4M3 ? 7 : 15;
        int emax = (1 << (7 - mant)) - 1;
        double sign = (bits & 0x80) != 0 ? -1 : 1;
        int e = (bits >> mant) & emax;
        int m = bits & ((1 << mant) - 1);
        if (type == DType.FLOAT8_E4M3 && e == emax && m == 7) {
            return Double.NaN;
        }
        if (type == DType.FLOAT8_E5M2 && e == emax) {
            return m == 0 ? sign * Double.POSITIVE_INFINITY : Double.NaN;
        }
        if (e == 0) {
            return sign * m * Math.scalb(1.0, 1 - bias - mant);
        }
        return sign * (1 + m / (double) (1 << mant)) * Math.scalb(1.0, e - bias);
    }

    /** A contiguous host tensor of {@code type} holding the decoded values of the contiguous host fp8 {@code raw}. */
    static Tensor decodeToHost(Tensor raw, DType type) {
        int n = Math.toIntExact(raw.numel());
        byte[] bytes = new byte[n];
        if (n > 0) {
            HostMemory.read(raw.dataAddress(), bytes);
        }
        double[] values = new double[n];
        for (int i = 0; i < n; i++) {
            values[i] = decode(raw.dtype(), bytes[i] & 0xFF);
        }
        try (Tensor f64 = Tensor.of(values, Device.CPU, raw.dims())) {
            return type == DType.FLOAT64 ? f64.copy() : f64.to(type);
        }
    }
}
