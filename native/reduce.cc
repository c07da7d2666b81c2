// Reductions and softmax. Sums accumulate in double, as the stock kernels' JS numbers do.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace nk {

namespace {

constexpr int64_t kParallelMin = 1 << 17;

// max/min that let a NaN win, like the stock kernels.
inline float take_max(float m, float v) { return (v > m || v != v) ? v : m; }
inline float take_min(float m, float v) { return (v < m || v != v) ? v : m; }

// Vectorised max/min of a row; any NaN makes the result NaN.
float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

float row_min(const float* x, int64_t n) {
  float m = std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(min : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] < m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

double row_sum(const float* x, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

float row_reduce(RedOp op, const float* x, int64_t r) {
  switch (op) {
    case RedOp::sum: return static_cast<float>(row_sum(x, r));
    case RedOp::mean: return static_cast<float>(row_sum(x, r) / static_cast<double>(r));
    case RedOp::max: return row_max(x, r);
    case RedOp::min: return row_min(x, r);
    case RedOp::prod: {
      double p = 1;
      for (int64_t i = 0; i < r; ++i) p *= x[i];
      return static_cast<float>(p);
    }
  }
  return 0.f;
}

// Column reduction of a [r, inner] block, columns [lo, hi).
void column_reduce(RedOp op, const float* x, int64_t r, int64_t inner, int64_t lo, int64_t hi, float* out) {
  const int64_t w = hi - lo;
  if (op == RedOp::sum || op == RedOp::mean || op == RedOp::prod) {
    std::vector<double> acc(w, op == RedOp::prod ? 1.0 : 0.0);
    for (int64_t j = 0; j < r; ++j) {
      const float* row = x + j * inner + lo;
      if (op == RedOp::prod) {
        for (int64_t i = 0; i < w; ++i) acc[i] *= row[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) acc[i] += row[i];
      }
    }
    const double scale = op == RedOp::mean ? 1.0 / static_cast<double>(r) : 1.0;
    for (int64_t i = 0; i < w; ++i) out[lo + i] = static_cast<float>(op == RedOp::mean ? acc[i] * scale : acc[i]);
    return;
  }
  const bool is_max = op == RedOp::max;
  std::vector<float> acc(w, is_max ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < r; ++j) {
    const float* row = x + j * inner + lo;
    if (is_max) {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) acc[i] = take_max(acc[i], row[i]);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) acc[i] = take_min(acc[i], row[i]);
    }
  }
  for (int64_t i = 0; i < w; ++i) out[lo + i] = acc[i];
}

// Column sums of a [rows, cols] matrix in double, by fixed blocks of rows added in order (so the
// result does not depend on the thread count). A block streams whole rows: a walk down columns
// touches a new page every row, which defeats the prefetchers (a bias gradient's Sum of
// [4096, 1024] ran at a third of a streaming pass). add_row(j, acc) adds row j into acc.
template <class AddRow>
void column_sums(int64_t rows, int64_t cols, double* out, AddRow add_row) {
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (rows + kBlock - 1) / kBlock;
  std::vector<double> part(blocks * cols, 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    double* acc = part.data() + blk * cols;
    const int64_t end = std::min(rows, (blk + 1) * kBlock);
    for (int64_t j = blk * kBlock; j < end; ++j) add_row(j, acc);
  }
  std::fill(out, out + cols, 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t i = 0; i < cols; ++i) out[i] += part[blk * cols + i];
}

}  // namespace

void reduce(RedOp op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner) {
  const int64_t total = outer * r * inner;
  if (inner == 1) {
    if (outer == 1 && (op == RedOp::sum || op == RedOp::mean) && total > kParallelMin) {
      double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
      for (int64_t i = 0; i < r; ++i) s += x[i];
      out[0] = static_cast<float>(op == RedOp::mean ? s / static_cast<double>(r) : s);
      return;
    }
#pragma omp parallel for schedule(static) if (total > kParallelMin)
    for (int64_t o = 0; o < outer; ++o) out[o] = row_reduce(op, x + o * r, r);
    return;
  }
  if (outer == 1 && (op == RedOp::sum || op == RedOp::mean)) {
    std::vector<double> acc(inner);
    column_sums(r, inner, acc.data(), [&](int64_t j, double* a) {
      const float* row = x + j * inner;
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) a[i] += row[i];
    });
    const double scale = op == RedOp::mean ? 1.0 / static_cast<double>(r) : 1.0;
    for (int64_t i = 0; i < inner; ++i) out[i] = static_cast<float>(op == RedOp::mean ? acc[i] * scale : acc[i]);
    return;
  }
  // Split the columns so each thread owns a disjoint part of the output.
  const int64_t chunk = 64;
  const int64_t chunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for collapse(2) schedule(static) if (total > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t lo = c * chunk, hi = std::min(inner, lo + chunk);
      column_reduce(op, x + o * r * inner, r, inner, lo, hi, out + o * inner);
    }
}

