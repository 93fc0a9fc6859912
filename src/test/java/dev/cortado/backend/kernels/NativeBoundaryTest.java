package dev.cortado.backend.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.kernels.NativeStructs.CtAttentionParams;
import dev.cortado.backend.kernels.NativeStructs.CtTensor;
import dev.cortado.backend.cpu.CpuKernels;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.lang.reflect.Method;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/**
 * The generated boundary (native/tools/GenerateBindings.java): the descriptors Java writes are the
 * ones the native side reads, and the native side rejects malformed descriptors with a message
 * that names the argument instead of touching memory.
 */
class NativeBoundaryTest {

    @Test
    void descriptorFieldsLandAtTheGeneratedOffsets() {
        NativeArgs args = NativeArgs.get();
        long t = args.tensor(0x1234_5678L, DType.BFLOAT16.code(), new long[] {2, 3, 5}, new long[] {15, 5, 1});
        assertEquals(0x1234_5678L, args.read(t + CtTensor.DATA));
        assertEquals(DType.BFLOAT16.code(), args.readInt(t + CtTensor.DTYPE));
        assertEquals(3, args.readInt(t + CtTensor.NDIM));
        assertEquals(5, args.read(t + CtTensor.SHAPE + 2 * Long.BYTES));
        assertEquals(15, args.read(t + CtTensor.STRIDES));
        assertEquals(144, CtTensor.SIZE, "8 pointer + 2 x 4 int32 + 2 x 8 x 8 int64");
    }

    /** A well-formed call, then one broken descriptor at a time: each is refused, naming what is wrong. */
    @Test
    void attentionRejectsMalformedDescriptors() {
        long b = 1, h = 2, l = 3, d = 4;
        try (Tensor q = Tensor.ones(DType.FLOAT32, b, h, l, d); Tensor k = Tensor.ones(DType.FLOAT32, b, h, l, d);
             Tensor v = Tensor.ones(DType.FLOAT32, b, h, l, d); Tensor o = Tensor.zeros(DType.FLOAT32, b, h, l, d);
             Tensor lse = Tensor.zeros(DType.FLOAT32, b, h, l)) {
            long[] shape = {b, h, l, d};
            long[] strides = q.strides();
            Kernels cpu = CpuKernels.INSTANCE;

            NativeArgs args = NativeArgs.get();
            int ok = cpu.attentionForward(desc(args, q, shape, strides), desc(args, k, shape, strides),
                    desc(args, v, shape, strides), 0, params(args), desc(args, o, shape, strides), lse.dataAddress(), 0);
            assertEquals(NativeStatus.OK, ok, cpu.lastError());
            for (float x : o.toFloatArray()) {
                assertEquals(1f, x, 1e-6f, "softmax-weighted average of ones");
            }

            args = NativeArgs.get();
            long q3 = args.tensor(q.dataAddress(), DType.FLOAT32.code(), new long[] {b, h, l}, Arrays.copyOf(strides, 3));
            expectInvalid(cpu.attentionForward(q3, desc(args, k, shape, strides), desc(args, v, shape, strides), 0,
                    params(args), desc(args, o, shape, strides), lse.dataAddress(), 0), "q has 3 dimensions");

            args = NativeArgs.get();
            long kWrongD = args.tensor(k.dataAddress(), DType.FLOAT32.code(), new long[] {b, h, l, d + 1}, strides);
            expectInvalid(cpu.attentionForward(desc(args, q, shape, strides), kWrongD, desc(args, v, shape, strides), 0,
                    params(args), desc(args, o, shape, strides), lse.dataAddress(), 0), "k is [1, 2, 3, 5]");

            args = NativeArgs.get();
            long vF64 = args.tensor(v.dataAddress(), DType.FLOAT64.code(), shape, strides);
            expectInvalid(cpu.attentionForward(desc(args, q, shape, strides), desc(args, k, shape, strides), vF64, 0,
                    params(args), desc(args, o, shape, strides), lse.dataAddress(), 0), "v has dtype F64");

            args = NativeArgs.get();
            long maskInt = args.tensor(q.dataAddress(), DType.INT32.code(), new long[] {b, h, l, l}, new long[4]);
            expectInvalid(cpu.attentionForward(desc(args, q, shape, strides), desc(args, k, shape, strides),
                    desc(args, v, shape, strides), maskInt, params(args), desc(args, o, shape, strides),
                    lse.dataAddress(), 0), "mask has dtype I32");

            args = NativeArgs.get();
            expectInvalid(cpu.attentionForward(desc(args, q, shape, strides), desc(args, k, shape, strides),
                    desc(args, v, shape, strides), 0, 0, desc(args, o, shape, strides), lse.dataAddress(), 0),
                    "params is NULL");
            expectInvalid(cpu.attentionForward(0, 0, 0, 0, 0, 0, 0, 0), "descriptor");
        }
    }

    /** Every kernel family method takes the stream last (the rule the generator enforces on the headers). */
    @Test
    void everyKernelTakesTheStreamLast() {
        Method[] methods = Kernels.class.getMethods();
        int kernels = 0;
        for (Method m : methods) {
            if (m.getName().equals("lastError")) {
                continue;
            }
            Class<?>[] p = m.getParameterTypes();
            assertTrue(p.length > 0 && p[p.length - 1] == long.class, m + " must take the stream last");
            kernels++;
        }
        assertTrue(kernels >= 40, "the families hold " + kernels + " kernels");
    }

    private static long desc(NativeArgs args, Tensor t, long[] shape, long[] strides) {
        return args.tensor(t.dataAddress(), t.dtype().code(), shape, strides);
    }

    private static long params(NativeArgs args) {
        long p = args.struct(CtAttentionParams.SIZE);
        args.putDouble(p + CtAttentionParams.SCALE, 0.5);
        return p;
    }

    private static void expectInvalid(int status, String messagePart) {
        String message = CpuKernels.INSTANCE.lastError();
        assertEquals(NativeStatus.INVALID_ARG, status, message);
        assertTrue(message.contains(messagePart), "message '" + message + "' should contain '" + messagePart + "'");
        assertTrue(message.contains("ct_cpu_attention_forward"), message);
    }
}
