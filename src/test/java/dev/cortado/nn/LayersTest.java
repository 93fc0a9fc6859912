package dev.cortado.nn;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Pool.AdaptiveAvgPool2d;
import dev.cortado.nn.Pool.AvgPool2d;
import dev.cortado.nn.Pool.GlobalAvgPool;
import dev.cortado.nn.Pool.MaxPool2d;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/**
 * Each layer's forward against an independent float64 computation ({@link NnRef}) on fresh random
 * inputs and parameters, batch 1 and 3, odd sizes. Tolerances: float64 1e-10 relative + 1e-12
 * absolute (different summation orders only); float32 1e-4 relative + 2e-5 absolute (float32
 * accumulation over at most ~50 terms of magnitude ~1, float32 exp/erf polynomials).
 */
class LayersTest {
    static Tol tol(DType t) {
        return t == DType.FLOAT64 ? new Tol(1e-10, 1e-12) : new Tol(1e-4, 2e-5);
    }

    static Tensor rand(Random r, DType t, long... dims) {
        return Reference.make(Reference.uniform(r, (int) Reference.numel(dims), -1, 1), t, dims);
    }

    static double[] v(Tensor t) {
        return t.toDoubleArray();
    }

    /** Overwrites a parameter with fresh random values (so affine norms are not the identity). */
    static double[] randomize(Random r, Tensor p) {
        double[] d = Reference.uniform(r, (int) p.numel(), -1.5, 1.5);
        try (Tensor src = Tensor.of(d, p.dims())) {
            p.copyFrom(src);
        }
        return p.toDoubleArray();
    }

    static ParamOptions opts(DType t, long seed) {
        return ParamOptions.seeded(seed).withDType(t);
    }

    @ParameterizedTest
    @CsvSource({"FLOAT32,1,true", "FLOAT32,3,false", "FLOAT64,3,true", "FLOAT64,1,false"})
    void linear(DType t, int batch, boolean bias) {
        Random r = new Random(11 + batch);
        try (Scope s = Scope.open(); Linear lin = new Linear(5, 7, bias, opts(t, 3))) {
            double[] w = v(lin.weight());
            double[] b = bias ? v(lin.bias()) : null;
            for (long[] dims : new long[][] {{batch, 5}, {batch, 3, 5}}) {
                Tensor x = rand(r, t, dims);
                Tensor y = lin.forward(x);
                long[] want = dims.clone();
                want[want.length - 1] = 7;
                assertArrayEquals(want, y.dims());
                assertClose(NnRef.linear(v(x), 5, w, b, 7), v(y), tol(t), "linear " + t);
            }
        }
    }

    @Test
    void linearDefaultInitIsTorchs() {
        try (Linear lin = new Linear(25, 400, true, ParamOptions.seeded(5))) {
            double bound = 1 / Math.sqrt(25);
            double[] w = v(lin.weight());
            double max = 0;
            double sumSq = 0;
            for (double x : w) {
                max = Math.max(max, Math.abs(x));
                sumSq += x * x;
            }
            assertTrue(max <= bound && max > 0.95 * bound, "weight within U(-1/sqrt(in), 1/sqrt(in)): max " + max);
            double var = sumSq / w.length;
            assertEquals(bound * bound / 3, var, 0.1 * bound * bound / 3, "uniform variance b^2/3");
            for (double x : v(lin.bias())) {
                assertTrue(Math.abs(x) <= bound);
            }
        }
    }

    @ParameterizedTest
    @CsvSource({
        "FLOAT32,1,3,4,3,2,1,1,1", "FLOAT32,3,3,4,3,1,0,1,1", "FLOAT64,3,4,6,3,1,2,2,2", "FLOAT64,1,4,4,1,1,0,1,4",
        "FLOAT32,3,6,3,2,2,1,1,3"})
    void conv2d(DType t, int n, int c, int k, int kernel, int stride, int pad, int dil, int groups) {
        Random r = new Random(n * 100 + c * 10 + k);
        int h = 5;
        int w = 7;
        ConvOptions o = ConvOptions.builder().stride(stride).padding(pad).dilation(dil).groups(groups).build();
        try (Scope s = Scope.open(); Conv2d conv = new Conv2d(c, k, new long[] {kernel}, o, true, opts(t, 9))) {
            Tensor x = rand(r, t, n, c, h, w);
            Tensor y = conv.forward(x);
            int[] ohw = new int[2];
            double[] want = NnRef.conv2d(v(x), n, c, h, w, v(conv.weight()), v(conv.bias()), k, kernel, kernel, stride,
                    pad, dil, groups, ohw);
            assertArrayEquals(new long[] {n, k, ohw[0], ohw[1]}, y.dims());
            assertClose(want, v(y), tol(t), "conv2d");
        }
    }

