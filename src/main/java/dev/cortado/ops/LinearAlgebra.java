package dev.cortado.ops;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.cuda.Cublas;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Matrix products. CPU: {@code native/cpu/gemm.cpp} (OpenBLAS sgemm/dgemm; bfloat16 and float16
 * widened to float32 with float32 accumulation). CUDA: cuBLAS through the JavaCPP presets.
 * Operands are passed to BLAS as they lie whenever their strides allow (a transposed view is a
 * transposed GEMM, a broadcast batch is a batch stride of 0); only other layouts are copied.
 * Cost: 2*m*n*k FLOPs per batch entry.
 */
public final class LinearAlgebra {
    private LinearAlgebra() {
    }

    /** ONNX Gemm attributes: {@code alpha * op(A) op(B) + beta * C}. */
    public record GemmAttrs(double alpha, double beta, boolean transA, boolean transB) {
    }

    public static final Op<Void> MATMUL_OP = Op.<Void>declare("matmul")
            .inputs("a", "b")
            .shape((op, attrs, in) -> Op.one(matmulShape(op, in[0], in[1]), matmulType(op, in[0], in[1])))
            .kernels((attrs, in, out) -> matmulKernel(in[0], in[1], out[0], 0))
            .backward(Op.Saves.INPUTS, LinearAlgebra::matmulGrad)
            .autocast(0, 1)
            .register();

    public static final Op<GemmAttrs> GEMM_OP = Op.<GemmAttrs>declare("gemm")
            .inputs("a", "b", "c").required(2)
            .shape((op, g, in) -> {
                Tensor a = in[0];
                Tensor b = in[1];
                if (a.rank() != 2 || b.rank() != 2) {
                    throw op.error("takes 2-d matrices, got " + a.describe() + " and " + b.describe());
                }
                long m = g.transA() ? a.size(1) : a.size(0);
                long ka = g.transA() ? a.size(0) : a.size(1);
                long kb = g.transB() ? b.size(1) : b.size(0);
                long n = g.transB() ? b.size(0) : b.size(1);
                if (ka != kb) {
                    throw op.error("inner dimensions differ: op(a) is [" + m + ", " + ka + "], op(b) is [" + kb + ", " + n
                            + "] (a " + a.describe() + ", b " + b.describe() + ", transA=" + g.transA() + ", transB="
                            + g.transB() + ")");
                }
                DType t = matmulType(op, a, b);
                Shape s = Shape.of(m, n);
                if (in.length > 2 && in[2] != null) {
                    Shape broadcast = op.broadcast(in[2].shape(), s);
                    if (!broadcast.equals(s)) {
                        throw op.error("c " + in[2].describe() + " does not broadcast to the result " + s);
                    }
                }
                return Op.one(s, t);
            })
            .kernels((g, in, out) -> gemmKernel(g, in, out[0]))
            .backward(Op.Saves.INPUTS, LinearAlgebra::gemmGrad)
            .autocast(0, 1, 2)
            .register();

    // ------------------------------------------------------------------ backward rules

    /** A 2-d tensor laid out column by column: the transpose of a contiguous matrix. */
    private static boolean isTransposedMatrix(Tensor t) {
        long[] st = t.strides();
        return t.size(0) > 1 && t.size(1) > 1 && st[0] == 1 && st[1] == t.size(0);
    }

