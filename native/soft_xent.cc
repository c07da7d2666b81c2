// Distillation's soft targets, fused: the divergence between the student's and the teacher's
// softmax at temperature T in two reads of each pair of rows (maxima, then normalisers and
// divergence together), and one backward sweep that writes the whole gradient, the hard-target
// cross-entropy's included. Composed of tfjs ops, both directions hold several [n, v]
// temporaries (log-probabilities, probabilities, their products).
#include <omp.h>

#include <cmath>
#include <limits>

#include "kernels.h"
#include "vmath.h"

namespace nk {

namespace {
constexpr int64_t kParallelMin = 1 << 17;

// The row maximum, NaN when the row holds one (as xent's).
inline float row_max(const float* row, int64_t v) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < v; ++j) m = row[j] > m || row[j] != row[j] ? row[j] : m;
  return m;
}
}  // namespace

// With a = (x − max)·(1/T) and Z = Σ exp(a) for each side, log p = a − log Z, so
// KL(p ∥ q) = Σ p (a_p − a_q) + log Z_q − log Z_p = W / Z_p + log Z_q − log Z_p, where
// W = Σ exp(a_p)·(a_p − a_q) is summed in the same pass as the Z's. A zero probability adds
// nothing (0 · log 0 = 0), even against a −∞ logit on the other side.
void soft_xent(const float* s, const float* t, int64_t n, int64_t v, float inv_t, bool reverse, float* lse_s,
               float* lse_t, float* div) {
#pragma omp parallel for schedule(static) if (n * v > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* sr = s + i * v;
    const float* tr = t + i * v;
    const float ms = row_max(sr, v), mt = row_max(tr, v);
    float zs = 0.f, zt = 0.f, w = 0.f;
#pragma omp simd reduction(+ : zs, zt, w)
    for (int64_t j = 0; j < v; ++j) {
      const float as = (sr[j] - ms) * inv_t, at = (tr[j] - mt) * inv_t;
      const float es = vexp(as), et = vexp(at);
      zs += es;
      zt += et;
      const float ep = reverse ? es : et;
      const float d = reverse ? as - at : at - as;
      w += ep == 0.f ? 0.f : ep * d;
    }
    const float log_zs = std::log(zs), log_zt = std::log(zt);
    lse_s[i] = ms * inv_t + log_zs;
    lse_t[i] = mt * inv_t + log_zt;
    div[i] = reverse ? w / zs + log_zt - log_zs : w / zt + log_zs - log_zt;
  }
}

// d/ds of T²·KL at temperature T is T·(p_s − p_t) (forward) or T·p_s·(log p_s − log p_t − KL)
// (reverse); the caller folds T, the weights and the incoming gradient into kd_scale. A row
// whose kd_scale is 0 gets exactly the hard-target gradient, whatever the teacher's row holds.
void soft_xent_grad(const float* s, const float* t, const float* lse, const int32_t* targets, const float* lse_s,
                    const float* lse_t, const float* div, const float* ce_scale, const float* kd_scale, int64_t n,
                    int64_t v, float inv_t, bool reverse, float* out) {
#pragma omp parallel for schedule(static) if (n * v > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* sr = s + i * v;
    const float* tr = t + i * v;
    float* o = out + i * v;
    const float l = lse[i], g = ce_scale[i], k = kd_scale[i], ls = lse_s[i], lt = lse_t[i], d = div[i];
    const auto soft = [=](int64_t j) {
      const float lps = sr[j] * inv_t - ls, lpt = tr[j] * inv_t - lt;
      const float ps = vexp(lps);
      return reverse ? (ps == 0.f ? 0.f : ps * (lps - lpt - d)) : ps - vexp(lpt);
    };
    const int32_t target = targets[i];
    if (k == 0.f) {
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) o[j] = vexp(sr[j] - l) * g;
      if (target >= 0 && target < v) o[target] = (vexp(sr[target] - l) - 1.f) * g;
    } else {
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) o[j] = vexp(sr[j] - l) * g + soft(j) * k;
      if (target >= 0 && target < v) o[target] = (vexp(sr[target] - l) - 1.f) * g + soft(target) * k;
    }
  }
}

}  // namespace nk