    @Test
    void conv2dNhwcMatchesNchw() {
        Random r = new Random(3);
        ConvOptions nhwc = ConvOptions.builder().stride(1).padding(1).layout(DataLayout.NHWC).build();
        try (Scope s = Scope.open(); Conv2d conv = new Conv2d(3, 5, new long[] {3}, nhwc, true, opts(DType.FLOAT32, 2))) {
            Tensor x = rand(r, DType.FLOAT32, 3, 3, 5, 7);
            Tensor xh = x.permute(0, 2, 3, 1).contiguous();
            Tensor y = conv.forward(xh);
            assertArrayEquals(new long[] {3, 5, 7, 5}, y.dims());
            int[] ohw = new int[2];
            double[] want = NnRef.conv2d(v(x), 3, 3, 5, 7, v(conv.weight()), v(conv.bias()), 5, 3, 3, 1, 1, 1, 1, ohw);
            assertClose(want, v(y.permute(0, 3, 1, 2).contiguous()), tol(DType.FLOAT32), "conv2d NHWC");
        }
    }

    @ParameterizedTest
    @CsvSource({"FLOAT32,1", "FLOAT64,3"})
    void conv1d(DType t, int n) {
        Random r = new Random(n);
        ConvOptions o = ConvOptions.builder().stride(2).padding(1).build();
        try (Scope s = Scope.open(); Conv1d conv = new Conv1d(3, 4, 3, o, true, opts(t, 4))) {
            Tensor x = rand(r, t, n, 3, 9);
            Tensor y = conv.forward(x);
            int[] ohw = new int[2];
            // a 1-d convolution is a 2-d one over [1, W] with padding only along W: emulate with h = 1, kh = 1
            double[] want = conv1dRef(v(x), n, 3, 9, v(conv.weight()), v(conv.bias()), 4, 3, 2, 1, ohw);
            assertArrayEquals(new long[] {n, 4, ohw[0]}, y.dims());
            assertClose(want, v(y), tol(t), "conv1d");
        }
    }

    static double[] conv1dRef(double[] x, int n, int c, int w, double[] wt, double[] b, int k, int kw, int stride,
                              int pad, int[] out) {
        int ow = (w + 2 * pad - kw) / stride + 1;
        out[0] = ow;
        double[] y = new double[n * k * ow];
        for (int ni = 0; ni < n; ni++) {
            for (int ko = 0; ko < k; ko++) {
                for (int ox = 0; ox < ow; ox++) {
                    double acc = b[ko];
                    for (int ci = 0; ci < c; ci++) {
                        for (int kx = 0; kx < kw; kx++) {
                            int ix = ox * stride - pad + kx;
                            if (ix >= 0 && ix < w) {
                                acc += x[(ni * c + ci) * w + ix] * wt[(ko * c + ci) * kw + kx];
                            }
                        }
                    }
                    y[(ni * k + ko) * ow + ox] = acc;
                }
            }
        }
        return y;
    }

    @ParameterizedTest
    @CsvSource({"FLOAT32,1", "FLOAT64,3"})
    void convTranspose2d(DType t, int n) {
        Random r = new Random(7 + n);
        ConvOptions o = ConvOptions.builder().stride(2).padding(1).build();
        try (Scope s = Scope.open(); ConvTranspose2d conv = new ConvTranspose2d(3, 2, new long[] {3}, o, true, opts(t, 6))) {
            assertArrayEquals(new long[] {3, 2, 3, 3}, conv.weight().dims());
            Tensor x = rand(r, t, n, 3, 4, 5);
            Tensor y = conv.forward(x);
            int[] ohw = new int[2];
            double[] want = NnRef.convTranspose2d(v(x), n, 3, 4, 5, v(conv.weight()), v(conv.bias()), 2, 3, 3, 2, 1, ohw);
            assertArrayEquals(new long[] {n, 2, ohw[0], ohw[1]}, y.dims());
            assertClose(want, v(y), tol(t), "convTranspose2d");
        }
    }

