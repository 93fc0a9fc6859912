package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.ops.Attention;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.BatchNorm.BatchNormAttrs;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvAttrs;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Pooling;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Pooling.PoolOptions;
import dev.cortado.ops.Reductions;
import dev.cortado.quant.Int8Gemm;
import dev.cortado.quant.PackedInt8Matrix;
import dev.cortado.quant.QuantParams;
import dev.cortado.quant.QuantScheme;
import dev.cortado.quant.QuantizedTensor;
import dev.cortado.quant.Quantization;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The ONNX op table of the importer: op_type (default domain) -> handler on the Cortado API, with
 * the first opset each handler implements. {@link OnnxModel} resolves every node against it when
 * a model loads, so an op or version without a handler fails at load time, never while running.
 *
 * <p>Adding an op: write a handler {@code static Tensor[] myOp(OnnxNode n)} (inputs through
 * {@link OnnxNode#input}/{@link OnnxNode#required}, attributes through {@code attr*}, the
 * versioned forms through {@link OnnxNode#opset}: attributes that became inputs, changed
 * defaults) and add one line {@code register("MyOp", since, OnnxOps::myOp);} to the static block.
 * Handlers may create temporaries freely: the model runs the graph inside a
 * {@link dev.cortado.tensor.Scope} that frees everything but the graph outputs. Handlers hold no
 * state, so one table serves every model and thread.
 */
final class OnnxOps {
    private OnnxOps() {
    }

    /** Runs one node: returns its outputs in order (at least those the node names). */
    @FunctionalInterface
    interface Handler {
        Tensor[] run(OnnxNode node);
    }

    /** A handler and the first version of its op (in the op's domain) that it implements. */
    record Entry(int since, Handler handler) {
    }

    static final String DEFAULT_DOMAIN = "ai.onnx";

    /** "domain:op_type" -> entry. */
    private static final Map<String, Entry> HANDLERS = new LinkedHashMap<>();

    static {
        register("Add", n -> one(Elementwise.add(n.required(0), legacyBroadcast(n))));
        register("Sub", n -> one(Elementwise.sub(n.required(0), legacyBroadcast(n))));
        register("Mul", n -> one(Elementwise.mul(n.required(0), legacyBroadcast(n))));
        register("Div", OnnxOps::div);
        register("Relu", n -> one(Elementwise.relu(n.required(0))));
        register("Sigmoid", n -> one(Elementwise.sigmoid(n.required(0))));
        register("Tanh", n -> one(Elementwise.tanh(n.required(0))));
        register("Gelu", 20, OnnxOps::gelu);
        register("Softmax", n -> softmax(n, false));
        register("LogSoftmax", n -> softmax(n, true));
        register("LayerNormalization", 17, OnnxOps::layerNormalization);
        register("RMSNormalization", 23, OnnxOps::rmsNormalization);
        register("ReduceSum", n -> reduce(n, false, 13));
        register("ReduceMean", n -> reduce(n, true, 18));
        register("MatMul", n -> one(LinearAlgebra.matmul(n.required(0), n.required(1))));
        register("Gemm", OnnxOps::gemm);
        register("Gather", n -> one(Indexing.gather(n.required(0), n.required(1), n.attrIntAsInt("axis", 0))));
        register("Concat", OnnxOps::concat);
        register("Reshape", OnnxOps::reshape);
        register("Transpose", OnnxOps::transpose);
        register("Constant", OnnxOps::constant);
        register("MaxPool", OnnxOps::maxPool);
        register("AveragePool", OnnxOps::averagePool);
        register("GlobalAveragePool", n -> one(Pooling.globalAvgPool(floatInput(n, 0))));
        register("GlobalMaxPool", OnnxOps::globalMaxPool);
        register("BatchNormalization", OnnxOps::batchNormalization);
        register("Conv", OnnxOps::conv);
        register("ConvTranspose", OnnxOps::convTranspose);
        register("Attention", 23, OnnxOps::attention);
        register("RotaryEmbedding", 23, OnnxOps::rotaryEmbedding); // composed: see COMPOSED_OPS
        register("QuantizeLinear", 10, OnnxOps::quantizeLinear);
        register("DequantizeLinear", 10, OnnxOps::dequantizeLinear);
        register("DynamicQuantizeLinear", 11, n -> Quantization.DYNAMIC_QUANTIZE_OP.callMulti(null, n.required(0)));
        register("MatMulInteger", 10, OnnxOps::matMulInteger);
        register("QLinearMatMul", 10, OnnxOps::qLinearMatMul);

        // elementwise, comparison, cast (OnnxBasicOps)
        register("Identity", n -> one(n.required(0)));
        register("Neg", n -> one(Elementwise.neg(n.required(0))));
        register("Abs", n -> one(Elementwise.abs(n.required(0))));
        register("Exp", n -> one(Elementwise.exp(n.required(0))));
        register("Log", n -> one(Elementwise.log(n.required(0))));
        register("Sqrt", n -> one(Elementwise.sqrt(n.required(0))));
        register("Reciprocal", n -> one(Elementwise.reciprocal(n.required(0))));
        register("Sin", n -> one(Elementwise.sin(n.required(0))));
        register("Cos", n -> one(Elementwise.cos(n.required(0))));
        register("Softplus", n -> one(Elementwise.softplus(n.required(0))));
        register("Softsign", OnnxBasicOps::softsign);
        register("LeakyRelu", OnnxBasicOps::leakyRelu);
        register("Elu", OnnxBasicOps::elu);
        register("Selu", OnnxBasicOps::selu);
        register("HardSigmoid", OnnxBasicOps::hardSigmoid);
        register("Not", n -> one(Elementwise.logicalNot(n.required(0))));
        register("And", 7, n -> one(Elementwise.logicalAnd(n.required(0), n.required(1))));
        register("Or", 7, n -> one(Elementwise.logicalOr(n.required(0), n.required(1))));
        register("Xor", 7, n -> one(Elementwise.logicalXor(n.required(0), n.required(1))));
        register("Equal", 7, n -> one(Elementwise.eq(n.required(0), n.required(1))));
        register("Less", 7, n -> one(Elementwise.lt(n.required(0), n.required(1))));
        register("LessOrEqual", 12, n -> one(Elementwise.le(n.required(0), n.required(1))));
        register("Greater", 7, n -> one(Elementwise.gt(n.required(0), n.required(1))));
        register("GreaterOrEqual", 12, n -> one(Elementwise.ge(n.required(0), n.required(1))));
        register("Where", 9, n -> one(Elementwise.where(n.required(0), n.required(1), n.required(2))));
        register("Sum", n -> OnnxBasicOps.variadic(n, Elementwise::add, false));
        register("Mean", n -> OnnxBasicOps.variadic(n, Elementwise::add, true));
        register("Max", n -> OnnxBasicOps.variadic(n, Elementwise::maximum, false));
        register("Min", n -> OnnxBasicOps.variadic(n, Elementwise::minimum, false));
        register("Pow", OnnxBasicOps::pow);
        register("Mod", 10, OnnxBasicOps::mod);
        register("Cast", 6, OnnxBasicOps::cast);
        register("CastLike", 15, OnnxBasicOps::castLike);
        register("Clip", 6, OnnxBasicOps::clip);
        register("Dropout", 7, OnnxBasicOps::dropout);
        // reductions and losses
        register("ReduceMax", n -> OnnxBasicOps.reduce(n, "max"));
        register("ReduceMin", n -> OnnxBasicOps.reduce(n, "min"));
        register("ReduceProd", n -> OnnxBasicOps.reduce(n, "prod"));
        register("ReduceSumSquare", n -> OnnxBasicOps.reduce(n, "sumsquare"));
        register("ReduceL1", n -> OnnxBasicOps.reduce(n, "l1"));
        register("ReduceL2", n -> OnnxBasicOps.reduce(n, "l2"));
        register("ReduceLogSum", n -> OnnxBasicOps.reduce(n, "logsum"));
        register("ReduceLogSumExp", n -> OnnxBasicOps.reduce(n, "logsumexp"));
        register("ArgMax", n -> OnnxBasicOps.argExtreme(n, true));
        register("ArgMin", n -> OnnxBasicOps.argExtreme(n, false));
        register("NegativeLogLikelihoodLoss", 12, OnnxBasicOps::nll);
        register("SoftmaxCrossEntropyLoss", 12, OnnxBasicOps::softmaxCrossEntropy);
        // shape and indexing (OnnxShapeOps)
        register("Shape", OnnxShapeOps::shape);
        register("Size", OnnxShapeOps::size);
        register("ConstantOfShape", 9, OnnxShapeOps::constantOfShape);
        register("Range", 11, OnnxShapeOps::range);
        register("Expand", 8, OnnxShapeOps::expand);
        register("Unsqueeze", OnnxShapeOps::unsqueeze);
        register("Squeeze", OnnxShapeOps::squeeze);
        register("Flatten", OnnxShapeOps::flatten);
        register("Slice", OnnxShapeOps::slice);
        register("Split", OnnxShapeOps::split);
        register("GatherElements", 11, OnnxShapeOps::gatherElements);
        register("GatherND", 11, OnnxShapeOps::gatherND);
        register("Tile", 6, OnnxShapeOps::tile);
        register("Pad", OnnxShapeOps::pad);
        register("Einsum", 12, OnnxShapeOps::einsum);
        register("PRelu", OnnxBasicOps::prelu);
        register("Erf", 9, OnnxBasicOps::erf); // composed: see COMPOSED_OPS
        register("Round", 11, n -> one(OnnxBasicOps.roundHalfEven(n.required(0))));
        register("LRN", OnnxBasicOps::lrn);
        register("InstanceNormalization", OnnxBasicOps::instanceNorm);
        register("ConvInteger", 10, OnnxBasicOps::convInteger);
        register("QLinearConv", 10, OnnxBasicOps::qLinearConv);
        // control flow (OnnxControlOps)
        register("If", OnnxControlOps::ifOp);
        register("Loop", OnnxControlOps::loop);
        register("Scan", 9, OnnxControlOps::scan);
        // optimizer steps (OnnxTrainingOps)
        register(OnnxTrainingOps.DOMAIN, "Adagrad", 1, OnnxTrainingOps::adagrad);
        register(OnnxTrainingOps.DOMAIN, "Adam", 1, OnnxTrainingOps::adam);
        register(OnnxTrainingOps.DOMAIN, "Momentum", 1, OnnxTrainingOps::momentum);
        // ONNX Runtime's contributed transformer ops, domain com.microsoft (MicrosoftOps)
        MicrosoftOps.registerAll(OnnxOps::register);
    }

    // ------------------------------------------------------------------ quantization
    /**
     * The QuantScheme of a QuantizeLinear/DequantizeLinear node: per tensor for a one-element
     * scale, blocked (per group) when block_size > 0, else per axis (attribute axis, default 1).
     */
    private static QuantScheme quantScheme(OnnxNode n, Tensor data, Tensor scale, DType storage) {
        long block = n.attrInt("block_size", 0);
        int axis = n.attrIntAsInt("axis", 1);
        if (scale.numel() == 1 && scale.shape().rank() <= 1 && block == 0) {
            return QuantScheme.perTensor(storage);
        }
        return block > 0 ? QuantScheme.perGroup(storage, axis, Math.toIntExact(block))
                : QuantScheme.perChannel(storage, axis);
    }

    /** A scale in float32 (ONNX allows float16/bfloat16 scales). */
    private static Tensor scale32(Tensor scale) {
        return scale.dtype() == DType.FLOAT32 ? scale : scale.to(DType.FLOAT32);
    }

    /** The zero point the op takes: none for fp8 (ONNX's fp8 zero point must be 0); int4 read as int8. */
    private static Tensor zeroPointArg(Tensor zp) {
        if (zp == null || zp.dtype().isFloat8()) {
            return null;
        }
        return zp.dtype() == DType.INT4 ? zp.to(DType.INT8) : zp;
    }

    private static Tensor[] quantizeLinear(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor scale = n.required(1);
        Tensor zp = n.input(2);
        DType storage = zp != null ? zp.dtype() : DType.UINT8;
        long outputType = n.attrInt("output_dtype", 0);
        if (outputType != 0) {
            storage = OnnxTensors.dtypeOf((int) outputType);
        }
        if (n.attrInt("saturate", 1) == 0 && storage.isFloat8()) {
            throw new UnsupportedOperationException("QuantizeLinear: saturate=0 (fp8 overflow to inf/NaN) is not implemented");
        }
        Tensor sc = scale32(scale);
        Tensor q = Quantization.quantize(x, sc, zeroPointArg(zp), quantScheme(n, x, sc, storage));
        return one(q);
    }

    /** A scalar (one-element) zero point's value, or 0 when absent. */
    static int scalarZeroPoint(OnnxNode n, Tensor zp, String what) {
        if (zp == null) {
            return 0;
        }
        if (zp.numel() != 1) {
            throw new UnsupportedOperationException(n.opType() + ": a per-row " + what + " " + zp.describe() + " is not supported");
        }
        return (int) zp.item();
    }

    /** uint8 values (a - 128 shifts an int8 operand into uint8 with its zero point + 128). */
    static Tensor shifted(Tensor t, int by, DType to) {
        try (Tensor wide = t.to(DType.INT32); Tensor moved = wide.add(by)) {
            return moved.to(to);
        }
    }

    /**
     * The right operand as a packed int8 matrix with per-column zero points and scales: a uint8 b
     * becomes b - 128 with zero points zb - 128 (the differences b - zb are unchanged).
     */
    static PackedInt8Matrix packedRight(OnnxNode n, Tensor b, Tensor zb, Tensor scale) {
        if (b.shape().rank() != 2) {
            throw new UnsupportedOperationException(n.opType() + ": b " + b.describe() + " must be a matrix");
        }
        long cols = b.dims()[1];
        boolean unsigned = b.dtype() == DType.UINT8;
        Tensor b8 = unsigned ? shifted(b, -128, DType.INT8) : b.copy();
        int[] z = new int[(int) cols];
        if (zb != null) {
            long[] v = zb.toLongArray();
            for (int j = 0; j < cols; j++) {
                z[j] = (int) v[v.length == 1 ? 0 : j];
            }
        }
        for (int j = 0; j < cols; j++) {
            z[j] -= unsigned ? 128 : 0;
        }
        float[] sc = new float[(int) cols];
        float[] given = scale == null ? new float[] {1f} : scale.toFloatArray();
        for (int j = 0; j < cols; j++) {
            sc[j] = given[given.length == 1 ? 0 : j];
        }
        QuantizedTensor q = QuantizedTensor.of(b8, QuantParams.of(QuantScheme.perChannel(DType.INT8, 1),
                Tensor.of(sc, b.device(), cols), Tensor.of(z, b.device(), cols)));
        return PackedInt8Matrix.pack(q);
    }

    /** MatMulInteger: int32 sum_k (a - za)(b - zb); a uint8/int8 [..., k], b uint8/int8 [k, n]. */
    private static Tensor[] matMulInteger(OnnxNode n) {
        return one(matMulInteger(n, packedRight(n, n.required(1), n.input(3), null)));
    }

    /** MatMulInteger with b already packed (OnnxFusion packs constant weights once, at load). */
    static Tensor matMulInteger(OnnxNode n, PackedInt8Matrix b) {
        Tensor a = n.required(0);
        int za = scalarZeroPoint(n, n.input(2), "a_zero_point");
        Tensor a8 = a;
        if (a.dtype() == DType.INT8) {
            a8 = shifted(a, 128, DType.UINT8);
            za += 128;
        }
        return Int8Gemm.matmulInteger(a8, za, b);
    }

    /** QLinearMatMul: the int8 GEMM with its epilogue requantizing to y's scale and zero point (batches of b: one GEMM each). */
    private static Tensor[] qLinearMatMul(OnnxNode n) {
        Tensor a = n.required(0);
        Tensor b = n.required(3);
        if (b.shape().rank() == 2) {
            return one(qLinear2d(n, a, b));
        }
        if (b.shape().rank() != 3 || a.shape().rank() != 3 || a.dims()[0] != b.dims()[0]) {
            throw new UnsupportedOperationException("QLinearMatMul: a " + a.describe() + " with b " + b.describe());
        }
        List<Tensor> parts = new ArrayList<>();
        for (long i = 0; i < b.dims()[0]; i++) {
            Tensor ai = a.narrow(0, i, 1).reshape(a.dims()[1], a.dims()[2]);
            Tensor bi = b.narrow(0, i, 1).reshape(b.dims()[1], b.dims()[2]);
            parts.add(qLinear2d(n, ai, bi).reshape(1, a.dims()[1], b.dims()[2]));
        }
        return one(Indexing.concat(0, parts.toArray(Tensor[]::new)));
    }

    private static Tensor qLinear2d(OnnxNode n, Tensor a, Tensor b) {
        int za = scalarZeroPoint(n, n.input(2), "a_zero_point");
        Tensor a8 = a;
        if (a.dtype() == DType.INT8) {
            a8 = shifted(a, 128, DType.UINT8);
            za += 128;
        }
        Tensor yzp = n.required(7);
        QuantizedTensor aq = QuantizedTensor.of(a8 == a ? a.copy() : a8,
                QuantParams.perTensor(DType.UINT8, n.required(1).item(), za, a.device()));
        PackedInt8Matrix packed = packedRight(n, b, n.input(5), n.required(4));
        QuantParams out = QuantParams.perTensor(yzp.dtype(), n.required(6).item(), (int) yzp.item(), a.device());
        return Int8Gemm.matmul(aq, packed, null, Convolution.Activation.NONE, out).values();
    }

    private static Tensor[] dequantizeLinear(OnnxNode n) {
        Tensor q = n.required(0);
        Tensor scale = n.required(1);
        Tensor sc = scale32(scale);
        Tensor y = Quantization.dequantize(q, sc, zeroPointArg(n.input(2)), quantScheme(n, q, sc, q.dtype()));
        return one(scale.dtype() == DType.FLOAT32 ? y : y.to(scale.dtype()));
    }

    /** Registers the handler of {@code opType} (default domain), for every opset. */
    private static void register(String opType, Handler handler) {
        register(opType, 1, handler);
    }

    /** Registers the handler of {@code opType} (default domain) for opsets {@code since} and later. */
    private static void register(String opType, int since, Handler handler) {
        register(DEFAULT_DOMAIN, opType, since, handler);
    }

    private static void register(String domain, String opType, int since, Handler handler) {
        if (HANDLERS.putIfAbsent(domain + ":" + opType, new Entry(since, handler)) != null) {
            throw new IllegalStateException("two handlers for " + domain + "." + opType);
        }
    }

    /** "ai.onnx" for the default domain ("" or "ai.onnx"), else the domain. */
    static String canonicalDomain(String domain) {
        return domain.isEmpty() ? DEFAULT_DOMAIN : domain;
    }

    /** The table entry of {@code opType} in {@code domain}, or null. */
    static Entry entry(String domain, String opType) {
        return HANDLERS.get(canonicalDomain(domain) + ":" + opType);
    }

    /** The table entry of {@code opType} (default domain), or null. */
    static Entry entry(String opType) {
        return entry(DEFAULT_DOMAIN, opType);
    }

    /** The domains with handlers: the default one, ai.onnx.preview.training and com.microsoft. */
    static Set<String> domains() {
        Set<String> d = new java.util.TreeSet<>();
        for (String key : HANDLERS.keySet()) {
            d.add(key.substring(0, key.indexOf(':')));
        }
        return d;
    }

    /**
     * Handlers written out from other engine ops rather than calling an engine op of their own:
     * RotaryEmbedding takes arbitrary cos/sin caches, while the engine's rope
     * ({@code Attention.rope}) derives its angles from a base, so the handler rotates with
     * elementwise ops. They run in the conformance tests but do not count as op coverage
     * ({@code OnnxOpCoverageTest}).
     */
    public static final Set<String> COMPOSED_OPS = Set.of("RotaryEmbedding", "Erf");

    /** The op types of the default domain that have a handler (for some opset). */
    public static Set<String> supportedOps() {
        Set<String> ops = new java.util.LinkedHashSet<>();
        for (String key : HANDLERS.keySet()) {
            if (key.startsWith(DEFAULT_DOMAIN + ":")) {
                ops.add(key.substring(DEFAULT_DOMAIN.length() + 1));
            }
        }
        return Collections.unmodifiableSet(ops);
    }

    // ------------------------------------------------------------------ helpers
    static Tensor[] one(Tensor t) {
        return new Tensor[] {t};
    }

    static int axis(OnnxNode n, long axis, int rank) {
        if (axis < -rank || axis >= rank) {
            throw n.error("axis " + axis + " is out of range for rank " + rank);
        }
        return (int) (axis < 0 ? axis + rank : axis);
    }

    static long prod(long[] dims, int from, int to) {
        long p = 1;
        for (int i = from; i < to; i++) {
            p *= dims[i];
        }
        return p;
    }

    static int[] range(int from, int to) {
        int[] r = new int[to - from];
        for (int i = 0; i < r.length; i++) {
            r[i] = from + i;
        }
        return r;
    }

    /** ONNX stash_type (an element type code) as a Cortado dtype. */
    private static DType stashType(OnnxNode n) {
        return OnnxTensors.dtypeOf(n.attrIntAsInt("stash_type", OnnxTensors.FLOAT));
    }

    /**
     * The second operand of a binary op, aligned for the legacy (opset < 7) broadcast: with
     * broadcast=1 and an axis, B's dimensions line up with A's starting at that axis (trailing
     * ones are appended so that numpy broadcasting does the rest); otherwise B as is.
     */
    static Tensor legacyBroadcast(OnnxNode n) {
        Tensor a = n.required(0);
        Tensor b = n.required(1);
        if (n.opset() >= 7 || n.attrInt("broadcast", 0) == 0 || !n.has("axis")) {
            return b;
        }
        int axis = axis(n, n.attrInt("axis", 0), a.rank());
        int trailing = a.rank() - axis - b.rank();
        if (trailing <= 0) {
            return b;
        }
        long[] dims = Arrays.copyOf(b.dims(), b.rank() + trailing);
        Arrays.fill(dims, b.rank(), dims.length, 1);
        return b.reshape(dims);
    }

    /** Input i as float32/float64 (Cortado's pooling and norms are floating point only); others go to float64. */
    private static Tensor floatInput(OnnxNode n, int i) {
        Tensor x = n.required(i);
        return x.dtype() == DType.FLOAT32 || x.dtype() == DType.FLOAT64 ? x : x.to(DType.FLOAT64);
    }

    private static int[] ints(OnnxNode n, String name, int count, int dflt) {
        long[] v = n.attrInts(name);
        int[] r = new int[count];
        Arrays.fill(r, dflt);
        if (v != null) {
            if (v.length != count) {
                throw n.error(name + " " + Arrays.toString(v) + " needs " + count + " values");
            }
            for (int i = 0; i < count; i++) {
                r[i] = Math.toIntExact(v[i]);
            }
        }
        return r;
    }

    /**
     * The padding {before, after} per spatial dimension of a convolution or pooling node: its
     * pads [begin..., end...] (default 0), or auto_pad (VALID: none; SAME_UPPER / SAME_LOWER:
     * output ceil(in / stride), the odd padding after / before) for kernel k, strides s and
     * dilations d over x's spatial sizes.
     */
    static long[][] padding(OnnxNode n, Tensor x, long[] k, long[] s, long[] d) {
        int nd = k.length;
        long[] pads = longs(n, "pads", 2 * nd, 0);
        long[] before = Arrays.copyOfRange(pads, 0, nd);
        long[] after = Arrays.copyOfRange(pads, nd, 2 * nd);
        String autoPad = n.attrString("auto_pad", "NOTSET");
        switch (autoPad) {
            case "NOTSET" -> { }
            case "VALID" -> {
                Arrays.fill(before, 0);
                Arrays.fill(after, 0);
            }
            case "SAME_UPPER", "SAME_LOWER" -> {
                for (int i = 0; i < nd; i++) {
                    long in = x.size(2 + i);
                    long out = (in + s[i] - 1) / s[i];
                    long total = Math.max(0, (out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - in);
                    before[i] = autoPad.equals("SAME_UPPER") ? total / 2 : total - total / 2;
                    after[i] = total - before[i];
                }
            }
            default -> throw n.error("unknown auto_pad '" + autoPad + "'");
        }
        return new long[][] {before, after};
    }

    /**
     * ONNX pooling attributes as Cortado options: kernel_shape, strides (default 1), dilations,
     * pads [begin..., end...] or auto_pad (VALID: none; SAME_UPPER / SAME_LOWER: output
     * ceil(in / stride), the odd padding at the end / beginning), ceil_mode, count_include_pad.
     */
    static PoolOptions poolOptions(OnnxNode n, Tensor x, boolean avg) {
        int nd = x.rank() - 2;
        if (nd < 1) {
            throw n.error("input " + x.describe() + " needs a spatial dimension");
        }
        long[] ksl = n.attrInts("kernel_shape");
        if (ksl == null) {
            throw n.error("attribute 'kernel_shape' is required");
        }
        int[] k = ints(n, "kernel_shape", nd, 1);
        int[] s = ints(n, "strides", nd, 1);
        int[] d = ints(n, "dilations", nd, 1);
        long[][] padding = padding(n, x, Arrays.stream(k).asLongStream().toArray(),
                Arrays.stream(s).asLongStream().toArray(), Arrays.stream(d).asLongStream().toArray());
        int[] before = Arrays.stream(padding[0]).mapToInt(Math::toIntExact).toArray();
        int[] after = Arrays.stream(padding[1]).mapToInt(Math::toIntExact).toArray();
        return PoolOptions.builder(k).stride(s).padding(before).paddingAfter(after).dilation(d)
                .ceilMode(n.attrInt("ceil_mode", 0) != 0)
                .countIncludePad(avg && n.attrInt("count_include_pad", 0) != 0)
                .layout(DataLayout.NCHW).build();
    }

    /**
     * MaxPool: values, and the optional Indices output converted from Cortado's per-(n, c)-plane
     * flat index to ONNX's index over the whole tensor ((n * C + c) * plane + offset), for
     * storage_order 1 (2-d only) with the offset in column-major order (w * H + h). Integer
     * inputs (uint8, int8) are pooled exactly in float64 and cast back.
     */
    static Tensor[] maxPool(OnnxNode n) {
        Tensor x0 = n.required(0);
        Tensor x = floatInput(n, 0);
        PoolOptions o = poolOptions(n, x, false);
        long storageOrder = n.attrInt("storage_order", 0);
        Tensor[] r = Pooling.maxPoolWithIndices(x, o);
        Tensor y = r[0].dtype() == x0.dtype() ? r[0] : r[0].to(x0.dtype());
        if (!n.wantsOutput(1)) {
            return one(y);
        }
        long[] dims = x.dims();
        long plane = prod(dims, 2, dims.length);
        long[] idx = r[1].toLongArray();
        long outPlane = prod(r[1].dims(), 2, dims.length);
        if (storageOrder != 0 && dims.length != 4) {
            throw new UnsupportedOperationException(n.describe() + ": storage_order=1 is supported for 2-d pooling only");
        }
        long h = dims.length == 4 ? dims[2] : 1;
        long w = dims[dims.length - 1];
        for (int i = 0; i < idx.length; i++) {
            long base = (i / outPlane) * plane;
            long off = idx[i];
            if (storageOrder != 0) {
                off = (off % w) * h + off / w;
            }
            idx[i] = base + off;
        }
        try (Tensor host = Tensor.of(idx, r[1].dims())) {
            return new Tensor[] {y, host.to(x.device())};
        }
    }

    static Tensor[] averagePool(OnnxNode n) {
        Tensor x0 = n.required(0);
        Tensor x = floatInput(n, 0);
        Tensor y = Pooling.avgPool(x, poolOptions(n, x, true));
        return one(y.dtype() == x0.dtype() ? y : y.to(x0.dtype()));
    }

    /** GlobalMaxPool: max over the spatial dimensions, kept with size 1. */
    static Tensor[] globalMaxPool(OnnxNode n) {
        Tensor x = n.required(0);
        if (x.rank() < 3) {
            throw n.error("input " + x.describe() + " needs a spatial dimension");
        }
        return one(Reductions.max(x, true, range(2, x.rank())));
    }

    /** A per-channel parameter as float32 (Cortado's batch norm takes float32 [C] parameters). */
    private static Tensor f32(Tensor t) {
        return t == null || t.dtype() == DType.FLOAT32 ? t : t.to(DType.FLOAT32);
    }

    /**
     * BatchNormalization. Inference (default; opset 6's is_test=1, opset >= 14's training_mode=0):
     * Y = (X - mean) / sqrt(var + epsilon) * scale + B with the given statistics. training_mode=1
     * (opset >= 14): Y normalized with the batch statistics, and the optional outputs
     * running_mean = input_mean * momentum + batch_mean * (1 - momentum) and
     * running_var = input_var * momentum + batch_var * (1 - momentum), batch_var the population
     * variance (ONNX's reference; Cortado's in-place update uses the unbiased variance and the
     * opposite momentum convention, so the handler computes them). Opset 6's spatial=0 and
     * is_test=0 (legacy training outputs) are not supported.
     */
    static Tensor[] batchNormalization(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor scale = f32(n.required(1));
        Tensor bias = f32(n.required(2));
        Tensor mean = f32(n.required(3));
        Tensor var = f32(n.required(4));
        double eps = n.attrFloat("epsilon", 1e-5);
        double momentum = n.attrFloat("momentum", 0.9);
        if (n.opset() < 9 && n.attrInt("spatial", 1) == 0) {
            throw new UnsupportedOperationException(n.describe() + ": spatial=0 is not supported");
        }
        boolean training = n.opset() >= 14 ? n.attrInt("training_mode", 0) != 0
                : n.opset() < 7 ? n.attrInt("is_test", 0) == 0 && n.outputCount() > 1 : n.outputCount() > 1;
        if (training && n.opset() < 14) {
            throw new UnsupportedOperationException(n.describe() + ": legacy training outputs are not supported");
        }
        BatchNormAttrs attrs = new BatchNormAttrs(eps, 1 - momentum, DataLayout.NCHW);
        if (!training) {
            return one(BatchNorm.inference(x, scale, bias, mean, var, attrs));
        }
        Tensor[] r = BatchNorm.training(x, scale, bias, null, null, attrs);
        Tensor[] out = new Tensor[3];
        out[0] = r[0];
        int[] axes = new int[x.rank() - 1];
        axes[0] = 0;
        for (int i = 2; i < x.rank(); i++) {
            axes[i - 1] = i;
        }
        if (n.wantsOutput(1)) {
            Tensor bm = Reductions.mean(x, false, axes);
            out[1] = Elementwise.add(Elementwise.mul(n.required(3), momentum),
                    Elementwise.mul(bm.to(n.required(3).dtype()), 1 - momentum));
        }
        if (n.wantsOutput(2)) {
            Tensor bv = Reductions.var(x, 0, false, axes);
            out[2] = Elementwise.add(Elementwise.mul(n.required(4), momentum),
                    Elementwise.mul(bv.to(n.required(4).dtype()), 1 - momentum));
        }
        return out;
    }

    private static long[] longs(OnnxNode n, String name, int count, long dflt) {
        long[] v = n.attrInts(name);
        if (v == null) {
            long[] r = new long[count];
            Arrays.fill(r, dflt);
            return r;
        }
        if (v.length != count) {
            throw n.error(name + " " + Arrays.toString(v) + " needs " + count + " values");
        }
        return v;
    }

    /** kernel_shape, or the weight's spatial dimensions (they must agree). */
    private static long[] kernelShape(OnnxNode n, Tensor w, int nd) {
        long[] fromW = Arrays.copyOfRange(w.dims(), 2, w.rank());
        long[] k = n.attrInts("kernel_shape");
        if (k != null && !Arrays.equals(k, fromW)) {
            throw n.error("kernel_shape " + Arrays.toString(k) + " does not match weight " + w.describe());
        }
        if (fromW.length != nd) {
            throw n.error("weight " + w.describe() + " does not match the " + nd + "-d input");
        }
        return fromW;
    }

    /**
     * Conv (1-d, 2-d, 3-d): x [N, C, spatial...], W [M, C/group, k...], optional B [M]; strides,
     * dilations, group, pads [begin..., end...] or auto_pad (SAME_UPPER / SAME_LOWER: output
     * ceil(in / stride), the odd padding after / before; VALID: none).
     */
    static Tensor[] conv(OnnxNode n) {
        return one(conv(n, n.required(0), n.required(1), n.input(2)));
    }

    /** Conv of the node's attributes on the given operands (also ConvInteger's and QLinearConv's). */
    static Tensor conv(OnnxNode n, Tensor x, Tensor w, Tensor b) {
        return Convolution.CONV_OP.call(new ConvAttrs(x.rank() - 2, convOptions(n, x, w)), x, w, b);
    }

    /** The convolution options of a Conv node's attributes for input x and weight w (x's rank checked). */
    static ConvOptions convOptions(OnnxNode n, Tensor x, Tensor w) {
        int nd = x.rank() - 2;
        if (nd < 1 || nd > 3) {
            throw new UnsupportedOperationException(n.describe() + ": input " + x.describe() + " is not 1-d, 2-d or 3-d");
        }
        long[] k = kernelShape(n, w, nd);
        long[] s = longs(n, "strides", nd, 1);
        long[] d = longs(n, "dilations", nd, 1);
        long[][] padding = padding(n, x, k, s, d);
        return ConvOptions.builder().stride(s).padding(padding[0], padding[1]).dilation(d)
                .groups(n.attrInt("group", 1)).build();
    }

    /**
     * ConvTranspose (1-d, 2-d, 3-d): x [N, C, spatial...], W [C, M/group, k...], optional B;
     * strides, dilations, group, output_padding, and pads / auto_pad / output_shape as ONNX
     * defines them: with output_shape (or SAME_* auto_pad, whose output is in * stride) the total
     * padding is stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - output_shape,
     * split half before (SAME_UPPER: the odd one after; otherwise before); a negative padding
     * after becomes extra output padding.
     */
    static Tensor[] convTranspose(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor w = n.required(1);
        Tensor b = n.input(2);
        int nd = x.rank() - 2;
        if (nd < 1 || nd > 3) {
            throw new UnsupportedOperationException(n.describe() + ": input " + x.describe() + " is not 1-d, 2-d or 3-d");
        }
        long[] k = kernelShape(n, w, nd);
        long[] s = longs(n, "strides", nd, 1);
        long[] d = longs(n, "dilations", nd, 1);
        long[] outPad = longs(n, "output_padding", nd, 0);
        long[] pads = longs(n, "pads", 2 * nd, 0);
        long[] before = Arrays.copyOfRange(pads, 0, nd);
        long[] after = Arrays.copyOfRange(pads, nd, 2 * nd);
        String autoPad = n.attrString("auto_pad", "NOTSET");
        long[] outputShape = n.attrInts("output_shape");
        if (outputShape != null && outputShape.length == nd + 2) {
            outputShape = Arrays.copyOfRange(outputShape, 2, nd + 2);
        }
        if (outputShape == null && (autoPad.equals("SAME_UPPER") || autoPad.equals("SAME_LOWER"))) {
            outputShape = new long[nd];
            for (int i = 0; i < nd; i++) {
                outputShape[i] = x.size(2 + i) * s[i];
            }
        }
        if (autoPad.equals("VALID")) {
            Arrays.fill(before, 0);
            Arrays.fill(after, 0);
        }
        if (outputShape != null) {
            if (outputShape.length != nd) {
                throw n.error("output_shape " + Arrays.toString(n.attrInts("output_shape")) + " needs " + nd + " values");
            }
            for (int i = 0; i < nd; i++) {
                long total = s[i] * (x.size(2 + i) - 1) + outPad[i] + (k[i] - 1) * d[i] + 1 - outputShape[i];
                long half = Math.floorDiv(total, 2);
                if (autoPad.equals("SAME_UPPER")) {
                    before[i] = half;
                    after[i] = total - half;
                } else {
                    before[i] = total - half;
                    after[i] = half;
                }
                if (after[i] < 0) {
                    outPad[i] -= after[i];
                    after[i] = 0;
                }
                if (before[i] < 0) {
                    throw new UnsupportedOperationException(n.describe() + ": output_shape "
                            + Arrays.toString(outputShape) + " needs negative padding before the output");
                }
            }
        }
        ConvOptions o = ConvOptions.builder().stride(s).padding(before, after).dilation(d).outputPadding(outPad)
                .groups(n.attrInt("group", 1)).build();
        return one(Convolution.CONV_TRANSPOSE_OP.call(new ConvAttrs(nd, o), x, w, b));
    }

    /** [B, L, H*D] as [B, H, L, D]. */
    private static Tensor heads(Tensor t, long h) {
        long[] d = t.dims();
        return t.reshape(d[0], d[1], h, d[2] / h).permute(0, 2, 1, 3);
    }

    /**
     * Attention (opsets 23 and 24) through Cortado's fused attention: Q/K/V 4-d [B, H, L, D] or
     * 3-d [B, L, H*D] (q_num_heads / kv_num_heads), grouped-query heads, attn_mask (bool: true
     * attends; float: added; shorter than the total key length: padded with false / -inf),
     * is_causal, scale, softcap, past_key/past_value (concatenated before K/V along the sequence)
     * with the present_key/present_value outputs, opset 24's nonpad_kv_seqlen (keys at or after
     * nonpad_kv_seqlen[b] are padding) and the optional qk_matmul_output. Causal masking follows
     * ONNX's reference: query i sees key j iff j &lt;= i + offset, with offset the past length when
     * past_key is given, else nonpad_kv_seqlen[b] - Lq when that is given, else 0 in opset 23 and
     * Lk - Lq (bottom-right, Cortado's causal flag) in opset 24. Where that differs from the flag,
     * the rule is passed as an explicit boolean mask.
     *
     * <p>qk_matmul_output (never materialized by the fused kernel, so computed here when asked
     * for, from the same inputs): modes 0 and 1 give the scaled and soft-capped scores
     * scale q k^T, mode 2 adds the mask (and the causal / padding rules as -inf), mode 3 the
     * softmax of that, as exp(s - lse) with the fused op's row log-sum-exp (0 for a fully masked
     * row). Computed in float32 (float64 for float64 inputs), returned in q's dtype.
     */
    static Tensor[] attention(OnnxNode n) {
        Tensor q = n.required(0);
        Tensor k = n.required(1);
        Tensor v = n.required(2);
        Tensor mask = n.input(3);
        Tensor pastK = n.input(4);
        Tensor pastV = n.input(5);
        Tensor nonpad = n.input(6);
        boolean threeD = q.rank() == 3;
        if (threeD) {
            q = heads(q, n.attrInt("q_num_heads", 0));
            k = heads(k, n.attrInt("kv_num_heads", 0));
            v = heads(v, n.attrInt("kv_num_heads", 0));
        }
        if (pastK != null) {
            k = Indexing.concat(2, pastK, k);
        }
        if (pastV != null) {
            v = Indexing.concat(2, pastV, v);
        }
        boolean causal = n.attrInt("is_causal", 0) != 0;
        double softcap = n.attrFloat("softcap", 0);
        int qkMode = (int) n.attrInt("qk_matmul_output_mode", 0);
        boolean wantQk = n.wantsOutput(3);
        long batch = q.size(0);
        long lq = q.size(2);
        long lk = k.size(2);
        if (mask != null && mask.size(mask.rank() - 1) < lk) {
            mask = padKeys(mask, lk);
        }
        long[] valid = nonpad == null ? null : nonpad.toLongArray();
        if (valid != null && valid.length != batch) {
            throw n.error("nonpad_kv_seqlen " + nonpad.describe() + " must have one length per batch (" + batch + ")");
        }
        long[] offset = new long[(int) batch];
        boolean flagDoes = true; // Cortado's causal flag (offset Lk - Lq) gives the rule
        for (int b = 0; b < batch; b++) {
            offset[b] = pastK != null ? pastK.size(2) : valid != null ? valid[b] - lq : n.opset() < 24 ? 0 : lk - lq;
            flagDoes &= offset[b] == lk - lq;
        }
        // The structural rule (causality, key padding) as a mask where the flag cannot express it,
        // and always when the scores with the mask are asked for.
        boolean explicit = valid != null || (causal && (!flagDoes || (wantQk && qkMode >= 2)));
        if (explicit) {
            Tensor rule = structuralMask(causal, offset, valid, lq, lk, q.device());
            mask = mask == null ? rule
                    : mask.dtype() == DType.BOOL ? Elementwise.logicalAnd(mask, rule)
                    : Elementwise.where(rule, mask, Tensor.scalar(Double.NEGATIVE_INFINITY, mask.dtype(), q.device()));
            causal = false;
        }
        double scale = n.has("scale") ? n.attrFloat("scale", 1) : 1 / Math.sqrt(q.size(3));
        Attention.Options opts = Attention.Options.builder().causal(causal).softcap(softcap).scale(scale).build();
        Tensor[] yl = Attention.scaledDotProductAttentionWithLse(q, k, v, mask, opts);
        Tensor y = yl[0];
        Tensor qk = wantQk ? qkMatmulOutput(q, k, mask, yl[1], scale, softcap, qkMode) : null;
        if (threeD) {
            long[] d = y.dims();
            y = y.permute(0, 2, 1, 3).reshape(d[0], d[2], d[1] * d[3]);
        }
        return new Tensor[] {y, n.wantsOutput(1) ? k.contiguous() : null, n.wantsOutput(2) ? v.contiguous() : null, qk};
    }

    /** An attention mask [..., Lq, m] extended to [..., Lq, lk] with keys that are not attended (false / -inf). */
    private static Tensor padKeys(Tensor mask, long lk) {
        long[] d = mask.dims();
        d[d.length - 1] = lk - d[d.length - 1];
        double fill = mask.dtype() == DType.BOOL ? 0 : Double.NEGATIVE_INFINITY;
        return Indexing.concat(mask.rank() - 1, mask, Tensor.full(fill, mask.dtype(), mask.device(), d));
    }

    /** Bool [B, 1, Lq, Lk]: key j visible to query i of batch b (causal: j &lt;= i + offset[b]; padding: j &lt; valid[b]). */
    private static Tensor structuralMask(boolean causal, long[] offset, long[] valid, long lq, long lk, Device device) {
        int batch = offset.length;
        boolean[] ok = new boolean[(int) (batch * lq * lk)];
        for (int b = 0; b < batch; b++) {
            for (int i = 0; i < lq; i++) {
                for (int j = 0; j < lk; j++) {
                    ok[(int) ((b * lq + i) * lk + j)] = (!causal || j <= i + offset[b]) && (valid == null || j < valid[b]);
                }
            }
        }
        try (Tensor host = Tensor.of(ok, batch, 1, lq, lk)) {
            return host.to(device);
        }
    }

    /** ONNX Attention's qk_matmul_output (see {@link #attention}); q [B, Hq, Lq, D], k [B, Hkv, Lk, D]. */
    private static Tensor qkMatmulOutput(Tensor q, Tensor k, Tensor mask, Tensor lse, double scale, double softcap,
                                         int mode) {
        DType ct = q.dtype() == DType.FLOAT64 ? DType.FLOAT64 : DType.FLOAT32;
        long b = q.size(0);
        long hq = q.size(1);
        long hkv = k.size(1);
        long lq = q.size(2);
        long lk = k.size(2);
        // grouped heads: query head h reads kv head h / (Hq / Hkv), as a broadcast batch
        Tensor q5 = q.to(ct).reshape(b, hkv, hq / hkv, lq, q.size(3));
        Tensor kt = k.to(ct).unsqueeze(2).transpose(3, 4);
        Tensor s = Elementwise.mul(LinearAlgebra.matmul(q5, kt), scale).reshape(b, hq, lq, lk);
        if (softcap > 0) {
            s = Elementwise.mul(Elementwise.tanh(Elementwise.div(s, softcap)), softcap);
        }
        if (mode >= 2 && mask != null) {
            s = mask.dtype() == DType.BOOL
                    ? Elementwise.where(mask, s, Tensor.scalar(Double.NEGATIVE_INFINITY, ct, q.device()))
                    : Elementwise.add(s, mask.to(ct));
        }
        if (mode == 3) {
            Tensor l = lse.to(ct).unsqueeze(3);
            Tensor p = Elementwise.exp(Elementwise.sub(s, l));
            s = Elementwise.where(Elementwise.eq(l, Double.NEGATIVE_INFINITY), Tensor.scalar(0, ct, q.device()), p);
        }
        return s.to(q.dtype());
    }

    /**
     * RotaryEmbedding (opset 23) from the precomputed cos/sin caches (Cortado's rope derives the
     * angles from a base, so the rotation is written out with elementwise ops): X [B, H, S, D]
     * or [B, S, H*D] (num_heads), caches [max_pos, R/2] indexed by position_ids [B, S] or
     * [B, S, R/2] without them; the first rotary_embedding_dim features (default D) rotate,
     * as pairs (x[i], x[i + R/2]) or, interleaved, (x[2i], x[2i+1]).
     */
    static Tensor[] rotaryEmbedding(OnnxNode n) {
        Tensor x0 = n.required(0);
        Tensor cos = n.required(1);
        Tensor sin = n.required(2);
        Tensor pos = n.input(3);
        boolean interleaved = n.attrInt("interleaved", 0) != 0;
        Tensor x; // [B, S, H, D]
        if (x0.rank() == 4) {
            x = x0.permute(0, 2, 1, 3);
        } else {
            long[] d = x0.dims();
            long h = n.attrInt("num_heads", 0);
            if (h <= 0) {
                throw n.error("3-d input needs num_heads");
            }
            x = x0.reshape(d[0], d[1], h, d[2] / h);
        }
        long hd = x.size(3);
        long r = n.attrInt("rotary_embedding_dim", 0);
        if (r == 0) {
            r = hd;
        }
        long half = r / 2;
        if (pos != null) {
            cos = Indexing.gather(cos, pos, 0);
            sin = Indexing.gather(sin, pos, 0);
        }
        cos = cos.narrow(2, 0, half).unsqueeze(2); // [B, S, 1, R/2]
        sin = sin.narrow(2, 0, half).unsqueeze(2);
        Tensor rot = x.narrow(3, 0, r);
        Tensor x1 = interleaved ? rot.slice(3, 0, r, 2) : rot.narrow(3, 0, half);
        Tensor x2 = interleaved ? rot.slice(3, 1, r, 2) : rot.narrow(3, half, half);
        Tensor real = Elementwise.sub(Elementwise.mul(cos, x1), Elementwise.mul(sin, x2));
        Tensor imag = Elementwise.add(Elementwise.mul(sin, x1), Elementwise.mul(cos, x2));
        Tensor rotated = interleaved
                ? Indexing.concat(4, real.unsqueeze(4), imag.unsqueeze(4)).reshape(rot.dims())
                : Indexing.concat(3, real, imag);
        Tensor out = r < hd ? Indexing.concat(3, rotated, x.narrow(3, r, hd - r)) : rotated;
        if (x0.rank() == 4) {
            return one(out.permute(0, 2, 1, 3));
        }
        return one(out.reshape(x0.dims()));
    }

    // ------------------------------------------------------------------ handlers
    /**
     * Div. Floating point: Cortado's div. Integers: ONNX divides with truncation toward zero and
     * keeps the integer type, while Cortado's div is true division giving float32 (inexact above
     * 2^24). So both operands go to float64 (exact for int8/uint8/int32, and int64 up to 2^53),
     * are divided there, and the quotient is cast back: Cortado's float -> int conversion
     * truncates toward zero. For |a| < 2^53 the rounded float64 quotient never crosses an integer,
     * so the result is the exact truncated quotient. (Division by zero is undefined in ONNX.)
     */
    static Tensor[] div(OnnxNode n) {
        Tensor a = n.required(0);
        Tensor b = legacyBroadcast(n);
        if (a.dtype().isFloatingPoint() || b.dtype().isFloatingPoint()) {
            return one(Elementwise.div(a, b));
        }
        DType type = DType.promote(a.dtype(), b.dtype());
        Tensor q = Elementwise.div(a.to(DType.FLOAT64), b.to(DType.FLOAT64));
        return one(q.to(type));
    }

    static Tensor[] gelu(OnnxNode n) {
        String approximate = n.attrString("approximate", "none");
        return switch (approximate) {
            case "none" -> one(Elementwise.gelu(n.required(0)));
            case "tanh" -> one(Elementwise.geluTanh(n.required(0)));
            default -> throw n.error("unknown approximate='" + approximate + "'");
        };
    }

    /**
     * Softmax / LogSoftmax. Opset >= 13: along {@code axis} (default -1). Before 13: the input
     * is coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])] (axis default 1) and normalized
     * along the second dimension, then reshaped back.
     */
    static Tensor[] softmax(OnnxNode n, boolean log) {
        Tensor x = n.required(0);
        if (n.opset() >= 13) {
            int axis = n.attrIntAsInt("axis", -1);
            return one(log ? Normalization.logSoftmax(x, axis) : Normalization.softmax(x, axis));
        }
        long[] dims = x.dims();
        int rank = dims.length;
        int axis = rank == 0 ? 0 : axis(n, n.attrInt("axis", 1), rank);
        Tensor x2 = x.reshape(prod(dims, 0, axis), prod(dims, axis, rank));
        Tensor y = log ? Normalization.logSoftmax(x2, 1) : Normalization.softmax(x2, 1);
        return one(y.reshape(dims));
    }

    /** Whether {@code p} can go to Cortado's fused norm as weight/bias: normalized shape and x's dtype. */
    private static boolean fusable(Tensor p, long[] normalized, DType type) {
        return p == null || (Arrays.equals(p.dims(), normalized) && p.dtype() == type);
    }

    /**
     * LayerNormalization (opset 17): normalize over dims [axis, rank) with epsilon, computing in
     * stash_type (default float32), then Y = normalized * Scale + B (Scale and B broadcast to the
     * normalized shape). Optional outputs Mean and InvStdDev (shape of X with the normalized dims
     * set to 1, in stash_type) come from Cortado's mean and population variance.
     */
    static Tensor[] layerNormalization(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor scale = n.input(1);
        Tensor bias = n.input(2);
        int rank = x.rank();
        int axis = axis(n, n.attrInt("axis", -1), rank);
        double eps = n.attrFloat("epsilon", 1e-5);
        DType stash = stashType(n);
        long[] dims = x.dims();
        long[] normalized = Arrays.copyOfRange(dims, axis, rank);
        int k = rank - axis;
        Tensor xs = x.to(stash);
        Tensor y;
        if (fusable(scale, normalized, stash) && fusable(bias, normalized, stash)) {
            y = Normalization.layerNorm(xs, scale, bias, k, eps).to(x.dtype());
        } else {
            y = Normalization.layerNorm(xs, null, null, k, eps).to(x.dtype());
            if (scale != null) {
                y = Elementwise.mul(y, scale);
            }
            if (bias != null) {
                y = Elementwise.add(y, bias);
            }
        }
        Tensor[] out = new Tensor[3];
        out[0] = y;
        int[] axes = range(axis, rank);
        if (n.wantsOutput(1)) {
            out[1] = Reductions.mean(xs, true, axes);
        }
        if (n.wantsOutput(2)) {
            Tensor var = Reductions.var(xs, 0, true, axes);
            out[2] = Elementwise.rsqrt(Elementwise.add(var, eps));
        }
        return out;
    }

    /**
     * RMSNormalization (opset 23): Y = X / sqrt(mean(X^2 over [axis, rank)) + epsilon) * scale,
     * computed in stash_type, scale broadcast to the normalized shape.
     */
    static Tensor[] rmsNormalization(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor scale = n.required(1);
        int rank = x.rank();
        int axis = axis(n, n.attrInt("axis", -1), rank);
        double eps = n.attrFloat("epsilon", 1e-5);
        DType stash = stashType(n);
        long[] normalized = Arrays.copyOfRange(x.dims(), axis, rank);
        Tensor xs = x.to(stash);
        if (fusable(scale, normalized, stash)) {
            return one(Normalization.rmsNorm(xs, scale, rank - axis, eps).to(x.dtype()));
        }
        Tensor y = Normalization.rmsNorm(xs, null, rank - axis, eps).to(x.dtype());
        return one(Elementwise.mul(y, scale));
    }

    /**
     * ReduceSum / ReduceMean. Axes come from the second input from {@code axesInputOpset} on
     * (ReduceSum 13, ReduceMean 18), before that from the {@code axes} attribute. No axes reduce
     * everything unless noop_with_empty_axes, which makes the op an identity. The result keeps
     * the input dtype (Cortado sums integers into int64 and takes no integer mean: those go
     * through int64 / float64 and are cast back).
     */
    static Tensor[] reduce(OnnxNode n, boolean mean, int axesInputOpset) {
        Tensor x = n.required(0);
        long[] axes;
        if (n.opset() >= axesInputOpset) {
            Tensor a = n.input(1);
            axes = a == null ? null : a.toLongArray();
        } else {
            axes = n.attrInts("axes");
        }
        boolean keepdims = n.attrInt("keepdims", 1) != 0;
        boolean noop = n.attrInt("noop_with_empty_axes", 0) != 0;
        int rank = x.rank();
        int[] ax;
        if (axes == null || axes.length == 0) {
            if (noop) {
                return one(x.contiguous());
            }
            ax = range(0, rank);
        } else {
            ax = new int[axes.length];
            for (int i = 0; i < axes.length; i++) {
                ax[i] = axis(n, axes[i], rank);
            }
        }
        if (rank == 0) {
            return one(x.contiguous());
        }
        Tensor r;
        if (mean) {
            Tensor src = x.dtype().isFloatingPoint() ? x : x.to(DType.FLOAT64);
            r = Reductions.mean(src, keepdims, ax);
        } else {
            r = Reductions.sum(x, keepdims, ax);
        }
        return one(r.dtype() == x.dtype() ? r : r.to(x.dtype()));
    }

    static Tensor[] gemm(OnnxNode n) {
        return one(LinearAlgebra.gemm(n.required(0), n.required(1), n.input(2), n.attrFloat("alpha", 1.0),
                n.attrFloat("beta", 1.0), n.attrInt("transA", 0) != 0, n.attrInt("transB", 0) != 0));
    }

    static Tensor[] concat(OnnxNode n) {
        if (!n.has("axis")) {
            throw n.error("attribute 'axis' is required");
        }
        List<Tensor> inputs = new ArrayList<>();
        for (int i = 0; i < n.inputCount(); i++) {
            if (n.input(i) != null) {
                inputs.add(n.input(i));
            }
        }
        return one(Indexing.concat(n.attrIntAsInt("axis", 0), inputs.toArray(new Tensor[0])));
    }

    /**
     * Reshape: target shape from the second input (opset >= 5) or the {@code shape} attribute; a
     * 0 copies the input's dimension at that index unless allowzero=1 (then it is a real 0), and
     * one -1 is inferred.
     */
    static Tensor[] reshape(OnnxNode n) {
        Tensor x = n.required(0);
        long[] shape = n.opset() >= 5 ? n.required(1).toLongArray() : n.attrInts("shape");
        if (shape == null) {
            throw n.error("no target shape");
        }
        boolean allowzero = n.attrInt("allowzero", 0) != 0;
        long[] dims = x.dims();
        long[] target = shape.clone();
        for (int i = 0; i < target.length; i++) {
            if (target[i] == 0 && !allowzero) {
                if (i >= dims.length) {
                    throw n.error("shape " + Arrays.toString(shape) + " copies dimension " + i + " of " + x.describe());
                }
                target[i] = dims[i];
            }
        }
        return one(x.reshape(target));
    }

    /** Transpose: perm, default reversed dimensions. */
    static Tensor[] transpose(OnnxNode n) {
        Tensor x = n.required(0);
        long[] perm = n.attrInts("perm");
        int rank = x.rank();
        int[] order = new int[rank];
        for (int i = 0; i < rank; i++) {
            order[i] = perm == null ? rank - 1 - i : Math.toIntExact(perm[i]);
        }
        if (perm != null && perm.length != rank) {
            throw n.error("perm " + Arrays.toString(perm) + " does not match rank " + rank);
        }
        return one(x.permute(order));
    }

    /** Constant: value (tensor), value_float(s), value_int(s). Strings and sparse values are not supported. */
    static Tensor[] constant(OnnxNode n) {
        Device device = Device.defaultDevice();
        TensorProto t = n.attrTensor("value");
        if (t != null) {
            return one(OnnxTensors.toTensor(t, device));
        }
        if (n.has("value_float")) {
            return one(Tensor.scalar(n.attrFloat("value_float", 0), DType.FLOAT32, device));
        }
        if (n.has("value_int")) {
            return one(Tensor.scalar(n.attrInt("value_int", 0), DType.INT64, device));
        }
        if (n.has("value_floats")) {
            float[] f = n.attrFloats("value_floats");
            try (Tensor host = Tensor.of(f, f.length)) {
                return one(host.to(device));
            }
        }
        if (n.has("value_ints")) {
            long[] l = n.attrInts("value_ints");
            try (Tensor host = Tensor.of(l, l.length)) {
                return one(host.to(device));
            }
        }
        throw new UnsupportedOperationException(n.describe() + ": only tensor, float(s) and int(s) values are supported");
    }
}
