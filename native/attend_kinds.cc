// The attention kinds of the decoding program besides dense and masked attention (decode.cc):
// sliding-window and Longformer attention, whose keys follow from (window, dilation, global
// positions) here instead of a mask the caller builds for every key at every step, and
// Linformer, causal or not, over keys compressed along the sequence. Arithmetic follows the
// kinds' tfjs computations (src/attention/sliding.ts, linformer.ts) as decode.cc's attend does.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "lanes.h"

namespace nk {

namespace {

// Scales the new queries, rotates them and the keys (the key tables for keys), as attend does.
void scale_rotate(const AttendShape& s, const AttendInputs& in, int64_t b, int64_t i, int64_t h, float* k2) {
  const int64_t row = (b * s.tq + i) * s.heads * s.dh + h * s.dh;
  float* q = in.q + row;
  for (int64_t j = 0; j < s.dh; ++j) q[j] = q[j] * s.scale;
  if (in.qcos == nullptr) return;
  rotate(q, in.qcos + i * s.dh, in.qsin + i * s.dh, s.half, s.dh);
  rotate(in.k + row, in.kcos + i * s.dh, in.ksin + i * s.dh, s.half, s.dh);
  if (k2 != nullptr) rotate(k2 + row, in.kcos + i * s.dh, in.ksin + i * s.dh, s.half, s.dh);
}

// Runs work(first, last) over the pairs (sequence, head), split among threads when there are
// enough multiply-adds to pay for a fork.
template <class Work>
void over_pairs(int64_t pairs, int64_t multiply_adds, const Work& work) {
  const int threads = multiply_adds >= kParallelAttention ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), pairs)) : 1;
  if (threads == 1) {
    work(0, pairs);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t all = omp_get_num_threads(), per = (pairs + all - 1) / all, me = omp_get_thread_num();
    work(std::min(pairs, me * per), std::min(pairs, (me + 1) * per));
  }
}

// o (zeroed here) = softmax(scores[0, m)) · values, value e at value(e); weights is scratch of m.
template <class Value>
void weigh(float* scores, float* weights, int64_t m, float* o, int64_t dh, const Value& value) {
  softmax_row(scores, weights, m);
  std::fill(o, o + dh, 0.f);
  for (int64_t e = 0; e < m; ++e) add_scaled(o, weights[e], value(e), dh);
}

}  // namespace

