/*
 * GPU check of BiPer (quant_binary.h: ct_cuda_biper, ct_cuda_biper_backward) against the CPU
 * twins, included by gpu_check.cu. Both evaluate sin / cos of omega x in double
 * (native/shared/biper_math.h) and round once: the square wave must be identical wherever
 * |sin(omega x)| is not within double rounding of 0 (random inputs are not), NaN / infinity give
 * NaN on both; the gradients agree to the dtype's rounding (CUDA's double cos is within 2 ulp of
 * glibc's). Frequencies: the paper's 20, a low 0.5 and a high 300 (many periods over the inputs).
 */
static void check_biper() {
  for (double omega : {20.0, 0.5, 300.0}) {
    for (int dt : {CT_F32, CT_F64, CT_F16, CT_BF16}) {
      const int64_t n = 4099;
      const std::string kase = "n=4099, omega=" + std::to_string(omega);
      Buf x(dt, n), g(dt, n), yc(dt, n), yg(dt, n), dc(dt, n), dg(dt, n);
      x.fill_random(0);
      setv(x.hp(), dt, 0, 0.0);        // sin(0) = 0: +1
      setv(x.hp(), dt, 1, NAN);        // NaN stays NaN
      setv(x.hp(), dt, 2, INFINITY);   // no value at infinity: NaN
      x.up();
      g.fill_random(0);
      int a = ct_cpu_biper(x.hp(), yc.hp(), dt, n, omega, 0), b = ct_cuda_biper(x.d, yg.d, dt, n, omega, 0);
      if (status_ok("biper", dt, kase, a, b)) compare("biper", dt, kase, yc.hp(), yg.down().data(), n, 0, 0);
      a = ct_cpu_biper_backward(g.hp(), x.hp(), dc.hp(), dt, n, omega, 0);
      b = ct_cuda_biper_backward(g.d, x.d, dg.d, dt, n, omega, 0);
      const double tol = dt == CT_F64 ? 1e-12 : dt == CT_F32 ? 1e-6 : dt == CT_F16 ? 2e-3 : 8e-3;
      if (status_ok("biper_backward", dt, kase, a, b))
        compare("biper_backward", dt, kase, dc.hp(), dg.down().data(), n, tol, tol * omega);
    }
  }
  // a frequency that is not finite and positive is refused by both
  Buf x(CT_F32, 8), y(CT_F32, 8);
  x.fill_random(0);
  for (double omega : {0.0, -1.0, (double)INFINITY, (double)NAN}) {
    const int a = ct_cpu_biper(x.hp(), y.hp(), CT_F32, 8, omega, 0), b = ct_cuda_biper(x.d, y.d, CT_F32, 8, omega, 0);
    record("biper", "f32", "omega=" + std::to_string(omega) + " rejected", 0, 0,
           a == CT_ERR_INVALID_ARG && b == CT_ERR_INVALID_ARG, std::string("gpu '") + (b ? ct_cuda_last_error() : "") + "'");
  }
}
