package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;

/**
 * The weights of the int8 convolution ({@link Int8Conv}), packed once: the int8 filters
 * {@code [OC, C / groups, kh, kw]} (PyTorch / ONNX order) rearranged per group into the GEMM
 * operand {@code B_g [kh * kw * C / groups, OC / groups]} (NHWC patch order) and packed by the int8
 * GEMM's packing op (native/include/cortado/quant_conv.h), with the column sums, the geometry and
 * optionally per-channel zero points and scales (from a {@link QuantizedTensor}). Owns its
 * tensors; {@link #close()} frees them.
 */
public final class PackedInt8Conv extends PackedInt8Weights {
    private final Int8Conv.Geometry geometry;
    private final long inChannels;

    private PackedInt8Conv(Tensor packed, Tensor colsum, Tensor zeroPoint, Tensor scale, Int8Conv.Geometry geometry,
                           long inChannels) {
        super(packed, colsum, zeroPoint, scale);
        this.geometry = geometry;
        this.inChannels = inChannels;
    }

    /** Packs raw int8 filters {@code [OC, C / groups, kh, kw]} for {@code geometry}; zero points 0, no scales. */
    public static PackedInt8Conv pack(Tensor w, Int8Conv.Geometry geometry) {
        check(w, geometry);
        Tensor[] pc = packGroups(w, geometry);
        return new PackedInt8Conv(pc[0], pc[1], null, null, geometry, w.dims()[1] * geometry.groups());
    }

    /**
     * Packs quantized int8 filters {@code [OC, C / groups, kh, kw]}, per tensor or per output
     * channel (axis 0): the parameters become per-channel vectors.
     */
    public static PackedInt8Conv pack(QuantizedTensor w, Int8Conv.Geometry geometry) {
        QuantScheme s = w.scheme();
        if (w.dtype() != DType.INT8 || w.shape().rank() != 4 || s.granularity() == QuantScheme.Granularity.PER_GROUP
                || (s.granularity() == QuantScheme.Granularity.PER_CHANNEL && s.axisFor("PackedInt8Conv.pack", 4) != 0)) {
            throw new IllegalArgumentException("PackedInt8Conv.pack: the filters " + w.values().describe() + " must be int8 "
                    + "[OC, C / groups, kh, kw] quantized per tensor or per output channel (axis 0), not " + s);
        }
        check(w.values(), geometry);
        long oc = geometry.outChannels();
        Tensor sc = null;
        Tensor zp = null;
        Tensor[] pc = null;
        try {
            sc = perColumn(w.params().scale(), oc, DType.FLOAT32);
            zp = w.params().zeroPoint() == null ? null : perColumn(w.params().zeroPoint(), oc, DType.INT32);
            pc = packGroups(w.values(), geometry);
            return new PackedInt8Conv(pc[0], pc[1], zp, sc, geometry, w.shape().size(1) * geometry.groups());
        } catch (RuntimeException e) {
            for (Tensor t : new Tensor[] {sc, zp, pc == null ? null : pc[0], pc == null ? null : pc[1]}) {
                if (t != null) {
                    t.close();
                }
            }
            throw e;
        }
    }

    private static void check(Tensor w, Int8Conv.Geometry g) {
        long[] d = w.dims();
        if (w.dtype() != DType.INT8 || d.length != 4 || d[0] != g.outChannels() || d[2] != g.kh() || d[3] != g.kw()
                || d[1] < 1) {
            throw new IllegalArgumentException("PackedInt8Conv.pack: the filters " + w.describe() + " are not INT8 ["
                    + g.outChannels() + ", C / groups, " + g.kh() + ", " + g.kw() + "] for " + g);
        }
    }

    /** {packed bytes of every group, column sums [OC]}. */
    private static Tensor[] packGroups(Tensor w, Int8Conv.Geometry g) {
        long oc = g.outChannels();
        long og = oc / g.groups();
        long cg = w.dims()[1];
        long k = g.kh() * g.kw() * cg;
        long bytes = Int8Conv.groupBytes(g.kh(), g.kw(), cg, og);
        Tensor packed = Tensor.empty(DType.INT8, w.device(), g.groups() * bytes);
        Tensor colsum = Tensor.empty(DType.INT32, w.device(), oc);
        try (Tensor perm = w.permute(2, 3, 1, 0); Tensor khwc = perm.contiguous(); Tensor b = khwc.reshape(k, oc)) {
            for (long grp = 0; grp < g.groups(); grp++) {
                Tensor[] pc = null;
                try (Tensor bg = b.narrow(1, grp * og, og); Tensor dp = packed.narrow(0, grp * bytes, bytes);
                     Tensor dc = colsum.narrow(0, grp * og, og)) {
                    pc = Int8Gemm.PACK_OP.callMulti(null, bg);
                    dp.copyFrom(pc[0]);
                    dc.copyFrom(pc[1]);
                } finally {
                    if (pc != null) {
                        pc[0].close();
                        pc[1].close();
                    }
                }
            }
            return new Tensor[] {packed, colsum};
        } catch (RuntimeException e) {
            packed.close();
            colsum.close();
            throw e;
        }
    }

    /** float32 [OC]: sx * sw[o] / so (float32 arithmetic), on the weights' device. */
    Tensor channelScale(float sx, float so) {
        float[] sw = scale().toFloatArray();
        float[] out = new float[sw.length];
        for (int j = 0; j < sw.length; j++) {
            out[j] = sx * sw[j] / so;
        }
        return Tensor.of(out, device(), out.length);
    }

    public Int8Conv.Geometry geometry() {
        return geometry;
    }

    /** Input channels C (all groups). */
    public long inChannels() {
        return inChannels;
    }

    @Override
    public String toString() {
        return "PackedInt8Conv[" + inChannels + " -> " + geometry + ", " + describeParameters() + "]";
    }
}
