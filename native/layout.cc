// Data movement: transpose, gather and its gradient (scatter-add).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels.h"

namespace nk {

namespace {

constexpr int64_t kParallelMin = 1 << 17;

// Decodes flat index `i` over `dims` into an offset with per-dim `strides`.
inline int64_t offset_of(int64_t i, const std::vector<int64_t>& dims, const std::vector<int64_t>& strides) {
  int64_t off = 0;
  for (size_t d = dims.size(); d-- > 0;) {
    off += (i % dims[d]) * strides[d];
    i /= dims[d];
  }
  return off;
}

template <class T>
void transpose_t(const T* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& perm, T* out) {
  // Drop size-1 dims, then merge input dims that stay adjacent in the permutation.
  std::vector<int64_t> keep(shape.size(), -1);
  std::vector<int64_t> dims;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] != 1) {
      keep[i] = static_cast<int64_t>(dims.size());
      dims.push_back(shape[i]);
    }
  std::vector<int64_t> p;
  for (int64_t d : perm)
    if (keep[d] >= 0) p.push_back(keep[d]);
  std::vector<std::vector<int64_t>> groups;
  for (int64_t d : p) {
    if (!groups.empty() && groups.back().back() + 1 == d) groups.back().push_back(d);
    else groups.push_back({d});
  }
  // Input dims of each group, in input order, give the merged input shape.
  std::vector<std::vector<int64_t>> by_start(groups);
  std::sort(by_start.begin(), by_start.end());
  std::vector<int64_t> in_dims, in_strides(by_start.size());
  for (const auto& g : by_start) {
    int64_t s = 1;
    for (int64_t d : g) s *= dims[d];
    in_dims.push_back(s);
  }
  int64_t acc = 1;
  for (size_t i = in_dims.size(); i-- > 0;) {
    in_strides[i] = acc;
    acc *= in_dims[i];
  }
  const int64_t total = acc;
  if (total == 0) return;
  std::vector<int64_t> od, os;  // output dims and the input stride of each
  for (const auto& g : groups) {
    const size_t k = std::lower_bound(by_start.begin(), by_start.end(), g) - by_start.begin();
    od.push_back(in_dims[k]);
    os.push_back(in_strides[k]);
  }
  const size_t r = od.size();
  if (r <= 1) {
    std::memcpy(out, x, total * sizeof(T));
    return;
  }
  if (os[r - 1] == 1) {
    // Innermost input run stays innermost: copy runs.
    const int64_t run = od[r - 1], rows = total / run;
    std::vector<int64_t> rd(od.begin(), od.end() - 1), rs(os.begin(), os.end() - 1);
#pragma omp parallel for schedule(static) if (total > kParallelMin)
    for (int64_t row = 0; row < rows; ++row)
      std::memcpy(out + row * run, x + offset_of(row, rd, rs), run * sizeof(T));
    return;
  }
  // Tile over the output dim q fed by the input's contiguous dim and the output's last dim.
  size_t q = 0;
  while (os[q] != 1) ++q;
  const int64_t nq = od[q], nl = od[r - 1], sl = os[r - 1];
  int64_t out_q_stride = 1;
  for (size_t d = q + 1; d < r; ++d) out_q_stride *= od[d];
  std::vector<int64_t> bd, bs, bo;  // remaining dims: size, input stride, output stride
  {
    std::vector<int64_t> ostr(r);
    int64_t a = 1;
    for (size_t d = r; d-- > 0;) {
      ostr[d] = a;
      a *= od[d];
    }
    for (size_t d = 0; d + 1 < r; ++d)
      if (d != q) {
        bd.push_back(od[d]);
        bs.push_back(os[d]);
        bo.push_back(ostr[d]);
      }
  }
  const int64_t T_ = 32;
  const int64_t batches = total / (nq * nl), tq = (nq + T_ - 1) / T_;
#pragma omp parallel for schedule(static) if (total > kParallelMin)
  for (int64_t w = 0; w < batches * tq; ++w) {
    const int64_t bi = w / tq, q0 = (w % tq) * T_, q1 = std::min(nq, q0 + T_);
    const int64_t ib = offset_of(bi, bd, bs), ob = offset_of(bi, bd, bo);
    for (int64_t l0 = 0; l0 < nl; l0 += T_) {
      const int64_t l1 = std::min(nl, l0 + T_);
      for (int64_t i = q0; i < q1; ++i) {
        T* o = out + ob + i * out_q_stride;
        const T* in = x + ib + i;
        for (int64_t l = l0; l < l1; ++l) o[l] = in[l * sl];
      }
    }
  }
}

}  // namespace

void transpose(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& perm, float* out,
               int elem_bytes) {
  if (elem_bytes == 4) {
    transpose_t(reinterpret_cast<const uint32_t*>(x), shape, perm, reinterpret_cast<uint32_t*>(out));
  } else {
    transpose_t(reinterpret_cast<const uint8_t*>(x), shape, perm, reinterpret_cast<uint8_t*>(out));
  }
}

int64_t gather(const void* x, int elem_bytes, const int32_t* idx, int64_t n_idx, void* out, int64_t outer,
               int64_t dim, int64_t inner) {
  for (int64_t i = 0; i < n_idx; ++i)
    if (idx[i] < 0 || idx[i] >= dim) return i;
  const int64_t row = inner * elem_bytes;
  const char* xs = static_cast<const char*>(x);
  char* os = static_cast<char*>(out);
#pragma omp parallel for collapse(2) schedule(static) if (outer * n_idx * inner > kParallelMin)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < n_idx; ++i)
      std::memcpy(os + (o * n_idx + i) * row, xs + (o * dim + idx[i]) * row, row);
  return -1;
}

void scatter_add(const float* x, const int32_t* ids, int64_t count, int64_t inner, float* out, int64_t num_seg) {
  std::fill(out, out + num_seg * inner, 0.f);
  // Threads own disjoint column ranges, so no two write the same output element.
  const int64_t chunk = 64, chunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (count * inner > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * chunk, hi = std::min(inner, lo + chunk);
    for (int64_t j = 0; j < count; ++j) {
      const int32_t s = ids[j];
      if (s < 0 || s >= num_seg) continue;
      float* o = out + s * inner;
      const float* xr = x + j * inner;
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) o[i] += xr[i];
    }
  }
}

}  // namespace nk
