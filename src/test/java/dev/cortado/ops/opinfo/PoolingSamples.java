package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.DataLayout;
import dev.cortado.ops.PoolingOpsTest;
import dev.cortado.ops.Pooling.AdaptiveOptions;
import dev.cortado.ops.Pooling.PoolOptions;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * Max, average, adaptive and global average pooling and their backward ops, NCHW (NHWC and the
 * layout grid: PoolingOpsTest, whose references these are). Geometries: 2-d odd sizes with
 * stride, padding and dilation, 1-d, 3-d, a size-1 channel, a transposed view.
 */
final class PoolingSamples {
    private PoolingSamples() {
    }

    private static final String F = "pooling";

    /** One geometry: x [n, c, in...], kernel, stride, padding, dilation. */
    record Geo(String label, int n, int c, int[] in, int[] k, int[] s, int[] p, int[] d, boolean view) {
        long[] xDims() {
            long[] x = new long[in.length + 2];
            x[0] = n;
            x[1] = c;
            for (int i = 0; i < in.length; i++) {
                x[2 + i] = in[i];
            }
            return x;
        }

        long[] yDims() {
            long[] y = xDims();
            for (int i = 0; i < in.length; i++) {
                y[2 + i] = (in[i] + 2L * p[i] - (long) d[i] * (k[i] - 1) - 1) / s[i] + 1;
            }
            return y;
        }

        PoolOptions options(boolean includePad) {
            return PoolOptions.builder(k).stride(s).padding(p).dilation(d).countIncludePad(includePad).build();
        }
    }

