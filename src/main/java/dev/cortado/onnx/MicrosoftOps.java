package dev.cortado.onnx;

import static dev.cortado.onnx.OnnxOps.one;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.quant.Quantization;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Handlers of the {@code com.microsoft} ops that ONNX Runtime's transformer optimizer writes into
 * BERT- and GPT-style models (opset 1 of that domain), each mapped onto the engine's own ops:
 *
 * <ul>
 *   <li>Gelu, BiasGelu (exact, erf), FastGelu (tanh approximation), QuickGelu (x·σ(αx));</li>
 *   <li>SkipLayerNormalization, SkipSimplifiedLayerNormalization (residual add + layer/RMS norm,
 *       optional bias, the optional mean, inverse standard deviation and sum outputs) and
 *       SimplifiedLayerNormalization (RMS norm; ONNX Runtime declares it in the default domain, so
 *       it is registered in both);</li>
 *   <li>EmbedLayerNormalization (BERT's word + position + segment embeddings and layer norm);</li>
 *   <li>BiasAdd, FusedMatMul (transA, transB, alpha);</li>
 *   <li>Attention (one packed QKV projection, mask_index as key lengths, start/end positions, a
 *       2-d or 3-d 0/1 mask; attention_bias; unidirectional) and MultiHeadAttention (separate Q, K,
 *       V with an optional packed bias, key_padding_mask, attention_bias), both on the engine's
 *       {@code scaled_dot_product_attention} in the [batch, seq, heads, dim] layout, so no head is
 *       transposed or copied;</li>
 *   <li>RotaryEmbedding (cos/sin caches, position ids or a start offset);</li>
 *   <li>MatMulIntegerToFloat and DynamicQuantizeMatMul on the int8 GEMM of MatMulInteger.</li>
 * </ul>
 *
 * <p>What the handlers do not implement is refused when the model loads ({@link #checkAtLoad}),
 * with the op, the domain, the opset, the node and the attribute or input at fault: the
 * key/value caches of Attention and MultiHeadAttention (past, present, past_sequence_length,
 * cache_indirection), Attention's do_rotary and past_present_share_buffer and its 4-d Megatron
 * mask, MultiHeadAttention's packed QKV / packed KV forms, FusedMatMul's transBatchA/transBatchB,
 * RotaryEmbedding's is_packed_batching and scale other than 1.
 */
final class MicrosoftOps {
    private MicrosoftOps() {
    }

    /** The domain of ONNX Runtime's contributed ops. */
    static final String DOMAIN = "com.microsoft";

    /** ONNX Runtime's default epsilon of the Skip*LayerNormalization ops. */
    private static final double SKIP_NORM_EPSILON = 1e-12;

    /** ONNX Runtime's default mask_filter_value of the attention ops (added to masked scores). */
    private static final double MASK_FILTER_VALUE = -10000.0;

    /** Adds one handler to the op table (the table's own {@code register}). */
    @FunctionalInterface
    interface Registrar {
        void register(String domain, String opType, int since, OnnxOps.Handler handler);
    }

    /** Registers every handler of this class into the op table. */
    static void registerAll(Registrar r) {
        r.register(DOMAIN, "Gelu", 1, n -> one(Elementwise.gelu(n.required(0))));
        r.register(DOMAIN, "BiasGelu", 1, n -> one(Elementwise.gelu(Elementwise.add(n.required(0), n.required(1)))));
        r.register(DOMAIN, "FastGelu", 1, MicrosoftOps::fastGelu);
        r.register(DOMAIN, "QuickGelu", 1, MicrosoftOps::quickGelu);
        r.register(DOMAIN, "SkipLayerNormalization", 1, n -> skipNorm(n, false));
        r.register(DOMAIN, "SkipSimplifiedLayerNormalization", 1, n -> skipNorm(n, true));
        r.register(DOMAIN, "SimplifiedLayerNormalization", 1, MicrosoftOps::simplifiedLayerNorm);
        r.register(DOMAIN, "EmbedLayerNormalization", 1, MicrosoftOps::embedLayerNorm);
        r.register(OnnxOps.DEFAULT_DOMAIN, "SimplifiedLayerNormalization", 1, MicrosoftOps::simplifiedLayerNorm);
        r.register(DOMAIN, "BiasAdd", 1, n -> one(Elementwise.add(Elementwise.add(n.required(0), n.required(1)), n.required(2))));
        r.register(DOMAIN, "FusedMatMul", 1, MicrosoftOps::fusedMatMul);
        r.register(DOMAIN, "Attention", 1, MicrosoftOps::attention);
        r.register(DOMAIN, "MultiHeadAttention", 1, MicrosoftOps::multiHeadAttention);
        r.register(DOMAIN, "RotaryEmbedding", 1, MicrosoftOps::rotaryEmbedding);
        r.register(DOMAIN, "MatMulIntegerToFloat", 1, MicrosoftOps::matMulIntegerToFloat);
        r.register(DOMAIN, "DynamicQuantizeMatMul", 1, MicrosoftOps::dynamicQuantizeMatMul);
    }

    // ------------------------------------------------------------------ load-time checks

    /**
     * Refuses, when the model loads, a node of this domain that uses a form the handlers do not
     * implement (see the class comment). {@code graph} is the node's graph: a mask_index whose rank
     * is declared there (a graph input, an initializer) is checked too.
     */
    static void checkAtLoad(GraphProto graph, NodeProto n, int opset) {
        if (!OnnxOps.canonicalDomain(n.getDomain()).equals(DOMAIN)) {
            return;
        }
        switch (n.getOpType()) {
            case "Attention" -> {
                requirePositive(n, opset, "num_heads");
                refuseNonZero(n, opset, "do_rotary", "rotary embedding inside Attention (use RotaryEmbedding)");
                refuseNonZero(n, opset, "past_present_share_buffer", "the shared key/value cache buffer");
                refuseInput(n, opset, 4, "past", "the key/value cache");
                refuseInput(n, opset, 6, "past_sequence_length", "the key/value cache");
                refuseOutput(n, opset, 1, "present", "the key/value cache");
                int rank = declaredRank(graph, n.getInputCount() > 3 ? n.getInput(3) : "");
                if (rank == 4) {
                    throw refused(n, opset, "input 3 (mask_index) of rank 4 (the Megatron [batch, 1, max_seq, max_seq] mask)"
                            + " is not supported; give a [batch] / [2*batch] / [batch, total_seq] / [batch, seq, total_seq] mask");
                }
            }
            case "MultiHeadAttention" -> {
                requirePositive(n, opset, "num_heads");
                if (n.getInputCount() < 2 || n.getInput(1).isEmpty()) {
                    throw refused(n, opset, "input 1 (key) is absent: packed QKV in the query is not supported;"
                            + " give query, key and value separately");
                }
                if (n.getInputCount() < 3 || n.getInput(2).isEmpty()) {
                    throw refused(n, opset, "input 2 (value) is absent: packed KV in the key is not supported;"
                            + " give key and value separately");
                }
                refuseInput(n, opset, 6, "past_key", "the key/value cache");
                refuseInput(n, opset, 7, "past_value", "the key/value cache");
                refuseInput(n, opset, 8, "past_sequence_length", "the key/value cache");
                refuseInput(n, opset, 9, "cache_indirection", "beam-search cache indirection");
                refuseOutput(n, opset, 1, "present_key", "the key/value cache");
                refuseOutput(n, opset, 2, "present_value", "the key/value cache");
                refuseOutput(n, opset, 3, "qk", "the attention scores output");
            }
            case "FusedMatMul" -> {
                refuseNonZero(n, opset, "transBatchA", "batch-transposed operands");
                refuseNonZero(n, opset, "transBatchB", "batch-transposed operands");
            }
            case "RotaryEmbedding" -> {
                refuseNonZero(n, opset, "is_packed_batching", "packed (ragged) batches");
                AttributeProto scale = attribute(n, "scale");
                if (scale != null && scale.getF() != 1f) {
                    throw refused(n, opset, "attribute scale=" + scale.getF() + " is not supported (only 1.0)");
                }
            }
            case "SimplifiedLayerNormalization" -> refuseOutput(n, opset, 2, "output 2", "a third output");
            default -> {
                // the other ops take every form their schema allows
            }
        }
    }

    private static AttributeProto attribute(NodeProto n, String name) {
        for (AttributeProto a : n.getAttributeList()) {
            if (a.getName().equals(name)) {
                return a;
            }
        }
        return null;
    }

    private static UnsupportedOnnxOpException refused(NodeProto n, int opset, String what) {
        String node = n.getName().isEmpty() ? "" : " (node '" + n.getName() + "')";
        return new UnsupportedOnnxOpException(n.getOpType(), DOMAIN, opset, n.getName().isEmpty() ? null : n.getName(),
                "op " + n.getOpType() + node + " (domain " + DOMAIN + ", opset " + opset + "): " + what);
    }

    private static void requirePositive(NodeProto n, int opset, String attr) {
        AttributeProto a = attribute(n, attr);
        if (a == null || a.getI() <= 0) {
            throw refused(n, opset, "attribute " + attr + " is required and must be positive"
                    + (a == null ? "" : ", got " + a.getI()));
        }
    }

    private static void refuseNonZero(NodeProto n, int opset, String attr, String what) {
        AttributeProto a = attribute(n, attr);
        if (a != null && a.getI() != 0) {
            throw refused(n, opset, "attribute " + attr + "=" + a.getI() + " (" + what + ") is not supported");
        }
    }

    private static void refuseInput(NodeProto n, int opset, int index, String name, String what) {
        if (index < n.getInputCount() && !n.getInput(index).isEmpty()) {
            throw refused(n, opset, "input " + index + " (" + name + ", " + what + ") is not supported");
        }
    }

    private static void refuseOutput(NodeProto n, int opset, int index, String name, String what) {
        if (index < n.getOutputCount() && !n.getOutput(index).isEmpty()) {
            throw refused(n, opset, "output " + index + " (" + name + ", " + what + ") is not supported");
        }
    }

    /** The rank of value {@code name} as the graph declares it (input or initializer), -1 when unknown. */
    private static int declaredRank(GraphProto graph, String name) {
        if (name.isEmpty()) {
            return -1;
        }
        for (TensorProto t : graph.getInitializerList()) {
            if (t.getName().equals(name)) {
                return t.getDimsCount();
            }
        }
        for (ValueInfoProto v : graph.getInputList()) {
            if (v.getName().equals(name) && v.getType().hasTensorType() && v.getType().getTensorType().hasShape()) {
                return v.getType().getTensorType().getShape().getDimCount();
            }
        }
        return -1;
    }

    // ------------------------------------------------------------------ activations

    /** FastGelu: the tanh approximation of gelu(x + bias), bias optional. */
    private static Tensor[] fastGelu(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor bias = n.input(1);
        return one(Elementwise.geluTanh(bias == null ? x : Elementwise.add(x, bias)));
    }

    /** QuickGelu: x · sigmoid(alpha · x), alpha 1.702 by default. */
    private static Tensor[] quickGelu(OnnxNode n) {
        Tensor x = n.required(0);
        double alpha = n.attrFloat("alpha", 1.702);
        return one(Elementwise.mul(x, Elementwise.sigmoid(Elementwise.mul(x, alpha))));
    }

    // ------------------------------------------------------------------ normalization

    /**
     * SkipLayerNormalization (layer norm) / SkipSimplifiedLayerNormalization (RMS norm): s = input +
     * skip (+ bias), normalized over the last dimension with epsilon (default 1e-12), times gamma
     * (+ beta for the layer norm). Outputs: the result, the mean and the inverse standard deviation
     * of s over the last dimension (kept as size 1; the RMS form's mean output is absent), and s.
     * Inputs: input, skip, gamma, beta, bias for the layer norm; input, skip, gamma, bias for RMS.
     */
    private static Tensor[] skipNorm(OnnxNode n, boolean rms) {
        Tensor x = n.required(0);
        Tensor skip = n.required(1);
        Tensor gamma = n.required(2);
        Tensor beta = rms ? null : n.input(3);
        Tensor bias = n.input(rms ? 3 : 4);
        if (x.rank() < 1 || gamma.rank() != 1 || gamma.size(0) != x.size(x.rank() - 1)) {
            throw n.error("gamma " + gamma.describe() + " must be 1-d with the hidden size of input " + x.describe());
        }
        double eps = n.attrFloat("epsilon", SKIP_NORM_EPSILON);
        Tensor sum = Elementwise.add(x, skip);
        if (bias != null) {
            sum = Elementwise.add(sum, bias);
        }
        Tensor[] out = new Tensor[4];
        out[0] = normalize(sum, gamma, beta, eps, rms);
        Tensor s32 = sum.to(DType.FLOAT32);
        int last = x.rank() - 1;
        if (!rms && n.wantsOutput(1)) {
            out[1] = s32.mean(last, true);
        }
        if (n.wantsOutput(2)) {
            Tensor centered = rms ? s32 : Elementwise.sub(s32, s32.mean(last, true));
            out[2] = Elementwise.rsqrt(Elementwise.add(Elementwise.mul(centered, centered).mean(last, true), eps));
        }
        out[3] = sum;
        return out;
    }

    /** Layer or RMS norm of x over its last dimension in float32, times gamma (+ beta), back in x's dtype. */
    private static Tensor normalize(Tensor x, Tensor gamma, Tensor beta, double eps, boolean rms) {
        Tensor xs = x.to(DType.FLOAT32);
        Tensor g = gamma.to(DType.FLOAT32);
        Tensor b = beta == null ? null : beta.to(DType.FLOAT32);
        Tensor y = rms ? Normalization.rmsNorm(xs, g, 1, eps) : Normalization.layerNorm(xs, g, b, 1, eps);
        return y.to(x.dtype());
    }

    /**
     * SimplifiedLayerNormalization: RMS norm over dims [axis, rank) (axis default -1, epsilon 1e-5)
     * in float32, times scale; the optional second output is the inverse RMS (float32, the
     * normalized dims kept as size 1).
     */
    private static Tensor[] simplifiedLayerNorm(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor scale = n.required(1);
        int rank = x.rank();
        int axis = OnnxOps.axis(n, n.attrInt("axis", -1), rank);
        double eps = n.attrFloat("epsilon", 1e-5);
        long[] normalized = Arrays.copyOfRange(x.dims(), axis, rank);
        Tensor xs = x.to(DType.FLOAT32);
        Tensor y;
        if (Arrays.equals(scale.dims(), normalized)) {
            y = Normalization.rmsNorm(xs, scale.to(DType.FLOAT32), rank - axis, eps).to(x.dtype());
        } else {
            y = Elementwise.mul(Normalization.rmsNorm(xs, null, rank - axis, eps).to(x.dtype()), scale);
        }
        Tensor[] out = new Tensor[2];
        out[0] = y;
        if (n.wantsOutput(1)) {
            int[] axes = new int[rank - axis];
            for (int i = 0; i < axes.length; i++) {
                axes[i] = axis + i;
            }
            Tensor ms = Elementwise.mul(xs, xs).mean(axes);
            out[1] = Elementwise.rsqrt(Elementwise.add(ms, eps)).reshape(keptDims(x.dims(), axis));
        }
        return out;
    }

    /**
     * EmbedLayerNormalization (BERT's embedding block): s = word_embedding[input_ids] +
     * position_embedding[position_ids, default 0 .. seq-1] (+ segment_embedding[segment_ids]), then
     * layer norm over the hidden dimension (epsilon default 1e-12) · gamma + beta. Outputs: the
     * result [batch, seq, hidden], mask_index [batch] int32 (the number of ones in each row of
     * mask; zeros without a mask) and, optionally, s.
     */
    private static Tensor[] embedLayerNorm(OnnxNode n) {
        Tensor ids = n.required(0);
        Tensor segments = n.input(1);
        Tensor words = n.required(2);
        Tensor positions = n.required(3);
        Tensor segmentTable = n.input(4);
        Tensor gamma = n.required(5);
        Tensor beta = n.input(6);
        Tensor mask = n.input(7);
        Tensor positionIds = n.input(8);
        if (ids.rank() != 2 || words.rank() != 2 || positions.rank() != 2 || positions.size(1) != words.size(1)) {
            throw n.error("input_ids " + ids.describe() + " must be [batch, seq], word_embedding " + words.describe()
                    + " and position_embedding " + positions.describe() + " [rows, hidden]");
        }
        if ((segments == null) != (segmentTable == null)) {
            throw n.error("segment_ids and segment_embedding come together");
        }
        long batch = ids.size(0);
        long seq = ids.size(1);
        if (positionIds == null && seq > positions.size(0)) {
            throw n.error("sequence length " + seq + " is beyond position_embedding " + positions.describe());
        }
        Tensor sum = Indexing.gather(words, ids, 0);
        sum = Elementwise.add(sum, positionIds == null ? positions.narrow(0, 0, seq) : Indexing.gather(positions, positionIds, 0));
        if (segments != null) {
            sum = Elementwise.add(sum, Indexing.gather(segmentTable, segments, 0));
        }
        Tensor[] out = new Tensor[3];
        out[0] = normalize(sum, gamma, beta, n.attrFloat("epsilon", SKIP_NORM_EPSILON), false);
        if (n.wantsOutput(1)) {
            if (mask != null && (mask.rank() != 2 || mask.size(0) != batch || mask.size(1) != seq)) {
                throw n.error("mask " + mask.describe() + " must be [" + batch + ", " + seq + "]");
            }
            out[1] = mask == null ? Tensor.zeros(DType.INT32, ids.device(), batch)
                    : mask.to(DType.INT64).sum(new int[] {1}).to(DType.INT32);
        }
        out[2] = sum;
        return out;
    }

    private static long[] keptDims(long[] dims, int from) {
        long[] d = dims.clone();
        for (int i = from; i < d.length; i++) {
            d[i] = 1;
        }
        return d;
    }

    // ------------------------------------------------------------------ matmul

    /** FusedMatMul: alpha · op(A) @ op(B), op transposing the last two dimensions when transA/transB. */
    private static Tensor[] fusedMatMul(OnnxNode n) {
        Tensor a = n.required(0);
        Tensor b = n.required(1);
        if (n.attrInt("transA", 0) != 0 && a.rank() >= 2) {
            a = a.transpose(a.rank() - 2, a.rank() - 1);
        }
        if (n.attrInt("transB", 0) != 0 && b.rank() >= 2) {
            b = b.transpose(b.rank() - 2, b.rank() - 1);
        }
        Tensor y = LinearAlgebra.matmul(a, b);
        double alpha = n.attrFloat("alpha", 1.0);
        return one(alpha == 1.0 ? y : Elementwise.mul(y, alpha));
    }

    /**
     * MatMulIntegerToFloat: (A - a_zero_point)(B - b_zero_point) · a_scale · b_scale (+ bias), the
     * integer product on the int8 GEMM of MatMulInteger (B's scale and zero point per tensor or per
     * column). Inputs: A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias.
     */
    private static Tensor[] matMulIntegerToFloat(OnnxNode n) {
        return one(integerToFloat(n, n.required(0), n.input(4), n.required(2), n.required(1), n.input(5), n.required(3),
                n.input(6)));
    }

    /**
     * DynamicQuantizeMatMul: A (float) quantized to uint8 as DynamicQuantizeLinear does (one scale
     * and zero point over the whole tensor), then as MatMulIntegerToFloat. Inputs: A, B, b_scale,
     * b_zero_point, bias.
     */
    private static Tensor[] dynamicQuantizeMatMul(OnnxNode n) {
        Tensor a = n.required(0);
        if (a.dtype() != DType.FLOAT32) {
            throw n.error("A must be float32, got " + a.describe());
        }
        Tensor[] q = Quantization.DYNAMIC_QUANTIZE_OP.callMulti(null, a);
        return one(integerToFloat(n, q[0], q[2], q[1], n.required(1), n.input(3), n.required(2), n.input(4)));
    }

    private static Tensor integerToFloat(OnnxNode n, Tensor a, Tensor aZero, Tensor aScale, Tensor b, Tensor bZero,
                                         Tensor bScale, Tensor bias) {
        if (aScale.numel() != 1) {
            throw n.error("a_scale " + aScale.describe() + " must hold one value");
        }
        long cols = b.rank() == 2 ? b.size(1) : -1;
        if (bScale.numel() != 1 && (bScale.rank() != 1 || bScale.size(0) != cols)) {
            throw n.error("b_scale " + bScale.describe() + " must hold one value or one per column of B " + b.describe());
        }
        OnnxNode integer = new OnnxNode(n.proto(), new Tensor[] {a, b, aZero, bZero}, n.opset(), null);
        Tensor acc = OnnxOps.entry("MatMulInteger").handler().run(integer)[0];
        Tensor scale = Elementwise.mul(bScale.to(DType.FLOAT32), aScale.to(DType.FLOAT32).reshape());
        Tensor y = Elementwise.mul(acc.to(DType.FLOAT32), scale);
        return bias == null ? y : Elementwise.add(y, bias);
    }

    // ------------------------------------------------------------------ attention

    /**
     * Attention (ONNX Runtime's BERT form): Q, K, V = input @ weights + bias, split by
     * qkv_hidden_sizes (default three equal parts), num_heads heads each; softmax(Q Kᵀ · scale +
     * mask + attention_bias) V with scale 1/sqrt(head size) by default. mask_index: [batch] key
     * lengths (right padding), [2·batch] end then start positions, [batch, total_seq] or
     * [batch, seq, total_seq] 0/1 (0 masked); masked scores get mask_filter_value (default -10000)
     * added, as ONNX Runtime does. unidirectional masks the future keys. Output [batch, seq, v hidden].
     */
    private static Tensor[] attention(OnnxNode n) {
        Tensor input = n.required(0);
        Tensor weights = n.required(1);
        Tensor bias = n.input(2);
        if (input.rank() != 3 || weights.rank() != 2 || weights.size(0) != input.size(2)) {
            throw n.error("input " + input.describe() + " must be [batch, seq, hidden] and weights " + weights.describe()
                    + " [hidden, q+k+v hidden]");
        }
        long heads = n.attrInt("num_heads", 0);
        long[] sizes = n.attrInts("qkv_hidden_sizes");
        long total = weights.size(1);
        if (sizes == null || sizes.length == 0) {
            if (total % 3 != 0) {
                throw n.error("weights " + weights.describe() + ": the q, k, v hidden sizes are not equal; give qkv_hidden_sizes");
            }
            sizes = new long[] {total / 3, total / 3, total / 3};
        }
        if (sizes.length != 3 || sizes[0] + sizes[1] + sizes[2] != total || sizes[0] != sizes[1]
                || sizes[0] % heads != 0 || sizes[2] % heads != 0) {
            throw n.error("qkv_hidden_sizes " + Arrays.toString(sizes) + " must sum to " + total
                    + " (weights " + weights.describe() + "), q and k equal, each divisible by num_heads " + heads);
        }
        if (bias != null && (bias.rank() != 1 || bias.size(0) != total)) {
            throw n.error("bias " + bias.describe() + " must be [" + total + "]");
        }
        Tensor qkv = LinearAlgebra.matmul(input, weights);
        if (bias != null) {
            qkv = Elementwise.add(qkv, bias);
        }
        long batch = input.size(0);
        long seq = input.size(1);
        Tensor q = qkv.narrow(2, 0, sizes[0]).reshape(batch, seq, heads, sizes[0] / heads);
        Tensor k = qkv.narrow(2, sizes[0], sizes[1]).reshape(batch, seq, heads, sizes[1] / heads);
        Tensor v = qkv.narrow(2, sizes[0] + sizes[1], sizes[2]).reshape(batch, seq, heads, sizes[2] / heads);
        Tensor mask = additiveMask(n, n.input(3), n.input(5), batch, heads, seq, seq, n.attrInt("unidirectional", 0) != 0);
        return one(sdpa(n, q, k, v, mask).reshape(batch, seq, sizes[2]));
    }

    /**
     * MultiHeadAttention: query [batch, seq, hidden], key [batch, kv_seq, hidden], value
     * [batch, kv_seq, v_hidden], an optional packed bias [hidden + hidden + v_hidden],
     * key_padding_mask ([batch] lengths, [batch, kv_seq] or [batch, seq, kv_seq] 0/1), attention_bias
     * [batch or 1, heads or 1, seq, kv_seq]; otherwise as Attention.
     */
    private static Tensor[] multiHeadAttention(OnnxNode n) {
        Tensor query = n.required(0);
        Tensor key = n.required(1);
        Tensor value = n.required(2);
        Tensor bias = n.input(3);
        long heads = n.attrInt("num_heads", 0);
        if (query.rank() != 3 || key.rank() != 3 || value.rank() != 3 || key.size(0) != query.size(0)
                || value.size(0) != query.size(0) || key.size(1) != value.size(1) || key.size(2) != query.size(2)
                || query.size(2) % heads != 0 || value.size(2) % heads != 0) {
            throw n.error("query " + query.describe() + ", key " + key.describe() + ", value " + value.describe()
                    + " must be [batch, seq, hidden], [batch, kv_seq, hidden], [batch, kv_seq, v_hidden] with hidden and"
                    + " v_hidden divisible by num_heads " + heads + " (the 4-d and packed forms are not supported)");
        }
        long hidden = query.size(2);
        long vHidden = value.size(2);
        if (bias != null) {
            if (bias.rank() != 1 || bias.size(0) != 2 * hidden + vHidden) {
                throw n.error("bias " + bias.describe() + " must be [" + (2 * hidden + vHidden) + "]");
            }
            query = Elementwise.add(query, bias.narrow(0, 0, hidden));
            key = Elementwise.add(key, bias.narrow(0, hidden, hidden));
            value = Elementwise.add(value, bias.narrow(0, 2 * hidden, vHidden));
        }
        long batch = query.size(0);
        long seq = query.size(1);
        long kvSeq = key.size(1);
        Tensor q = query.reshape(batch, seq, heads, hidden / heads);
        Tensor k = key.reshape(batch, kvSeq, heads, hidden / heads);
        Tensor v = value.reshape(batch, kvSeq, heads, vHidden / heads);
        Tensor mask = additiveMask(n, n.input(4), n.input(5), batch, heads, seq, kvSeq, n.attrInt("unidirectional", 0) != 0);
        return one(sdpa(n, q, k, v, mask).reshape(batch, seq, vHidden));
    }

    /** softmax(q kᵀ · scale + mask) v on [batch, seq, heads, dim] operands. */
    private static Tensor sdpa(OnnxNode n, Tensor q, Tensor k, Tensor v, Tensor mask) {
        double scale = n.attrFloat("scale", 0);
        Attention.Options options = Attention.Options.builder().layout(Attention.Layout.BSHD)
                .scale(scale == 0 ? 1.0 / Math.sqrt(q.size(3)) : scale).build();
        return Attention.scaledDotProductAttention(q, k, v, mask, options);
    }

    /**
     * The float32 mask added to the scaled scores, broadcastable to [batch, heads, seq, keys], or null
     * when there is nothing to mask: mask_filter_value where mask_index (or key_padding_mask) masks a
     * key or unidirectional hides a future one, plus attention_bias.
     */
    private static Tensor additiveMask(OnnxNode n, Tensor maskIndex, Tensor attentionBias, long batch, long heads, long seq,
                                       long keys, boolean causal) {
        double filter = n.attrFloat("mask_filter_value", MASK_FILTER_VALUE);
        Tensor mask = null;
        if (maskIndex != null || causal) {
            int b = Math.toIntExact(batch);
            int s = Math.toIntExact(seq);
            int t = Math.toIntExact(keys);
            boolean perQuery = causal || maskIndex != null && maskIndex.rank() == 3;
            int rows = perQuery ? s : 1;
            float[] m = new float[b * rows * t];
            long[] given = maskIndex == null ? null : maskIndex.toLongArray();
            long[] dims = maskIndex == null ? null : maskIndex.dims();
            if (maskIndex != null && !(maskIndex.rank() == 1 && (dims[0] == batch || dims[0] == 2 * batch)
                    || maskIndex.rank() == 2 && dims[0] == batch && dims[1] == keys
                    || maskIndex.rank() == 3 && dims[0] == batch && dims[1] == seq && dims[2] == keys)) {
                throw n.error("mask " + maskIndex.describe() + " must be [" + batch + "], [" + 2 * batch + "], ["
                        + batch + ", " + keys + "] or [" + batch + ", " + seq + ", " + keys + "]");
            }
            for (int bi = 0; bi < b; bi++) {
                for (int i = 0; i < rows; i++) {
                    for (int j = 0; j < t; j++) {
                        boolean masked = causal && j > i + (t - s);
                        if (given != null) {
                            masked |= switch (maskIndex.rank()) {
                                case 1 -> j >= given[bi] || dims[0] == 2 * batch && j < given[b + bi];
                                case 2 -> given[bi * t + j] == 0;
                                default -> given[(bi * s + i) * t + j] == 0;
                            };
                        }
                        m[(bi * rows + i) * t + j] = masked ? (float) filter : 0f;
                    }
                }
            }
            mask = Tensor.of(m, maskIndex != null ? maskIndex.device() : n.required(0).device(), batch, 1, rows, keys);
        }
        if (attentionBias != null) {
            if (attentionBias.rank() != 4) {
                throw n.error("attention_bias " + attentionBias.describe() + " must be [batch or 1, heads or 1, seq, keys]");
            }
            Tensor ab = attentionBias.to(DType.FLOAT32);
            mask = mask == null ? ab : Elementwise.add(mask, ab);
        }
        return mask;
    }

    // ------------------------------------------------------------------ rotary

    /**
     * RotaryEmbedding (com.microsoft): input [batch, seq, hidden] or [batch, heads, seq, head],
     * position_ids [batch, seq] or [1] (a start offset: positions offset .. offset + seq - 1),
     * cos_cache and sin_cache [max_position, rotary_dim / 2]; interleaved, num_heads (inferred from
     * the cache width when 0), rotary_embedding_dim. Runs the default-domain handler (opset 23),
     * whose inputs come in another order.
     */
    private static Tensor[] rotaryEmbedding(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor pos = n.required(1);
        Tensor cos = n.required(2);
        Tensor sin = n.required(3);
        if (cos.rank() != 2 || sin.rank() != 2 || !Arrays.equals(cos.dims(), sin.dims())) {
            throw n.error("cos_cache " + cos.describe() + " and sin_cache " + sin.describe() + " must both be [max_position, rotary_dim / 2]");
        }
        long batch = x.size(0);
        long seq = x.rank() == 4 ? x.size(2) : x.size(1);
        if (pos.numel() == 1 && pos.rank() <= 1) {
            long start = (long) pos.item();
            pos = Tensor.arange(start, start + seq, 1, DType.INT64, x.device()).reshape(1, seq).expand(batch, seq);
        } else if (pos.rank() != 2 || pos.size(0) != batch || pos.size(1) != seq) {
            throw n.error("position_ids " + pos.describe() + " must be [1] or [" + batch + ", " + seq + "]");
        }
        Tensor x4;
        if (x.rank() == 4) {
            x4 = x;
        } else if (x.rank() == 3) {
            long heads = n.attrInt("num_heads", 0);
            if (heads <= 0) {
                long headSize = n.attrInt("rotary_embedding_dim", 0) > 0 ? -1 : 2 * cos.size(1);
                if (headSize <= 0 || x.size(2) % headSize != 0) {
                    throw n.error("num_heads is needed for input " + x.describe() + " with rotary_embedding_dim set");
                }
                heads = x.size(2) / headSize;
            }
            if (x.size(2) % heads != 0) {
                throw n.error("input " + x.describe() + ": hidden size not divisible by num_heads " + heads);
            }
            x4 = x.reshape(batch, seq, heads, x.size(2) / heads).permute(0, 2, 1, 3);
        } else {
            throw n.error("input " + x.describe() + " must be 3-d or 4-d");
        }
        OnnxNode standard = new OnnxNode(n.proto(), new Tensor[] {x4, cos, sin, pos}, 23, null);
        Tensor y = OnnxOps.rotaryEmbedding(standard)[0];
        return one(x.rank() == 4 ? y : y.permute(0, 2, 1, 3).reshape(x.dims()));
    }
}
