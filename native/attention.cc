// Attention fused for training (FlashAttention's scheme, Dao et al. 2022): scores, the pattern
// (each query a range of keys), ALiBi's bias, softmax and the weighted sum per block of queries
// against blocks of keys with an online softmax, keeping only each row's log-sum-exp. The backward
// pass recomputes the probabilities block by block from it, so no [T, T] matrix is ever held;
// it makes one sweep over key blocks per head (FlashAttention-2), adding into dQ as it goes.
// The block products run as register tiles of 6 rows × 16 columns (twelve AVX2 accumulators)
// over blocks packed so that their loads are contiguous (keys transposed once per call); exp is
// vmath.h's vectorisable one for softmax.
// RoPE's rotation of q and k happens here too, one pass each way instead of the composed ops'.
#include <omp.h>
#ifdef __FMA__
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace nk {

namespace {

constexpr int64_t kRows = 96;  // queries per block
constexpr int64_t kKeys = 96;  // keys per block, also the row length of score blocks
// Below this many multiply-adds a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Eight floats, one AVX2 register. A register tile is kTile rows of two of them.
typedef float Vec __attribute__((vector_size(32)));
constexpr int64_t kW = 8;
constexpr int64_t kTile = 6;
constexpr int64_t kCols = 2 * kW;
static_assert(kRows % kTile == 0 && kKeys % kTile == 0 && kKeys % kCols == 0, "blocks hold whole tiles");

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// Not Vec{} + x: without -ffast-math, 0 + x cannot fold away (−0), and costs an add before each broadcast.
inline Vec splat(float x) { return Vec{x, x, x, x, x, x, x, x}; }

// a·b + c, fused where the CPU can (the build's -ffp-contract=off keeps the compiler from it).
inline Vec fmadd(Vec a, Vec b, Vec c) {
#ifdef __FMA__
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

// The largest of row[c] for c in [a, b), in lanes: GCC left the select-and-max loop scalar.
inline float row_max(const float* row, int32_t a, int32_t b) {
  typedef int32_t Index __attribute__((vector_size(32)));
  const Index lane = {0, 1, 2, 3, 4, 5, 6, 7};
  Vec m = splat(kNegInf);
  for (int32_t c = 0; c < kKeys; c += kW) {
    const Index j = lane + c;
    const Vec x = load(row + c);
    m = j >= a && j < b && x > m ? x : m;
  }
  float r = m[0];
  for (int l = 1; l < kW; ++l) r = std::max(r, m[l]);
  return r;
}

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

// c[r][0, 16) = Σ_d a[r][d] · bt[d][0, 16) for the kTile rows of a tile (rows lda, ldb, ldc apart).
inline void tile_abt(const float* a, int64_t lda, const float* bt, int64_t ldb, int64_t inner, float* c, int64_t ldc) {
  Vec acc[kTile][2] = {};
  for (int64_t d = 0; d < inner; ++d) {
    const Vec b0 = load(bt + d * ldb), b1 = load(bt + d * ldb + kW);
#pragma GCC unroll 8
    for (int r = 0; r < kTile; ++r) {
      const Vec x = splat(a[r * lda + d]);
      acc[r][0] = fmadd(x, b0, acc[r][0]);
      acc[r][1] = fmadd(x, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kTile; ++r) {
    store(c + r * ldc, acc[r][0]);
    store(c + r * ldc + kW, acc[r][1]);
  }
}

// c[r][0, 16) += Σ_{k0 ≤ k < k1} a(r, k) · b[k][0, 16) for the kTile rows of a tile, a(r, k) = a[r·ar + k·ak]
// (ar = 1 reads a transposed).
inline void tile_ab(const float* a, int64_t ar, int64_t ak, const float* b, int64_t ldb, int64_t k0, int64_t k1,
                    float* c, int64_t ldc) {
  Vec acc[kTile][2];
#pragma GCC unroll 8
  for (int r = 0; r < kTile; ++r) {
    acc[r][0] = load(c + r * ldc);
    acc[r][1] = load(c + r * ldc + kW);
  }
  for (int64_t k = k0; k < k1; ++k) {
    const float* x = a + k * ak;
    const Vec b0 = load(b + k * ldb), b1 = load(b + k * ldb + kW);
#pragma GCC unroll 8
    for (int r = 0; r < kTile; ++r) {
      const Vec y = splat(x[r * ar]);
      acc[r][0] = fmadd(y, b0, acc[r][0]);
      acc[r][1] = fmadd(y, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kTile; ++r) {
    store(c + r * ldc, acc[r][0]);
    store(c + r * ldc + kW, acc[r][1]);
  }
}

// The keys query rows [i0, i1) see together, [lo, hi) (empty: lo ≥ hi): the hull of their ranges.
struct Hull {
  int64_t lo, hi;
  bool meets(int64_t a, int64_t b) const { return lo < b && a < hi; }
};

Hull hull_of(const int32_t* lo, const int32_t* hi, int64_t i0, int64_t i1) {
  Hull u{std::numeric_limits<int64_t>::max(), 0};
  for (int64_t i = i0; i < i1; ++i)
    if (lo[i] < hi[i]) u = {std::min<int64_t>(u.lo, lo[i]), std::max<int64_t>(u.hi, hi[i])};
  return u;
}

// One head's view: q (and dq) are [t, dh] from here, k, v (and their gradients) [tk, dh]; dhp is
// dh rounded up to whole tile columns, the row length of packed blocks.
struct Head {
  int64_t t, tk, dh, dhp;
  float slope;
  bool bias;
  const int32_t *lo_, *hi_;
  // Keys query i sees among j0 + [0, n), relative to j0: [lo, hi), empty when lo ≥ hi.
  int64_t lo(int64_t i, int64_t j0) const { return std::max<int64_t>(0, lo_[i] - j0); }
  int64_t hi(int64_t i, int64_t j0, int64_t n) const { return std::min<int64_t>(n, hi_[i] - j0); }
  // The hull of the real rows among i0 + [0, rows).
  Hull rows(int64_t i0, int64_t rows) const { return hull_of(lo_, hi_, i0, std::min(t, i0 + rows)); }
};

Head head_of(const AttentionShape& s, int64_t bh, const float* slopes) {
  return {s.t, s.tk, s.dh, round_up(s.dh, kCols), slopes ? slopes[bh % s.heads] : 0.f, slopes != nullptr, s.lo, s.hi};
}

// Rows [0, n) of x (dh floats each) into y [rows, dhp], zero past row n and column dh.
void pack(const float* x, int64_t n, int64_t dh, int64_t rows, int64_t dhp, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * dhp;
    if (r < n) std::copy(x + r * dh, x + (r + 1) * dh, yr);
    std::fill(yr + (r < n ? dh : 0), yr + dhp, 0.f);
  }
}

// Rows [0, n) of x (dh floats each) transposed into y [dh, kKeys], zero past column n.
void pack_t(const float* x, int64_t n, int64_t dh, float* y) {
  for (int64_t c = 0; c < n; ++c)
    for (int64_t d = 0; d < dh; ++d) y[d * kKeys + c] = x[c * dh + d];
  for (int64_t d = 0; n < kKeys && d < dh; ++d) std::fill(y + d * kKeys + n, y + (d + 1) * kKeys, 0.f);
}

// Rows i0 + [0, rows) of x, n of them in the sequence, as tiles read them, [rows, dhp]: x itself when
// its rows are whole tiles wide and all there, else packed into buf.
const float* rows_of(const Head& h, const float* x, int64_t i0, int64_t n, int64_t rows, std::vector<float>& buf) {
  if (h.dh == h.dhp && n == rows) return x + i0 * h.dh;
  pack(x + i0 * h.dh, n, h.dh, rows, h.dhp, buf.data());
  return buf.data();
}

// s [rows, kKeys] = a [rows, dhp] · bt [dh, kKeys] for queries i0 + r against keys j0 + c, c < n,
// over the tiles holding a pair the head's pattern shows (the others are left as they were).
void block_scores(const Head& h, const float* a, int64_t rows, int64_t i0, const float* bt, int64_t j0, int64_t n,
                  float* s) {
  for (int64_t r = 0; r < rows; r += kTile) {
    const Hull u = h.rows(i0 + r, kTile);
    for (int64_t c = 0; c < n; c += kCols)
      if (u.meets(j0 + c, j0 + c + kCols)) tile_abt(a + r * h.dhp, h.dhp, bt + c, kKeys, h.dh, s + r * kKeys + c, kKeys);
  }
}

// c [rows, dhp] += p [rows, kKeys] · b [n, dhp], p zero outside the pattern, for queries i0 + r, keys j0 + k.
void block_by_rows(const Head& h, const float* p, int64_t rows, int64_t i0, const float* b, int64_t j0, int64_t n,
                   float* c) {
  for (int64_t r = 0; r < rows; r += kTile) {
    const Hull u = h.rows(i0 + r, kTile);
    const int64_t k0 = std::max<int64_t>(0, u.lo - j0), k1 = std::min(n, u.hi - j0);
    for (int64_t d = 0; k0 < k1 && d < h.dhp; d += kCols)
      tile_ab(p + r * kKeys, kKeys, 1, b + d, h.dhp, k0, k1, c + r * h.dhp + d, h.dhp);
  }
}

// c [cols, dhp] += pᵀ · b [n, dhp] with p [n, kKeys] as above: key j0 + r's row gathers queries i0 + k,
// over the queries from the first to the last that sees one of the tile's keys.
void block_by_cols(const Head& h, const float* p, int64_t cols, int64_t j0, const float* b, int64_t i0, int64_t n,
                   float* c) {
  for (int64_t r = 0; r < cols; r += kTile) {
    const int64_t a = j0 + r, z = a + kTile;
    int64_t k0 = n, k1 = 0;
    for (int64_t k = 0; k < n; ++k)
      if (h.lo_[i0 + k] < z && a < h.hi_[i0 + k] && h.lo_[i0 + k] < h.hi_[i0 + k]) {
        k0 = std::min(k0, k);
        k1 = k + 1;
      }
    for (int64_t d = 0; k0 < k1 && d < h.dhp; d += kCols)
      tile_ab(p + r, 1, kKeys, b + d, h.dhp, k0, k1, c + r * h.dhp + d, h.dhp);
  }
}

// Adds ALiBi's slope·(i − j) to a row of q·k products of query i against keys j0 + c, as the
// composed path adds its bias; from = i − j0. Int32 lanes: AVX2 converts no int64 to float.
inline void add_bias(const Head& h, float* sr, int64_t from) {
  if (!h.bias) return;
  const int32_t d = static_cast<int32_t>(from);
#pragma omp simd
  for (int32_t c = 0; c < kKeys; ++c) sr[c] = sr[c] + h.slope * static_cast<float>(d - c);
}

// A thread's packed blocks.
struct Scratch {
  std::vector<float> q, g, kt, vt, k, v, s, ds, acc, dk, dv, dq;
  std::vector<float> m;
  std::vector<double> l;
};

// Rows i0..i1 of one head: out and lse by the online softmax over blocks of keys; kt holds the
// head's key blocks transposed, [dh, kKeys] each.
void forward_block(const Head& h, const float* q, const float* kt, const float* v, int64_t i0, int64_t i1, float* out,
                   float* lse, Scratch& w) {
  const int64_t n = i1 - i0, rows = round_up(n, kTile), dh = h.dh, dhp = h.dhp;
  w.q.resize(kRows * dhp);
  w.v.resize(kKeys * dhp);
  w.s.resize(kRows * kKeys);
  w.acc.assign(rows * dhp, 0.f);
  w.m.assign(rows, kNegInf);
  w.l.assign(rows, 0.0);
  const float* qb = rows_of(h, q, i0, n, rows, w.q);
  const Hull u = h.rows(i0, n);
  for (int64_t j0 = u.lo < u.hi ? u.lo / kKeys * kKeys : h.tk; j0 < u.hi; j0 += kKeys) {
    const int64_t jn = std::min(h.tk, j0 + kKeys) - j0;
    block_scores(h, qb, rows, i0, kt + j0 / kKeys * dh * kKeys, j0, jn, w.s.data());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r, a = r < n ? h.lo(i, j0) : 0, b = r < n ? h.hi(i, j0, jn) : 0;
      float* sr = w.s.data() + r * kKeys;
      if (a >= b) {
        std::fill(sr, sr + kKeys, 0.f);
        continue;
      }
      add_bias(h, sr, i - j0);
      // Products outside [a, b) may be stale: selected away, never used.
      const int32_t a32 = static_cast<int32_t>(a), b32 = static_cast<int32_t>(b);
      const float mn = std::max(w.m[r], row_max(sr, a32, b32));
      // Rescales what earlier blocks summed against the old maximum (by 0 before any).
      const float scale = vexp(w.m[r] - mn);
      float* ar = w.acc.data() + r * dhp;
      if (scale != 1.f) {
        w.l[r] *= scale;
#pragma omp simd
        for (int64_t d = 0; d < dhp; ++d) ar[d] *= scale;
      }
      // exp only over the lanes holding [a, b); the rest of the row is 0.
      const int32_t c0 = a32 / kW * kW, c1 = static_cast<int32_t>(std::min(kKeys, round_up(b, kW)));
      std::fill(sr, sr + c0, 0.f);
      std::fill(sr + c1, sr + kKeys, 0.f);
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int32_t c = c0; c < c1; ++c) {
        const float p = vexp_softmax(sr[c] - mn);
        sr[c] = c >= a32 && c < b32 ? p : 0.f;
        sum += sr[c];
      }
      w.l[r] += sum;
      w.m[r] = mn;
    }
    block_by_rows(h, w.s.data(), rows, i0, rows_of(h, v, j0, jn, jn, w.v), j0, jn, w.acc.data());
  }
  for (int64_t r = 0; r < n; ++r) {
    // A row that sees no key outputs zero, its log-sum-exp −∞ (a part of a joint softmax adds nothing there).
    const float lf = static_cast<float>(w.l[r]);
    for (int64_t d = 0; d < dh; ++d) out[(i0 + r) * dh + d] = lf > 0.f ? w.acc[r * dhp + d] / lf : 0.f;
    lse[i0 + r] = lf > 0.f ? w.m[r] + std::log(lf) : kNegInf;
  }
}

// Sizes a thread's blocks for the backward pass of heads like h and clears its dQ sums, [t + kTile, dhp]
// (tiles may run up to kTile − 1 rows past the last query).
void start_grad(const Head& h, Scratch& w) {
  const int64_t dh = h.dh, dhp = h.dhp;
  w.q.resize(kRows * dhp);
  w.g.resize(kRows * dhp);
  w.kt.resize(dh * kKeys);
  w.vt.resize(dh * kKeys);
  w.k.resize(kKeys * dhp);
  w.s.resize(kRows * kKeys);
  w.ds.resize(kRows * kKeys);
  w.dk.resize(kKeys * dhp);
  w.dv.resize(kKeys * dhp);
  w.dq.assign((h.t + kTile) * dhp, 0.f);
}

// dK, dV of the keys from j0 of one head, with their terms of dQ added into w.dq: every block of
// queries that sees them, the probabilities recomputed from lse, dS = P ∘ (dO·Vᵀ − delta).
// blocks holds the hull of each block of kRows queries.
void key_block_grad(const Head& h, const std::vector<Hull>& blocks, const float* q, const float* k, const float* v,
                    const float* lse, const float* dout, const float* delta, int64_t j0, float* dk, float* dv,
                    Scratch& w) {
  const int64_t dh = h.dh, dhp = h.dhp, jn = std::min(h.tk, j0 + kKeys) - j0, cols = round_up(jn, kTile);
  pack_t(k + j0 * dh, jn, dh, w.kt.data());
  pack_t(v + j0 * dh, jn, dh, w.vt.data());
  const float* kb = rows_of(h, k, j0, jn, jn, w.k);
  std::fill(w.dk.begin(), w.dk.end(), 0.f);
  std::fill(w.dv.begin(), w.dv.end(), 0.f);
  for (int64_t ib = 0; ib < static_cast<int64_t>(blocks.size()); ++ib) {
    if (!blocks[ib].meets(j0, j0 + jn)) continue;
    const int64_t i0 = ib * kRows, n = std::min(h.t, i0 + kRows) - i0, rows = round_up(n, kTile);
    const float *qb = rows_of(h, q, i0, n, rows, w.q), *gb = rows_of(h, dout, i0, n, rows, w.g);
    block_scores(h, qb, rows, i0, w.kt.data(), j0, jn, w.s.data());
    block_scores(h, gb, rows, i0, w.vt.data(), j0, jn, w.ds.data());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r;
      const int32_t a = r < n ? static_cast<int32_t>(h.lo(i, j0)) : 0, b = r < n ? static_cast<int32_t>(h.hi(i, j0, jn)) : 0;
      const float li = r < n ? lse[i] : 0.f, di = r < n ? delta[i] : 0.f;
      float *sr = w.s.data() + r * kKeys, *dr = w.ds.data() + r * kKeys;
      add_bias(h, sr, i - j0);
      // exp only over the lanes holding [a, b) (none when the query sees no key here: a may pass
      // the block then); the rest of the rows is 0.
      const int32_t c0 = a < b ? a / kW * kW : 0, c1 = a < b ? static_cast<int32_t>(std::min(kKeys, round_up(b, kW))) : 0;
      std::fill(sr, sr + c0, 0.f);
      std::fill(sr + c1, sr + kKeys, 0.f);
      std::fill(dr, dr + c0, 0.f);
      std::fill(dr + c1, dr + kKeys, 0.f);
#pragma omp simd
      for (int32_t c = c0; c < c1; ++c) {
        const bool seen = c >= a && c < b;
        const float p = vexp_softmax(sr[c] - li);
        // Unseen pairs' products may be stale: selected away, never multiplied.
        sr[c] = seen ? p : 0.f;
        dr[c] = seen ? p * (dr[c] - di) : 0.f;
      }
    }
    block_by_cols(h, w.s.data(), cols, j0, gb, i0, n, w.dv.data());
    block_by_cols(h, w.ds.data(), cols, j0, qb, i0, n, w.dk.data());
    block_by_rows(h, w.ds.data(), rows, i0, kb, j0, jn, w.dq.data() + i0 * dhp);
  }
  for (int64_t c = 0; c < jn; ++c) {
    std::copy(w.dk.data() + c * dhp, w.dk.data() + c * dhp + dh, dk + (j0 + c) * dh);
    std::copy(w.dv.data() + c * dhp, w.dv.data() + c * dhp + dh, dv + (j0 + c) * dh);
  }
}

int64_t blocks(int64_t t, int64_t size) { return (t + size - 1) / size; }

std::vector<Hull> block_hulls(const AttentionShape& s) {
  std::vector<Hull> u(blocks(s.t, kRows));
  for (size_t b = 0; b < u.size(); ++b) u[b] = hull_of(s.lo, s.hi, b * kRows, std::min<int64_t>(s.t, (b + 1) * kRows));
  return u;
}

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
    k.resize(s.bh * s.tk * s.dh);
    rotate(q0, r->qcos, r->qsin, s.bh, s.t, s.dh, r->half, threads, q.data());
    rotate(k0, r->kcos, r->ksin, s.bh, s.tk, s.dh, r->half, threads, k.data());
    qp = q.data();
    kp = k.data();
  }
};

// Multiply-adds of one pass, to decide whether threads pay off.
bool worth_threads(const AttentionShape& s) {
  int64_t pairs = 0;
  for (int64_t i = 0; i < s.t; ++i) pairs += std::max(0, s.hi[i] - s.lo[i]);
  return s.bh * pairs * s.dh > kParallelMin;
}

}  // namespace

