// Vectorisable float math (GCC turns these loops into AVX2/AVX-512 code; glibc's scalar
// expf/tanhf calls do not vectorise without -ffast-math, which would break NaN handling).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace nk {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// exp(x) = p · 2^n for x in float range: n the nearest integer to x / ln 2 and p the polynomial
// of the remainder (Cephes' expf), shared by the two exps below.
inline float exp_remainder(float x, float n) {
  float r = std::fma(n, -0.693359375f, x);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  return std::fma(p * r, r, r) + 1.f;
}

// exp with < 2 ulp error over the normal range; NaN stays NaN, overflow gives +Inf,
// underflow goes through the subnormals to 0.
inline float vexp(float x) {
  const float hi = 88.72283935546875f, lo = -103.97208f;
  const float xc = x > hi ? hi : (x < lo ? lo : x);
  const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  const float p = exp_remainder(xc, n);
  // 2^n split in two factors so that n down to -150 stays representable.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni / 2, n2 = ni - n1;
  const float s1 = bits_to_float(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = bits_to_float(static_cast<uint32_t>(n2 + 127) << 23);
  float y = p * s1 * s2;
  y = x > hi ? INFINITY : y;
  y = x < lo ? 0.f : y;
  return x != x ? x : y;
}

// exp of softmax's arguments (x − max ≤ 0, or above by a rounding): vexp's polynomial without its
// overflow branch and two-factor scaling. Below −87.3 it gives 0 (exp < 2⁻¹²⁶), which next to the
// row's largest term, 1, is far below float32's rounding. NaN stays NaN.
inline float vexp_softmax(float x) {
  const float lo = -87.33654f;
  const float xc = x < lo ? lo : x;
  const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  const float p = exp_remainder(xc, n);
  const float y = p * bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return x < lo ? 0.f : (x != x ? x : y);
}

inline float vsigmoid(float x) { return 1.f / (1.f + vexp(-x)); }

// tanh from exp away from 0 and an odd polynomial near 0, where 1 - 2/(e^2x + 1) cancels.
inline float vtanh(float x) {
  const float a = std::fabs(x);
  const float e = vexp(2.f * (a > 9.f ? 9.f : a));
  const float big = 1.f - 2.f / (e + 1.f);
  const float x2 = x * x;
  float p = -5.70498872745e-3f;
  p = std::fma(p, x2, 2.06390887954e-2f);
  p = std::fma(p, x2, -5.37397155531e-2f);
  p = std::fma(p, x2, 1.33314422036e-1f);
  p = std::fma(p, x2, -3.33332819422e-1f);
  const float small = std::fma(p * x2, a, a);
  float r = a < 0.625f ? small : big;
  r = a > 9.f ? 1.f : r;
  r = std::copysign(r, x);
  return x != x ? x : r;
}

}  // namespace nk