    @ParameterizedTest
    @CsvSource({"FLOAT32,3", "FLOAT64,2"})
    void batchNorm2dTrainingUpdatesRunningStatsAndEvalUsesThem(DType t, int n) {
        Random r = new Random(n);
        int c = 3;
        int h = 3;
        int w = 5;
        try (Scope s = Scope.open(); BatchNorm2d bn = new BatchNorm2d(c)) {
            double[] g = randomize(r, bn.parameter("weight"));
            double[] b = randomize(r, bn.parameter("bias"));
            Tensor x = rand(r, t, n, c, h, w);
            Tensor y = bn.forward(x);
            double[][] st = NnRef.channelStats(v(x), n, c, h * w);
            assertClose(NnRef.batchNorm(v(x), n, c, h * w, st[0], st[1], g, b, 1e-5), v(y), new Tol(1e-4, 1e-5),
                    "batch norm training " + t);
            double m = n * h * w;
            double[] rm = new double[c];
            double[] rv = new double[c];
            for (int i = 0; i < c; i++) {
                rm[i] = 0.1 * st[0][i];
                rv[i] = 0.9 + 0.1 * st[1][i] * m / (m - 1);
            }
            assertClose(rm, v(bn.buffer("running_mean")), new Tol(1e-5, 1e-6), "running mean");
            assertClose(rv, v(bn.buffer("running_var")), new Tol(1e-5, 1e-6), "running var (unbiased)");
            assertEquals(1, bn.buffer("num_batches_tracked").item());

            double[] storedMean = v(bn.buffer("running_mean"));
            double[] storedVar = v(bn.buffer("running_var"));
            bn.eval();
            Tensor x1 = rand(r, t, 1, c, h, w);
            Tensor ye = bn.forward(x1);
            assertClose(NnRef.batchNorm(v(x1), 1, c, h * w, storedMean, storedVar, g, b, 1e-5), v(ye),
                    new Tol(1e-4, 1e-5), "batch norm eval");
            assertClose(storedMean, v(bn.buffer("running_mean")), new Tol(0, 0), "eval leaves running mean");
            assertClose(storedVar, v(bn.buffer("running_var")), new Tol(0, 0), "eval leaves running var");
            assertEquals(1, bn.buffer("num_batches_tracked").item());
        }
    }

    @Test
    void batchNorm1d() {
        Random r = new Random(4);
        try (Scope s = Scope.open(); BatchNorm1d bn = new BatchNorm1d(5)) {
            Tensor x = rand(r, DType.FLOAT32, 3, 5);
            Tensor y = bn.forward(x);
            double[][] st = NnRef.channelStats(v(x), 3, 5, 1);
            double[] ones = {1, 1, 1, 1, 1};
            double[] zeros = new double[5];
            assertClose(NnRef.batchNorm(v(x), 3, 5, 1, st[0], st[1], ones, zeros, 1e-5), v(y), new Tol(1e-4, 1e-5),
                    "batch norm 1d");
            assertThrows(IllegalArgumentException.class, () -> bn.forward(rand(r, DType.FLOAT32, 3, 4)));
            bn.to(DType.FLOAT64);
            assertEquals(DType.FLOAT32, bn.parameter("weight").dtype(), "batch norm keeps its float32 state");
        }
    }

    @ParameterizedTest
    @CsvSource({"FLOAT32,1", "FLOAT64,3"})
    void norms(DType t, int batch) {
        Random r = new Random(batch * 3);
        try (Scope s = Scope.open(); LayerNorm ln = new LayerNorm(new long[] {7}, 1e-5, true, true, opts(t, 1));
             RMSNorm rms = new RMSNorm(new long[] {7}, 1e-6, true, opts(t, 1));
             GroupNorm gn = new GroupNorm(2, 6, 1e-5, true, opts(t, 1))) {
            double[] lw = randomize(r, ln.parameter("weight"));
            double[] lb = randomize(r, ln.parameter("bias"));
            double[] rw = randomize(r, rms.parameter("weight"));
            double[] gw = randomize(r, gn.parameter("weight"));
            double[] gb = randomize(r, gn.parameter("bias"));
            Tensor x = rand(r, t, batch, 3, 7);
            assertClose(NnRef.layerNorm(v(x), 7, lw, lb, 1e-5), v(ln.forward(x)), tol(t).scaled(10), "layer norm");
            assertClose(NnRef.rmsNorm(v(x), 7, rw, 1e-6), v(rms.forward(x)), tol(t).scaled(10), "rms norm");
            Tensor xg = rand(r, t, batch, 6, 3, 5);
            assertClose(NnRef.groupNorm(v(xg), batch, 6, 15, 2, gw, gb, 1e-5), v(gn.forward(xg)), tol(t).scaled(10),
                    "group norm");
            assertThrows(IllegalArgumentException.class, () -> ln.forward(rand(r, t, 2, 6)));
        }
    }

