// Incremental decoding: a few rows (one new token per sequence, or a short prompt) through
// weights that are read once per call, and attention of the new queries over a key/value
// cache that the caller preallocated and that is written in place. At batch 1 a token reads
// every weight once and does little else, so it runs at the speed the weights stream from
// memory: these kernels read each weight row once, in order, and fork at most once per call.
#include <omp.h>
#include <sys/mman.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "lanes.h"

namespace nk {

namespace {

// Up to this many rows the weights are streamed; more rows make the product compute-bound,
// which oneDNN's GEMM does better.
constexpr int64_t kStreamRows = 8;
// Fewer weights than this (floats) run on one thread: a fork costs more than it saves.
constexpr int64_t kParallelWeights = 1 << 15;

// x · w0 .. x · w3 over n floats, in one pass.
inline void dot4(const float* x, const float* w0, const float* w1, const float* w2, const float* w3, int64_t n, float out[4]) {
  Lanes a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    const Lanes v = load(x + c);
    a0 += v * load(w0 + c);
    a1 += v * load(w1 + c);
    a2 += v * load(w2 + c);
    a3 += v * load(w3 + c);
  }
  out[0] = lane_sum(a0);
  out[1] = lane_sum(a1);
  out[2] = lane_sum(a2);
  out[3] = lane_sum(a3);
  for (; c < n; ++c) {
    out[0] += x[c] * w0[c];
    out[1] += x[c] * w1[c];
    out[2] += x[c] * w2[c];
    out[3] += x[c] * w3[c];
  }
}

static_assert(sizeof(Q8Block) == 9 * sizeof(float), "an int8 block is 9 floats of the arena");

#if defined(__AVX2__)
// Eight int32 sums of four products each of 32 int8 pairs (|q| ≤ 127, so maddubs's pairs of
// products, at most 2 · 127², never saturate int16): llama.cpp's Q8_0 · Q8_0 on AVX2.
inline __m256i q8_products(const int8_t* x, const int8_t* w) {
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(wv, xv));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A group's products scaled by d_w · d_x, added to acc (the int32 lanes are below 2^24, exact as floats).
inline __m256 q8_add(__m256 acc, const Q8Block& x, const Q8Block& w) {
  return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(q8_products(x.q, w.q)), _mm256_set1_ps(w.d * x.d)));
}

// x · w0 .. x · w3 over `groups` blocks, in one pass.
inline void dot4_q8(const Q8Block* x, const Q8Block* w0, const Q8Block* w1, const Q8Block* w2, const Q8Block* w3, int64_t groups, float out[4]) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t g = 0; g < groups; ++g) {
    a0 = q8_add(a0, x[g], w0[g]);
    a1 = q8_add(a1, x[g], w1[g]);
    a2 = q8_add(a2, x[g], w2[g]);
    a3 = q8_add(a3, x[g], w3[g]);
  }
  out[0] = hsum(a0);
  out[1] = hsum(a1);
  out[2] = hsum(a2);
  out[3] = hsum(a3);
}

inline float dot_q8(const Q8Block* x, const Q8Block* w, int64_t groups) {
  __m256 a = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) a = q8_add(a, x[g], w[g]);
  return hsum(a);
}
#else
// Without AVX2 (the build is -march=native): each group's int32 sum, scaled, in order.
inline float dot_q8(const Q8Block* x, const Q8Block* w, int64_t groups) {
  float s = 0.f;
  for (int64_t g = 0; g < groups; ++g) {
    int32_t i = 0;
    for (int64_t c = 0; c < kQ8Group; ++c) i += int32_t{x[g].q[c]} * int32_t{w[g].q[c]};
    s += static_cast<float>(i) * (w[g].d * x[g].d);
  }
  return s;
}

inline void dot4_q8(const Q8Block* x, const Q8Block* w0, const Q8Block* w1, const Q8Block* w2, const Q8Block* w3, int64_t groups, float out[4]) {
  out[0] = dot_q8(x, w0, groups);
  out[1] = dot_q8(x, w1, groups);
  out[2] = dot_q8(x, w2, groups);
  out[3] = dot_q8(x, w3, groups);
}
#endif

