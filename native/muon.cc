// Muon's update of a group of matrices (src/optimizer/muon.ts) in one call: momentum, Nesterov, the
// Newton–Schulz orthogonalisation (src/optimizer/newton-schulz.ts), decay and the step.
// Composed in tfjs each iteration is three matmuls plus six elementwise passes, and a tall
// matrix two transposes; here each iteration is three sgemm calls whose alpha/beta take the
// polynomial's scalings and sums, plus a copy of the small Gram matrix. Momentum, decay and the step keep
// the composed update's float32 operations (the build keeps -ffp-contract=off), so the
// momentum buffer comes out with the same bits; the orthogonalised matrix differs from the
// composed one only by the matmuls' summation order.
#include <dnnl.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "kernels.h"

namespace nk {

namespace {

// Row-major C = alpha·op(A)·op(B) + beta·C.
bool gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  return dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == dnnl_success;
}

}  // namespace

std::string newton_schulz(const float* g, int64_t rows, int64_t cols, int steps, const float coef[3], float* out) {
  const int64_t size = rows * cols;
  double sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (size > (1 << 16))
  for (int64_t i = 0; i < size; ++i) sum += static_cast<double>(g[i]) * g[i];
  const float denom = static_cast<float>(std::sqrt(sum)) + 1e-7f;
  // The Gram matrix is taken on the short side: X·Xᵀ for a wide X, XᵀX for a tall one, where
  // X ← a·X + X·P is the wide iteration on Xᵀ, transposed back (P is symmetric).
  const bool tall = rows > cols;
  const int64_t n = tall ? cols : rows;
  // Per thread: the group's matrices run on several threads at once.
  thread_local std::vector<float> scratch, gram, poly;
  if (scratch.size() < static_cast<size_t>(size)) scratch.resize(size);
  if (gram.size() < static_cast<size_t>(n * n)) gram.resize(n * n), poly.resize(n * n);
  float* x = out;
  float* y = scratch.data();
#pragma omp parallel for simd schedule(static) if (size > (1 << 16))
  for (int64_t i = 0; i < size; ++i) x[i] = g[i] / denom;
  const float a = coef[0], b = coef[1], c = coef[2];
  for (int s = 0; s < steps; ++s) {
    const bool ok = tall ? gemm('T', 'N', n, n, rows, 1.f, x, cols, x, cols, 0.f, gram.data(), n)
                         : gemm('N', 'T', n, n, cols, 1.f, x, cols, x, cols, 0.f, gram.data(), n);
    if (!ok) return "oneDNN sgemm failed on X·Xᵀ";
    // P = b·A + c·A·A, accumulated onto a copy of A.
    std::memcpy(poly.data(), gram.data(), sizeof(float) * n * n);
    if (!gemm('N', 'N', n, n, n, c, gram.data(), n, gram.data(), n, b, poly.data(), n)) return "oneDNN sgemm failed on A·A";
    // X ← a·X + P·X = (P + a·I)·X (wide) or X·(P + a·I) (tall): the identity term on P's
    // diagonal rather than a copy of X to accumulate onto.
    for (int64_t i = 0; i < n; ++i) poly[i * n + i] += a;
    const bool ok2 = tall ? gemm('N', 'N', rows, n, n, 1.f, x, cols, poly.data(), n, 0.f, y, cols)
                          : gemm('N', 'N', n, cols, n, 1.f, poly.data(), n, x, cols, 0.f, y, cols);
    if (!ok2) return "oneDNN sgemm failed on P·X";
    std::swap(x, y);
  }
  if (x != out) std::memcpy(out, x, sizeof(float) * size);
  return "";
}

namespace {

std::string muon_one(const MuonMatrix& q) {
  const auto& [p, g, m, p_out, m_out, rows, cols, s] = q;
  const int64_t size = rows * cols;
  thread_local std::vector<float> update, orthogonal;
  if (update.size() < static_cast<size_t>(size)) update.resize(size), orthogonal.resize(size);
  float* u = update.data();
#pragma omp parallel for simd schedule(static) if (size > (1 << 16))
  for (int64_t i = 0; i < size; ++i) {
    const float mi = m[i] * s.beta + g[i] * s.one_minus_beta;
    m_out[i] = mi;
    u[i] = s.nesterov ? g[i] * s.one_minus_beta + mi * s.beta : mi;
  }
  float* o = orthogonal.data();
  const std::string err = newton_schulz(u, rows, cols, s.steps, s.coefficients, o);
  if (!err.empty()) return err;
#pragma omp parallel for simd schedule(static) if (size > (1 << 16))
  for (int64_t i = 0; i < size; ++i) {
    const float decayed = s.decay ? p[i] * s.decay_factor : p[i];
    p_out[i] = decayed - o[i] * s.step_size;
  }
  return "";
}

}  // namespace

std::string muon(const std::vector<MuonMatrix>& group) {
  // One matrix per thread, largest first so the small ones even out the end: a GEMM of a few
  // hundred rows split across threads spends much of its time at their barriers (and waiting
  // on a busy core when the machine is shared); single-threaded it runs near the core's peak.
  // Within the loop, the kernels' own parallel loops and oneDNN's run on the calling thread.
  std::vector<size_t> order(group.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return group[i].rows * group[i].cols > group[j].rows * group[j].cols; });
  std::vector<std::string> errors(group.size());
  const int64_t count = static_cast<int64_t>(group.size());
#pragma omp parallel for schedule(dynamic, 1) if (count > 1)
  for (int64_t k = 0; k < count; ++k) errors[order[k]] = muon_one(group[order[k]]);
  for (const std::string& e : errors)
    if (!e.empty()) return e;
  return "";
}

}  // namespace nk