    @Test
    void embedding() {
        try (Scope s = Scope.open(); Embedding e = new Embedding(11, 3, ParamOptions.seeded(2))) {
            double[] w = v(e.weight());
            Tensor idx = Tensor.of(new long[] {3, 0, 10, 3, 7, 1}, 2, 3);
            Tensor y = e.forward(idx);
            assertArrayEquals(new long[] {2, 3, 3}, y.dims());
            long[] ids = {3, 0, 10, 3, 7, 1};
            double[] want = new double[18];
            for (int i = 0; i < 6; i++) {
                System.arraycopy(w, (int) ids[i] * 3, want, i * 3, 3);
            }
            assertClose(want, v(y), new Tol(0, 0), "embedding");
            assertThrows(IndexOutOfBoundsException.class, () -> e.forward(Tensor.of(new long[] {11}, 1)));
        }
    }

    @Test
    void dropoutTrainEval() {
        try (Scope s = Scope.open()) {
            Random r = new Random(1);
            Tensor x = rand(r, DType.FLOAT32, 40, 50);
            double[] xs = v(x);
            Dropout d = new Dropout(0.3, Generator.seeded(42));
            double[] y = v(d.forward(x));
            int zeros = 0;
            for (int i = 0; i < y.length; i++) {
                if (y[i] == 0) {
                    zeros++;
                } else {
                    assertEquals(xs[i] / 0.7, y[i], 1e-6 * Math.abs(y[i]), "kept values are scaled by 1/(1-p)");
                }
            }
            double frac = zeros / (double) y.length;
            assertTrue(Math.abs(frac - 0.3) < 0.04, "dropped fraction " + frac);
            assertArrayEquals(y, v(new Dropout(0.3, Generator.seeded(42)).forward(x)), "same seed, same mask");
            d.eval();
            assertArrayEquals(xs, v(d.forward(x)), "eval is the identity");
            d.train();
            assertTrue(d.isTraining());
        }
    }