namespace {

// exp(x − max) of a row into out, and their sum: softmax_row's probabilities are out / sum.
float softmax_exps(const float* x, float* out, int64_t cols) {
  const float m = row_max(x, cols);
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < cols; ++i) {
    out[i] = vexp(x[i] - m);
    s += out[i];
  }
  return static_cast<float>(s);
}

}  // namespace

void softmax_row(const float* x, float* out, int64_t cols) {
  const float sf = softmax_exps(x, out, cols);
#pragma omp simd
  for (int64_t i = 0; i < cols; ++i) out[i] = out[i] / sf;
}

void softmax(const float* x, float* out, int64_t rows, int64_t cols) {
  // Small inputs skip OpenMP entirely: a parallel region made serial by an if clause still costs microseconds.
  if (rows * cols <= kParallelMin) {
    for (int64_t row = 0; row < rows; ++row) softmax_row(x + row * cols, out + row * cols, cols);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) softmax_row(x + row * cols, out + row * cols, cols);
}

// Top-1 minus top-2 probability. Dividing by the sum keeps the order (rounding may only make
// neighbours equal), so the two largest probabilities are the two largest exps divided: found in
// vectorisable passes (the largest, how often it occurs, the largest below it), and only those two
// divided, where the whole row once was and its top entry's index tracked.
float softmax_margin(const float* logits, float* exps, int64_t v) {
  const float sf = softmax_exps(logits, exps, v);
  float first = -INFINITY;
#pragma omp simd reduction(max : first)
  for (int64_t j = 0; j < v; ++j) first = exps[j] > first ? exps[j] : first;
  int64_t ties = 0;
  float second = -INFINITY;
#pragma omp simd reduction(+ : ties) reduction(max : second)
  for (int64_t j = 0; j < v; ++j) {
    ties += exps[j] == first;
    second = exps[j] < first && exps[j] > second ? exps[j] : second;
  }
  return ties > 1 ? 0.f : first / sf - second / sf;
}

void softmax_margins(const float* logits, float* out, int64_t rows, int64_t v) {
#pragma omp parallel if (rows * v > kParallelMin)
  {
    std::vector<float> probs(static_cast<size_t>(v));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) out[row] = softmax_margin(logits + row * v, probs.data(), v);
  }
}

float row_cosine(const float* a, const float* b, int64_t d, float* products) {
  // The products, as the elementwise kernels store them, for row_sum to add.
  float* ab = products;
  float* aa = products + d;
  float* bb = products + 2 * d;
  for (int64_t j = 0; j < d; ++j) {
    ab[j] = a[j] * b[j];
    aa[j] = a[j] * a[j];
    bb[j] = b[j] * b[j];
  }
  const float norms = std::sqrt(static_cast<float>(row_sum(aa, d)) * static_cast<float>(row_sum(bb, d)));
  const float c = static_cast<float>(row_sum(ab, d)) / norms;
  return c > 1.f ? 1.f : c < -1.f ? -1.f : c;
}

void row_cosines(const float* a, const float* b, float* out, int64_t rows, int64_t d) {
#pragma omp parallel if (rows * d > kParallelMin)
  {
    std::vector<float> products(static_cast<size_t>(3 * d));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) out[row] = row_cosine(a + row * d, b + row * d, d, products.data());
  }
}

namespace {

// Keys query row r sees: those up to its own position, r % tq + tk − tq.
inline int64_t visible(int64_t row, int64_t tq, int64_t tk) { return row % tq + tk - tq + 1; }

}  // namespace

void causal_softmax(const float* x, float* out, int64_t rows, int64_t tq, int64_t tk) {
#pragma omp parallel for schedule(static) if (rows * tk > kParallelMin)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t n = visible(row, tq, tk);
    softmax_row(x + row * tk, out + row * tk, n);
    std::fill(out + row * tk + n, out + (row + 1) * tk, 0.f);
  }
}

void causal_softmax_grad(const float* y, const float* dy, float* dx, int64_t rows, int64_t tq, int64_t tk) {
#pragma omp parallel for schedule(static) if (rows * tk > kParallelMin)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t n = visible(row, tq, tk);
    const float* yr = y + row * tk;
    const float* dyr = dy + row * tk;
    float* dxr = dx + row * tk;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) {
      dxr[i] = dyr[i] * yr[i];
      s += dxr[i];
    }
    const float sf = static_cast<float>(s);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dxr[i] = dxr[i] - sf * yr[i];
    std::fill(dxr + n, dxr + tk, 0.f);
  }
}

void relu_bias_grad(const float* y, const float* dy, int64_t rows, int64_t cols, float* dz, float* db) {
  std::vector<double> acc(cols);
  column_sums(rows, cols, acc.data(), [&](int64_t j, double* a) {
    const float* yr = y + j * cols;
    const float* dr = dy + j * cols;
    float* zr = dz + j * cols;
#pragma omp simd
    for (int64_t i = 0; i < cols; ++i) {
      zr[i] = yr[i] > 0.f ? dr[i] : 0.f;
      a[i] += zr[i];
    }
  });
  for (int64_t i = 0; i < cols; ++i) db[i] = static_cast<float>(acc[i]);
}

}  // namespace nk
