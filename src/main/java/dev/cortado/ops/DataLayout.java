package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeCodes;

/**
 * Memory order of image-like activations for the convolution, pooling and batch-norm families
 * (the codes are {@code CT_LAYOUT_*} of {@code native/include/cortado/common.h}).
 */
public enum DataLayout {
    /** Channels first: [N, C, (D,) (H,) W]. */
    NCHW(NativeCodes.LAYOUT_NCHW),
    /** Channels last: [N, (D,) (H,) W, C]; the faster layout for the direct and Winograd kernels. */
    NHWC(NativeCodes.LAYOUT_NHWC);

    private final int code;

    DataLayout(int code) {
        this.code = code;
    }

    /** The native layout code. */
    public int code() {
        return code;
    }
}