    /**
     * dA = dY Bᵀ, dB = Aᵀ dY, with vectors treated as 1-row / 1-column matrices; a weight shared
     * by every batch (2-d b, batched a) gets one GEMM over the flattened batch instead of a
     * batched product and a sum.
     */
    private static Tensor[] matmulGrad(Void attrs, Op.Saved sv, Tensor[] g) {
        try (Scope s = Scope.open()) {
            Tensor a = sv.input(0);
            Tensor b = sv.input(1);
            boolean aVec = a.rank() == 1;
            boolean bVec = b.rank() == 1;
            Tensor a2 = aVec ? a.unsqueeze(0) : a;
            Tensor b2 = bVec ? b.unsqueeze(1) : b;
            Tensor g2 = g[0];
            if (aVec && bVec) {
                g2 = g2.reshape(1, 1);
            } else if (aVec) {
                g2 = g2.unsqueeze(-2);
            } else if (bVec) {
                g2 = g2.unsqueeze(-1);
            }
            Tensor ga = null;
            Tensor gb = null;
            if (sv.needsGradient(0)) {
                ga = matmul(g2, b2.transpose(-1, -2));
                if (aVec) {
                    ga = ga.squeeze(-2);
                }
                ga = s.keep(ga.contiguous());
            }
            if (sv.needsGradient(1) && !bVec && b2.rank() == 2 && isTransposedMatrix(b2)) {
                // b is a transposed view (a Linear layer's weightᵀ): dB is produced in b's layout,
                // (dYᵀ A)ᵀ, so the transpose's backward hands the weight a contiguous gradient
                // instead of a strided copy of the whole weight per step
                long k = a2.size(a2.rank() - 1);
                long n = g2.size(g2.rank() - 1);
                Tensor gbT = matmul(g2.reshape(-1, n).transpose(0, 1), a2.reshape(-1, k));
                gb = s.keep(gbT.transpose(0, 1));
            } else if (sv.needsGradient(1)) {
                if (b2.rank() == 2 && a2.rank() > 2) {
                    long k = a2.size(a2.rank() - 1);
                    long n = g2.size(g2.rank() - 1);
                    gb = matmul(a2.reshape(-1, k).transpose(0, 1), g2.reshape(-1, n));
                } else {
                    gb = matmul(a2.transpose(-1, -2), g2);
                }
                if (bVec) {
                    gb = gb.squeeze(-1);
                }
                gb = s.keep(gb.contiguous());
            }
            return new Tensor[] {ga, gb};
        }
    }

    /** Gradients of {@code alpha op(A) op(B) + beta C}, each as one more gemm. */
    private static Tensor[] gemmGrad(GemmAttrs at, Op.Saved sv, Tensor[] g) {
        Tensor a = sv.input(0);
        Tensor b = sv.input(1);
        Tensor gy = g[0];
        double alpha = at.alpha();
        Tensor ga = null;
        Tensor gb = null;
        Tensor gc = null;
        if (sv.needsGradient(0)) {
            ga = at.transA() ? gemm(b, gy, null, alpha, 0, at.transB(), true) : gemm(gy, b, null, alpha, 0, false, !at.transB());
        }
        if (sv.needsGradient(1)) {
            gb = at.transB() ? gemm(gy, a, null, alpha, 0, true, at.transA()) : gemm(a, gy, null, alpha, 0, !at.transA(), false);
        }
        if (sv.inputCount() > 2 && sv.needsGradient(2)) {
            gc = Elementwise.mul(gy, at.beta());
        }
        return sv.inputCount() > 2 ? new Tensor[] {ga, gb, gc} : new Tensor[] {ga, gb};
    }

    // ------------------------------------------------------------------ eager entry points
    /** NumPy matmul: 1-d operands are vectors, leading dimensions are broadcast batches. */
    public static Tensor matmul(Tensor a, Tensor b) {
        return MATMUL_OP.call(null, a, b);
    }

    /** {@code alpha * op(a) op(b) + beta * c}; {@code c} may be null and broadcasts to the result. */
    public static Tensor gemm(Tensor a, Tensor b, Tensor c, double alpha, double beta, boolean transA, boolean transB) {
        return GEMM_OP.call(new GemmAttrs(alpha, beta, transA, transB), a, b, c);
    }

    // ------------------------------------------------------------------ rules
    private static DType matmulType(Op<?> op, Tensor a, Tensor b) {
        DType t = DType.promote(a.dtype(), b.dtype());
        if (t != DType.FLOAT32 && t != DType.FLOAT64 && t != DType.BFLOAT16 && t != DType.FLOAT16) {
            throw op.error("takes float32, float64, bfloat16 or float16 operands, got " + a.describe() + " and "
                    + b.describe());
        }
        return t;
    }