void window_attend(const AttendShape& s, const AttendInputs& in, const WindowInputs& w) {
  const int64_t t_ = s.tq, h_ = s.heads, dh = s.dh, width = h_ * dh, keys = s.offset + t_;
  const bool longformer = w.kg != nullptr;
  // A cache position holds each head's [k | k_g] (and [v | v_g]) under Longformer, as tfjs packs it.
  const int64_t head = longformer ? 2 * dh : dh, row = h_ * head;
  const auto is_global = [&](int64_t pos) { return longformer && std::binary_search(w.globals, w.globals + w.n_globals, static_cast<float>(pos)); };
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t i = 0; i < t_; ++i) {
      for (int64_t h = 0; h < h_; ++h) {
        scale_rotate(s, in, b, i, h, w.kg);
        const int64_t from = (b * t_ + i) * width + h * dh, at = (b * s.capacity + s.offset + i) * row + h * head;
        std::copy(in.k + from, in.k + from + dh, in.kc + at);
        std::copy(in.v + from, in.v + from + dh, in.vc + at);
        if (!longformer) continue;
        std::copy(w.kg + from, w.kg + from + dh, in.kc + at + dh);
        std::copy(w.vg + from, w.vg + from + dh, in.vc + at + dh);
      }
    }
  }
  // Q_g only of the rows at global positions: x · W_qgᵀ (+ b_qg), normalised per head under
  // QK-norm (as norm_row computes it, the gain 1), scaled, rotated at its position.
  std::vector<int64_t> global_rows;
  for (int64_t i = 0; i < t_; ++i)
    if (is_global(s.offset + i)) global_rows.push_back(i);
  std::vector<float> qg(global_rows.empty() ? 0 : static_cast<size_t>(s.batch * t_ * width));
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t i : global_rows) {
      const float* x = w.x + (b * t_ + i) * w.in;
      float* q = &qg[(b * t_ + i) * width];
      for (int64_t o = 0; o < width; ++o) {
        const float p = dot_lanes(x, w.wqg + o * w.in, w.in);
        q[o] = w.bqg == nullptr ? p : p + w.bqg[o];
      }
      if (w.qk_eps > 0.f)
        for (int64_t h = 0; h < h_; ++h) {
          float* qh = q + h * dh;
          float ss = 0.f;
          for (int64_t j = 0; j < dh; ++j) ss += qh[j] * qh[j];
          const float r = 1.f / std::sqrt(ss / static_cast<float>(dh) + w.qk_eps);
          for (int64_t j = 0; j < dh; ++j) qh[j] = qh[j] * r;
        }
      for (int64_t o = 0; o < width; ++o) q[o] = q[o] * s.scale;
      if (in.qcos != nullptr)
        for (int64_t h = 0; h < h_; ++h) rotate(q + h * dh, in.qcos + i * dh, in.qsin + i * dh, s.half, dh);
    }
  }
  const auto work = [&](int64_t first, int64_t last) {
    thread_local std::vector<int64_t> seen;
    thread_local std::vector<float> scores, weights;
    for (int64_t p = first; p < last; ++p) {
      const int64_t b = p / h_, h = p % h_;
      const float* kc = in.kc + b * s.capacity * row + h * head;
      const float* vc = in.vc + b * s.capacity * row + h * head;
      const int64_t d = static_cast<int64_t>(w.dilation[h]), span = w.window * d;
      for (int64_t i = 0; i < t_; ++i) {
        const int64_t pos = s.offset + i;
        float* o = in.out + (b * t_ + i) * width + h * dh;
        const float* bias = in.bias == nullptr ? nullptr : in.bias + (h * t_ + i) * keys;
        const auto score = [&](const float* q, const float* k, int64_t j) {
          float sc = dot_lanes(q, k, dh);
          if (in.slopes != nullptr) sc = sc + in.slopes[h] * static_cast<float>(pos - j);
          return bias == nullptr ? sc : sc + bias[j];
        };
        if (is_global(pos)) {
          // Global attention over every position so far, with the global keys and values.
          const float* q = &qg[(b * t_ + i) * width + h * dh];
          scores.resize(static_cast<size_t>(pos + 1));
          weights.resize(static_cast<size_t>(pos + 1));
          for (int64_t j = 0; j <= pos; ++j) scores[j] = score(q, kc + j * row + dh, j);
          weigh(scores.data(), weights.data(), pos + 1, o, dh, [&](int64_t j) { return vc + j * row + dh; });
          continue;
        }
        // The window i, i − d, …, i − w·d and the global positions up to i outside it, ascending.
        seen.clear();
        for (int64_t g = 0; g < w.n_globals; ++g) {
          const int64_t j = static_cast<int64_t>(w.globals[g]);
          if (j <= pos && !(pos - j <= span && (pos - j) % d == 0)) seen.push_back(j);
        }
        for (int64_t j = std::max<int64_t>(pos - span, pos % d); j <= pos; j += d) seen.push_back(j);
        std::sort(seen.begin(), seen.end());
        const int64_t m = static_cast<int64_t>(seen.size());
        scores.resize(static_cast<size_t>(m));
        weights.resize(static_cast<size_t>(m));
        const float* q = in.q + (b * t_ + i) * width + h * dh;
        for (int64_t e = 0; e < m; ++e) scores[e] = score(q, kc + seen[e] * row, seen[e]);
        weigh(scores.data(), weights.data(), m, o, dh, [&](int64_t e) { return vc + seen[e] * row; });
      }
    }
  };
  const int64_t local = t_ * (w.window + 1 + w.n_globals), global = static_cast<int64_t>(global_rows.size()) * keys;
  over_pairs(s.batch * h_, s.batch * h_ * (local + global) * dh, work);
}