    static final List<Geo> GEOS = List.of(
            new Geo("2-d odd, stride 2, pad 1", 2, 3, new int[] {7, 6}, new int[] {3, 2}, new int[] {2, 1}, new int[] {1, 0},
                    new int[] {1, 1}, false),
            new Geo("2-d view, size-1 channel", 1, 1, new int[] {5, 6}, new int[] {2, 2}, new int[] {2, 2}, new int[] {0, 1},
                    new int[] {1, 1}, true),
            new Geo("1-d", 2, 2, new int[] {9}, new int[] {3}, new int[] {2}, new int[] {1}, new int[] {1}, false),
            new Geo("3-d", 1, 2, new int[] {4, 5, 3}, new int[] {2, 3, 2}, new int[] {2, 1, 1}, new int[] {0, 1, 0},
                    new int[] {1, 1, 1}, false));

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("max_pool", F, "max pooling 1/2/3-d (stride, padding, dilation); also returns int64 argmax indices")
                    .samples((r, t) -> forGeos(r, t, (g, x, rr) -> new Sample(g.label(), g.options(false), x)))
                    .reference((s, in) -> {
                        Geo g = geo(s);
                        return PoolingOpsTest.poolRef(in[0], g.n(), g.c(), g.in(), g.k(), g.s(), g.p(), g.d(), 0, false);
                    })
                    .floats(0).gradCheck().build(),
            OpInfo.of("max_pool_values", F, "max pooling without the indices (inference: Pooling.maxPool when no "
                            + "gradient can be asked for)")
                    .samples((r, t) -> forGeos(r, t, (g, x, rr) -> new Sample(g.label(), g.options(false), x)))
                    .reference((s, in) -> {
                        Geo g = geo(s);
                        return new double[][] {PoolingOpsTest.poolRef(in[0], g.n(), g.c(), g.in(), g.k(), g.s(), g.p(),
                                g.d(), 0, false)[0]};
                    })
                    .floats(0).notDifferentiable("inference only: max_pool, with its indices, is the differentiable form").build(),
            OpInfo.of("max_pool_backward", F, "dx of max_pool: dy scattered to the saved argmax indices")
                    .samples((r, t) -> forGeos(r, t, (g, x, rr) -> {
                        double[] idx = PoolingOpsTest.poolRef(x.stored(), g.n(), g.c(), g.in(), g.k(), g.s(), g.p(), g.d(), 0,
                                false)[1];
                        return new Sample(g.label(), g.options(false), u(rr, t, g.yDims()), x,
                                Arg.index(IndexingSamples.longs(idx), g.yDims()));
                    }))
                    .reference((s, in) -> {
                        Geo g = geo(s, 1);
                        int plane = Gen.prod(Arrays.stream(g.in()).asLongStream().toArray());
                        int oplane = in[0].length / Math.max(1, g.n() * g.c());
                        double[] dx = new double[in[1].length];
                        for (int nc = 0; nc < g.n() * g.c(); nc++) {
                            for (int o = 0; o < oplane; o++) {
                                dx[nc * plane + (int) in[2][nc * oplane + o]] += in[0][nc * oplane + o];
                            }
                        }
                        return new double[][] {dx};
                    })
                    .floats(1e-6).cuda(DType.FLOAT32, 2e-5, 2e-5).coveredBy("max_pool").build(),
            avg("avg_pool"),
            OpInfo.of("avg_pool_backward", F, "dx of avg_pool: dy spread evenly over each window")
                    .samples((r, t) -> forGeos(r, t, (g, x, rr) -> new Sample(g.label(), g.options(true),
                            u(rr, t, g.yDims()), x)))
                    .reference((s, in) -> {
                        Geo g = geo(s, 1);
                        return new double[][] {PoolingOpsTest.avgBackwardRef(in[0], g.n(), g.c(), g.in(), g.k(), g.s(), g.p(),
                                true)};
                    })
                    .floats(1e-6).cuda(DType.FLOAT32, 2e-5, 2e-5).coveredBy("avg_pool").build(),
            adaptive("adaptive_avg_pool", "average over adaptive windows [floor(i·L/o), ceil((i+1)·L/o))", false),
            adaptive("global_avg_pool", "mean over all spatial positions (spatial dims kept with size 1)", true),
            OpInfo.of("adaptive_avg_pool_backward", F, "dx of adaptive_avg_pool and global_avg_pool")
                    .samples((r, t) -> List.of(
                            new Sample("2-d 7x5 to 3x2", new AdaptiveOptions(new int[] {3, 2}, DataLayout.NCHW),
                                    u(r, t, 2, 3, 3, 2), u(r, t, 2, 3, 7, 5)),
                            new Sample("1-d 9 to 4", new AdaptiveOptions(new int[] {4}, DataLayout.NCHW), u(r, t, 1, 2, 4),
                                    u(r, t, 1, 2, 9))))
                    .reference((s, in) -> {
                        long[] xd = s.dims(1);
                        int[] sp = Arrays.stream(Arrays.copyOfRange(xd, 2, xd.length)).mapToInt(v -> (int) v).toArray();
                        return new double[][] {PoolingOpsTest.adaptiveBackwardRef(in[0], (int) xd[0], (int) xd[1], sp,
                                ((AdaptiveOptions) s.attrs()).outputSize())};
                    })
                    .floats(1e-6).cuda(DType.FLOAT32, 2e-5, 2e-5).coveredBy("adaptive_avg_pool").build());

    interface Make {
        Sample make(Geo g, Arg x, Random r);
    }

    static List<Sample> forGeos(Random r, DType t, Make m) {
        List<Sample> out = new ArrayList<>();
        for (Geo g : GEOS) {
            Arg x = u(r, t, g.xDims());
            out.add(m.make(g, g.view() ? x.view() : x, r));
        }
        return out;
    }

    /** The geometry of a sample, from its options and the dims of input {@code xInput}. */
    static Geo geo(Sample s, int xInput) {
        PoolOptions o = (PoolOptions) s.attrs();
        long[] xd = s.dims(xInput);
        int[] in = Arrays.stream(Arrays.copyOfRange(xd, 2, xd.length)).mapToInt(v -> (int) v).toArray();
        return new Geo(s.label(), (int) xd[0], (int) xd[1], in, o.kernel(), o.stride(), o.padding(), o.dilation(), false);
    }

    static Geo geo(Sample s) {
        return geo(s, 0);
    }

    static OpInfo avg(String name) {
        return OpInfo.of(name, F, "average pooling 1/2/3-d (stride, padding; count_include_pad or not)")
                .samples((r, t) -> {
                    List<Sample> s = new ArrayList<>(forGeos(r, t, (g, x, rr) -> new Sample(g.label(), g.options(true), x)));
                    s.addAll(forGeos(r, t, (g, x, rr) -> new Sample(g.label() + ", padding not counted",
                            g.options(false), x)));
                    return s;
                })
                .reference((s, in) -> {
                    Geo g = geo(s);
                    boolean inc = ((PoolOptions) s.attrs()).countIncludePad();
                    return new double[][] {PoolingOpsTest.poolRef(in[0], g.n(), g.c(), g.in(), g.k(), g.s(), g.p(), g.d(), 1,
                            inc)[0]};
                })
                .floats(1e-6).cuda(DType.FLOAT32, 2e-5, 2e-5).gradCheck().build();
    }

    static OpInfo adaptive(String name, String doc, boolean global) {
        return OpInfo.of(name, F, doc)
                .samples((r, t) -> List.of(
                        new Sample("2-d 7x5 to 3x2", new AdaptiveOptions(global ? new int[] {1} : new int[] {3, 2},
                                DataLayout.NCHW), u(r, t, 2, 3, 7, 5)),
                        new Sample("2-d view", new AdaptiveOptions(global ? new int[] {1} : new int[] {2, 4}, DataLayout.NCHW),
                                u(r, t, 1, 2, 5, 6).view()),
                        new Sample("1-d 9 to 4", new AdaptiveOptions(global ? new int[] {1} : new int[] {4}, DataLayout.NCHW),
                                u(r, t, 1, 2, 9))))
                .reference((s, in) -> {
                    long[] xd = s.dims(0);
                    int[] sp = Arrays.stream(Arrays.copyOfRange(xd, 2, xd.length)).mapToInt(v -> (int) v).toArray();
                    int[] out = ((AdaptiveOptions) s.attrs()).outputSize();
                    if (global) {
                        out = new int[sp.length];
                        Arrays.fill(out, 1);
                    }
                    return new double[][] {PoolingOpsTest.adaptiveRef(in[0], (int) xd[0], (int) xd[1], sp, out)};
                })
                .floats(1e-6).cuda(DType.FLOAT32, 2e-5, 2e-5).gradCheck().build();
    }
}
