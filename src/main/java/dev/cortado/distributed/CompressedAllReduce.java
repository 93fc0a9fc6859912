package dev.cortado.distributed;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Indexing;
import dev.cortado.sparse.CompressedGradients;
import dev.cortado.sparse.DeepGradientCompression;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * The compressed all-reduce of Deep Gradient Compression across the processes of a group: each
 * process compresses its gradients ({@link DeepGradientCompression#compress}: top-k of the
 * momentum-corrected residual), the values and indices of every process are all-gathered (the
 * same k on every process, since k depends only on the tensor size and the step's density), and
 * every process sums them into dense gradients divided by the world size, written into the
 * parameters' {@code grad}. Apply them with plain SGD without momentum (the momentum lives in the
 * compressor). Per tensor of n elements at density d this sends 2 d n values (values and int64
 * indices) instead of the ring all-reduce's 2 (p - 1) / p n.
 */
public final class CompressedAllReduce {
    private CompressedAllReduce() {
    }

    /** What one exchange sent, for the log: values and bytes against a dense all-reduce. */
    public record Report(long valuesSent, long denseValues, long bytesSent, long denseBytes) {
        /** How many times fewer values than a dense exchange. */
        public double reduction() {
            return valuesSent == 0 ? Double.POSITIVE_INFINITY : (double) denseValues / valuesSent;
        }
    }

    /**
     * Compresses this process's gradients of {@code params} (the compressor's parameters, in its
     * order), exchanges them and replaces each parameter's gradient with the average over the
     * processes of what they sent. A collective: every process calls it at the same step.
     */
    public static Report exchange(ProcessGroup group, DeepGradientCompression dgc, List<Tensor> params) {
        int p = group.worldSize();
        try (CompressedGradients sent = dgc.compress(); Scope detached = Scope.detached();
             Autograd.GradMode off = Autograd.noGrad()) {
            List<CompressedGradients.Part> parts = sent.parts();
            List<Work> pending = new ArrayList<>();
            List<Tensor[]> gathered = new ArrayList<>();
            try (Scope s = Scope.open()) {
                for (CompressedGradients.Part part : parts) {
                    Tensor values = part.values().contiguous();
                    Tensor indices = part.indices().to(DType.INT64).contiguous();
                    Tensor allValues = Tensor.empty(values.dtype(), values.device(), p * values.numel());
                    Tensor allIndices = Tensor.empty(DType.INT64, indices.device(), p * indices.numel());
                    pending.add(group.allGather(allValues, values));
                    pending.add(group.allGather(allIndices, indices));
                    gathered.add(new Tensor[] {allValues, allIndices});
                }
                pending.forEach(Work::await);
                for (int j = 0; j < parts.size(); j++) {
                    CompressedGradients.Part part = parts.get(j);
                    Tensor param = params.get(part.index());
                    Tensor[] all = gathered.get(j);
                    Tensor sum = Indexing.indexAdd(part.shape().numel(), 0, all[1], all[0]);
                    Tensor mean = sum.mul(1.0 / p).reshape(part.shape().toArray());
                    param.setGrad(s.keep(mean.to(param.dtype()).contiguous()));
                }
            }
            return new Report(sent.valuesSent(), sent.denseValues(), sent.bytesSent(), sent.denseBytes());
        }
    }
}