    @Test
    void activationsPoolsFlatten() {
        Random r = new Random(8);
        try (Scope s = Scope.open()) {
            Tensor x = rand(r, DType.FLOAT64, 3, 2, 5, 7);
            double[] xs = v(x);
            double[][] want = new double[5][xs.length];
            for (int i = 0; i < xs.length; i++) {
                want[0][i] = Math.max(xs[i], 0);
                want[1][i] = NnRef.gelu(xs[i]);
                want[2][i] = NnRef.silu(xs[i]);
                want[3][i] = Math.tanh(xs[i]);
                want[4][i] = 1 / (1 + Math.exp(-xs[i]));
            }
            Module[] acts = {Activation.relu(), Activation.gelu(), Activation.silu(), Activation.tanh(),
                Activation.sigmoid()};
            for (int a = 0; a < acts.length; a++) {
                assertClose(want[a], v(acts[a].forward(x)), new Tol(1e-12, 1e-14), acts[a].toString());
            }
            // 2x2 max and average pools (stride 2, floor) and adaptive to [2, 3]
            double[] mp = new double[3 * 2 * 2 * 3];
            double[] ap = new double[mp.length];
            double[] gp = new double[6];
            for (int nc = 0; nc < 6; nc++) {
                double sum = 0;
                for (int i = 0; i < 35; i++) {
                    sum += xs[nc * 35 + i];
                }
                gp[nc] = sum / 35;
                for (int oy = 0; oy < 2; oy++) {
                    for (int ox = 0; ox < 3; ox++) {
                        double m = Double.NEGATIVE_INFINITY;
                        double a = 0;
                        for (int dy = 0; dy < 2; dy++) {
                            for (int dx = 0; dx < 2; dx++) {
                                double e = xs[nc * 35 + (2 * oy + dy) * 7 + 2 * ox + dx];
                                m = Math.max(m, e);
                                a += e;
                            }
                        }
                        mp[(nc * 2 + oy) * 3 + ox] = m;
                        ap[(nc * 2 + oy) * 3 + ox] = a / 4;
                    }
                }
            }
            assertClose(mp, v(new MaxPool2d(2).forward(x)), new Tol(0, 0), "max pool");
            assertClose(ap, v(new AvgPool2d(2).forward(x)), new Tol(1e-12, 1e-14), "avg pool");
            Tensor g = new GlobalAvgPool().forward(x);
            assertArrayEquals(new long[] {3, 2}, g.dims());
            assertClose(gp, v(g), new Tol(1e-12, 1e-14), "global avg pool");
            double[] ad = new double[3 * 2 * 2 * 3];
            for (int nc = 0; nc < 6; nc++) {
                for (int oy = 0; oy < 2; oy++) {
                    int y0 = oy * 5 / 2;
                    int y1 = ((oy + 1) * 5 + 1) / 2;
                    for (int ox = 0; ox < 3; ox++) {
                        int x0 = ox * 7 / 3;
                        int x1 = ((ox + 1) * 7 + 2) / 3;
                        double a = 0;
                        for (int yy = y0; yy < y1; yy++) {
                            for (int xx = x0; xx < x1; xx++) {
                                a += xs[nc * 35 + yy * 7 + xx];
                            }
                        }
                        ad[(nc * 2 + oy) * 3 + ox] = a / ((y1 - y0) * (x1 - x0));
                    }
                }
            }
            assertClose(ad, v(new AdaptiveAvgPool2d(2, 3).forward(x)), new Tol(1e-12, 1e-14), "adaptive avg pool");
            Tensor f = new Flatten().forward(x);
            assertArrayEquals(new long[] {3, 70}, f.dims());
            assertArrayEquals(xs, v(f));
            assertArrayEquals(new long[] {3, 2, 35}, new Flatten(2, 3).forward(x).dims());
        }
    }

    /** The float64 reference of a MultiheadAttention forward with the module's weights. */
    static double[] mhaRef(MultiheadAttention m, double[] x, int b, int t, int c, boolean[] mask) {
        MultiheadAttention.Options o = m.options();
        int h = (int) o.numHeads();
        int hkv = (int) o.numKvHeads();
        int d = (int) o.headDim();
        double[][] w = new double[4][];
        double[][] bias = new double[4][];
        String[] names = {"wq", "wk", "wv", "wo"};
        for (int i = 0; i < 4; i++) {
            Linear l = (Linear) m.child(names[i]);
            w[i] = v(l.weight());
            bias[i] = l.bias() == null ? null : v(l.bias());
        }
        double[] q = NnRef.linear(x, c, w[0], bias[0], h * d);
        double[] k = NnRef.linear(x, c, w[1], bias[1], hkv * d);
        double[] vv = NnRef.linear(x, c, w[2], bias[2], hkv * d);
        if (o.rope()) {
            q = NnRef.rope(q, b, t, h, d, o.ropeBase());
            k = NnRef.rope(k, b, t, hkv, d, o.ropeBase());
        }
        double[] a = NnRef.attention(q, k, vv, b, t, t, h, hkv, d, o.causal(), mask);
        return NnRef.linear(a, h * d, w[3], bias[3], c);
    }

    @ParameterizedTest
    @CsvSource({
        "FLOAT64,1,8,2,2,false,false,BSHD", "FLOAT64,3,8,4,2,true,false,BSHD", "FLOAT32,3,8,4,1,true,true,BSHD",
        "FLOAT64,3,6,3,3,false,true,BHSD", "FLOAT32,1,8,4,2,true,true,BHSD"})
    void multiheadAttention(DType dt, int b, int c, int h, int hkv, boolean causal, boolean rope, Attention.Layout layout) {
        Random r = new Random(b * 31 + c * 7 + h);
        int t = 5;
        MultiheadAttention.Builder bld = MultiheadAttention.builder(c, h).kvHeads(hkv).causal(causal).layout(layout)
                .params(opts(dt, 13));
        if (rope) {
            bld.rope();
        }
        try (Scope s = Scope.open(); MultiheadAttention m = bld.build()) {
            for (Tensor p : m.parameters()) {
                randomize(r, p);
            }
            Tensor x = rand(r, dt, b, t, c);
            Tensor y = m.forward(x);
            assertArrayEquals(new long[] {b, t, c}, y.dims());
            assertClose(mhaRef(m, v(x), b, t, c, null), v(y), tol(dt).scaled(10), "mha");
            boolean[] mask = Reference.bools(r, t * t);
            for (int i = 0; i < t; i++) {
                mask[i * t] = true;
            }
            Tensor mk = Tensor.of(mask, t, t);
            assertClose(mhaRef(m, v(x), b, t, c, mask), v(m.forward(x, mk)), tol(dt).scaled(10), "mha masked");
        }
    }

