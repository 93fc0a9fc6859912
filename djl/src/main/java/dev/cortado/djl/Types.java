package dev.cortado.djl;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.cortado.tensor.DType;

/** DJL's data types, devices and shapes as Cortado's, and back. */
final class Types {
    private Types() {
    }

    /** The Cortado dtype of a DJL data type; the ones Cortado lacks throw, naming {@code method}. */
    static DType dtype(DataType t, String method) {
        switch (t) {
            case FLOAT32: return DType.FLOAT32;
            case FLOAT64: return DType.FLOAT64;
            case FLOAT16: return DType.FLOAT16;
            case BFLOAT16: return DType.BFLOAT16;
            case INT8: return DType.INT8;
            case UINT8: return DType.UINT8;
            case INT32: return DType.INT32;
            case INT64: return DType.INT64;
            case BOOLEAN: return DType.BOOL;
            default:
                throw new UnsupportedOperationException(method + ": the Cortado engine has no " + t
                        + " arrays (float32/64, float16, bfloat16, int8, uint8, int32, int64, boolean)");
        }
    }

    /** The DJL data type of a Cortado dtype. */
    static DataType dataType(DType t) {
        switch (t) {
            case FLOAT32: return DataType.FLOAT32;
            case FLOAT64: return DataType.FLOAT64;
            case FLOAT16: return DataType.FLOAT16;
            case BFLOAT16: return DataType.BFLOAT16;
            case INT8: return DataType.INT8;
            case UINT8: return DataType.UINT8;
            case INT32: return DataType.INT32;
            case INT64: return DataType.INT64;
            case BOOL: return DataType.BOOLEAN;
            default:
                throw new UnsupportedOperationException("Cortado " + t + " tensors have no DJL data type");
        }
    }

    /** The Cortado device of a DJL device ({@code cpu} or {@code gpu(i)}, which is CUDA device i). */
    static dev.cortado.tensor.Device device(Device d) {
        if (d == null || Device.Type.CPU.equals(d.getDeviceType())) {
            return dev.cortado.tensor.Device.CPU;
        }
        if (d.isGpu()) {
            return dev.cortado.tensor.Device.cuda(d.getDeviceId());
        }
        throw new UnsupportedOperationException("the Cortado engine runs on cpu and gpu devices, not " + d);
    }

    /** The DJL device of a Cortado device. */
    static Device device(dev.cortado.tensor.Device d) {
        return d.isCpu() ? Device.cpu() : Device.gpu(d.index());
    }

    /** DJL's shape as dims. */
    static long[] dims(Shape s) {
        return s.getShape();
    }
}
