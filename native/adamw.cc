// One AdamW step over a parameter tensor in a single pass: reads p, g, m, v once and writes
// p', m', v', where the composed update runs about fourteen full passes per parameter.
// Each element goes through the same float32 operations in the same order as the composed
// tfjs update (src/optimizer/adamw.ts), so both give identical bits: the build keeps
// -ffp-contract=off, which rules out fused multiply-adds.
#include <cmath>

#include "kernels.h"

namespace nk {

void adamw(const float* p, const float* g, const float* m, const float* v, int64_t n, const AdamWScalars& s, float* p_out,
           float* m_out, float* v_out) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float mi = m[i] * s.beta1 + g[i] * s.one_minus_beta1;
    const float vi = v[i] * s.beta2 + (g[i] * g[i]) * s.one_minus_beta2;
    const float decayed = s.decay ? p[i] * s.decay_factor : p[i];
    const float denom = std::sqrt(vi) / s.bias2_sqrt + s.eps;
    p_out[i] = decayed - (mi / denom) * s.step_size;
    m_out[i] = mi;
    v_out[i] = vi;
  }
}

}  // namespace nk