void linformer_attend(const AttendShape& s, const AttendInputs& in, const LinformerInputs& l) {
  const int64_t t_ = s.tq, h_ = s.heads, dh = s.dh, width = h_ * dh, rank = l.rank;
  const bool causal = l.block > 0;
  const char* kind = causal ? "linformer-causal" : "linformer";
  if (!causal && s.offset > 0)
    throw std::runtime_error("linformer is not causal: every output depends on later tokens, so it cannot decode incrementally with a cache");
  if (s.offset + t_ > l.length)
    throw std::runtime_error(std::string(kind) + ": " + std::to_string(s.offset + t_) + " tokens exceed the projection length " + std::to_string(l.length));
  // Positions already compressed into the running sums: whole blocks, never past the cache.
  const int64_t through = causal ? static_cast<int64_t>(l.state[0]) : 0;
  if (causal && (through % l.block != 0 || through > s.offset))
    throw std::runtime_error("linformer-causal: compressed keys cover " + std::to_string(through) + " positions of a cache holding " + std::to_string(s.offset));
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t i = 0; i < t_; ++i) {
      for (int64_t h = 0; h < h_; ++h) {
        scale_rotate(s, in, b, i, h, nullptr);
        const int64_t from = (b * t_ + i) * width + h * dh, at = (b * s.capacity + s.offset + i) * width + h * dh;
        std::copy(in.k + from, in.k + from + dh, in.kc + at);
        std::copy(in.v + from, in.v + from + dh, in.vc + at);
      }
    }
  }
  // Row r of head h's E or F.
  const auto projection = [&](const float* m, int64_t h, int64_t r) { return m + ((l.per_head ? h : 0) * rank + r) * l.length; };
  const auto work = [&](int64_t first, int64_t last) {
    thread_local std::vector<float> own, scores, weights;
    for (int64_t p = first; p < last; ++p) {
      const int64_t b = p / h_, h = p % h_;
      const float* ks = in.kc + b * s.capacity * width + h * dh;
      const float* vs = in.vc + b * s.capacity * width + h * dh;
      // Σ_j E[r, j] · K_j and Σ_j F[r, j] · V_j over [from, to), added to sums [2, rank, dh].
      const auto compress = [&](float* sums, int64_t from, int64_t to) {
        for (int64_t r = 0; r < rank; ++r) {
          const float* e = projection(l.e, h, r);
          const float* f = projection(l.f, h, r);
          for (int64_t j = from; j < to; ++j) {
            add_scaled(sums + r * dh, e[j], ks + j * width, dh);
            add_scaled(sums + (rank + r) * dh, f[j], vs + j * width, dh);
          }
        }
      };
      float* sums;
      if (causal) {
        sums = l.state + 1 + p * 2 * rank * dh;
      } else {
        own.assign(static_cast<size_t>(2 * rank * dh), 0.f);
        sums = own.data();
        compress(sums, 0, t_);
      }
      int64_t done = through;
      for (int64_t i = 0; i < t_; ++i) {
        const int64_t pos = s.offset + i;
        // Causal: the complete blocks before the query's own, compressed, then its block so far.
        const int64_t start = causal ? pos / l.block * l.block : 0, own_keys = causal ? pos + 1 - start : 0;
        for (; causal && done < start; done += l.block) compress(sums, done, done + l.block);
        const int64_t compressed = causal && start == 0 ? 0 : rank, m = compressed + own_keys;
        scores.resize(static_cast<size_t>(m));
        weights.resize(static_cast<size_t>(m));
        const float* q = in.q + (b * t_ + i) * width + h * dh;
        for (int64_t r = 0; r < compressed; ++r) scores[r] = dot_lanes(q, sums + r * dh, dh);
        for (int64_t j = 0; j < own_keys; ++j) scores[compressed + j] = dot_lanes(q, ks + (start + j) * width, dh);
        const auto value = [&](int64_t e) { return e < compressed ? sums + (rank + e) * dh : vs + (start + e - compressed) * width; };
        weigh(scores.data(), weights.data(), m, in.out + (b * t_ + i) * width + h * dh, dh, value);
      }
    }
  };
  const int64_t keys = causal ? rank + l.block : rank;
  over_pairs(s.batch * h_, s.batch * h_ * t_ * (keys + 2 * rank) * dh, work);
  if (causal) l.state[0] = static_cast<float>(std::max(through, (s.offset + t_ - 1) / l.block * l.block));
}

}  // namespace nk