// y = x · wᵀ (+ bias) for each target, row o of a matrix being `row(t, o)`, products by `four`
// (one row of x against four weight rows) and `one`. Each thread takes a contiguous stretch
// of each matrix's rows and reads it as four sequential streams, a quarter apart: with huge
// pages the prefetchers serve four streams faster than one, while rows read side by side
// (1152 bytes apart) run far slower.
template <typename Row, typename Four, typename One>
void stream_rows(int64_t rows, int64_t in, const std::vector<LinearTarget>& targets, Row row, Four four, One one) {
  int64_t weights = 0;
  for (const LinearTarget& t : targets) weights += in * t.out;
  const auto share = [&](int me, int all) {
    for (const LinearTarget& t : targets) {
      const int64_t chunk = (t.out + all - 1) / all;
      const int64_t o0 = std::min(t.out, me * chunk), o1 = std::min(t.out, (me + 1) * chunk);
      const int64_t quarter = (o1 - o0) / 4;
      // The bias after the product, as tfjs adds it.
      const auto put = [&](int64_t r, int64_t o, float s) { t.y[r * t.out + o] = t.bias == nullptr ? s : s + t.bias[o]; };
      for (int64_t o = o0; o < o0 + quarter; ++o) {
        const auto w0 = row(t, o), w1 = row(t, o + quarter), w2 = row(t, o + 2 * quarter), w3 = row(t, o + 3 * quarter);
        for (int64_t r = 0; r < rows; ++r) {
          float s[4];
          four(r, w0, w1, w2, w3, s);
          for (int k = 0; k < 4; ++k) put(r, o + k * quarter, s[k]);
        }
      }
      for (int64_t o = o0 + 4 * quarter; o < o1; ++o)
        for (int64_t r = 0; r < rows; ++r) put(r, o, one(r, row(t, o)));
    }
  };
  // One thread calls no OpenMP at all: even a one-thread parallel region costs microseconds.
  const int threads = weights >= kParallelWeights ? omp_get_max_threads() : 1;
  if (threads == 1) {
    share(0, 1);
  } else {
#pragma omp parallel num_threads(threads)
    share(omp_get_thread_num(), omp_get_num_threads());
  }
}

// The streaming loop of rows_linear over int8 weights and the rows' int8 blocks. Every row
// count takes it: oneDNN has no product of these blocks, and a dequantised product would not
// quantise the activations as decoding does.
void rows_linear_q8(const float* x, int64_t rows, int64_t in, const std::vector<LinearTarget>& targets) {
  const int64_t groups = q8_groups(in);
  thread_local std::vector<Q8Block> xq;
  xq.resize(static_cast<size_t>(rows * groups));
  q8_quantise(x, rows, in, xq.data());
  // The calling thread's blocks, by pointer: inside the parallel region `xq` names each thread's own.
  const Q8Block* xs = xq.data();
  stream_rows(
      rows, in, targets, [&](const LinearTarget& t, int64_t o) { return t.wq + o * groups; },
      [&](int64_t r, const Q8Block* w0, const Q8Block* w1, const Q8Block* w2, const Q8Block* w3, float s[4]) { dot4_q8(xs + r * groups, w0, w1, w2, w3, groups, s); },
      [&](int64_t r, const Q8Block* w) { return dot_q8(xs + r * groups, w, groups); });
}

}  // namespace

void q8_quantise(const float* x, int64_t rows, int64_t in, Q8Block* out) {
  const int64_t groups = q8_groups(in);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* v = x + r * in + g * kQ8Group;
      const int64_t n = std::min(kQ8Group, in - g * kQ8Group);
      float amax = 0.f;
      for (int64_t c = 0; c < n; ++c) amax = std::max(amax, std::fabs(v[c]));
      Q8Block& b = out[r * groups + g];
      b.d = amax / 127.f;
      // round(w / d), halves away from zero; an all-zero group stays zero (d = 0).
      for (int64_t c = 0; c < kQ8Group; ++c) b.q[c] = c < n && b.d != 0.f ? static_cast<int8_t>(std::round(v[c] / b.d)) : 0;
    }
  }
}

std::string rows_linear(const float* x, int64_t rows, int64_t in, const std::vector<LinearTarget>& targets) {
  if (!targets.empty() && targets[0].wq != nullptr) {
    for (const LinearTarget& t : targets)
      if (t.wq == nullptr) return "a product mixes int8 and fp32 weights";
    rows_linear_q8(x, rows, in, targets);
    return "";
  }
  if (rows > kStreamRows) {
    for (const LinearTarget& t : targets) {
      const std::string err = matmul({1, 1, rows, t.out, in, false, true}, x, t.w, t.bias, Act::none, 0.f, t.y, Precision::fp32);
      if (!err.empty()) return err;
    }
    return "";
  }
  stream_rows(
      rows, in, targets, [&](const LinearTarget& t, int64_t o) { return t.w + o * in; },
      [&](int64_t r, const float* w0, const float* w1, const float* w2, const float* w3, float s[4]) { dot4(x + r * in, w0, w1, w2, w3, in, s); },
      [&](int64_t r, const float* w) { return dot_lanes(x + r * in, w, in); });
  return "";
}

float* huge_alloc(size_t floats, HugeRegion* region) {
  // Over-allocated by one huge page so the array can start on a 2 MiB boundary.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t length = floats * sizeof(float) + kHuge;
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return nullptr;
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~(kHuge - 1);
  // Without transparent huge pages (or with them off) this fails and the pages stay small.
  madvise(reinterpret_cast<void*>(aligned), length - (aligned - reinterpret_cast<uintptr_t>(base)), MADV_HUGEPAGE);
  *region = {base, length};
  return reinterpret_cast<float*>(aligned);
}

void huge_free(const HugeRegion& region) { munmap(region.base, region.length); }

