package dev.cortado.models;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Losses;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.Tensor;

/**
 * DeiT's distillation losses for a student with a class head and a distillation head
 * ({@link VisionTransformer#forwardBoth}) and a teacher's logits (computed without gradient).
 * <ul>
 *   <li>hard: {@code (CE(class, y) + CE(dist, argmax teacher)) / 2};</li>
 *   <li>soft: {@code (1 - alpha) CE(class, y) + alpha tau^2 KL(softmax(teacher / tau) || softmax(dist / tau))},
 *       the KL per sample averaged over the batch.</li>
 * </ul>
 */
public final class Distillation {
    private Distillation() {
    }

    public static Tensor hard(Tensor classLogits, Tensor distLogits, Tensor targets, Tensor teacherLogits) {
        try (Tensor teacherLabels = teacherLabels(teacherLogits);
             Tensor a = Losses.crossEntropy(classLogits, targets);
             Tensor b = Losses.crossEntropy(distLogits, teacherLabels);
             Tensor sum = Elementwise.add(a, b)) {
            return Elementwise.mul(sum, 0.5);
        }
    }

    public static Tensor soft(Tensor classLogits, Tensor distLogits, Tensor targets, Tensor teacherLogits,
            double alpha, double tau) {
        if (!(alpha >= 0 && alpha <= 1) || !(tau > 0)) {
            throw new IllegalArgumentException("Distillation.soft: need 0 <= alpha <= 1 and tau > 0, got alpha " + alpha
                    + ", tau " + tau);
        }
        try (Tensor ce = Losses.crossEntropy(classLogits, targets);
             Tensor scaledStudent = Elementwise.mul(distLogits, 1 / tau);
             Tensor logStudent = Normalization.logSoftmax(scaledStudent, -1);
             Tensor logTeacher = teacherLogTargets(teacherLogits, tau);
             Tensor kl = Losses.klDiv(logStudent, logTeacher, Losses.Reduction.BATCH_MEAN, true);
             Tensor a = Elementwise.mul(ce, 1 - alpha);
             Tensor b = Elementwise.mul(kl, alpha * tau * tau)) {
            return Elementwise.add(a, b);
        }
    }

    private static Tensor teacherLabels(Tensor teacherLogits) {
        try (Autograd.GradMode off = Autograd.noGrad()) {
            return Reductions.argmax(teacherLogits, -1, false);
        }
    }

    private static Tensor teacherLogTargets(Tensor teacherLogits, double tau) {
        try (Autograd.GradMode off = Autograd.noGrad(); Tensor scaled = Elementwise.mul(teacherLogits, 1 / tau)) {
            return Normalization.logSoftmax(scaled, -1);
        }
    }
}
