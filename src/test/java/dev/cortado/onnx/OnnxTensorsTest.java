package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.protobuf.ByteString;
import dev.cortado.onnx.OnnxValues.Values;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** TensorProto decoding (raw and typed fields, every supported dtype) and the ONNX comparison rule. */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class OnnxTensorsTest {

    private static TensorProto.Builder proto(int type, long... dims) {
        TensorProto.Builder b = TensorProto.newBuilder().setDataType(type);
        for (long d : dims) {
            b.addDims(d);
        }
        return b;
    }

    private static ByteString le(int bytes, java.util.function.Consumer<ByteBuffer> fill) {
        ByteBuffer b = ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
        fill.accept(b);
        return ByteString.copyFrom(b.array());
    }

    @Test
    void floatRawAndTyped() {
        try (Scope s = Scope.open()) {
            TensorProto raw = proto(OnnxTensors.FLOAT, 2, 2)
                    .setRawData(le(16, b -> b.putFloat(1).putFloat(-2.5f).putFloat(Float.NaN).putFloat(1e30f))).build();
            TensorProto typed = proto(OnnxTensors.FLOAT, 2, 2)
                    .addFloatData(1).addFloatData(-2.5f).addFloatData(Float.NaN).addFloatData(1e30f).build();
            for (TensorProto p : new TensorProto[] {raw, typed}) {
                Tensor t = OnnxTensors.toTensor(p);
                assertEquals(DType.FLOAT32, t.dtype());
                assertArrayEquals(new long[] {2, 2}, t.dims());
                assertArrayEquals(new float[] {1, -2.5f, Float.NaN, 1e30f}, t.toFloatArray());
                assertNull(OnnxValues.compare("x", raw, t, 0, 0));
            }
        }
    }

    @Test
    void scalarAndEmpty() {
        try (Scope s = Scope.open()) {
            Tensor scalar = OnnxTensors.toTensor(proto(OnnxTensors.DOUBLE).addDoubleData(3.25).build());
            assertEquals(0, scalar.rank());
            assertEquals(DType.FLOAT64, scalar.dtype());
            assertEquals(3.25, scalar.item());
            TensorProto emptyProto = proto(OnnxTensors.FLOAT, 2, 0, 4).setRawData(ByteString.EMPTY).build();
            Tensor empty = OnnxTensors.toTensor(emptyProto);
            assertArrayEquals(new long[] {2, 0, 4}, empty.dims());
            assertEquals(0, empty.numel());
            assertNull(OnnxValues.compare("e", emptyProto, empty, 1e-3, 1e-7));
        }
    }

    @Test
    void integerTypesRawAndTyped() {
        try (Scope s = Scope.open()) {
            // int32_data: negative values (10-byte varints on the wire) arrive truncated to 32 bits
            Tensor i8 = OnnxTensors.toTensor(proto(OnnxTensors.INT8, 3).addInt32Data(-128).addInt32Data(-1).addInt32Data(127).build());
            assertEquals(DType.INT8, i8.dtype());
            assertArrayEquals(new long[] {-128, -1, 127}, i8.toLongArray());
            Tensor u8 = OnnxTensors.toTensor(proto(OnnxTensors.UINT8, 2).setRawData(ByteString.copyFrom(new byte[] {(byte) 255, 7})).build());
            assertEquals(DType.UINT8, u8.dtype());
            assertArrayEquals(new long[] {255, 7}, u8.toLongArray());
            Tensor i32 = OnnxTensors.toTensor(proto(OnnxTensors.INT32, 2).addInt32Data(Integer.MIN_VALUE).addInt32Data(5).build());
            assertArrayEquals(new int[] {Integer.MIN_VALUE, 5}, i32.toIntArray());
            Tensor i64 = OnnxTensors.toTensor(proto(OnnxTensors.INT64, 2).addInt64Data(Long.MIN_VALUE).addInt64Data(-3).build());
            assertArrayEquals(new long[] {Long.MIN_VALUE, -3}, i64.toLongArray());
            Tensor i64raw = OnnxTensors.toTensor(proto(OnnxTensors.INT64, 1).setRawData(le(8, b -> b.putLong(1L << 40))).build());
            assertArrayEquals(new long[] {1L << 40}, i64raw.toLongArray());
            Tensor bool = OnnxTensors.toTensor(proto(OnnxTensors.BOOL, 3).setRawData(ByteString.copyFrom(new byte[] {1, 0, 1})).build());
            assertEquals(DType.BOOL, bool.dtype());
            assertArrayEquals(new boolean[] {true, false, true}, bool.toBooleanArray());
            Tensor boolTyped = OnnxTensors.toTensor(proto(OnnxTensors.BOOL, 2).addInt32Data(0).addInt32Data(1).build());
            assertArrayEquals(new boolean[] {false, true}, boolTyped.toBooleanArray());
        }
    }

    @Test
    void halfTypes() {
        try (Scope s = Scope.open()) {
            // float16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF, smallest subnormal 0x0001
            TensorProto h = proto(OnnxTensors.FLOAT16, 4).addInt32Data(0x3C00).addInt32Data(0xC000).addInt32Data(0x7BFF)
                    .addInt32Data(0x0001).build();
            Tensor th = OnnxTensors.toTensor(h);
            assertEquals(DType.FLOAT16, th.dtype());
            double[] want = {1, -2, 65504, Math.scalb(1.0, -24)};
            assertArrayEquals(want, th.toDoubleArray());
            assertArrayEquals(want, OnnxValues.values(h).real());
            // bfloat16: 1.0 = 0x3F80, -0.5 = 0xBF00
            TensorProto bf = proto(OnnxTensors.BFLOAT16, 2).setRawData(le(4, b -> b.putShort((short) 0x3F80)
                    .putShort((short) 0xBF00))).build();
            Tensor tb = OnnxTensors.toTensor(bf);
            assertEquals(DType.BFLOAT16, tb.dtype());
            assertArrayEquals(new double[] {1, -0.5}, tb.toDoubleArray());
            assertNull(OnnxValues.compare("bf", bf, tb, 0, 0));
        }
    }

    @Test
    void unsupportedTypesAreNamed() {
        TensorProto i16 = proto(5, 1).addInt32Data(1).build();
        OnnxTensors.UnsupportedDTypeException e = assertThrows(OnnxTensors.UnsupportedDTypeException.class,
                () -> OnnxTensors.toTensor(i16));
        assertTrue(e.getMessage().contains("INT16"), e.getMessage());
    }

    @Test
    void comparisonRule() {
        long[] d = {3};
        Values want = new Values(OnnxTensors.FLOAT, d, new double[] {1000, 0, Double.NaN}, null);
        // |a - e| <= atol + rtol * |e|: 1000 -> 1 allowed, 0 -> 1e-7 allowed
        assertNull(OnnxValues.compare("x", want, new Values(OnnxTensors.FLOAT, d, new double[] {1001, 1e-7, Double.NaN}, null), 1e-3, 1e-7));
        assertNotNull(OnnxValues.compare("x", want, new Values(OnnxTensors.FLOAT, d, new double[] {1001.01, 0, Double.NaN}, null), 1e-3, 1e-7));
        assertNotNull(OnnxValues.compare("x", want, new Values(OnnxTensors.FLOAT, d, new double[] {1000, 2e-7, Double.NaN}, null), 1e-3, 1e-7));
        assertNotNull(OnnxValues.compare("x", want, new Values(OnnxTensors.FLOAT, d, new double[] {1000, 0, 0}, null), 1e-3, 1e-7));
        // infinities match only themselves
        Values inf = new Values(OnnxTensors.FLOAT, new long[] {1}, new double[] {Double.NEGATIVE_INFINITY}, null);
        assertNull(OnnxValues.compare("x", inf, inf, 1e-3, 1e-7));
        assertNotNull(OnnxValues.compare("x", inf, new Values(OnnxTensors.FLOAT, new long[] {1}, new double[] {-1e38}, null), 1e-3, 1e-7));
        // dtype, shape, integers exact
        assertNotNull(OnnxValues.compare("x", want, new Values(OnnxTensors.DOUBLE, d, want.real(), null), 1e-3, 1e-7));
        assertNotNull(OnnxValues.compare("x", want, new Values(OnnxTensors.FLOAT, new long[] {1, 3}, want.real(), null), 1e-3, 1e-7));
        Values ints = new Values(OnnxTensors.INT64, new long[] {2}, null, new long[] {5, 1L << 60});
        assertNull(OnnxValues.compare("i", ints, ints, 1e-3, 1e-7));
        assertNotNull(OnnxValues.compare("i", ints, new Values(OnnxTensors.INT64, new long[] {2}, null, new long[] {5, (1L << 60) + 1}), 1e-3, 1e-7));
    }

    /** A real expected output, perturbed by just over the tolerance, must be caught. */
    @Test
    void perturbedRealOutputIsCaught() throws IOException {
        Path dir = OnnxTestCases.nodeDir();
        OnnxNodeTest.requireDataUnderCi(dir != null, "ONNX node tests (onnx-node/MANIFEST.tsv)");
        assumeTrue(dir != null, "ONNX conformance data not found");
        TensorProto out = OnnxTensors.read(dir.resolve("test_softmax_example/test_data_set_0/output_0.pb"));
        try (Scope s = Scope.open()) {
            Tensor t = OnnxTensors.toTensor(out);
            assertNull(OnnxValues.compare("same", out, t, OnnxTestCases.RTOL, OnnxTestCases.ATOL));
            float[] v = t.toFloatArray();
            v[v.length - 1] *= 1.0011f;
            Tensor bad = Tensor.of(v, t.dims());
            assertNotNull(OnnxValues.compare("perturbed", out, bad, OnnxTestCases.RTOL, OnnxTestCases.ATOL));
            assertNotNull(OnnxValues.compare("as double", out, bad.to(DType.FLOAT64), OnnxTestCases.RTOL,
                    OnnxTestCases.ATOL));
        }
    }
}
