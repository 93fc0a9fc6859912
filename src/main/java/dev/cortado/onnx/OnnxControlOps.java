package dev.cortado.onnx;

import dev.cortado.ops.Indexing;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Handlers of the ONNX control-flow ops If, Loop and Scan: their bodies are graph attributes run
 * through {@link OnnxNode#runSubgraph} (names they do not define resolve in the enclosing graph).
 * The loop bookkeeping (trip count, condition) is read on the host.
 */
final class OnnxControlOps {
    private OnnxControlOps() {
    }

    /** If: then_branch or else_branch, by the one-element condition. */
    static Tensor[] ifOp(OnnxNode n) {
        boolean cond = n.required(0).item() != 0;
        return n.runSubgraph(cond ? "then_branch" : "else_branch", List.of()).toArray(Tensor[]::new);
    }

    private static Device deviceOf(OnnxNode n) {
        for (int i = 0; i < n.inputCount(); i++) {
            if (n.input(i) != null) {
                return n.input(i).device();
            }
        }
        return Device.defaultDevice();
    }

    /**
     * Loop: body(iteration, condition, carried...) -> (condition, carried..., scan outputs...),
     * run while iteration &lt; M (input 0, optional) and the condition (input 1, optional) holds.
     * Outputs: the final carried values, then each scan output stacked along a new axis 0.
     */
    static Tensor[] loop(OnnxNode n) {
        Device device = deviceOf(n);
        long max = n.input(0) == null ? Long.MAX_VALUE : (long) n.input(0).item();
        boolean cond = n.input(1) == null || n.input(1).item() != 0;
        List<Tensor> carried = new ArrayList<>();
        for (int i = 2; i < n.inputCount(); i++) {
            carried.add(n.required(i));
        }
        int scans = n.outputCount() - carried.size();
        List<List<Tensor>> scanned = new ArrayList<>();
        for (int s = 0; s < scans; s++) {
            scanned.add(new ArrayList<>());
        }
        for (long it = 0; it < max && cond; it++) {
            List<Tensor> args = new ArrayList<>();
            args.add(Tensor.scalar(it, DType.INT64, device));
            args.add(Tensor.scalar(cond ? 1 : 0, DType.BOOL, device));
            args.addAll(carried);
            List<Tensor> out = n.runSubgraph("body", args);
            if (out.size() != 1 + carried.size() + scans) {
                throw n.error("body gives " + out.size() + " outputs, expected " + (1 + carried.size() + scans));
            }
            cond = out.get(0).item() != 0;
            carried = new ArrayList<>(out.subList(1, 1 + carried.size()));
            for (int s = 0; s < scans; s++) {
                scanned.get(s).add(out.get(1 + carried.size() + s));
            }
        }
        Tensor[] result = new Tensor[n.outputCount()];
        for (int i = 0; i < carried.size(); i++) {
            result[i] = carried.get(i);
        }
        for (int s = 0; s < scans; s++) {
            result[carried.size() + s] = stack(n, scanned.get(s), 0);
        }
        return result;
    }

    private static Tensor stack(OnnxNode n, List<Tensor> parts, int axis) {
        if (parts.isEmpty()) {
            throw n.error("a scan output of zero iterations has no known shape");
        }
        Tensor[] u = new Tensor[parts.size()];
        for (int i = 0; i < u.length; i++) {
            u[i] = parts.get(i).unsqueeze(axis);
        }
        return Indexing.concat(axis, u);
    }

    /**
     * Scan (opset 9+): N state inputs and num_scan_inputs sequences sliced along their
     * scan_input_axes (reversed where scan_input_directions says 1); the body maps (states,
     * slices) to (states, output slices); the outputs are the final states and the slices stacked
     * along scan_output_axes (reversed by scan_output_directions).
     */
    static Tensor[] scan(OnnxNode n) {
        int m = n.attrIntAsInt("num_scan_inputs", 0);
        if (n.opset() < 9) {
            throw n.error("Scan before opset 9 (with sequence_lens) is not supported");
        }
        int states = n.inputCount() - m;
        long[] inAxes = n.attrInts("scan_input_axes");
        long[] inDirs = n.attrInts("scan_input_directions");
        long[] outAxes = n.attrInts("scan_output_axes");
        long[] outDirs = n.attrInts("scan_output_directions");
        List<Tensor> carried = new ArrayList<>();
        for (int i = 0; i < states; i++) {
            carried.add(n.required(i));
        }
        Tensor[] seqs = new Tensor[m];
        int[] axes = new int[m];
        long length = -1;
        for (int j = 0; j < m; j++) {
            Tensor s = n.required(states + j);
            axes[j] = OnnxOps.axis(n, inAxes == null ? 0 : inAxes[j], s.rank());
            boolean reversed = inDirs != null && inDirs[j] != 0;
            seqs[j] = reversed ? OnnxShapeOps.reverse(s, axes[j]) : s;
            if (length >= 0 && s.size(axes[j]) != length) {
                throw n.error("scan inputs of different lengths");
            }
            length = s.size(axes[j]);
        }
        int scans = n.outputCount() - states;
        List<List<Tensor>> scanned = new ArrayList<>();
        for (int s = 0; s < scans; s++) {
            scanned.add(new ArrayList<>());
        }
        for (long t = 0; t < length; t++) {
            List<Tensor> args = new ArrayList<>(carried);
            for (int j = 0; j < m; j++) {
                args.add(seqs[j].select(axes[j], t));
            }
            List<Tensor> out = n.runSubgraph("body", args);
            carried = new ArrayList<>(out.subList(0, states));
            for (int s = 0; s < scans; s++) {
                scanned.get(s).add(out.get(states + s));
            }
        }
        Tensor[] result = new Tensor[n.outputCount()];
        for (int i = 0; i < states; i++) {
            result[i] = carried.get(i);
        }
        for (int s = 0; s < scans; s++) {
            int rank = scanned.get(s).isEmpty() ? 1 : scanned.get(s).get(0).rank() + 1;
            int axis = OnnxOps.axis(n, outAxes == null ? 0 : outAxes[s], rank);
            Tensor stacked = stack(n, scanned.get(s), axis);
            result[states + s] = outDirs != null && outDirs[s] != 0 ? OnnxShapeOps.reverse(stacked, axis) : stacked;
        }
        return result;
    }
}
