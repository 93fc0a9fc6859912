package dev.cortado.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import dev.cortado.tensor.Tensor;

/**
 * The PyTorch peer of the side-by-side benchmarks: libtorch 2.7.1 (CPU build) through DJL 0.35.1,
 * loaded offline from the {@code pytorch-native-cpu} jar on the classpath.
 *
 * <p>Only the forks that measure PyTorch call {@link #start}: libtorch brings its own OpenMP
 * runtime ({@code libgomp-98b21ff3.so.1}) next to Cortado's {@code libgomp.so.1}, and keeping
 * libtorch out of the Cortado forks keeps its idle OpenMP threads off the CPU there.
 */
final class TorchPeer {
    private TorchPeer() {
    }

    /**
     * Loads the PyTorch engine with {@code threads} intra-op threads (at::set_num_threads) and 1
     * inter-op thread, and returns a base manager on the CPU. Must run before any other DJL call in
     * the JVM (DJL reads the thread properties when the engine is created).
     */
    static NDManager start(int threads) {
        setIfAbsent("DJL_OFFLINE", "true");
        setIfAbsent("PYTORCH_FLAVOR", "cpu");
        setIfAbsent("PYTORCH_VERSION", "2.7.1");
        System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(threads));
        System.setProperty("ai.djl.pytorch.num_interop_threads", "1");
        Engine engine = Engine.getEngine("PyTorch");
        JniUtils.setNumThreads(threads);
        if (JniUtils.getNumThreads() != threads) {
            throw new IllegalStateException("torch.get_num_threads() = " + JniUtils.getNumThreads() + ", wanted " + threads);
        }
        return engine.newBaseManager();
    }

    private static void setIfAbsent(String key, String value) {
        if (System.getenv(key) == null && System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }

    /** A PyTorch copy of a Cortado float32 tensor (same shape, contiguous). */
    static NDArray copyOf(NDManager m, Tensor t) {
        return m.create(t.toFloatArray(), new Shape(t.dims()));
    }

    /**
     * Backward through the autograd graph of {@code y} with output gradient {@code dy} (DJL's
     * GradientCollector.backward only seeds with ones), freeing the graph.
     */
    static void backward(NDArray y, NDArray dy) {
        JniUtils.backward((PtNDArray) y, (PtNDArray) dy, false, false);
    }

    /** A fresh autograd leaf sharing {@code a}'s storage (no copy), owned by {@code m}, requiring a gradient. */
    static NDArray leaf(NDArray a, NDManager m) {
        NDArray l = a.stopGradient();
        l.attach(m);
        l.setRequiresGradient(true);
        return l;
    }

    /** Largest |a - b| / max(1, |a|) over the elements; the shapes must match. */
    static double relError(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new IllegalStateException("sizes differ: " + a.length + " vs " + b.length);
        }
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            double e = Math.abs(a[i] - b[i]) / Math.max(1.0, Math.abs(a[i]));
            if (!(e <= worst)) {
                worst = Double.isNaN(e) ? Double.POSITIVE_INFINITY : e;
            }
        }
        return worst;
    }

    static void check(String what, float[] cortado, float[] torch, double tol) {
        double e = relError(cortado, torch);
        if (e > tol) {
            throw new IllegalStateException(what + ": Cortado and PyTorch differ, max relative error " + e + " > " + tol);
        }
        System.out.println("# check " + what + ": max relative error " + e);
    }
}
