// Softmax cross-entropy over the vocabulary, fused: the forward pass reads each row of logits
// twice (max, then the exponential sum) and writes two numbers per row; the backward pass
// writes the gradient in one sweep. Composed of tfjs ops both cost several [N, V] temporaries.
#include <omp.h>

#include <cmath>
#include <limits>

#include "kernels.h"
#include "vmath.h"

namespace nk {

namespace {
constexpr int64_t kParallelMin = 1 << 17;
}

void xent(const float* x, const int32_t* targets, int64_t n, int64_t v, float* nll, float* lse) {
#pragma omp parallel for schedule(static) if (n * v > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + i * v;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < v; ++j) m = row[j] > m || row[j] != row[j] ? row[j] : m;
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < v; ++j) s += vexp(row[j] - m);
    const float l = m + std::log(s);
    lse[i] = l;
    const int32_t t = targets[i];
    nll[i] = t >= 0 && t < v ? l - row[t] : std::numeric_limits<float>::quiet_NaN();
  }
}

void xent_grad(const float* x, const float* lse, const int32_t* targets, const float* scale, int64_t n, int64_t v,
               float* out) {
#pragma omp parallel for schedule(static) if (n * v > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + i * v;
    float* o = out + i * v;
    const float l = lse[i], g = scale[i];
    const int32_t t = targets[i];
    const bool hit = t >= 0 && t < v;
    // Read before the sweep: out may be x itself (the caller's logits had no other reader).
    const float xt = hit ? row[t] : 0.f;
#pragma omp simd
    for (int64_t j = 0; j < v; ++j) o[j] = vexp(row[j] - l) * g;
    if (hit) o[t] = (vexp(xt - l) - 1.f) * g;
  }
}

}  // namespace nk
