// Causal attention fused for training (FlashAttention's scheme, Dao et al. 2022): scores, the
// causal/window mask, ALiBi's bias, softmax and the weighted sum per block of queries against
// blocks of keys with an online softmax, keeping only each row's log-sum-exp. The backward
// pass recomputes the probabilities block by block from it, so no [T, T] matrix is ever held.
// RoPE's rotation of q and k happens here too, one pass each way instead of the composed ops'.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace nk {

namespace {

constexpr int64_t kRows = 32;  // queries per block
constexpr int64_t kKeys = 64;  // keys per block
// Below this many multiply-adds a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

inline void axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d) y[d] += a * x[d];
}

// The keys query i sees inside [j0, j1): [first, last).
inline int64_t first_key(int64_t i, int64_t j0, int64_t span) { return std::max(j0, i - span); }
inline int64_t last_key(int64_t i, int64_t j1) { return std::min(j1, i + 1); }

// One head's view: q, k, v (and their gradients) are [T, dh] from here.
struct Head {
  int64_t t, dh, span;
  float slope;
  bool bias;
  // Score of query i against key j, as the composed path adds it: q·k, then the bias.
  float score(const float* qi, const float* kj, int64_t i, int64_t j) const {
    const float s = dot(qi, kj, dh);
    return bias ? s + slope * static_cast<float>(i - j) : s;
  }
};

Head head_of(const AttentionShape& s, int64_t bh, const float* slopes) {
  return {s.t, s.dh, s.span, slopes ? slopes[bh % s.heads] : 0.f, slopes != nullptr};
}

// Rows i0..i1 of one head: out and lse by the online softmax over blocks of keys.
void forward_block(const Head& h, const float* q, const float* k, const float* v, int64_t i0, int64_t i1, float* out,
                   float* lse) {
  const int64_t rows = i1 - i0, dh = h.dh;
  std::vector<float> acc(rows * dh, 0.f), m(rows, kNegInf);
  std::vector<double> l(rows, 0.0);
  float s[kKeys];
  for (int64_t j0 = std::max<int64_t>(0, i0 - h.span); j0 < i1; j0 += kKeys) {
    const int64_t j1 = std::min(i1, j0 + kKeys);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r, a = first_key(i, j0, h.span), b = last_key(i, j1);
      if (a >= b) continue;
      float mb = kNegInf;
      for (int64_t j = a; j < b; ++j) {
        s[j - a] = h.score(q + i * dh, k + j * dh, i, j);
        mb = std::max(mb, s[j - a]);
      }
      const float mn = std::max(m[r], mb);
      // Rescales what earlier blocks summed against the old maximum (by 0 before any).
      const float scale = vexp(m[r] - mn);
      float* ar = acc.data() + r * dh;
      if (scale != 1.f) {
        l[r] *= scale;
#pragma omp simd
        for (int64_t d = 0; d < dh; ++d) ar[d] *= scale;
      }
      for (int64_t j = a; j < b; ++j) {
        const float p = vexp(s[j - a] - mn);
        l[r] += p;
        axpy(p, v + j * dh, ar, dh);
      }
      m[r] = mn;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    // Causal rows always see their own key, so l > 0.
    const float lf = static_cast<float>(l[r]);
    for (int64_t d = 0; d < dh; ++d) out[(i0 + r) * dh + d] = acc[r * dh + d] / lf;
    lse[i0 + r] = m[r] + std::log(lf);
  }
}

