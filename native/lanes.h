// Float kernels shared by the decoding attention kernels (decode.cc, attend_kinds.cc): sums over
// lanes of sixteen floats and the rotation of rotary schemes, with the arithmetic order the
// equality with tfjs relies on.
#pragma once
#include <cstdint>
#include <cstring>

namespace nk {

// Internal to each file that includes it, as when these lived in decode.cc alone: vector
// values never cross a call between files, so no ABI question arises.
namespace {

// Attention work (multiply-adds) below which one thread does all heads.
constexpr int64_t kParallelAttention = 1 << 16;

// Sixteen floats as one value (an AVX-512 register, two AVX2 ones); the compiler keeps these
// in registers where arrays indexed in loops end up on the stack.
constexpr int kLanes = 16;
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));

inline Lanes load(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The sum of the lanes, pairwise.
inline float lane_sum(Lanes v) {
  typedef int Index __attribute__((vector_size(kLanes * sizeof(int))));
  v += __builtin_shuffle(v, Index{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
  v += __builtin_shuffle(v, Index{4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3});
  v += __builtin_shuffle(v, Index{2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1});
  return v[0] + v[1];
}

// a · b over n floats: whole lanes, pairwise-summed, then the rest in order.
inline float dot_lanes(const float* a, const float* b, int64_t n) {
  Lanes acc = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) acc += load(a + c) * load(b + c);
  float s = lane_sum(acc);
  for (; c < n; ++c) s += a[c] * b[c];
  return s;
}

// o += w · v over n floats.
inline void add_scaled(float* o, float w, const float* v, int64_t n) {
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    const Lanes r = load(o + c) + w * load(v + c);
    std::memcpy(o + c, &r, sizeof r);
  }
  for (; c < n; ++c) o[c] += w * v[c];
}

// Rotates the pairs (j, j + half) of one head's vector by a position's tables; the product
// by (x·R) is written out as tfjs computes it (two products and a sum, no fused multiply-add).
inline void rotate(float* x, const float* cos, const float* sin, int64_t half, int64_t dh) {
  for (int64_t j = 0; j < half; ++j) {
    const float a = x[j], b = x[j + half];
    x[j] = a * cos[j] + (-b) * sin[j];
    x[j + half] = b * cos[j + half] + a * sin[j + half];
  }
  for (int64_t j = 2 * half; j < dh; ++j) x[j] = x[j] * cos[j];
}

}  // namespace

}  // namespace nk
