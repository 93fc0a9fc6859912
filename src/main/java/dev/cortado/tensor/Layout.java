package dev.cortado.tensor;

/**
 * How a tensor's elements are laid out in its storage. Only dense strided tensors exist so far;
 * the sparse work adds CSR, COO and N:M compressed layouts. Every op checks the layout of its
 * inputs ({@link Tensor#requireStrided(String)}) instead of assuming it.
 */
public enum Layout {
    /** Dense: element (i0, i1, ...) lives at offset + sum(i_k * stride_k). */
    STRIDED
}