// dK, dV of keys j0..j1 of one head: every query that sees them, probabilities recomputed from lse.
void key_grad_block(const Head& h, const float* q, const float* k, const float* v, const float* lse, const float* dout,
                    const float* delta, int64_t j0, int64_t j1, float* dk, float* dv) {
  const int64_t dh = h.dh;
  std::fill(dk + j0 * dh, dk + j1 * dh, 0.f);
  std::fill(dv + j0 * dh, dv + j1 * dh, 0.f);
  const int64_t i_end = std::min(h.t, j1 + h.span);
  for (int64_t i = j0; i < i_end; ++i) {
    const float* qi = q + i * dh;
    const float* gi = dout + i * dh;
    for (int64_t j = first_key(i, j0, h.span), b = last_key(i, j1); j < b; ++j) {
      const float p = vexp(h.score(qi, k + j * dh, i, j) - lse[i]);
      axpy(p, gi, dv + j * dh, dh);
      const float ds = p * (dot(gi, v + j * dh, dh) - delta[i]);
      axpy(ds, qi, dk + j * dh, dh);
    }
  }
}

// dQ of queries i0..i1 of one head.
void query_grad_block(const Head& h, const float* q, const float* k, const float* v, const float* lse,
                      const float* dout, const float* delta, int64_t i0, int64_t i1, float* dq) {
  const int64_t dh = h.dh;
  std::fill(dq + i0 * dh, dq + i1 * dh, 0.f);
  for (int64_t j0 = std::max<int64_t>(0, i0 - h.span); j0 < i1; j0 += kKeys) {
    const int64_t j1 = std::min(i1, j0 + kKeys);
    for (int64_t i = i0; i < i1; ++i) {
      const float* qi = q + i * dh;
      const float* gi = dout + i * dh;
      for (int64_t j = first_key(i, j0, h.span), b = last_key(i, j1); j < b; ++j) {
        const float p = vexp(h.score(qi, k + j * dh, i, j) - lse[i]);
        const float ds = p * (dot(gi, v + j * dh, dh) - delta[i]);
        axpy(ds, k + j * dh, dq + i * dh, dh);
      }
    }
  }
}

int64_t blocks(int64_t t, int64_t size) { return (t + size - 1) / size; }

// y = x·cos + rotate_half(x)·sin for each of bh heads of [t, dh] rows: rotate_half(x) is
// −x[j + half] at j < half and x[j − half] at half ≤ j < 2·half; later dimensions pass (sin 0).
void rotate(const float* x, const float* cos, const float* sin, int64_t bh, int64_t t, int64_t dh, int64_t half,
            bool threads, float* y) {
#pragma omp parallel for schedule(static) if (threads)
  for (int64_t r = 0; r < bh * t; ++r) {
    const float *xr = x + r * dh, *c = cos + (r % t) * dh, *sn = sin + (r % t) * dh;
    float* yr = y + r * dh;
    for (int64_t j = 0; j < half; ++j) {
      yr[j] = xr[j] * c[j] - xr[j + half] * sn[j];
      yr[j + half] = xr[j + half] * c[j + half] + xr[j] * sn[j + half];
    }
    for (int64_t j = 2 * half; j < dh; ++j) yr[j] = xr[j] * c[j];
  }
}

// The transpose of rotate, in place: the gradient with respect to the unrotated rows.
void rotate_back(float* g, const float* cos, const float* sin, int64_t bh, int64_t t, int64_t dh, int64_t half,
                 bool threads) {
#pragma omp parallel for schedule(static) if (threads)
  for (int64_t r = 0; r < bh * t; ++r) {
    const float *c = cos + (r % t) * dh, *sn = sin + (r % t) * dh;
    float* gr = g + r * dh;
    for (int64_t j = 0; j < half; ++j) {
      const float a = gr[j], b = gr[j + half];
      gr[j] = a * c[j] + b * sn[j + half];
      gr[j + half] = b * c[j + half] - a * sn[j];
    }
    for (int64_t j = 2 * half; j < dh; ++j) gr[j] *= c[j];
  }
}