    @Test
    void attentionDropoutOnlyInTraining() {
        Random r = new Random(9);
        try (Scope s = Scope.open();
             MultiheadAttention m = MultiheadAttention.builder(8, 2).dropout(0.5).params(opts(DType.FLOAT64, 3)).build()) {
            Tensor x = rand(r, DType.FLOAT64, 2, 6, 8);
            double[] want = mhaRef(m, v(x), 2, 6, 8, null);
            double[] train = v(m.forward(x));
            boolean differs = false;
            for (int i = 0; i < want.length; i++) {
                differs |= Math.abs(train[i] - want[i]) > 1e-6;
            }
            assertTrue(differs, "training applies attention dropout");
            m.eval();
            assertClose(want, v(m.forward(x)), tol(DType.FLOAT64).scaled(10), "eval: no dropout");
        }
    }

    @ParameterizedTest
    @CsvSource({"LAYER_NORM,GELU,1", "RMS_NORM,SWIGLU,3"})
    void transformerBlock(TransformerBlock.Norm norm, MLP.Kind mlp, int b) {
        Random r = new Random(b);
        int c = 8;
        int t = 3;
        TransformerBlock.Builder bld = TransformerBlock.builder(c, 4).kvHeads(2).causal(true).norm(norm, 1e-5)
                .mlp(mlp, 12).params(opts(DType.FLOAT64, 21));
        if (mlp == MLP.Kind.SWIGLU) {
            bld.bias(false).rope();
        }
        try (Scope s = Scope.open(); TransformerBlock blk = bld.build()) {
            for (Tensor p : blk.parameters()) {
                randomize(r, p);
            }
            Tensor x = rand(r, DType.FLOAT64, b, t, c);
            double[] xs = v(x);
            Module n1 = blk.child("norm1");
            Module n2 = blk.child("norm2");
            double[] a = norm == TransformerBlock.Norm.LAYER_NORM
                    ? NnRef.layerNorm(xs, c, v(n1.parameter("weight")), v(n1.parameter("bias")), 1e-5)
                    : NnRef.rmsNorm(xs, c, v(n1.parameter("weight")), 1e-5);
            double[] hres = NnRef.add(xs, mhaRef((MultiheadAttention) blk.child("attn"), a, b, t, c, null));
            double[] z = norm == TransformerBlock.Norm.LAYER_NORM
                    ? NnRef.layerNorm(hres, c, v(n2.parameter("weight")), v(n2.parameter("bias")), 1e-5)
                    : NnRef.rmsNorm(hres, c, v(n2.parameter("weight")), 1e-5);
            Module m = blk.child("mlp");
            double[] out;
            if (mlp == MLP.Kind.GELU) {
                Linear f1 = (Linear) m.child("fc1");
                Linear f2 = (Linear) m.child("fc2");
                double[] hid = NnRef.linear(z, c, v(f1.weight()), v(f1.bias()), 12);
                for (int i = 0; i < hid.length; i++) {
                    hid[i] = NnRef.gelu(hid[i]);
                }
                out = NnRef.linear(hid, 12, v(f2.weight()), v(f2.bias()), c);
            } else {
                double[] g = NnRef.linear(z, c, v(((Linear) m.child("gate")).weight()), null, 12);
                double[] u = NnRef.linear(z, c, v(((Linear) m.child("up")).weight()), null, 12);
                for (int i = 0; i < g.length; i++) {
                    g[i] = NnRef.silu(g[i]) * u[i];
                }
                out = NnRef.linear(g, 12, v(((Linear) m.child("down")).weight()), null, c);
            }
            assertClose(NnRef.add(hres, out), v(blk.forward(x)), new Tol(1e-9, 1e-11), "transformer block");
        }
    }
}