    private static Shape matmulShape(Op<?> op, Tensor a, Tensor b) {
        if (a.rank() == 0 || b.rank() == 0) {
            throw op.error("operands must have at least one dimension, got " + a.describe() + " and " + b.describe());
        }
        long[] ad = a.dims();
        long[] bd = b.dims();
        long k1 = ad[ad.length - 1];
        long k2 = bd.length == 1 ? bd[0] : bd[bd.length - 2];
        if (k1 != k2) {
            throw op.error("inner dimensions differ: " + a.describe() + " @ " + b.describe() + " (" + k1 + " vs " + k2 + ")");
        }
        long[] aBatch = ad.length > 2 ? Arrays.copyOf(ad, ad.length - 2) : new long[0];
        long[] bBatch = bd.length > 2 ? Arrays.copyOf(bd, bd.length - 2) : new long[0];
        Shape batch;
        try {
            batch = Shape.broadcast(Shape.of(aBatch), Shape.of(bBatch));
        } catch (IllegalArgumentException e) {
            throw op.error("batch dimensions of " + a.describe() + " and " + b.describe() + " do not broadcast");
        }
        long[] out = Arrays.copyOf(batch.toArray(), batch.rank() + 2);
        int n = batch.rank();
        out[n] = ad.length == 1 ? -1 : ad[ad.length - 2];
        out[n + 1] = bd.length == 1 ? -1 : bd[bd.length - 1];
        return Shape.of(Arrays.stream(out).filter(x -> x >= 0).toArray());
    }

    // ------------------------------------------------------------------ kernels
    /** How one operand goes to BLAS: the tensor to read (maybe a copy), transposition, ld, batch stride. */
    private record Operand(Tensor tensor, boolean owned, boolean trans, long ld, long batchStride) {
        void close() {
            if (owned) {
                tensor.close();
            }
        }
    }

    /**
     * Describes {@code t} (already expanded to batch + [rows, cols]) for BLAS, copying it
     * contiguous only when its strides cannot be expressed as (trans, ld, batch stride).
     */
    private static Operand operand(Tensor t, DType type) {
        Tensor src = t.dtype() == type ? t : t.to(type);
        boolean converted = src != t;
        long[] d = src.dims();
        long[] s = src.strides();
        int r = d.length;
        long rows = d[r - 2];
        long cols = d[r - 1];
        Boolean trans = null;
        long ld = 0;
        if (s[r - 1] == 1 && (rows <= 1 || s[r - 2] >= Math.max(1, cols))) {
            trans = false;
            ld = rows <= 1 ? Math.max(1, cols) : s[r - 2];
        } else if (s[r - 2] == 1 && (cols <= 1 || s[r - 1] >= Math.max(1, rows))) {
            trans = true;
            ld = cols <= 1 ? Math.max(1, rows) : s[r - 1];
        }
        Long batchStride = batchStride(d, s, r - 2);
        if (trans == null || batchStride == null) {
            Tensor c = src.contiguous();
            if (converted) {
                src.close();
            }
            return new Operand(c, true, false, Math.max(1, cols), rows * cols);
        }
        return new Operand(src, converted, trans, ld, batchStride);
    }

    /** One stride that steps through all batch dims in row-major order, or null if none does. */
    private static Long batchStride(long[] d, long[] s, int nb) {
        long stride = -1;
        long expectedOuter = -1;
        for (int i = nb - 1; i >= 0; i--) {
            if (d[i] == 1) {
                continue;
            }
            if (stride < 0) {
                stride = s[i];
                expectedOuter = s[i] * d[i];
            } else {
                if (s[i] != expectedOuter) {
                    return null;
                }
                expectedOuter = s[i] * d[i];
            }
        }
        return stride < 0 ? 0L : stride;
    }