void attend(const AttendShape& s, const AttendInputs& in) {
  const int64_t b_ = s.batch, t_ = s.tq, h_ = s.heads, dh = s.dh, width = h_ * dh, keys = s.offset + s.tq;
  // Queries scaled then rotated, keys rotated (projectQkv's order), and both new keys and
  // values written at their positions in the cache.
  for (int64_t b = 0; b < b_; ++b) {
    for (int64_t i = 0; i < t_; ++i) {
      const int64_t row = (b * t_ + i) * width;
      for (int64_t h = 0; h < h_; ++h) {
        float* q = in.q + row + h * dh;
        float* k = in.k + row + h * dh;
        for (int64_t j = 0; j < dh; ++j) q[j] = q[j] * s.scale;
        if (in.qcos != nullptr) {
          rotate(q, in.qcos + i * dh, in.qsin + i * dh, s.half, dh);
          rotate(k, in.kcos + i * dh, in.ksin + i * dh, s.half, dh);
        }
        const int64_t at = (b * s.capacity + s.offset + i) * width + h * dh;
        std::copy(k, k + dh, in.kc + at);
        std::copy(in.v + row + h * dh, in.v + row + (h + 1) * dh, in.vc + at);
      }
    }
  }
  // Pairs (sequence, head) [first, last): one sequence's heads at a time, each key row read
  // once for all of them (the cache is position-major, so a row holds every head's key).
  const auto work = [&](int64_t first, int64_t last) {
    thread_local std::vector<int64_t> seen;
    thread_local std::vector<float> scores, weights;
    for (int64_t b = first / h_; b * h_ < last; ++b) {
      const int64_t h0 = std::max(first, b * h_) - b * h_, h1 = std::min(last, (b + 1) * h_) - b * h_, nh = h1 - h0;
      const float* kc = in.kc + b * s.capacity * width;
      const float* vc = in.vc + b * s.capacity * width;
      for (int64_t i = 0; i < t_; ++i) {
        const int64_t pos = s.offset + i, n = pos + 1;
        const float* q = in.q + (b * t_ + i) * width;
        float* o = in.out + (b * t_ + i) * width;
        scores.resize(static_cast<size_t>(nh * n));
        weights.resize(static_cast<size_t>(nh * n));
        std::fill(o + h0 * dh, o + h1 * dh, 0.f);
        if (in.mask == nullptr) {
          // Every key up to the query's own position; the later ones get no weight, as under
          // tfjs's -1e9 mask.
          for (int64_t j = 0; j < n; ++j)
            for (int64_t h = h0; h < h1; ++h) scores[(h - h0) * n + j] = dot_lanes(q + h * dh, kc + j * width + h * dh, dh);
          for (int64_t h = h0; h < h1; ++h) {
            float* sc = &scores[(h - h0) * n];
            if (in.slopes != nullptr)
              for (int64_t j = 0; j < n; ++j) sc[j] = sc[j] + in.slopes[h] * static_cast<float>(pos - j);
            if (in.bias != nullptr)
              for (int64_t j = 0; j < n; ++j) sc[j] = sc[j] + in.bias[(h * t_ + i) * keys + j];
            softmax_row(sc, &weights[(h - h0) * n], n);
          }
          for (int64_t j = 0; j < n; ++j)
            for (int64_t h = h0; h < h1; ++h) add_scaled(o + h * dh, weights[(h - h0) * n + j], vc + j * width + h * dh, dh);
          continue;
        }
        // A masked kind: each head its own keys; a head that sees none gets zeros, as
        // maskedAttention gives it.
        seen.resize(static_cast<size_t>(n));
        for (int64_t h = h0; h < h1; ++h) {
          const uint8_t* visible = in.mask + (h * t_ + i) * keys;
          int64_t m = 0;
          for (int64_t j = 0; j < n; ++j)
            if (visible[j]) seen[m++] = j;
          if (m == 0) continue;
          float* sc = &scores[(h - h0) * n];
          for (int64_t e = 0; e < m; ++e) {
            const int64_t j = seen[e];
            sc[e] = dot_lanes(q + h * dh, kc + j * width + h * dh, dh);
            if (in.slopes != nullptr) sc[e] = sc[e] + in.slopes[h] * static_cast<float>(pos - j);
            if (in.bias != nullptr) sc[e] = sc[e] + in.bias[(h * t_ + i) * keys + j];
          }
          float* w = &weights[(h - h0) * n];
          softmax_row(sc, w, m);
          for (int64_t e = 0; e < m; ++e) add_scaled(o + h * dh, w[e], vc + seen[e] * width + h * dh, dh);
        }
      }
    }
  };
  const int64_t pairs = b_ * h_;
  const int threads = pairs * t_ * keys * dh >= kParallelAttention ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), pairs)) : 1;
  if (threads == 1) {
    work(0, pairs);
  } else {
#pragma omp parallel num_threads(threads)
    {
      const int64_t all = omp_get_num_threads(), per = (pairs + all - 1) / all, me = omp_get_thread_num();
      work(std::min(pairs, me * per), std::min(pairs, (me + 1) * per));
    }
  }
}

}  // namespace nk