void attention(const AttentionShape& s, const float* q0, const float* k0, const float* v, const float* slopes,
               const Rotation* rotation, float* out, float* lse) {
  const Rotated r(s, q0, k0, rotation, worth_threads(s));
  const float *q = r.qp, *k = r.kp;
  const int64_t per = s.t * s.dh, kper = s.tk * s.dh, nb = blocks(s.t, kRows), nk = blocks(s.tk, kKeys),
                packed = nk * s.dh * kKeys;
  // Every head's key blocks transposed once, rather than once for each block of queries reading them.
  std::vector<float> kt(s.bh * packed);
#pragma omp parallel if (worth_threads(s))
  {
#pragma omp for schedule(static)
    for (int64_t e = 0; e < s.bh * nk; ++e) {
      const int64_t bh = e / nk, j0 = e % nk * kKeys;
      pack_t(k + bh * kper + j0 * s.dh, std::min(s.tk - j0, kKeys), s.dh, kt.data() + e * s.dh * kKeys);
    }
    Scratch w;
    // Dynamic, last blocks first: causal blocks near the end of the sequence see more keys.
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t bh = 0; bh < s.bh; ++bh) {
      for (int64_t back = 0; back < nb; ++back) {
        const Head h = head_of(s, bh, slopes);
        const int64_t o = bh * per, ib = nb - 1 - back;
        forward_block(h, q + o, kt.data() + bh * packed, v + bh * kper, ib * kRows, std::min(s.t, (ib + 1) * kRows), out + o,
                      lse + bh * s.t, w);
      }
    }
  }
}

