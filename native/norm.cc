// Layer and RMS normalisation over the last axis, fused: the forward pass writes y and two
// numbers per row (mean, 1/σ); the backward pass recomputes x̂ from them instead of keeping it.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"

namespace nk {

namespace {

constexpr int64_t kParallelMin = 1 << 15;

void norm_row(const float* xr, const float* gain, const float* bias, int64_t d, float eps, bool center, float* yr, float* mean,
              float* rstd) {
  float s = 0.f;
  if (center) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < d; ++j) s += xr[j];
  }
  const float m = s / static_cast<float>(d);
  float q = 0.f;
#pragma omp simd reduction(+ : q)
  for (int64_t j = 0; j < d; ++j) q += (xr[j] - m) * (xr[j] - m);
  const float r = 1.f / std::sqrt(q / static_cast<float>(d) + eps);
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - m) * r * gain[j];
  // Added after rounding the product, as the composed add does.
  if (bias) {
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) yr[j] = yr[j] + bias[j];
  }
  *mean = m;
  *rstd = r;
}

}  // namespace

void norm(const float* x, const float* gain, const float* bias, int64_t rows, int64_t d, float eps, bool center, float* y,
          float* mean, float* rstd) {
  // Small inputs skip OpenMP entirely: a parallel region made serial by an if clause still costs microseconds.
  if (rows * d <= kParallelMin) {
    for (int64_t i = 0; i < rows; ++i) norm_row(x + i * d, gain, bias, d, eps, center, y + i * d, mean + i, rstd + i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) norm_row(x + i * d, gain, bias, d, eps, center, y + i * d, mean + i, rstd + i);
}

void norm_grad(const float* x, const float* gain, const float* mean, const float* rstd, const float* dy, int64_t rows,
               int64_t d, bool center, float* dx, float* dgain, float* dbias) {
  std::fill(dgain, dgain + d, 0.f);
  // dbias sums dy over the rows in double, as the Sum kernel does for the composed add's gradient.
  std::vector<double> bias_sum(dbias ? d : 0, 0.0);
#pragma omp parallel if (rows * d > kParallelMin)
  {
    // Each thread sums its rows' share of dgain; the shares are added at the end.
    std::vector<float> part(d, 0.f);
    std::vector<double> bias_part(dbias ? d : 0, 0.0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      const float* xr = x + i * d;
      const float* gr = dy + i * d;
      float* o = dx + i * d;
      const float m = mean[i], r = rstd[i];
      float a = 0.f, b = 0.f;
#pragma omp simd reduction(+ : a, b)
      for (int64_t j = 0; j < d; ++j) {
        const float g = gr[j] * gain[j];
        a += g;
        b += g * (xr[j] - m) * r;
      }
      a = center ? a / static_cast<float>(d) : 0.f;
      b /= static_cast<float>(d);
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) {
        const float xhat = (xr[j] - m) * r;
        o[j] = r * (gr[j] * gain[j] - a - xhat * b);
        part[j] += gr[j] * xhat;
      }
      if (dbias) {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) bias_part[j] += gr[j];
      }
    }
#pragma omp critical
    {
      for (int64_t j = 0; j < d; ++j) dgain[j] += part[j];
      for (size_t j = 0; j < bias_part.size(); ++j) bias_sum[j] += bias_part[j];
    }
  }
  for (size_t j = 0; j < bias_sum.size(); ++j) dbias[j] = static_cast<float>(bias_sum[j]);
}

}  // namespace nk
