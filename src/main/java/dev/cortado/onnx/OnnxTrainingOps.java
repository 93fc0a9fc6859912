package dev.cortado.onnx;

import dev.cortado.optim.OptimKernels;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Handlers of the optimizer ops of the {@code ai.onnx.preview.training} domain (opset 1):
 * Adagrad, Adam and Momentum (standard and Nesterov), run by the engine's fused optimizer kernels
 * with the ONNX attributes mapped onto their coefficients ({@code OptimKernels.*Coef.onnx}; see
 * docs/optim.md). Inputs: R (learning rate), T (updates done so far), then the n tensors X, their
 * n gradients and the n tensors of each state; outputs: the new X, then the new states. The
 * inputs are not modified (the kernels update copies).
 */
final class OnnxTrainingOps {
    private OnnxTrainingOps() {
    }

    static final String DOMAIN = "ai.onnx.preview.training";

    private static Tensor[] step(OnnxNode n, int states, Stepper stepper) {
        int count = (n.inputCount() - 2) / (2 + states);
        if (count * (2 + states) + 2 != n.inputCount()) {
            throw n.error(n.inputCount() + " inputs are not R, T and " + (2 + states) + " groups of equal size");
        }
        double r = n.required(0).item();
        long t = (long) n.required(1).item();
        List<Tensor> x = new ArrayList<>();
        List<Tensor> g = new ArrayList<>();
        List<List<Tensor>> s = new ArrayList<>();
        for (int k = 0; k < states; k++) {
            s.add(new ArrayList<>());
        }
        for (int i = 0; i < count; i++) {
            x.add(n.required(2 + i).copy());
            g.add(n.required(2 + count + i));
            for (int k = 0; k < states; k++) {
                s.get(k).add(n.required(2 + (2 + k) * count + i).copy());
            }
        }
        stepper.step(r, t, x, g, s);
        List<Tensor> out = new ArrayList<>(x);
        s.forEach(out::addAll);
        return out.toArray(Tensor[]::new);
    }

    @FunctionalInterface
    private interface Stepper {
        void step(double r, long t, List<Tensor> x, List<Tensor> g, List<List<Tensor>> s);
    }

    static Tensor[] adagrad(OnnxNode n) {
        return step(n, 1, (r, t, x, g, s) -> OptimKernels.adagrad(x, g, s.get(0), OptimKernels.AdagradCoef.onnx(r, t,
                n.attrFloat("decay_factor", 0), n.attrFloat("epsilon", 0), n.attrFloat("norm_coefficient", 0))));
    }

    static Tensor[] adam(OnnxNode n) {
        return step(n, 2, (r, t, x, g, s) -> OptimKernels.adam(x, g, s.get(0), s.get(1), null,
                OptimKernels.AdamCoef.onnx(r, t, n.attrFloat("alpha", 0.9), n.attrFloat("beta", 0.999),
                        n.attrFloat("epsilon", 0), n.attrFloat("norm_coefficient", 0),
                        n.attrFloat("norm_coefficient_post", 0))));
    }

    static Tensor[] momentum(OnnxNode n) {
        for (String required : new String[] {"alpha", "beta", "norm_coefficient", "mode"}) {
            if (!n.has(required)) {
                throw n.error("attribute '" + required + "' is required");
            }
        }
        boolean nesterov = switch (n.attrString("mode", "")) {
            case "nesterov" -> true;
            case "standard" -> false;
            default -> throw n.error("mode '" + n.attrString("mode", "") + "' is neither standard nor nesterov");
        };
        return step(n, 1, (r, t, x, g, s) -> OptimKernels.sgd(x, g, s.get(0), OptimKernels.SgdCoef.onnx(r, t,
                n.attrFloat("alpha", 0), n.attrFloat("beta", 0), n.attrFloat("norm_coefficient", 0), nesterov)));
    }
}