// q and k as the kernel reads them: rotated copies when a rotation is given, else the inputs.
struct Rotated {
  std::vector<float> q, k;
  const float *qp, *kp;
  Rotated(const AttentionShape& s, const float* q0, const float* k0, const Rotation* r, bool threads) : qp(q0), kp(k0) {
    if (r == nullptr) return;
    q.resize(s.bh * s.t * s.dh);
    k.resize(s.bh * s.t * s.dh);
    rotate(q0, r->qcos, r->qsin, s.bh, s.t, s.dh, r->half, threads, q.data());
    rotate(k0, r->kcos, r->ksin, s.bh, s.t, s.dh, r->half, threads, k.data());
    qp = q.data();
    kp = k.data();
  }
};

// Multiply-adds of one pass, to decide whether threads pay off.
bool worth_threads(const AttentionShape& s) { return s.bh * s.t * std::min(s.t, s.span + 1) * s.dh > kParallelMin; }

}  // namespace

void attention(const AttentionShape& s, const float* q0, const float* k0, const float* v, const float* slopes,
               const Rotation* rotation, float* out, float* lse) {
  const Rotated r(s, q0, k0, rotation, worth_threads(s));
  const float *q = r.qp, *k = r.kp;
  const int64_t per = s.t * s.dh, nb = blocks(s.t, kRows);
  // Dynamic: causal blocks near the end of the sequence see more keys.
#pragma omp parallel for collapse(2) schedule(dynamic) if (worth_threads(s))
  for (int64_t bh = 0; bh < s.bh; ++bh) {
    for (int64_t ib = 0; ib < nb; ++ib) {
      const Head h = head_of(s, bh, slopes);
      const int64_t o = bh * per;
      forward_block(h, q + o, k + o, v + o, ib * kRows, std::min(s.t, (ib + 1) * kRows), out + o, lse + bh * s.t);
    }
  }
}

void attention_grad(const AttentionShape& s, const float* q0, const float* k0, const float* v, const float* out,
                    const float* lse, const float* dout, const float* slopes, const Rotation* rotation, float* dq,
                    float* dk, float* dv) {
  const Rotated r(s, q0, k0, rotation, worth_threads(s));
  const float *q = r.qp, *k = r.kp;
  const int64_t per = s.t * s.dh, rows = s.bh * s.t;
  // delta_i = dO_i·O_i = Σ_j P_ij dP_ij, the softmax gradient's row term.
  std::vector<float> delta(rows);
#pragma omp parallel for schedule(static) if (worth_threads(s))
  for (int64_t i = 0; i < rows; ++i) delta[i] = dot(dout + i * s.dh, out + i * s.dh, s.dh);
  // Two sweeps, by key block and by query block, so that no two threads add into one row.
  const int64_t nk = blocks(s.t, kKeys), nq = blocks(s.t, kRows);
#pragma omp parallel for collapse(2) schedule(dynamic) if (worth_threads(s))
  for (int64_t bh = 0; bh < s.bh; ++bh) {
    for (int64_t jb = 0; jb < nk; ++jb) {
      const Head h = head_of(s, bh, slopes);
      const int64_t o = bh * per;
      key_grad_block(h, q + o, k + o, v + o, lse + bh * s.t, dout + o, delta.data() + bh * s.t, jb * kKeys,
                     std::min(s.t, (jb + 1) * kKeys), dk + o, dv + o);
    }
  }
#pragma omp parallel for collapse(2) schedule(dynamic) if (worth_threads(s))
  for (int64_t bh = 0; bh < s.bh; ++bh) {
    for (int64_t ib = 0; ib < nq; ++ib) {
      const Head h = head_of(s, bh, slopes);
      const int64_t o = bh * per;
      query_grad_block(h, q + o, k + o, v + o, lse + bh * s.t, dout + o, delta.data() + bh * s.t, ib * kRows,
                       std::min(s.t, (ib + 1) * kRows), dq + o);
    }
  }
  if (rotation != nullptr) {
    rotate_back(dq, rotation->qcos, rotation->qsin, s.bh, s.t, s.dh, rotation->half, worth_threads(s));
    rotate_back(dk, rotation->kcos, rotation->ksin, s.bh, s.t, s.dh, rotation->half, worth_threads(s));
  }
}

}  // namespace nk
