package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Sparse;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;

/**
 * N:M magnitude masks of weight tensors, shared by {@link MagnitudePruning} and
 * {@link NmSparseTraining}. A weight of rank 2 or more is read as the matrix
 * {@code [size(0), numel / size(0)]} (a convolution kernel {@code [out, in, kh, kw]} as
 * {@code [out, in·kh·kw]}, the reduction dimension of its GEMM), and every group of m consecutive
 * entries of a row keeps its n largest magnitudes (the {@code nm_compress} kernel, ties to the
 * lower position).
 */
final class NmMasks {
    private NmMasks() {
    }

    /** Throws unless {@code w} can carry an N:M pattern: floating point, rank >= 2, row length a multiple of m. */
    static void check(String who, Tensor w, NM nm) {
        if (w.rank() < 2 || w.size(0) == 0 || (w.numel() / w.size(0)) % nm.m() != 0) {
            throw new IllegalArgumentException(who + ": " + nm + " needs a weight [out, ...] of rank >= 2 whose rows ("
                    + "the product of the other sizes) are a multiple of " + nm.m() + "; got " + w.describe());
        }
    }

    /**
     * The 1 / 0 mask (w's dtype, shape and device) of the n largest |w| of every m along each row;
     * owned by the caller (in no scope).
     */
    static Tensor of(Tensor w, NM nm) {
        try (var g = Autograd.noGrad(); Scope detached = Scope.detached(); Tensor flat = w.reshape(w.size(0), w.numel() / w.size(0))) {
            Tensor[] vm = Sparse.nmCompress(flat, nm);
            try (Tensor v = vm[0]; Tensor meta = vm[1];
                 Tensor ones = Tensor.ones(v.dtype(), v.device(), v.dims());
                 Tensor dense = Sparse.nmDecompress(ones, meta, nm)) {
                return dense.reshape(w.dims()); // a view: it keeps the storage when dense is closed
            }
        }
    }
}