    private static void matmulKernel(Tensor a, Tensor b, Tensor out, double beta) {
        if (b.rank() == 2 && a.rank() > 2 && out.isContiguous()) {
            // a shared 2-d weight: one GEMM over the flattened batch beats a batch of small ones
            // (detached aliases, so the flattening is not recorded on the tape)
            long rows = 1;
            for (int d = 0; d < a.rank() - 1; d++) {
                rows *= a.size(d);
            }
            try (Tensor ad = a.detach(); Tensor af = ad.reshape(rows, a.size(-1)); Tensor od = out.detach();
                 Tensor of = od.view(rows, out.size(-1))) {
                matmulKernel(af, b, of, beta);
            }
            return;
        }
        DType type = out.dtype();
        try (Tensor a2 = a.rank() == 1 ? a.unsqueeze(0) : a.view(a.dims());
             Tensor b2 = b.rank() == 1 ? b.unsqueeze(1) : b.view(b.dims())) {
            long m = a2.size(-2);
            long k = a2.size(-1);
            long n = b2.size(-1);
            long[] ad = a2.dims();
            long[] bd = b2.dims();
            Shape batch = Shape.broadcast(Shape.of(Arrays.copyOf(ad, ad.length - 2)),
                    Shape.of(Arrays.copyOf(bd, bd.length - 2)));
            long batchCount = batch.numel();
            if (batchCount == 0 || m == 0 || n == 0) {
                return;
            }
            if (k == 0) {
                out.fillWith(0);
                return;
            }
            long[] aTarget = Arrays.copyOf(batch.toArray(), batch.rank() + 2);
            aTarget[batch.rank()] = m;
            aTarget[batch.rank() + 1] = k;
            long[] bTarget = Arrays.copyOf(batch.toArray(), batch.rank() + 2);
            bTarget[batch.rank()] = k;
            bTarget[batch.rank() + 1] = n;
            try (Tensor ae = a2.expand(aTarget); Tensor be = b2.expand(bTarget)) {
                Operand oa = operand(ae, type);
                Operand ob = operand(be, type);
                try {
                    if (out.device().isCuda()) { // cuBLAS; the CPU runs our OpenBLAS-backed ct_cpu_gemm
                        Cublas.gemm(out.device(), type, oa.trans(), ob.trans(), batchCount, m, n, k, 1.0,
                                oa.tensor().dataAddress(), oa.ld(), oa.batchStride(),
                                ob.tensor().dataAddress(), ob.ld(), ob.batchStride(),
                                beta, out.dataAddress(), n, m * n);
                    } else {
                        int status = NativeCpu.ct_cpu_gemm(type.code(), oa.trans() ? 1 : 0, ob.trans() ? 1 : 0, batchCount,
                                m, n, k, 1.0, oa.tensor().dataAddress(), oa.ld(), oa.batchStride(),
                                ob.tensor().dataAddress(), ob.ld(), ob.batchStride(),
                                beta, out.dataAddress(), n, m * n, 0);
                        if (status != 0) {
                            throw CpuBackend.failure(status, "matmul(" + a.describe() + ", " + b.describe() + ")");
                        }
                    }
                } finally {
                    oa.close();
                    ob.close();
                }
            }
        }
    }

    private static void gemmKernel(GemmAttrs g, Tensor[] in, Tensor out) {
        Tensor c = in.length > 2 ? in[2] : null;
        if (out.numel() == 0) {
            return;
        }
        boolean useC = c != null && g.beta() != 0;
        if (useC) {
            out.copyFrom(c);
        } else {
            out.fillWith(0);
        }
        try (Tensor a = g.transA() ? in[0].transpose(0, 1) : in[0].view(in[0].dims());
             Tensor b = g.transB() ? in[1].transpose(0, 1) : in[1].view(in[1].dims())) {
            long k = a.size(1);
            if (k == 0) {
                if (useC && g.beta() != 1) {
                    try (Tensor scaled = Elementwise.mul(out, g.beta())) {
                        out.copyFrom(scaled);
                    }
                }
                return;
            }
            if (g.alpha() == 1) {
                matmulKernel(a, b, out, useC ? g.beta() : 0);
            } else {
                // alpha scales the product only: out = beta*C is already there.
                try (Tensor product = matmul(a, b)) {
                    try (Tensor scaled = Elementwise.affine(product, g.alpha(), 0)) {
                        if (useC) {
                            try (Tensor bc = Elementwise.mul(out, g.beta()); Tensor sum = Elementwise.add(bc, scaled)) {
                                out.copyFrom(sum);
                            }
                        } else {
                            out.copyFrom(scaled);
                        }
                    }
                }
            }
        }
    }
}
