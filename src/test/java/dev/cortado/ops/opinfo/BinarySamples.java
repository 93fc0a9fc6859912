package dev.cortado.ops.opinfo;

import dev.cortado.quant.Binary;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Binary (1-bit) kernels (dev.cortado.quant.Binary): binarization into bit strings, the XNOR +
 * popcount GEMM and NHWC convolution with XNOR-Net scales, and sign with the clipped
 * straight-through estimator. The references decode the bits by the documented layout (element e
 * is bit e % 8 of byte e / 8) and sum +-1 products in float64. Integer outputs are exact; the
 * float32 products are exact sums times one or two float32 scales (relative 1e-6). The bit inputs
 * carry random padding bits, which the kernels must ignore. k spans one word, several words, and
 * more than 8 words (a full AVX-512 chunk plus a masked tail).
 */
final class BinarySamples {
    private BinarySamples() {
    }

    private static final String F = "quantization";

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("binarize", F, "bit strings of the signs of x [..., k]: bit e % 8 of byte e / 8 is 1 where x >= 0; "
                            + "rows padded to whole 64-bit words with 0")
                    .samples((r, t) -> List.of(
                            new Sample("[5, 70] (2 words)", null, Gen.ur(r, t, -1, 1, 5, 70)),
                            new Sample("transposed view [3, 64]", null, Gen.ur(r, t, -1, 1, 3, 64).view()),
                            new Sample("with zeros and -0 [2, 9]", null, Arg.of(new double[] {0, -0.0, 1, -1, 0.5, -0.5, 0, 3, -3,
                                -0.0, 0, 2, -2, 1e-3, -1e-3, 0, 7, -7}, t, 2, 9)),
                            new Sample("[2, 3, 130]", null, Gen.ur(r, t, -1, 1, 2, 3, 130)),
                            new Sample("size-1 [1, 1]", null, Gen.ur(r, t, -1, 1, 1, 1)),
                            new Sample("empty [0, 5]", null, Gen.ur(r, t, -1, 1, 0, 5))))
                    .reference((s, in) -> new double[][] {bits(in[0], s.dims(0))})
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0).halves(0, 0)
                    .notDifferentiable("bit result (sign_ste is the trainable form)")
                    .build(),
            OpInfo.of("binary_matmul", F, "y = (k - 2 popcount(a XOR b)) alpha[j] beta[i]: the +-1 dot products of bit rows "
                            + "(XNOR-Net), float32")
                    .samples((r, t) -> List.of(
                            matmul(r, "k 70, alpha and beta [5, 2 words] x [7, 2 words]", 5, 7, 70, true, true),
                            matmul(r, "k 600 (8 words + a tail of 2), alpha [9, 10 words] x [11, 10 words]", 9, 11, 600, true, false),
                            matmul(r, "k 1024 exact, no scales [6, 16 words] x [5, 16 words]", 6, 5, 1024, false, false),
                            matmul(r, "k 64, size 1", 1, 1, 64, true, true),
                            matmul(r, "k 1 [3, 1 word] x [2, 1 word]", 3, 2, 1, false, true),
                            matmul(r, "m = 0", 0, 3, 40, true, false)))
                    .reference((s, in) -> new double[][] {matmulRef((Long) s.attrs(), (int) s.dims(0)[0], (int) s.dims(1)[0], in)})
                    .dtype(DType.FLOAT32, 1e-6, 0)
                    .notDifferentiable("bit inputs (BinaryLinear trains through sign_ste)")
                    .build(),
            OpInfo.of("binary_conv2d", F, "NHWC convolution of bit-packed channels: alpha[co] sum over the taps inside the "
                            + "image of (c - 2 popcount(x XOR w)); stride, zero padding")
                    .samples((r, t) -> List.of(
                            conv(r, "c 70, 3x3, stride 1, pad 1, alpha [2, 5, 6] -> 5", 2, 5, 6, 70, 5, 3, 3, 1, 1, true),
                            conv(r, "c 64, 2x3, stride 2, pad 0 [1, 7, 8] -> 3", 1, 7, 8, 64, 3, 2, 3, 2, 0, false),
                            conv(r, "c 3, 1x1, stride 1 [2, 3, 4] -> 6", 2, 3, 4, 3, 6, 1, 1, 1, 0, true),
                            conv(r, "c 130, 3x3, stride 2, pad 2 [1, 4, 5] -> 7", 1, 4, 5, 130, 7, 3, 3, 2, 2, true),
                            conv(r, "empty batch", 0, 3, 3, 8, 2, 3, 3, 1, 1, false)))
                    .reference((s, in) -> new double[][] {convRef((Binary.Conv) s.attrs(), s.dims(0), s.dims(1), in)})
                    .dtype(DType.FLOAT32, 1e-6, 0)
                    .notDifferentiable("bit inputs (BinaryConv2d trains through sign_ste)")
                    .build(),
            OpInfo.of("sign_ste", F, "sign(x) (+1 for x >= 0, else -1) with the clipped straight-through gradient "
                            + "dx = g where |x| <= 1")
                    .samples((r, t) -> List.of(
                            new Sample("[5, 7]", null, Gen.ur(r, t, -2, 2, 5, 7)),
                            new Sample("transposed view [4, 6]", null, Gen.ur(r, t, -2, 2, 4, 6).view()),
                            new Sample("[11]", null, Gen.ur(r, t, -1.5, 1.5, 11)),
                            new Sample("empty [0, 3]", null, Gen.ur(r, t, -1, 1, 0, 3))))
                    .reference((s, in) -> {
                        double[] y = new double[in[0].length];
                        for (int i = 0; i < y.length; i++) {
                            y[i] = in[0][i] >= 0 ? 1 : -1;
                        }
                        return new double[][] {y};
                    })
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0).halves(0, 0)
                    .surrogateGradient("clipped straight-through: g where |x| <= 1",
                            (s, in, g) -> new double[][] {steGrad(g, in[0])})
                    .build(),
            OpInfo.of("sign_ste_backward", F, "dx = g where |x| <= 1, else 0 (the backward of sign_ste)")
                    .samples((r, t) -> List.of(
                            new Sample("[5, 7]", null, Gen.ur(r, t, -1, 1, 5, 7).noGrad(), Gen.ur(r, t, -2, 2, 5, 7)),
                            new Sample("views [4, 6]", null, Gen.ur(r, t, -1, 1, 4, 6).view().noGrad(),
                                    Gen.ur(r, t, -2, 2, 4, 6).view()),
                            new Sample("empty [0]", null, Gen.ur(r, t, -1, 1, 0).noGrad(), Gen.ur(r, t, -1, 1, 0))))
                    .reference((s, in) -> new double[][] {steGrad(in[0], in[1])})
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0).halves(0, 0)
                    .coveredBy("sign_ste")
                    .build(),
            OpInfo.of("biper", F, "BiPer's square wave sign(sin(omega x)) with the surrogate gradient g omega cos(omega x)")
                    .samples((r, t) -> List.of(
                            new Sample("omega 20 [5, 7]", Binary.BIPER_OMEGA, Gen.ur(r, t, -0.4, 0.4, 5, 7)),
                            new Sample("omega 3, transposed view [4, 6]", 3.0, Gen.ur(r, t, -3, 3, 4, 6).view()),
                            new Sample("omega 0.5 [13]", 0.5, Gen.ur(r, t, -9, 9, 13)),
                            new Sample("size-1 [1, 1]", 7.0, Gen.ur(r, t, -1, 1, 1, 1)),
                            new Sample("empty [0, 3]", Binary.BIPER_OMEGA, Gen.ur(r, t, -1, 1, 0, 3))))
                    .reference((s, in) -> {
                        double omega = (Double) s.attrs();
                        double[] y = new double[in[0].length];
                        for (int i = 0; i < y.length; i++) {
                            y[i] = Math.sin(omega * in[0][i]) >= 0 ? 1 : -1;
                        }
                        return new double[][] {y};
                    })
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0).halves(0, 0)
                    .surrogateGradient("the sine's derivative: g omega cos(omega x)",
                            (s, in, g) -> new double[][] {biperGrad((Double) s.attrs(), g, in[0])})
                    .build(),
            OpInfo.of("biper_backward", F, "dx = g omega cos(omega x) (the backward of biper)")
                    .samples((r, t) -> List.of(
                            new Sample("omega 20 [5, 7]", Binary.BIPER_OMEGA, Gen.ur(r, t, -1, 1, 5, 7).noGrad(),
                                    Gen.ur(r, t, -0.4, 0.4, 5, 7)),
                            new Sample("omega 2, views [4, 6]", 2.0, Gen.ur(r, t, -1, 1, 4, 6).view().noGrad(),
                                    Gen.ur(r, t, -3, 3, 4, 6).view()),
                            new Sample("empty [0]", 1.0, Gen.ur(r, t, -1, 1, 0).noGrad(), Gen.ur(r, t, -1, 1, 0))))
                    .reference((s, in) -> new double[][] {biperGrad((Double) s.attrs(), in[0], in[1])})
                    .dtype(DType.FLOAT64, 1e-15, 1e-15).dtype(DType.FLOAT32, 1e-6, 1e-6).halves(1e-2, 1e-2)
                    .coveredBy("biper")
                    .build());

    private static double[] biperGrad(double omega, double[] g, double[] x) {
        double[] dx = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            dx[i] = g[i] * omega * Math.cos(omega * x[i]);
        }
        return dx;
    }

    private static double[] steGrad(double[] g, double[] x) {
        double[] dx = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            dx[i] = Math.abs(x[i]) <= 1 ? g[i] : 0;
        }
        return dx;
    }

    /** The bit strings of x [..., k] (bytes as values). */
    static double[] bits(double[] x, long[] dims) {
        int k = (int) dims[dims.length - 1];
        int rows = k == 0 ? 0 : x.length / k;
        int bytes = (int) Binary.rowBytes(k);
        if (k == 0) {
            rows = 1;
            for (int i = 0; i < dims.length - 1; i++) {
                rows *= (int) dims[i];
            }
        }
        double[] out = new double[rows * bytes];
        for (int r = 0; r < rows; r++) {
            for (int e = 0; e < k; e++) {
                if (x[r * k + e] >= 0) {
                    out[r * bytes + e / 8] += 1 << (e % 8);
                }
            }
        }
        return out;
    }

    /** Sign e (+1 / -1) of a row of bytes. */
    private static int sign(double[] bytes, int rowStart, int e) {
        return (((int) bytes[rowStart + e / 8] >> (e % 8)) & 1) != 0 ? 1 : -1;
    }

    /** Random rows of k signs with random padding bits. */
    private static Arg bitRows(Random r, long... dims) {
        double[] v = new double[Gen.prod(dims)];
        for (int i = 0; i < v.length; i++) {
            v[i] = r.nextInt(256);
        }
        return new Arg(v, dims, DType.UINT8, false, false, true);
    }

    private static Arg scales(Random r, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (0.05 + r.nextDouble());
        }
        return Arg.of(v, DType.FLOAT32, n).float32();
    }

    private static Sample matmul(Random r, String label, int m, int n, long k, boolean alpha, boolean beta) {
        long bytes = Binary.rowBytes(k);
        List<Arg> args = new ArrayList<>(List.of(bitRows(r, m, bytes), bitRows(r, n, bytes)));
        args.add(alpha ? scales(r, n) : null);
        if (beta) {
            args.add(scales(r, m));
        }
        return new Sample(label, k, args.toArray(Arg[]::new));
    }

    private static double[] matmulRef(long k, int m, int n, double[][] in) {
        int bytes = (int) Binary.rowBytes(k);
        double[] y = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                long dot = 0;
                for (int e = 0; e < k; e++) {
                    dot += sign(in[0], i * bytes, e) * sign(in[1], j * bytes, e);
                }
                double v = dot;
                if (in.length > 2 && in[2] != null) {
                    v *= in[2][j];
                }
                if (in.length > 3 && in[3] != null) {
                    v *= in[3][i];
                }
                y[i * n + j] = v;
            }
        }
        return y;
    }

    private static Sample conv(Random r, String label, int batch, int h, int w, int c, int cout, int kh, int kw, int stride,
                               int pad, boolean alpha) {
        long bytes = Binary.rowBytes(c);
        List<Arg> args = new ArrayList<>(List.of(bitRows(r, batch, h, w, bytes), bitRows(r, cout, kh, kw, bytes)));
        if (alpha) {
            args.add(scales(r, cout));
        }
        return new Sample(label, new Binary.Conv(c, stride, stride, pad, pad), args.toArray(Arg[]::new));
    }

    private static double[] convRef(Binary.Conv p, long[] xd, long[] wd, double[][] in) {
        int batch = (int) xd[0];
        int h = (int) xd[1];
        int w = (int) xd[2];
        int bytes = (int) xd[3];
        int cout = (int) wd[0];
        int kh = (int) wd[1];
        int kw = (int) wd[2];
        int c = (int) p.channels();
        int oh = (h + 2 * p.padH() - kh) / p.strideH() + 1;
        int ow = (w + 2 * p.padW() - kw) / p.strideW() + 1;
        double[] y = new double[batch * oh * ow * cout];
        for (int b = 0; b < batch; b++) {
            for (int oy = 0; oy < oh; oy++) {
                for (int ox = 0; ox < ow; ox++) {
                    for (int co = 0; co < cout; co++) {
                        long dot = 0;
                        for (int dy = 0; dy < kh; dy++) {
                            for (int dx = 0; dx < kw; dx++) {
                                int iy = oy * p.strideH() - p.padH() + dy;
                                int ix = ox * p.strideW() - p.padW() + dx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                                    continue;
                                }
                                int xs = ((b * h + iy) * w + ix) * bytes;
                                int ws = ((co * kh + dy) * kw + dx) * bytes;
                                for (int e = 0; e < c; e++) {
                                    dot += sign(in[0], xs, e) * sign(in[1], ws, e);
                                }
                            }
                        }
                        double v = dot;
                        if (in.length > 2 && in[2] != null) {
                            v *= in[2][co];
                        }
                        y[((b * oh + oy) * ow + ox) * cout + co] = v;
                    }
                }
            }
        }
        return y;
    }
}
