/**
 * Registry-driven op tests in the style of PyTorch's OpInfo.
 *
 * <p>Every op in {@link dev.cortado.ops.OpRegistry#all()} has one {@link dev.cortado.ops.opinfo.OpInfo}
 * entry in its family's {@code *Samples.java}: sample inputs (fresh seeded random values; odd
 * sizes, size-1 and empty dims, a transposed view, broadcasting where the op broadcasts), a
 * float64 reference (shared with the family tests in {@code dev.cortado.ops}), a tolerance per
 * dtype (relative to the reference's magnitude), how its gradient is checked, and the one-line
 * description of the op table. {@link dev.cortado.ops.opinfo.OpInfoTest} walks the registry and
 * fails for an op without an entry, a differentiable op without a gradient check, a CUDA op not
 * covered by {@link dev.cortado.ops.opinfo.OpInfoCudaTest} (tag {@code gpu}), or a stale row in
 * {@code docs/reference/ops.md} (written by {@link dev.cortado.ops.opinfo.OpTable}).
 *
 * <h2>Adding an entry</h2>
 *
 * <p>An elementwise op is one line in {@code ElementwiseSamples.ENTRIES}: its name, its doc line,
 * its float64 scalar function and the domain its samples are drawn from; the samples, the
 * reference, the dtypes (float64, float32, bfloat16, float16) and the gradient check follow:
 *
 * <pre>{@code
 * unary("hardswish", "x·relu6(x + 3) / 6", x -> x * Math.min(Math.max(x + 3, 0), 6) / 6, -5, 5),
 * unary("mish", "x·tanh(softplus(x))", x -> x * Math.tanh(Math.log1p(Math.exp(x))), -4, 4),
 * binary("hypot", "sqrt(a² + b²)", Math::hypot, -3, 3, -3, 3),
 * }</pre>
 *
 * <p>Its gradient op, if it has one ({@code hardswish_grad}: g·f'(x), no backward rule of its
 * own), is {@code gradient("hardswish_grad", "hardswish", (g, x) -> g * f'(x))}: checked by the
 * gradient check of the forward op. Then regenerate the op table:
 * {@code mvn -B verify -Dnative.cuda=OFF -Dtest=OpInfoTest -Dsurefire.failIfNoSpecifiedTests=false -Dopinfo.writeDocs=true}.
 *
 * <p>Another family: an {@code OpInfo.of(name, family, description)} builder in its
 * {@code *Samples.java} with {@code .samples((random, dtype) -> List.of(new Sample(label, attrs, args...)))},
 * {@code .reference((sample, inputs) -> new double[][] {expected outputs...})}, the dtypes with
 * their tolerances ({@code .floats(f32)}, {@code .halves(bf16, f16)}, {@code .dtype(t, rel, abs)},
 * {@code .cuda(t, rel, abs)} where CUDA differs), and one of {@code .gradCheck()},
 * {@code .coveredBy("forward_op")}, {@code .notDifferentiable("why")}. A new family file is added to
 * {@link dev.cortado.ops.opinfo.Catalogue}.
 */
package dev.cortado.ops.opinfo;