void attention_grad(const AttentionShape& s, const float* q0, const float* k0, const float* v, const float* out,
                    const float* lse, const float* dout, const float* dlse, const float* slopes, const Rotation* rotation,
                    float* dq, float* dk, float* dv) {
  const Rotated r(s, q0, k0, rotation, worth_threads(s));
  const float *q = r.qp, *k = r.kp;
  const int64_t per = s.t * s.dh, kper = s.tk * s.dh, rows = s.bh * s.t;
  const std::vector<Hull> hulls = block_hulls(s);
  // delta_i = dO_i·O_i = Σ_j P_ij dP_ij, the softmax gradient's row term; a gradient of the
  // log-sum-exp (∂lse_i/∂s_ij = P_ij) enters as dS_ij = P_ij (dP_ij − delta_i + dlse_i).
  std::vector<float> delta(rows);
#pragma omp parallel for schedule(static) if (worth_threads(s))
  for (int64_t i = 0; i < rows; ++i) delta[i] = dot(dout + i * s.dh, out + i * s.dh, s.dh) - (dlse ? dlse[i] : 0.f);
  const int threads = worth_threads(s) ? omp_get_max_threads() : 1;
  if (s.bh >= threads) {
    // Whole heads per thread, so that no two threads add into one row of dQ.
#pragma omp parallel num_threads(threads)
    {
      Scratch w;
#pragma omp for schedule(dynamic)
      for (int64_t bh = 0; bh < s.bh; ++bh) {
        const Head h = head_of(s, bh, slopes);
        const int64_t o = bh * per, ko = bh * kper;
        start_grad(h, w);
        for (int64_t j0 = 0; j0 < s.tk; j0 += kKeys)
          key_block_grad(h, hulls, q + o, k + ko, v + ko, lse + bh * s.t, dout + o, delta.data() + bh * s.t, j0, dk + ko,
                         dv + ko, w);
        for (int64_t i = 0; i < s.t; ++i) std::copy(w.dq.data() + i * h.dhp, w.dq.data() + i * h.dhp + s.dh, dq + o + i * s.dh);
      }
    }
  } else {
    // Fewer heads than threads: the key blocks of a head split among them, each summing its own
    // dQ, then added up in thread order. Cyclic, not dynamic, so that each thread's share (and
    // so the sums' order) is the same every run; early blocks, seen by more queries, spread out.
    std::vector<Scratch> each(threads);
    for (int64_t bh = 0; bh < s.bh; ++bh) {
      const Head h = head_of(s, bh, slopes);
      const int64_t o = bh * per, ko = bh * kper;
#pragma omp parallel num_threads(threads)
      {
        // The team actually started, which may be smaller than asked for.
        const int team = omp_get_num_threads();
        Scratch& w = each[omp_get_thread_num()];
        start_grad(h, w);
#pragma omp for schedule(static, 1)
        for (int64_t j0 = 0; j0 < s.tk; j0 += kKeys)
          key_block_grad(h, hulls, q + o, k + ko, v + ko, lse + bh * s.t, dout + o, delta.data() + bh * s.t, j0, dk + ko,
                         dv + ko, w);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < s.t; ++i) {
          float* row = dq + o + i * s.dh;
          std::copy(each[0].dq.data() + i * h.dhp, each[0].dq.data() + i * h.dhp + s.dh, row);
          for (int e = 1; e < team; ++e)
            for (int64_t d = 0; d < s.dh; ++d) row[d] += each[e].dq[i * h.dhp + d];
        }
      }
    }
  }
  if (rotation != nullptr) {
    rotate_back(dq, rotation->qcos, rotation->qsin, s.bh, s.t, s.dh, rotation->half, worth_threads(s));
    rotate_back(dk, rotation->kcos, rotation->ksin, s.bh, s.tk, s.dh, rotation->half, worth_threads(s));
  }
}

}  // namespace nk
