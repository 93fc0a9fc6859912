package dev.cortado.djl;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDArrayIndexer;
import ai.djl.ndarray.index.full.NDIndexFullPick;
import ai.djl.ndarray.index.full.NDIndexFullSlice;
import ai.djl.ndarray.index.full.NDIndexFullTake;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Indexing;
import dev.cortado.tensor.Tensor;

/**
 * {@code NDArray.get}/{@code set} with an {@code NDIndex} on Cortado arrays: slices (fixed
 * indices, ranges with positive steps, all) are views; a pick is {@link Gathers#takeAlongAxis};
 * a take along an axis is Cortado's gather. Setting a slice writes in place.
 */
final class CortadoNDArrayIndexer extends NDArrayIndexer {
    private final CortadoNDManager manager;

    CortadoNDArrayIndexer(CortadoNDManager manager) {
        this.manager = manager;
    }

    private static CortadoNDArray cortado(NDArray a) {
        return (CortadoNDArray) a;
    }

    /** {@inheritDoc} */
    @Override
    public NDArray get(NDArray array, NDIndexFullPick fullPick) {
        CortadoNDArray a = cortado(array);
        Tensor idx = a.tensorOf(fullPick.getIndices());
        return manager.wrap(CortadoNDArray.run(() -> Gathers.takeAlongAxis(a.tensor(), idx, fullPick.getAxis())));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray get(NDArray array, NDIndexFullTake fullTake) {
        CortadoNDArray a = cortado(array);
        Tensor idx = a.tensorOf(fullTake.getIndices());
        return manager.wrap(CortadoNDArray.run(() -> Indexing.gather(a.tensor(), idx, fullTake.getAxis())));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray get(NDArray array, NDIndexFullSlice fullSlice) {
        CortadoNDArray a = cortado(array);
        return manager.wrap(CortadoNDArray.run(() -> slice(a.tensor(), fullSlice, true)));
    }

    /** The view a full slice selects; {@code squeeze} drops the fixed (single-index) dimensions. */
    private static Tensor slice(Tensor x, NDIndexFullSlice s, boolean squeeze) {
        long[] min = s.getMin();
        long[] max = s.getMax();
        long[] step = s.getStep();
        Tensor v = F.identity(x);
        for (int d = 0; d < min.length; d++) {
            if (step[d] <= 0) {
                v.close();
                throw CortadoNDArray.unsupported("NDArray.get with a negative step (" + step[d] + " in dimension " + d + ")");
            }
            if (min[d] == 0 && max[d] == x.size(d) && step[d] == 1) {
                continue;
            }
            try (Tensor prev = v) {
                v = prev.slice(d, min[d], max[d], step[d]);
            }
        }
        if (squeeze) {
            int[] drop = s.getToSqueeze();
            for (int i = drop.length - 1; i >= 0; i--) {
                try (Tensor prev = v) {
                    v = prev.squeeze(drop[i]);
                }
            }
        }
        return v;
    }

    /** {@inheritDoc} Writes {@code value} (broadcast) into the slice, in place. */
    @Override
    public void set(NDArray array, NDIndexFullSlice fullSlice, NDArray value) {
        CortadoNDArray a = cortado(array);
        Tensor src = a.tensorOf(value);
        try (Tensor view = slice(a.tensor(), fullSlice, false);
             Tensor shaped = src.rank() == view.rank() ? src.detach() : src.reshape(unsqueezedShape(view, src))) {
            view.copyFrom(shaped);
        }
    }

    /** The value's shape with the squeezed (fixed-index) dimensions of the view put back as 1s. */
    private static long[] unsqueezedShape(Tensor view, Tensor value) {
        if (value.numel() == view.numel()) {
            return view.dims();
        }
        return value.dims();
    }

    /** {@inheritDoc} Fills the slice with {@code value}, in place. */
    @Override
    public void set(NDArray array, NDIndexFullSlice fullSlice, Number value) {
        CortadoNDArray a = cortado(array);
        try (Tensor view = slice(a.tensor(), fullSlice, false)) {
            view.fillWith(value.doubleValue());
        }
    }
}
