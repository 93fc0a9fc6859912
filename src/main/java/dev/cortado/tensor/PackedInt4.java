package dev.cortado.tensor;

/** Conversions into and out of the packed int4 storage type (through int8). */
final class PackedInt4 {
    private PackedInt4() {
    }

    static Tensor convert(Tensor src, DType target) {
        if (src.dtype() == DType.INT4) {
            if (!src.isContiguous()) {
                throw new UnsupportedOperationException("int4 conversion of a non-contiguous view " + src.describe());
            }
            Tensor int8 = Tensor.empty(DType.INT8, src.device(), src.shape());
            try {
                if (src.numel() > 0) {
                    if (src.offset() % 2 != 0) {
                        throw new UnsupportedOperationException("int4 view starting inside a byte: " + src.describe());
                    }
                    src.backend().unpackInt4(src.device(), src.numel(), src.dataAddress(), int8.dataAddress());
                }
            } catch (RuntimeException e) {
                int8.close();
                throw e;
            }
            if (target == DType.INT8) {
                return int8;
            }
            try (int8) {
                return int8.to(target);
            }
        }
        // target is INT4
        try (Tensor int8 = src.dtype() == DType.INT8 ? src.contiguous() : src.to(DType.INT8).contiguous()) {
            Tensor packed = Tensor.empty(DType.INT4, src.device(), src.shape());
            try {
                if (src.numel() > 0) {
                    src.backend().packInt4(src.device(), src.numel(), int8.dataAddress(), packed.dataAddress());
                }
            } catch (RuntimeException e) {
                packed.close();
                throw e;
            }
            return packed;
        }
    }

    static void fill(Tensor t, double value) {
        if (value < -8 || value > 7 || value != Math.rint(value)) {
            throw new IllegalArgumentException("fill: " + value + " is not an int4 value (integers in [-8, 7])");
        }
        if (!t.isContiguous() || t.offset() % 2 != 0) {
            throw new UnsupportedOperationException("fill of a non-contiguous int4 view " + t.describe());
        }
        int nibble = ((int) value) & 0xF;
        long bytes = DType.INT4.bytesFor(t.numel());
        t.backend().fill(t.device(), DType.UINT8, t.dataAddress(), bytes, (nibble << 4) | nibble);
    }
}
