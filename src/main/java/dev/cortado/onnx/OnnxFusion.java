package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.graph.FusedElementwise;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.quant.Int8Gemm;
import dev.cortado.quant.PackedInt8Matrix;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Load-time rewrites of an imported graph into Cortado's fused ops: what the exporters write out
 * as chains of small ops, each a full pass over memory (and an Erf the importer composes in
 * float64), becomes one node with one kernel. The rewritten nodes are in the private domain
 * {@value #DOMAIN} and carry their handler (a closure over what the match found: the epsilon,
 * the scale, a packed weight); {@link OnnxModel} runs them instead of the table's.
 *
 * <ul>
 *   <li><b>GELU</b> (the erf form as torch exports it): {@code x * (1 + Erf(x / sqrt 2)) * 0.5} in
 *       either association of the two Muls, with {@code Div(x, sqrt 2)} or {@code Mul(x, 1 / sqrt 2)},
 *       becomes one GELU pass ({@link #biasGelu}: on the CPU in float32 the fused-elementwise
 *       kernel's vectorized erf GELU); when x is {@code Add(h, bias)} (a constant vector) read only
 *       by the GELU, the Add joins the same pass.</li>
 *   <li><b>LayerNorm</b> written out over the last axis: {@code ReduceMean -> Sub -> Pow 2 (or
 *       Mul d d) -> ReduceMean -> Add eps -> Sqrt -> Div}, then optionally {@code Mul gamma} and
 *       {@code Add beta} (constant vectors), becomes {@link Normalization#layerNorm}.</li>
 *   <li><b>Attention</b>: {@code MatMul(q, kT) -> Div c | Mul c (scalar constant, optional) -> Add
 *       mask (optional) -> Softmax (last axis) -> MatMul(., v)} on rank-4 operands becomes
 *       {@link Attention#scaledDotProductAttention} with the additive mask (the BERT mask
 *       {@code [B, 1, 1, L]} broadcasts) and scale {@code 1 / c} (or {@code c}); kT is read
 *       through its strides (the exported Transpose is a view).</li>
 *   <li><b>Dense layers</b>: {@code Add(MatMul(x, w), bias)} with a constant matrix w and
 *       vector bias becomes one GEMM with the bias as its C ({@link #matMulBias}).</li>
 *   <li><b>MatMulInteger with a constant b</b> (the dynamically quantized graphs' weights): b is
 *       packed for the int8 GEMM once, here, and shared by every run and thread, instead of on
 *       every run; the dequantization the quantizer writes after it ({@code Cast} to float,
 *       {@code Mul} by the scale, optionally {@code Add} a bias vector) joins the GEMM's float32
 *       epilogue, and so does a GELU (the pattern above) that reads only its result.</li>
 *   <li><b>Conv with a constant float32 weight</b> (CPU): its weight is packed for the DIRECT_NHWC
 *       or Winograd kernel once per input geometry (channels and image size, at the first run of
 *       each; at most {@value PackedConvWeights#MAX_GEOMETRIES}) and shared by every run and
 *       thread ({@link PackedConvWeights}), instead of being packed or transformed at every
 *       call; where the kernel AUTO picks has no packed layout it runs as Conv does.</li>
 * </ul>
 *
 * <p>A chain is only fused when every intermediate value has exactly the one consumer the
 * pattern gives it (it is not a graph output and no subgraph reads it) and the constants are
 * what the pattern needs; otherwise the nodes stay as they are. Nodes left without a consumer by
 * a fusion are removed. The original {@code ModelProto} is not changed.
 */
final class OnnxFusion {
    private OnnxFusion() {
    }

    /** The domain of the fused nodes (never a model's own: the importer refuses unknown domains). */
    static final String DOMAIN = "dev.cortado.fused";

    /**
     * The rewritten main graph, the handler of each fused node, and what the handlers hold that
     * the model must free when it closes (packed weights).
     */
    record Result(GraphProto graph, Map<NodeProto, OnnxOps.Handler> handlers, List<AutoCloseable> resources) {
    }

    /**
     * Rewrites {@code graph}. {@code constants} are its initializers and Constant outputs;
     * {@code overridable} the names a caller may feed instead (initializers that are also graph
     * inputs: not constants for the rewrite); {@code opset} the default-domain opset.
     */
    static Result apply(GraphProto graph, Map<String, Tensor> constants, Set<String> overridable, int opset) {
        Rewrite r = new Rewrite(graph, constants, overridable, opset);
        r.run();
        GraphProto rewritten = r.result(); // builds the handlers
        return new Result(rewritten, r.handlers, r.resources);
    }

    /** One rewrite of one graph. */
    private static final class Rewrite {
        final GraphProto graph;
        final Map<String, Tensor> constants;
        final Set<String> overridable;
        final int opset;
        final Map<String, NodeProto> producer = new HashMap<>();
        final Map<String, Integer> uses = new HashMap<>();
        final Map<String, List<NodeProto>> readers = new HashMap<>();
        /** Original node -> its replacement (a fused node) or null for a removed node. */
        final Map<NodeProto, NodeProto> replaced = new IdentityHashMap<>();
        final Map<NodeProto, OnnxOps.Handler> handlers = new IdentityHashMap<>();
        final List<AutoCloseable> resources = new ArrayList<>();
        int fusedCount;

        Rewrite(GraphProto graph, Map<String, Tensor> constants, Set<String> overridable, int opset) {
            this.graph = graph;
            this.constants = constants;
            this.overridable = overridable;
            this.opset = opset;
            for (NodeProto n : graph.getNodeList()) {
                for (String out : n.getOutputList()) {
                    if (!out.isEmpty()) {
                        producer.put(out, n);
                    }
                }
                for (String in : n.getInputList()) {
                    uses.merge(in, 1, Integer::sum);
                    readers.computeIfAbsent(in, k -> new ArrayList<>()).add(n);
                }
                for (AttributeProto a : n.getAttributeList()) {
                    if (a.hasG()) {
                        countSubgraph(a.getG());
                    }
                    a.getGraphsList().forEach(this::countSubgraph);
                }
            }
            graph.getOutputList().forEach(o -> uses.merge(o.getName(), 1, Integer::sum));
        }

        /** A subgraph may read any outer name: each name it mentions counts as one more use. */
        private void countSubgraph(GraphProto g) {
            for (NodeProto n : g.getNodeList()) {
                n.getInputList().forEach(in -> uses.merge(in, 1, Integer::sum));
                for (AttributeProto a : n.getAttributeList()) {
                    if (a.hasG()) {
                        countSubgraph(a.getG());
                    }
                    a.getGraphsList().forEach(this::countSubgraph);
                }
            }
        }

        void run() {
            for (NodeProto n : graph.getNodeList()) {
                if (replaced.containsKey(n) || !OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)) {
                    continue;
                }
                switch (n.getOpType()) {
                    case "Mul" -> gelu(n);
                    case "Add" -> layerNorm(n);
                    case "MatMul" -> attention(n);
                    case "MatMulInteger" -> packedMatMulInteger(n);
                    case "Conv" -> packedConv(n);
                    default -> { }
                }
            }
            // then the dense layers' bias Adds (after GELU: a bias Add before a GELU joins the GELU
            // pass, cheaper than the GEMM's C), LayerNorms without beta (ending at the Mul by
            // gamma), then without either (at the Div): the longest chain is the one fused
            for (NodeProto n : graph.getNodeList()) {
                if (!replaced.containsKey(n) && n.getOpType().equals("MatMul")
                        && OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)) {
                    matMulBias(n);
                    if (!replaced.containsKey(n)) {
                        packedMatMul(n);
                    }
                }
            }
            for (String end : List.of("Mul", "Div")) {
                for (NodeProto n : graph.getNodeList()) {
                    if (!replaced.containsKey(n) && n.getOpType().equals(end)
                            && OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)) {
                        layerNorm(n);
                    }
                }
            }
        }

        GraphProto result() {
            if (replaced.isEmpty()) {
                return graph;
            }
            List<NodeProto> nodes = new ArrayList<>();
            for (NodeProto n : graph.getNodeList()) {
                if (!replaced.containsKey(n)) {
                    nodes.add(n);
                } else if (replaced.get(n) != null) {
                    NodeProto fused = replaced.get(n);
                    nodes.add(fused);
                    // built now, not at the match: a later match may still grow a fused node (a GELU
                    // joining the int8 GEMM's epilogue), and a weight is packed once
                    handlers.put(fused, handler(fused, this::constant, opset, resources));
                }
            }
            return graph.toBuilder().clearNode().addAllNode(nodes).build();
        }

        // -------------------------------------------------------------- matching helpers

        /** The node that produces {@code name} if it is of type {@code op}, not yet fused, and {@code name} has one use. */
        private NodeProto single(String name, String op) {
            NodeProto p = producer.get(name);
            if (p == null || replaced.containsKey(p) || !p.getOpType().equals(op)
                    || !OnnxOps.canonicalDomain(p.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)
                    || uses.getOrDefault(name, 0) != 1 || p.getOutputCount() != 1) {
                return null;
            }
            return p;
        }

        /** The one node that reads {@code name} if it is of type {@code op} and not yet fused, else null. */
        private NodeProto onlyReader(String name, String op) {
            List<NodeProto> r = readers.get(name);
            if (r == null || r.size() != 1 || uses.getOrDefault(name, 0) != 1) {
                return null;
            }
            NodeProto n = r.get(0);
            boolean ok = !replaced.containsKey(n) && n.getOpType().equals(op) && n.getOutputCount() == 1
                    && OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN);
            return ok ? n : null;
        }

        /** The value of a one-element floating constant {@code name}, or NaN. */
        private double scalar(String name) {
            Tensor t = constant(name);
            if (t == null || t.numel() != 1 || !t.dtype().isFloatingPoint()) {
                return Double.NaN;
            }
            return t.item();
        }

        private Tensor constant(String name) {
            return name == null || name.isEmpty() || overridable.contains(name) ? null : constants.get(name);
        }

        private static boolean near(double v, double want, double tol) {
            return Math.abs(v - want) <= tol * Math.abs(want);
        }

        /** The other input of a two-input node whose input {@code which} is {@code name}, or null. */
        private static String other(NodeProto n, String name) {
            if (n.getInputCount() != 2) {
                return null;
            }
            if (n.getInput(0).equals(name)) {
                return n.getInput(1);
            }
            return n.getInput(1).equals(name) ? n.getInput(0) : null;
        }

        /** Replaces the nodes {@code chain} (the last one is the anchor, whose outputs the fused node takes over). */
        private void fuse(List<NodeProto> chain, String op, List<String> inputs, List<AttributeProto> attrs) {
            NodeProto anchor = chain.get(chain.size() - 1);
            NodeProto fused = NodeProto.newBuilder().setOpType(op).setDomain(DOMAIN)
                    .setName("fused_" + op + "_" + fusedCount++ + (anchor.getName().isEmpty() ? "" : "_" + anchor.getName()))
                    .addAllInput(inputs).addAllOutput(anchor.getOutputList()).addAllAttribute(attrs).build();
            for (NodeProto n : chain) {
                replaced.put(n, null);
            }
            replaced.put(anchor, fused);
        }

        private static AttributeProto intAttr(String name, long v) {
            return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
        }

        // -------------------------------------------------------------- GELU

        /**
         * {@code a = Add(Erf(Div(x, sqrt 2) | Mul(x, 1/sqrt 2)), 1)} with x named {@code x}: the
         * nodes [scale, Erf, Add], or null.
         */
        private List<NodeProto> erfTerm(String a, String x) {
            NodeProto add = single(a, "Add");
            if (add == null) {
                return null;
            }
            for (String e : add.getInputList()) {
                NodeProto erf = single(e, "Erf");
                if (erf == null || !near(scalar(other(add, e)), 1, 0)) {
                    continue;
                }
                NodeProto scale = producer.get(erf.getInput(0));
                NodeProto s = scale == null ? null : single(erf.getInput(0), scale.getOpType());
                if (s == null || s.getInputCount() != 2 || !s.getInput(0).equals(x)) {
                    continue;
                }
                double c = scalar(s.getInput(1));
                boolean ok = s.getOpType().equals("Div") ? near(c, Math.sqrt(2), 1e-6)
                        : s.getOpType().equals("Mul") && near(c, Math.sqrt(0.5), 1e-6);
                if (ok) {
                    return List.of(s, erf, add);
                }
            }
            return null;
        }

        /** The GELU chain ending at Mul {@code y}: {@code Mul(Mul(x, a), 0.5)} or {@code Mul(Mul(x, 0.5), a)} (any operand order). */
        private void gelu(NodeProto y) {
            if (y.getInputCount() != 2) {
                return;
            }
            for (int i = 0; i < 2; i++) {
                String p = y.getInput(i);
                String q = y.getInput(1 - i);
                NodeProto inner = single(p, "Mul");
                if (inner == null) {
                    continue;
                }
                if (near(scalar(q), 0.5, 0)) {
                    // y = (x * a) * 0.5
                    for (int j = 0; j < 2; j++) {
                        String x = inner.getInput(j);
                        List<NodeProto> term = erfTerm(inner.getInput(1 - j), x);
                        if (term != null) {
                            fuseGelu(term, inner, y, x);
                            return;
                        }
                    }
                } else {
                    // y = (x * 0.5) * a
                    for (int j = 0; j < 2; j++) {
                        String x = inner.getInput(j);
                        if (!near(scalar(inner.getInput(1 - j)), 0.5, 0)) {
                            continue;
                        }
                        List<NodeProto> term = erfTerm(q, x);
                        if (term != null) {
                            fuseGelu(term, inner, y, x);
                            return;
                        }
                    }
                }
            }
        }

        private void fuseGelu(List<NodeProto> term, NodeProto inner, NodeProto y, String x) {
            List<NodeProto> chain = new ArrayList<>();
            // x from the int8 GEMM's float32 epilogue (MatMulIntegerToFloat, fused before: it comes
            // first in node order), read only by the GELU: the GELU joins that epilogue
            NodeProto source = producer.get(x);
            NodeProto gemm = source == null ? null : replaced.get(source);
            if (gemm != null && gemm.getOpType().equals("MatMulIntegerToFloat") && gemm.getOutput(0).equals(x)
                    && uses.getOrDefault(x, 0) == 2) {
                chain.addAll(term);
                chain.add(inner);
                chain.add(y);
                for (NodeProto n : chain) {
                    replaced.put(n, null);
                }
                replaced.put(source, gemm.toBuilder().clearOutput().addAllOutput(y.getOutputList())
                        .addAttribute(intAttr("activation", Activation.GELU.code())).build());
                return;
            }
            List<String> inputs = List.of(x);
            // x = Add(h, bias) read only by the GELU (the FFN's bias): one pass computes both
            NodeProto add = producer.get(x);
            if (add != null && !replaced.containsKey(add) && add.getOpType().equals("Add") && add.getInputCount() == 2
                    && OnnxOps.canonicalDomain(add.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)
                    && uses.getOrDefault(x, 0) == 2) {
                for (String in : add.getInputList()) {
                    String bias = other(add, in);
                    if (isVector(bias) && !isVector(in)) {
                        chain.add(add);
                        inputs = List.of(in, bias);
                        break;
                    }
                }
            }
            chain.addAll(term);
            chain.add(inner);
            chain.add(y);
            boolean biased = inputs.size() == 2;
            fuse(chain, biased ? "BiasGelu" : "Gelu", inputs, List.of());
            if (!biased) {
                uses.merge(x, -1, Integer::sum); // x fed the scale and one Mul, now the fused node only
            }
        }

        // -------------------------------------------------------------- LayerNorm

        /** Whether a ReduceMean node reduces exactly the last axis, keeping it. */
        private boolean meanOfLastAxis(NodeProto mean) {
            OnnxNode attrs = new OnnxNode(mean, new Tensor[0], opset, null);
            if (attrs.attrInt("keepdims", 1) != 1) {
                return false;
            }
            long[] axes;
            if (mean.getInputCount() > 1 && !mean.getInput(1).isEmpty()) {
                Tensor t = constant(mean.getInput(1));
                axes = t == null ? null : t.toLongArray();
            } else {
                axes = attrs.attrInts("axes");
            }
            return axes != null && axes.length == 1 && axes[0] == -1;
        }

        /**
         * LayerNorm ending at {@code end}: a Div (no affine part), a Mul by gamma, or an Add of beta
         * after the Mul by gamma.
         */
        private void layerNorm(NodeProto end) {
            List<NodeProto> tail = new ArrayList<>();
            String gamma = null;
            String beta = null;
            NodeProto div = end;
            if (end.getOpType().equals("Add")) {
                NodeProto mul = null;
                for (String in : end.getInputList()) {
                    NodeProto m = single(in, "Mul");
                    String b = other(end, in);
                    if (m != null && b != null && isVector(b)) {
                        mul = m;
                        beta = b;
                        break;
                    }
                }
                if (mul == null) {
                    return;
                }
                tail.add(mul);
                div = mul;
            }
            if (div.getOpType().equals("Mul")) {
                NodeProto d = null;
                for (String in : div.getInputList()) {
                    NodeProto c = single(in, "Div");
                    String g = other(div, in);
                    if (c != null && g != null && isVector(g)) {
                        d = c;
                        gamma = g;
                        break;
                    }
                }
                if (d == null) {
                    return;
                }
                div = d;
            }
            if (!div.getOpType().equals("Div") || div.getInputCount() != 2) {
                return;
            }
            String centered = div.getInput(0);
            NodeProto sqrt = single(div.getInput(1), "Sqrt");
            NodeProto sub = producer.get(centered);
            if (sqrt == null || sub == null || replaced.containsKey(sub) || !sub.getOpType().equals("Sub")
                    || uses.getOrDefault(centered, 0) < 2) {
                return;
            }
            NodeProto addEps = single(sqrt.getInput(0), "Add");
            if (addEps == null) {
                return;
            }
            NodeProto var = null;
            double eps = Double.NaN;
            for (String in : addEps.getInputList()) {
                NodeProto m = single(in, "ReduceMean");
                double e = scalar(other(addEps, in));
                if (m != null && e >= 0) {
                    var = m;
                    eps = e;
                    break;
                }
            }
            if (var == null || !meanOfLastAxis(var)) {
                return;
            }
            NodeProto square = producer.get(var.getInput(0));
            if (square == null || replaced.containsKey(square) || uses.getOrDefault(var.getInput(0), 0) != 1) {
                return;
            }
            boolean squares = square.getOpType().equals("Pow") && square.getInput(0).equals(centered)
                    && scalar(square.getInput(1)) == 2
                    || square.getOpType().equals("Mul") && square.getInput(0).equals(centered)
                    && square.getInput(1).equals(centered);
            if (!squares) {
                return;
            }
            // d feeds the square and the Div, nothing else (Mul(d, d) reads it twice)
            if (uses.getOrDefault(centered, 0) != (square.getOpType().equals("Mul") ? 3 : 2)) {
                return;
            }
            String x = sub.getInput(0);
            NodeProto mean = single(sub.getInput(1), "ReduceMean");
            if (mean == null || !mean.getInput(0).equals(x) || !meanOfLastAxis(mean)) {
                return;
            }
            List<NodeProto> chain = new ArrayList<>(List.of(mean, sub, square, var, addEps, sqrt, div));
            for (int i = tail.size() - 1; i >= 0; i--) {
                chain.add(tail.get(i));
            }
            if (end != div && !chain.contains(end)) {
                chain.add(end);
            }
            List<String> inputs = new ArrayList<>(List.of(x));
            if (gamma != null) {
                inputs.add(gamma);
            }
            if (beta != null) {
                inputs.add(beta);
            }
            fuse(chain, "LayerNorm", inputs, List.of(doubleAttr("epsilon", eps), intAttr("gamma", gamma != null ? 1 : 0),
                    intAttr("beta", beta != null ? 1 : 0)));
            uses.merge(x, -1, Integer::sum); // x fed ReduceMean and Sub; now the fused node only
        }

        /** A constant of rank 1 (a per-feature gamma or beta). */
        private boolean isVector(String name) {
            Tensor t = constant(name);
            return t != null && t.rank() == 1 && t.dtype().isFloatingPoint();
        }

        // -------------------------------------------------------------- attention

        /** Attention ending at {@code out = MatMul(probs, v)}. */
        private void attention(NodeProto out) {
            if (out.getInputCount() != 2) {
                return;
            }
            NodeProto softmax = single(out.getInput(0), "Softmax");
            if (softmax == null) {
                return;
            }
            long axis = new OnnxNode(softmax, new Tensor[0], opset, null).attrInt("axis", opset >= 13 ? -1 : 1);
            if (axis != -1 && axis != 3) {
                return; // 3: the last axis of the rank-4 scores, checked when it runs
            }
            List<NodeProto> chain = new ArrayList<>();
            String scores = softmax.getInput(0);
            String mask = null;
            NodeProto add = single(scores, "Add");
            if (add != null) {
                // the scaled scores are the operand a MatMul (or a Div/Mul of one) produces
                for (String in : add.getInputList()) {
                    if (scoresOf(in)) {
                        mask = other(add, in);
                        scores = in;
                        break;
                    }
                }
                if (mask == null) {
                    return;
                }
                chain.add(add);
            }
            double scale = 1;
            NodeProto scaleNode = producer.get(scores);
            if (scaleNode != null && (scaleNode.getOpType().equals("Div") || scaleNode.getOpType().equals("Mul"))) {
                NodeProto s = single(scores, scaleNode.getOpType());
                if (s == null || s.getInputCount() != 2) {
                    return;
                }
                double c = scalar(s.getInput(1));
                if (!(c > 0) || Double.isInfinite(c)) {
                    return;
                }
                scale = s.getOpType().equals("Div") ? 1 / c : c;
                chain.add(0, s);
                scores = s.getInput(0);
            }
            NodeProto qk = single(scores, "MatMul");
            if (qk == null || qk.getInputCount() != 2) {
                return;
            }
            chain.add(0, qk);
            chain.add(softmax);
            chain.add(out);
            List<String> inputs = new ArrayList<>(List.of(qk.getInput(0), qk.getInput(1), out.getInput(1)));
            if (mask != null) {
                inputs.add(mask);
            }
            fuse(chain, "Attention", inputs, List.of(doubleAttr("scale", scale), intAttr("axis", axis)));
        }

        /** Whether {@code name} is made by a MatMul, or by a Div or Mul of a MatMul's output by a constant. */
        private boolean scoresOf(String name) {
            NodeProto p = producer.get(name);
            if (p == null) {
                return false;
            }
            if (p.getOpType().equals("MatMul")) {
                return true;
            }
            if ((p.getOpType().equals("Div") || p.getOpType().equals("Mul")) && p.getInputCount() == 2) {
                NodeProto m = producer.get(p.getInput(0));
                return m != null && m.getOpType().equals("MatMul") && !Double.isNaN(scalar(p.getInput(1)));
            }
            return false;
        }

        // -------------------------------------------------------------- dense layers

        /** {@code Add(MatMul(x, w), bias)}, w a constant matrix and bias a constant vector: one GEMM with the bias as C. */
        private void matMulBias(NodeProto mm) {
            if (mm.getInputCount() != 2 || mm.getOutputCount() != 1) {
                return;
            }
            Tensor w = constant(mm.getInput(1));
            if (w == null || w.rank() != 2 || !w.dtype().isFloatingPoint()) {
                return;
            }
            NodeProto add = onlyReader(mm.getOutput(0), "Add");
            String bias = add == null ? null : other(add, mm.getOutput(0));
            if (bias == null || bias.equals(mm.getOutput(0)) || !isVector(bias) || constant(bias).numel() != w.size(1)) {
                return;
            }
            fuse(List.of(mm, add), "MatMulBias", List.of(mm.getInput(0), mm.getInput(1), bias), List.of());
        }

        // -------------------------------------------------------------- packed weights

        /** MatMul by a float32 constant matrix on the CPU (no bias Add to take): its weight packed once. */
        private void packedMatMul(NodeProto mm) {
            Tensor w = mm.getInputCount() == 2 && mm.getOutputCount() == 1 ? constant(mm.getInput(1)) : null;
            if (w == null || !PackedMatMulWeights.packable(w)) {
                return;
            }
            fuse(List.of(mm), "PackedMatMul", mm.getInputList(), List.of());
        }

        /** Conv whose weight is a float32 constant on the CPU: packed per input geometry by its handler. */
        private void packedConv(NodeProto n) {
            Tensor w = n.getInputCount() < 2 ? null : constant(n.getInput(1));
            if (w == null || w.dtype() != DType.FLOAT32 || w.device().type() != DeviceType.CPU) {
                return;
            }
            fuse(List.of(n), "PackedConv", n.getInputList(), n.getAttributeList()); // a fed bias is read at run time
        }

        // -------------------------------------------------------------- int8 weights

        /** MatMulInteger whose b (and b zero point) are constants: b packed once, now. */
        private void packedMatMulInteger(NodeProto n) {
            if (n.getInputCount() < 2 || constant(n.getInput(1)) == null) {
                return;
            }
            boolean zeroPoint = n.getInputCount() > 3 && !n.getInput(3).isEmpty();
            if (zeroPoint && constant(n.getInput(3)) == null) {
                return;
            }
            Tensor[] in = new Tensor[n.getInputCount()];
            in[1] = constant(n.getInput(1));
            if (zeroPoint) {
                in[3] = constant(n.getInput(3));
            }
            if (in[1].rank() != 2 || in[1].dtype() != DType.INT8 && in[1].dtype() != DType.UINT8) {
                return; // the table's handler reports it when it runs
            }
            // the dequantization after it: Cast to float, Mul by a scale, optionally Add a bias vector
            NodeProto cast = onlyReader(n.getOutput(0), "Cast");
            boolean toFloat = cast != null
                    && new OnnxNode(cast, new Tensor[0], opset, null).attrInt("to", 0) == OnnxTensors.FLOAT;
            NodeProto mul = toFloat ? onlyReader(cast.getOutput(0), "Mul") : null;
            String scale = mul == null ? null : other(mul, cast.getOutput(0));
            if (mul == null || scale == null || scale.equals(cast.getOutput(0))) {
                fuse(List.of(n), "MatMulInteger", n.getInputList(), n.getAttributeList());
                return;
            }
            List<NodeProto> chain = new ArrayList<>(List.of(n, cast, mul));
            List<String> inputs = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                inputs.add(i < n.getInputCount() ? n.getInput(i) : "");
            }
            inputs.add(scale);
            NodeProto add = onlyReader(mul.getOutput(0), "Add");
            String bias = add == null ? null : other(add, mul.getOutput(0));
            boolean biased = bias != null && isVector(bias) && !bias.equals(mul.getOutput(0));
            if (biased) {
                chain.add(add);
                inputs.add(bias);
            }
            fuse(chain, "MatMulIntegerToFloat", inputs, List.of());
        }
    }

    /**
     * A double attribute as a fused node carries it: the float value (for printing) and the exact
     * bits ({@code <name>_bits}), which {@link #doubleOf} reads.
     */
    private static AttributeProto doubleAttr(String name, double v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.FLOAT).setF((float) v)
                .setI(Double.doubleToRawLongBits(v)).build();
    }

    private static double doubleOf(NodeProto node, String name) {
        for (AttributeProto a : node.getAttributeList()) {
            if (a.getName().equals(name)) {
                return Double.longBitsToDouble(a.getI());
            }
        }
        throw new OnnxImportException("fused node '" + node.getName() + "' has no attribute " + name);
    }

    /**
     * The handler of a fused node ({@link #DOMAIN}): everything it needs is in the node (its
     * attributes and inputs) and in the graph's constants ({@code constant}: name -> tensor, null
     * for a name that is not a constant), so a fused graph saved and loaded again
     * ({@link PlanFile}) gets the handlers this rewrite made. A packed int8 weight is packed here,
     * once, and added to {@code resources}, which the model frees.
     *
     * @throws OnnxImportException for an op of the domain this version does not know
     */
    static OnnxOps.Handler handler(NodeProto fused, java.util.function.Function<String, Tensor> constant, int opset,
                                   List<AutoCloseable> resources) {
        OnnxNode at = new OnnxNode(fused, new Tensor[0], opset, null);
        switch (fused.getOpType()) {
            case "Gelu":
                return n -> OnnxOps.one(biasGelu(n.required(0), null));
            case "BiasGelu":
                return n -> OnnxOps.one(biasGelu(n.required(0), n.required(1)));
            case "LayerNorm": {
                double epsilon = doubleOf(fused, "epsilon");
                boolean hasGamma = at.attrInt("gamma", 0) == 1;
                boolean hasBeta = at.attrInt("beta", 0) == 1;
                return n -> {
                    Tensor g = hasGamma ? n.required(1) : null;
                    Tensor b = hasBeta ? n.required(hasGamma ? 2 : 1) : null;
                    return OnnxOps.one(layerNormLastAxis(n.required(0), g, b, epsilon));
                };
            }
            case "Attention": {
                double scale = doubleOf(fused, "scale");
                long axis = at.attrInt("axis", -1);
                boolean masked = fused.getInputCount() > 3;
                return n -> OnnxOps.one(attention(n.required(0), n.required(1), n.required(2),
                        masked ? n.required(3) : null, scale, axis));
            }
            case "MatMulBias": {
                PackedMatMulWeights packed = PackedMatMulWeights.of(constant.apply(fused.getInput(1)), resources);
                return packed == null ? n -> OnnxOps.one(matMulBias(n.required(0), n.required(1), n.required(2)))
                        : n -> OnnxOps.one(packed.matmul(n.required(0), n.required(1), n.required(2)));
            }
            case "PackedMatMul": {
                PackedMatMulWeights packed = PackedMatMulWeights.of(constant.apply(fused.getInput(1)), resources);
                return packed == null ? n -> OnnxOps.one(LinearAlgebra.matmul(n.required(0), n.required(1)))
                        : n -> OnnxOps.one(packed.matmul(n.required(0), n.required(1), null));
            }
            case "PackedConv": {
                Tensor w = constant.apply(fused.getInput(1));
                if (w == null) {
                    throw new OnnxImportException("fused node '" + fused.getName() + "': its weight '" + fused.getInput(1)
                            + "' is not a constant");
                }
                PackedConvWeights packed = new PackedConvWeights(w);
                resources.add(packed);
                return n -> OnnxOps.one(packed.conv(n, n.required(0), n.input(2)));
            }
            case "MatMulInteger": {
                PackedInt8Matrix packed = pack(fused, constant, opset, resources);
                return n -> OnnxOps.one(OnnxOps.matMulInteger(n, packed));
            }
            case "MatMulIntegerToFloat": {
                PackedInt8Matrix packed = pack(fused, constant, opset, resources);
                boolean biased = fused.getInputCount() > 5;
                Activation act = Activation.NONE;
                for (AttributeProto a : fused.getAttributeList()) {
                    if (a.getName().equals("activation")) {
                        act = a.getI() == Activation.GELU.code() ? Activation.GELU : Activation.NONE;
                    }
                }
                Activation activation = act;
                return n -> OnnxOps.one(integerToFloat(n, packed, n.required(4), biased ? n.required(5) : null, activation));
            }
            default:
                throw new OnnxImportException("fused op " + DOMAIN + "." + fused.getOpType() + " (node '"
                        + fused.getName() + "') is not known to this version of the importer");
        }
    }

    /** b (input 1) and its zero point (input 3, optional) of a MatMulInteger-like node, packed for the int8 GEMM. */
    private static PackedInt8Matrix pack(NodeProto fused, java.util.function.Function<String, Tensor> constant, int opset,
                                         List<AutoCloseable> resources) {
        Tensor[] in = new Tensor[Math.max(4, fused.getInputCount())];
        in[1] = constant.apply(fused.getInput(1));
        if (fused.getInputCount() > 3 && !fused.getInput(3).isEmpty()) {
            in[3] = constant.apply(fused.getInput(3));
        }
        if (in[1] == null) {
            throw new OnnxImportException("fused node '" + fused.getName() + "': its int8 weight '" + fused.getInput(1)
                    + "' is not a constant");
        }
        OnnxNode at = new OnnxNode(fused, in, opset, null);
        PackedInt8Matrix packed;
        try (Scope scope = Scope.open()) {
            // the temporaries of the packing are freed here; the packed tensors belong to the
            // packed matrix, which the model closes
            packed = OnnxOps.packedRight(at, in[1], in[3], null);
            for (Tensor t : new Tensor[] {packed.packed(), packed.colsum(), packed.zeroPoint(), packed.scale()}) {
                if (t != null && scope.owns(t)) {
                    scope.keep(t);
                }
            }
        }
        resources.add(packed);
        return packed;
    }

    /**
     * A float32 weight matrix w {@code [k, n]} on the CPU, packed once for the register-tile GEMM
     * that the direct NHWC convolution runs ({@code native/cpu/conv_fast.cpp}, the 12 x 32
     * AVX-512 tile of microkernel.h): {@code x @ w + bias} over the rows of x is a 1-d NHWC
     * convolution of width 1 ([1, rows, k] * w^T [n, k, 1]), whose packed layout does not depend on
     * the number of rows, so one packing serves every batch and sequence length. OpenBLAS packs
     * both operands on every call; at the 128-row GEMMs of a BERT-size model the packed form measured
     * 99-105 against 79-92 GFLOP/s on one Zen 4 core (docs/onnx.md). The packing happens at the
     * first run, not at load, so that a model loads as fast as before (a saved plan maps its
     * weights, PlanFileTest); the packed copy lives as long as the model, next to w.
     */
    static final class PackedMatMulWeights implements AutoCloseable {
        private static final ConvOptions OPTIONS = ConvOptions.builder().layout(DataLayout.NHWC)
                .algorithm(Convolution.Algorithm.DIRECT_NHWC).build();
        private final Tensor w;
        private final long k;
        private final long n;
        /** The packed weight once made; {@code Optional.empty()} when this CPU's kernel has no packed layout. */
        private volatile java.util.Optional<Tensor> packed;
        private boolean closed;

        private PackedMatMulWeights(Tensor w) {
            this.w = w;
            this.k = w.size(0);
            this.n = w.size(1);
        }

        static boolean packable(Tensor w) {
            return w != null && w.rank() == 2 && w.dtype() == DType.FLOAT32 && w.device().type() == DeviceType.CPU
                    && w.size(0) > 0 && w.size(1) > 0;
        }

        /** The packer of {@code w} (added to {@code resources}), or null when w is no float32 CPU matrix. */
        static PackedMatMulWeights of(Tensor w, List<AutoCloseable> resources) {
            if (!packable(w)) {
                return null;
            }
            PackedMatMulWeights p = new PackedMatMulWeights(w);
            resources.add(p);
            return p;
        }

        private Tensor packed() {
            java.util.Optional<Tensor> have = packed;
            if (have == null) {
                synchronized (this) {
                    have = packed;
                    if (have == null) {
                        if (closed) {
                            throw new IllegalStateException("the ONNX model is closed");
                        }
                        try (Scope detached = Scope.detached();
                             Tensor view = w.transpose(0, 1);
                             Tensor wt = view.contiguous();
                             Tensor kernel = wt.reshape(n, k, 1);
                             Tensor probe = Tensor.empty(DType.FLOAT32, Device.CPU, 0, 1, k)) {
                            have = java.util.Optional.ofNullable(Convolution.packWeight(probe, kernel, 1, OPTIONS));
                        }
                        packed = have;
                    }
                }
            }
            return have.orElse(null);
        }

        /**
         * {@code x @ w + bias}, {@code w} the matrix this packs (the node's constant input) and
         * {@code bias} {@code [n]} or null: the packed GEMM for float32 x {@code [..., k]} on the
         * CPU; anything else runs as the graph wrote it (MatMul, Add), with their checks.
         */
        Tensor matmul(Tensor x, Tensor w, Tensor bias) {
            boolean fits = x.rank() >= 1 && x.dtype() == DType.FLOAT32 && x.device().type() == DeviceType.CPU
                    && x.size(x.rank() - 1) == k && x.numel() > 0
                    && (bias == null || bias.dtype() == DType.FLOAT32 && bias.rank() == 1 && bias.numel() == n
                    && bias.device().type() == DeviceType.CPU);
            Tensor p = fits ? packed() : null;
            if (p == null) {
                return bias == null ? LinearAlgebra.matmul(x, w) : matMulBias(x, w, bias);
            }
            long rows = x.numel() / k;
            long[] d = x.dims();
            d[d.length - 1] = n;
            try (Tensor x3 = x.reshape(1, rows, k);
                 Tensor y = Convolution.CONV_PREPACKED_OP.call(new Convolution.PrepackedAttrs(1, OPTIONS,
                         new long[] {n, k, 1}), x3, p, bias)) {
                return y.reshape(d);
            }
        }

        /** Whether the weight has been packed (for tests). */
        boolean isPacked() {
            java.util.Optional<Tensor> have = packed;
            return have != null && have.isPresent();
        }

        @Override
        public synchronized void close() {
            closed = true;
            java.util.Optional<Tensor> have = packed;
            packed = java.util.Optional.empty();
            if (have != null) {
                have.ifPresent(Tensor::close);
            }
        }
    }

    /**
     * A constant Conv weight packed for the CPU convolution kernels ({@link Convolution#packWeight})
     * once per input geometry (the channels and image size: the padding of auto_pad depends on
     * it, and so may the kernel AUTO picks), on the first run that meets it; shared by every run
     * and thread. At most {@link #MAX_GEOMETRIES} geometries are kept (a server fed arbitrary
     * image sizes must not grow without bound): past them, and where the chosen kernel has no
     * packed layout, the node runs as Conv does.
     */
    static final class PackedConvWeights implements AutoCloseable {
        static final int MAX_GEOMETRIES = 16;
        private final Tensor weight;
        private final java.util.concurrent.ConcurrentHashMap<List<Long>, java.util.Optional<Tensor>> byGeometry =
                new java.util.concurrent.ConcurrentHashMap<>();
        private volatile boolean closed;

        PackedConvWeights(Tensor weight) {
            this.weight = weight;
        }

        Tensor conv(OnnxNode n, Tensor x, Tensor b) {
            ConvOptions o = OnnxOps.convOptions(n, x, weight);
            int nd = x.rank() - 2;
            Tensor packed = x.dtype() == DType.FLOAT32 && x.device().type() == DeviceType.CPU ? packedFor(x, nd, o) : null;
            if (packed == null) {
                return Convolution.CONV_OP.call(new Convolution.ConvAttrs(nd, o), x, weight, b);
            }
            return Convolution.CONV_PREPACKED_OP.call(new Convolution.PrepackedAttrs(nd, o, weight.dims()), x, packed, b);
        }

        private Tensor packedFor(Tensor x, int nd, ConvOptions o) {
            long[] dims = x.dims();
            List<Long> key = new ArrayList<>(dims.length - 1);
            for (int i = 1; i < dims.length; i++) {
                key.add(dims[i]);
            }
            java.util.Optional<Tensor> have = byGeometry.get(key);
            if (have == null) {
                if (byGeometry.size() >= MAX_GEOMETRIES || closed) {
                    return null;
                }
                have = byGeometry.computeIfAbsent(key, k -> {
                    long[] empty = dims.clone();
                    empty[0] = 0; // only the channels and the image size matter: an empty batch allocates nothing
                    try (Scope detached = Scope.detached(); Tensor probe = Tensor.empty(DType.FLOAT32, x.device(), empty)) {
                        return java.util.Optional.ofNullable(Convolution.packWeight(probe, weight, nd, o));
                    }
                });
            }
            return have.orElse(null);
        }

        /** How many geometries have a packed weight (for tests). */
        int packedGeometries() {
            return (int) byGeometry.values().stream().filter(java.util.Optional::isPresent).count();
        }

        @Override
        public void close() {
            closed = true;
            byGeometry.values().forEach(p -> p.ifPresent(Tensor::close));
            byGeometry.clear();
        }
    }

    // ------------------------------------------------------------------ the fused computations

    /** r2 = gelu(r0 + r1): x and the bias in one pass (the fused-elementwise interpreter). */
    private static final FusedElementwise.Program BIAS_GELU = FusedElementwise.program().load(0, 0).load(1, 1)
            .binary(NativeCodes.Binary.ADD, 2, 0, 1).unary(NativeCodes.Unary.GELU_ERF, 3, 2, 0, 0).store(0, 3).build();
    private static final FusedElementwise.Program GELU = FusedElementwise.program().load(0, 0)
            .unary(NativeCodes.Unary.GELU_ERF, 1, 0, 0, 0).store(0, 1).build();

    /**
     * The erf GELU of {@code x + bias} (bias null: of x). On the CPU in float32 one pass of the
     * fused-elementwise kernel, whose float32 GELU is vectorized (AVX2 / AVX-512, a few ulp of
     * the exact erf form); elsewhere the eager Add and GELU.
     */
    static Tensor biasGelu(Tensor x, Tensor bias) {
        boolean cpu = x.device().type() == DeviceType.CPU && x.dtype() == DType.FLOAT32
                && (bias == null || bias.dtype() == DType.FLOAT32 && bias.device().equals(x.device()));
        if (cpu && (bias == null || bias.rank() <= x.rank())) {
            return bias == null ? FusedElementwise.OP.call(GELU, x) : FusedElementwise.OP.call(BIAS_GELU, x, bias);
        }
        return Elementwise.gelu(bias == null ? x : Elementwise.add(x, bias));
    }

    /**
     * {@code x @ w + bias} for x {@code [..., k]}, w {@code [k, n]}, bias {@code [n]} of one
     * floating dtype: one GEMM over the rows of x with the bias as its C (written first, then
     * accumulated into), instead of a MatMul pass and an Add pass; otherwise the two ops.
     */
    static Tensor matMulBias(Tensor x, Tensor w, Tensor bias) {
        boolean fits = x.rank() >= 2 && w.rank() == 2 && bias.rank() == 1 && x.dtype().isFloatingPoint()
                && w.dtype() == x.dtype() && bias.dtype() == x.dtype() && x.size(x.rank() - 1) == w.size(0)
                && bias.numel() == w.size(1);
        if (!fits) {
            return Elementwise.add(LinearAlgebra.matmul(x, w), bias);
        }
        long[] d = x.dims();
        long k = w.size(0);
        long rows = 1;
        for (int i = 0; i < d.length - 1; i++) {
            rows *= d[i];
        }
        Tensor y = LinearAlgebra.gemm(x.reshape(rows, k), w, bias, 1, 1, false, false);
        d[d.length - 1] = w.size(1);
        return d.length == 2 ? y : y.reshape(d);
    }

    /**
     * MatMulInteger (inputs of {@code n}: a, -, a zero point) with b packed, then times
     * {@code scale} and plus {@code bias}: the int8 GEMM's float32 epilogue for a float32 scale
     * per tensor or per column (one element, or b's width along the last axis: the per-channel
     * weights of quantize_dynamic) and a float32 bias of b's width; otherwise the int32 product,
     * cast, Mul, Add. {@code activation} NONE, or GELU (the erf GELU a fused chain read from the
     * result: in the same epilogue, or after the fallback's Add).
     */
    static Tensor integerToFloat(OnnxNode n, PackedInt8Matrix b, Tensor scale, Tensor bias, Activation activation) {
        Tensor a = n.required(0);
        boolean fits = Int8Gemm.isColumnScale(scale, b.n()) && scale.device().equals(a.device())
                && (bias == null || bias.dtype() == DType.FLOAT32 && bias.rank() == 1 && bias.numel() == b.n()
                && bias.device().equals(a.device()));
        if (fits) {
            int za = OnnxOps.scalarZeroPoint(n, n.input(2), "a_zero_point");
            Tensor a8 = a;
            if (a.dtype() == DType.INT8) {
                a8 = OnnxOps.shifted(a, 128, DType.UINT8);
                za += 128;
            }
            return Int8Gemm.matmulIntegerScaled(a8, za, b, scale, bias, activation);
        }
        Tensor y = Elementwise.mul(OnnxOps.matMulInteger(n, b).to(DType.FLOAT32), scale);
        if (activation == Activation.GELU) {
            try (Tensor h = y) {
                return biasGelu(h, bias);
            }
        }
        return bias == null ? y : Elementwise.add(y, bias);
    }

    /**
     * LayerNorm over the last axis with optional gamma and beta (vectors): Cortado's fused kernel
     * when they match the normalized size and x's dtype, else the normalization then the
     * broadcasting Mul and Add the graph wrote.
     */
    static Tensor layerNormLastAxis(Tensor x, Tensor gamma, Tensor beta, double eps) {
        long features = x.rank() == 0 ? 1 : x.size(x.rank() - 1);
        boolean fits = x.rank() > 0 && x.dtype().isFloatingPoint()
                && (gamma == null || gamma.numel() == features && gamma.dtype() == x.dtype())
                && (beta == null || beta.numel() == features && beta.dtype() == x.dtype());
        if (fits) {
            return Normalization.layerNorm(x, gamma, beta, 1, eps);
        }
        Tensor y = Normalization.layerNorm(x, null, null, 1, eps);
        if (gamma != null) {
            y = Elementwise.mul(y, gamma);
        }
        return beta == null ? y : Elementwise.add(y, beta);
    }

    /**
     * softmax(scale q kT + mask) v. Rank-4 floating operands of one dtype go to the fused
     * attention kernel (k = kT with its last two axes swapped, a view); anything else is computed
     * as the graph wrote it.
     */
    static Tensor attention(Tensor q, Tensor kT, Tensor v, Tensor mask, double scale, long softmaxAxis) {
        boolean fits = q.rank() == 4 && kT.rank() == 4 && v.rank() == 4 && q.dtype().isFloatingPoint()
                && kT.dtype() == q.dtype() && v.dtype() == q.dtype()
                && (mask == null || mask.dtype() == q.dtype() && mask.rank() <= 4 && broadcasts(mask, q, kT))
                && q.size(3) == kT.size(2) && kT.size(3) == v.size(2)
                && q.size(0) == kT.size(0) && q.size(0) == v.size(0) && q.size(1) == kT.size(1) && q.size(1) == v.size(1);
        if (fits) {
            Attention.Options opts = Attention.Options.builder().scale(scale).build();
            return Attention.scaledDotProductAttention(q, kT.transpose(2, 3), v, mask, opts);
        }
        Tensor s = LinearAlgebra.matmul(q, kT);
        if (scale != 1) {
            s = Elementwise.mul(s, scale);
        }
        if (mask != null) {
            s = Elementwise.add(s, mask);
        }
        if (softmaxAxis == 3 && s.rank() != 4) {
            throw new IllegalArgumentException("fused attention: scores " + s.describe()
                    + " are not rank 4, the Softmax axis 3 of the exported graph is not their last axis");
        }
        return LinearAlgebra.matmul(Normalization.softmax(s, -1), v);
    }

    /** Whether {@code mask} broadcasts to the scores [B, H, Lq, Lk]. */
    private static boolean broadcasts(Tensor mask, Tensor q, Tensor kT) {
        long[] scores = {q.size(0), q.size(1), q.size(2), kT.size(3)};
        long[] d = mask.dims();
        for (int i = 0; i < d.length; i++) {
            long want = scores[scores.length - d.length + i];
            if (d[i] != 1 && d[i] != want) {
                return false;
            }
        }
        return true;
    }
}
