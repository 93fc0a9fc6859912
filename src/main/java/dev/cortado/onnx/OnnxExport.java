package dev.cortado.onnx;

import dev.cortado.graph.Graph;
import dev.cortado.graph.Node;
import dev.cortado.graph.Value;
import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Normalization.SoftmaxAttrs;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * ONNX export of a captured graph ({@code dev.cortado.graph.Graph}, e.g. from
 * {@code Graphs.capture}) so that a model built or trained with Cortado can be served by other
 * runtimes: {@code Graph -> ModelProto} (default-domain opset {@value #OPSET}).
 *
 * <p>Inputs keep their concrete sizes (the specialization's), parameters and constants become
 * initializers, op calls map to their ONNX equivalents (elementwise and comparison ops, matmul,
 * softmax and log_softmax, where; composite forms for silu, rsqrt, affine, clamp, pow_scalar and
 * ne), views to Reshape, Transpose or Slice, copies to Cast or Identity. An op or view without an
 * ONNX form fails with {@link UnsupportedOperationException} naming it. {@code OnnxExportTest}
 * checks every mapping by importing the result and comparing with the engine's own outputs.
 */
public final class OnnxExport {
    private OnnxExport() {
    }

    /** The default-domain opset the exported models import (Gelu needs 20). */
    public static final int OPSET = 21;

    private static final Map<String, String> SAME = Map.ofEntries(
            Map.entry("add", "Add"), Map.entry("sub", "Sub"), Map.entry("mul", "Mul"), Map.entry("div", "Div"),
            Map.entry("pow", "Pow"), Map.entry("maximum", "Max"), Map.entry("minimum", "Min"),
            Map.entry("eq", "Equal"), Map.entry("lt", "Less"), Map.entry("le", "LessOrEqual"),
            Map.entry("gt", "Greater"), Map.entry("ge", "GreaterOrEqual"), Map.entry("logical_and", "And"),
            Map.entry("logical_or", "Or"), Map.entry("logical_xor", "Xor"), Map.entry("logical_not", "Not"),
            Map.entry("neg", "Neg"), Map.entry("abs", "Abs"), Map.entry("exp", "Exp"), Map.entry("log", "Log"),
            Map.entry("sqrt", "Sqrt"), Map.entry("tanh", "Tanh"), Map.entry("sigmoid", "Sigmoid"),
            Map.entry("relu", "Relu"), Map.entry("gelu", "Gelu"), Map.entry("reciprocal", "Reciprocal"),
            Map.entry("sin", "Sin"), Map.entry("cos", "Cos"), Map.entry("matmul", "MatMul"),
            Map.entry("where", "Where"));

    /** Exports {@code graph} as a model named {@code name}. */
    public static ModelProto export(Graph graph, String name) {
        return new Exporter(graph).run(name);
    }

    private static final class Exporter {
        final Graph graph;
        final GraphProto.Builder g = GraphProto.newBuilder();
        int fresh;

        Exporter(Graph graph) {
            this.graph = graph;
        }

        /** The ONNX name of {@code v}; "" for an omitted optional input. */
        String name(Value v) {
            return v == null ? "" : "v" + v.id();
        }

        String temp() {
            return "t" + fresh++;
        }

        ModelProto run(String modelName) {
            for (Value v : graph.inputs()) {
                g.addInput(info(name(v), v));
            }
            List<Value> held = new ArrayList<>(graph.parameters());
            held.addAll(graph.constants());
            for (Value v : held) {
                try (Tensor c = v.tensor().contiguous()) {
                    g.addInitializer(OnnxTensors.toProto(c, name(v)));
                }
            }
            for (Node n : graph.nodes()) {
                if (n instanceof Node.OpCall call) {
                    opCall(call);
                } else if (n instanceof Node.View view) {
                    view(view);
                } else {
                    copy((Node.Copy) n);
                }
            }
            for (Value v : graph.outputs()) {
                g.addOutput(info(name(v), v));
            }
            g.setName(modelName);
            return ModelProto.newBuilder().setIrVersion(8).setProducerName("cortado")
                    .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(OPSET))
                    .setGraph(g).build();
        }

        ValueInfoProto info(String name, Value v) {
            TensorShapeProto.Builder shape = TensorShapeProto.newBuilder();
            for (long d : v.type().shape().toArray()) {
                shape.addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(d));
            }
            return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                    TypeProto.Tensor.newBuilder().setElemType(OnnxTensors.onnxTypeOf(v.type().dtype())).setShape(shape)))
                    .build();
        }

        NodeProto.Builder node(String op, List<String> in, String out) {
            NodeProto.Builder b = NodeProto.newBuilder().setOpType(op).setName("n" + g.getNodeCount()).addOutput(out);
            in.forEach(b::addInput);
            return b;
        }

        void add(NodeProto.Builder b) {
            g.addNode(b);
        }

        /** A float constant of {@code like}'s dtype, as an initializer; returns its name. */
        String scalar(double value, Value like) {
            String n = temp();
            try (Tensor t = Tensor.scalar(value, like.type().dtype(), dev.cortado.tensor.Device.CPU)) {
                g.addInitializer(OnnxTensors.toProto(t, n));
            }
            return n;
        }

        String ints(String n, long... v) {
            try (Tensor t = Tensor.of(v, v.length)) {
                g.addInitializer(OnnxTensors.toProto(t, n));
            }
            return n;
        }

        static AttributeProto intAttr(String name, long v) {
            return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
        }

        void opCall(Node.OpCall call) {
            String op = call.op().name();
            List<String> in = call.inputs().stream().map(this::name).toList();
            Value outV = call.outputs().get(0);
            String out = name(outV);
            String same = SAME.get(op);
            if (same != null && call.outputs().size() == 1) {
                add(node(same, in, out));
                return;
            }
            Elementwise.Params p = call.attrs() instanceof Elementwise.Params q ? q : null;
            switch (op) {
                case "gelu_tanh" -> add(node("Gelu", in, out).addAttribute(AttributeProto.newBuilder()
                        .setName("approximate").setType(AttributeProto.AttributeType.STRING)
                        .setS(com.google.protobuf.ByteString.copyFromUtf8("tanh"))));
                case "silu" -> {
                    String s = temp();
                    add(node("Sigmoid", in, s));
                    add(node("Mul", List.of(in.get(0), s), out));
                }
                case "rsqrt" -> {
                    String s = temp();
                    add(node("Sqrt", in, s));
                    add(node("Reciprocal", List.of(s), out));
                }
                case "ne" -> {
                    String e = temp();
                    add(node("Equal", in, e));
                    add(node("Not", List.of(e), out));
                }
                case "affine" -> {
                    String m = temp();
                    add(node("Mul", List.of(in.get(0), scalar(p.p0(), outV)), m));
                    add(node("Add", List.of(m, scalar(p.p1(), outV)), out));
                }
                case "clamp" -> add(node("Clip", List.of(in.get(0), scalar(p.p0(), outV), scalar(p.p1(), outV)), out));
                case "pow_scalar" -> add(node("Pow", List.of(in.get(0), scalar(p.p0(), outV)), out));
                case "softmax", "log_softmax" -> {
                    SoftmaxAttrs a = (SoftmaxAttrs) call.attrs();
                    add(node(a.log() ? "LogSoftmax" : "Softmax", in, out).addAttribute(intAttr("axis", a.axis())));
                }
                default -> throw new UnsupportedOperationException("ONNX export: op '" + op + "' (" + call.label()
                        + ") has no ONNX form in the exporter");
            }
        }

        /**
         * A view as Reshape, Transpose or Slice of the value it reads. A view of a view reads the
         * memory of the first value of the chain that is not a view (its strides and offset are in
         * that memory's elements), so the chain is resolved to it.
         */
        void view(Node.View view) {
            Value src = view.source();
            long offset = view.offset();
            while (graph.producer(src) instanceof Node.View inner) {
                offset += inner.offset();
                src = inner.source();
            }
            long[] srcDims = src.type().shape().toArray();
            long[] srcStrides = graph.strides(src);
            long[] outDims = view.output().type().shape().toArray();
            long[] strides = view.strides();
            String in = name(src);
            String out = name(view.output());
            if (!Arrays.equals(srcStrides, src.type().shape().contiguousStrides())) {
                throw new UnsupportedOperationException("ONNX export: view." + view.kind() + " of a non-contiguous "
                        + "value " + src + " has no ONNX form in the exporter");
            }
            long[] contiguous = view.output().type().shape().contiguousStrides();
            if (offset == 0 && Arrays.equals(strides, contiguous)) {
                add(node("Reshape", List.of(in, ints(temp(), outDims)), out));
                return;
            }
            int[] perm = permutation(srcDims, srcStrides, outDims, strides);
            if (offset == 0 && perm != null) {
                NodeProto.Builder b = node("Transpose", List.of(in), out);
                AttributeProto.Builder a = AttributeProto.newBuilder().setName("perm").setType(AttributeProto.AttributeType.INTS);
                for (int x : perm) {
                    a.addInts(x);
                }
                add(b.addAttribute(a));
                return;
            }
            if (srcDims.length == outDims.length) {
                // a slice: per dim a start (from the offset) and a step (stride ratio)
                long[] starts = new long[outDims.length];
                long[] ends = new long[outDims.length];
                long[] steps = new long[outDims.length];
                long rest = offset;
                boolean ok = true;
                for (int i = 0; i < outDims.length && ok; i++) {
                    ok = srcStrides[i] > 0 && strides[i] % srcStrides[i] == 0 && strides[i] > 0;
                    if (ok) {
                        steps[i] = strides[i] / srcStrides[i];
                        starts[i] = rest / srcStrides[i];
                        rest -= starts[i] * srcStrides[i];
                        ends[i] = starts[i] + (outDims[i] - 1) * steps[i] + 1;
                        ok = ends[i] <= srcDims[i];
                    }
                }
                if (ok && rest == 0) {
                    long[] axes = new long[outDims.length];
                    for (int i = 0; i < axes.length; i++) {
                        axes[i] = i;
                    }
                    add(node("Slice", List.of(in, ints(temp(), starts), ints(temp(), ends), ints(temp(), axes),
                            ints(temp(), steps)), out));
                    return;
                }
            }
            throw new UnsupportedOperationException("ONNX export: view." + view.kind() + " " + view.attributes()
                    + " of " + src + " has no ONNX form in the exporter");
        }

        /** perm with out dim i = source dim perm[i] (sizes and strides match), or null. */
        static int[] permutation(long[] srcDims, long[] srcStrides, long[] outDims, long[] strides) {
            if (srcDims.length != outDims.length) {
                return null;
            }
            int[] perm = new int[outDims.length];
            boolean[] used = new boolean[srcDims.length];
            for (int i = 0; i < outDims.length; i++) {
                perm[i] = -1;
                for (int j = 0; j < srcDims.length; j++) {
                    if (!used[j] && srcDims[j] == outDims[i] && (srcStrides[j] == strides[i] || outDims[i] == 1)) {
                        perm[i] = j;
                        used[j] = true;
                        break;
                    }
                }
                if (perm[i] < 0) {
                    return null;
                }
            }
            return perm;
        }

        void copy(Node.Copy copy) {
            String in = name(copy.source());
            String out = name(copy.output());
            if (copy.source().type().dtype() != copy.output().type().dtype()) {
                add(node("Cast", List.of(in), out).addAttribute(intAttr("to",
                        OnnxTensors.onnxTypeOf(copy.output().type().dtype()))));
            } else {
                add(node("Identity", List.of(in), out));
            }
        }
    }
}
