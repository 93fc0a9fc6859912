package dev.cortado.djl;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import org.junit.jupiter.api.Assumptions;

/** The engines the tests compare: Cortado, and DJL's PyTorch engine where its natives load. */
final class Engines {
    private static Engine pytorch;
    private static Throwable pytorchFailure;
    private static boolean tried;

    private Engines() {
    }

    static Engine cortado() {
        return Engine.getEngine(CortadoEngine.ENGINE_NAME);
    }

    /** The PyTorch engine, or null when it cannot be loaded here (offline libtorch missing). */
    static synchronized Engine pytorchOrNull() {
        if (!tried) {
            tried = true;
            try {
                pytorch = Engine.getEngine("PyTorch");
                try (var m = pytorch.newBaseManager()) {
                    m.ones(new ai.djl.ndarray.types.Shape(1)).sum().getFloat();
                }
            } catch (Throwable t) {
                pytorch = null;
                pytorchFailure = t;
                System.err.println("PyTorch engine unavailable, comparisons with it are skipped: " + t);
            }
        }
        return pytorch;
    }

    /** Skips the calling test when the PyTorch engine cannot be loaded. */
    static Engine pytorch() {
        Engine e = pytorchOrNull();
        Assumptions.assumeTrue(e != null, () -> "PyTorch engine unavailable: " + pytorchFailure);
        return e;
    }

    /** The values of any array as doubles (booleans as 0/1). */
    static double[] values(NDArray a) {
        if (a.getDataType() == DataType.BOOLEAN) {
            boolean[] b = a.toBooleanArray();
            double[] out = new double[b.length];
            for (int i = 0; i < b.length; i++) {
                out[i] = b[i] ? 1 : 0;
            }
            return out;
        }
        try (NDArray d = a.toType(DataType.FLOAT64, true)) {
            return d.toDoubleArray();
        }
    }
}
