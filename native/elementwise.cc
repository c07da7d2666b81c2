// Elementwise kernels: broadcasting binary ops, unary ops, one-hot.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "vmath.h"

namespace nk {

namespace {

constexpr int64_t kParallelMin = 1 << 17;

struct Add { float operator()(float a, float b) const { return a + b; } };
struct Sub { float operator()(float a, float b) const { return a - b; } };
struct Mul { float operator()(float a, float b) const { return a * b; } };
struct Div { float operator()(float a, float b) const { return a / b; } };
// Math.max / Math.min semantics: NaN wins.
struct Max { float operator()(float a, float b) const { return (a != a || b != b) ? a + b : (a > b ? a : b); } };
struct Min { float operator()(float a, float b) const { return (a != a || b != b) ? a + b : (a < b ? a : b); } };
struct SqDiff { float operator()(float a, float b) const { const float d = a - b; return d * d; } };
struct Pow { float operator()(float a, float b) const { return static_cast<float>(std::pow(static_cast<double>(a), static_cast<double>(b))); } };
struct Prelu { float operator()(float a, float b) const { return a < 0.f ? b * a : a; } };
// int32 arithmetic wraps like the stock kernels' stores into an Int32Array.
struct AddI { int32_t operator()(int32_t a, int32_t b) const { return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b)); } };
struct SubI { int32_t operator()(int32_t a, int32_t b) const { return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b)); } };
struct MulI { int32_t operator()(int32_t a, int32_t b) const { return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b)); } };
struct MaxI { int32_t operator()(int32_t a, int32_t b) const { return a > b ? a : b; } };
struct MinI { int32_t operator()(int32_t a, int32_t b) const { return a < b ? a : b; } };
template <class T> struct Eq { uint8_t operator()(T a, T b) const { return a == b; } };
template <class T> struct Ne { uint8_t operator()(T a, T b) const { return a != b; } };
template <class T> struct Lt { uint8_t operator()(T a, T b) const { return a < b; } };
template <class T> struct Le { uint8_t operator()(T a, T b) const { return a <= b; } };
template <class T> struct Gt { uint8_t operator()(T a, T b) const { return a > b; } };
template <class T> struct Ge { uint8_t operator()(T a, T b) const { return a >= b; } };
struct And { uint8_t operator()(uint8_t a, uint8_t b) const { return a && b; } };
struct Or { uint8_t operator()(uint8_t a, uint8_t b) const { return a || b; } };

// Output dims after dropping size-1 dims and merging dims that are contiguous in both inputs.
struct Plan {
  std::vector<int64_t> dims, sa, sb;
};

Plan plan(const std::vector<int64_t>& as, const std::vector<int64_t>& bs, const std::vector<int64_t>& os) {
  const size_t r = os.size();
  std::vector<int64_t> da(r, 1), db(r, 1);
  for (size_t i = 0; i < as.size(); ++i) da[r - as.size() + i] = as[i];
  for (size_t i = 0; i < bs.size(); ++i) db[r - bs.size() + i] = bs[i];
  std::vector<int64_t> stA(r), stB(r);
  int64_t ca = 1, cb = 1;
  for (size_t i = r; i-- > 0;) {
    stA[i] = da[i] == 1 ? 0 : ca;
    stB[i] = db[i] == 1 ? 0 : cb;
    ca *= da[i];
    cb *= db[i];
  }
  Plan p;
  for (size_t i = 0; i < r; ++i) {
    if (os[i] == 1) continue;
    if (!p.dims.empty()) {
      const int64_t d = os[i];
      const size_t j = p.dims.size() - 1;
      if (p.sa[j] == stA[i] * d && p.sb[j] == stB[i] * d) {
        p.dims[j] *= d;
        p.sa[j] = stA[i];
        p.sb[j] = stB[i];
        continue;
      }
    }
    p.dims.push_back(os[i]);
    p.sa.push_back(stA[i]);
    p.sb.push_back(stB[i]);
  }
  if (p.dims.empty()) {
    p.dims.push_back(1);
    p.sa.push_back(0);
    p.sb.push_back(0);
  }
  return p;
}

template <class F, class T, class O>
void inner(F f, const T* a, int64_t sa, const T* b, int64_t sb, O* o, int64_t n) {
  if (sa == 1 && sb == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa == 1) {
    const T bv = b[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sb == 1) {
    const T av = a[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    const O v = f(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  }
}

template <class F, class T, class O>
void run_binary(F f, const T* a, const std::vector<int64_t>& as, const T* b, const std::vector<int64_t>& bs,
                O* o, const std::vector<int64_t>& os) {
  const Plan p = plan(as, bs, os);
  const size_t r = p.dims.size();
  const int64_t n = p.dims[r - 1], isa = p.sa[r - 1], isb = p.sb[r - 1];
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < r; ++i) rows *= p.dims[i];
  const int64_t total = rows * n;
  if (total == 0) return;
  if (rows == 1) {
    // One long run: split it across threads.
#pragma omp parallel if (total > kParallelMin)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
      inner(f, a + lo * isa, isa, b + lo * isb, isb, o + lo, hi - lo);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (total > kParallelMin)
  for (int64_t row = 0; row < rows; ++row) {
    int64_t rem = row, oa = 0, ob = 0;
    for (size_t d = r - 1; d-- > 0;) {
      const int64_t idx = rem % p.dims[d];
      rem /= p.dims[d];
      oa += idx * p.sa[d];
      ob += idx * p.sb[d];
    }
    inner(f, a + oa, isa, b + ob, isb, o + row * n, n);
  }
}

}  // namespace

void binary(BinOp op, const float* a, const std::vector<int64_t>& as, const float* b,
            const std::vector<int64_t>& bs, float* o, const std::vector<int64_t>& os) {
  switch (op) {
    case BinOp::add: return run_binary(Add{}, a, as, b, bs, o, os);
    case BinOp::sub: return run_binary(Sub{}, a, as, b, bs, o, os);
    case BinOp::mul: return run_binary(Mul{}, a, as, b, bs, o, os);
    case BinOp::div: return run_binary(Div{}, a, as, b, bs, o, os);
    case BinOp::max: return run_binary(Max{}, a, as, b, bs, o, os);
    case BinOp::min: return run_binary(Min{}, a, as, b, bs, o, os);
    case BinOp::sqdiff: return run_binary(SqDiff{}, a, as, b, bs, o, os);
    case BinOp::pow: return run_binary(Pow{}, a, as, b, bs, o, os);
    case BinOp::prelu: return run_binary(Prelu{}, a, as, b, bs, o, os);
  }
}

bool binary_i32(BinOp op, const int32_t* a, const std::vector<int64_t>& as, const int32_t* b,
                const std::vector<int64_t>& bs, int32_t* o, const std::vector<int64_t>& os) {
  switch (op) {
    case BinOp::add: run_binary(AddI{}, a, as, b, bs, o, os); return true;
    case BinOp::sub: run_binary(SubI{}, a, as, b, bs, o, os); return true;
    case BinOp::mul: run_binary(MulI{}, a, as, b, bs, o, os); return true;
    case BinOp::max: run_binary(MaxI{}, a, as, b, bs, o, os); return true;
    case BinOp::min: run_binary(MinI{}, a, as, b, bs, o, os); return true;
    default: return false;
  }
}

namespace {

template <class T>
void compare_t(CmpOp op, const T* a, const std::vector<int64_t>& as, const T* b, const std::vector<int64_t>& bs,
               uint8_t* o, const std::vector<int64_t>& os) {
  switch (op) {
    case CmpOp::equal: return run_binary(Eq<T>{}, a, as, b, bs, o, os);
    case CmpOp::not_equal: return run_binary(Ne<T>{}, a, as, b, bs, o, os);
    case CmpOp::less: return run_binary(Lt<T>{}, a, as, b, bs, o, os);
    case CmpOp::less_equal: return run_binary(Le<T>{}, a, as, b, bs, o, os);
    case CmpOp::greater: return run_binary(Gt<T>{}, a, as, b, bs, o, os);
    case CmpOp::greater_equal: return run_binary(Ge<T>{}, a, as, b, bs, o, os);
    case CmpOp::logical_and: return run_binary(And{}, a, as, b, bs, o, os);
    case CmpOp::logical_or: return run_binary(Or{}, a, as, b, bs, o, os);
  }
}

}  // namespace

void compare(CmpOp op, const void* a, const std::vector<int64_t>& as, const void* b, const std::vector<int64_t>& bs,
             uint8_t* o, const std::vector<int64_t>& os, Elem elem) {
  switch (elem) {
    case Elem::f32: return compare_t(op, static_cast<const float*>(a), as, static_cast<const float*>(b), bs, o, os);
    case Elem::i32: return compare_t(op, static_cast<const int32_t*>(a), as, static_cast<const int32_t*>(b), bs, o, os);
    case Elem::u8: return compare_t(op, static_cast<const uint8_t*>(a), as, static_cast<const uint8_t*>(b), bs, o, os);
  }
}

void select(const uint8_t* cond, const float* a, const float* b, float* o, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) o[i] = cond[i] ? a[i] : b[i];
}

namespace {

// Copies a box of shape `box` lying at `begin` inside a tensor of shape `big`, row by row:
// out of the big tensor into a dense one (slice), or from a dense one into it (pad).
enum class Box { read, write };

void copy_box(Box dir, const float* x, float* o, const std::vector<int64_t>& box, const std::vector<int64_t>& begin,
              const std::vector<int64_t>& big) {
  const size_t r = box.size();
  if (r == 0) {
    o[0] = x[0];
    return;
  }
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < r; ++d) rows *= box[d];
  const int64_t run = box[r - 1];
  if (rows * run == 0) return;
  std::vector<int64_t> stride(r, 1);
  for (size_t d = r; d-- > 1;) stride[d - 1] = stride[d] * big[d];
#pragma omp parallel for schedule(static) if (rows * run > kParallelMin)
  for (int64_t row = 0; row < rows; ++row) {
    int64_t rem = row, off = begin[r - 1];
    for (size_t d = r - 1; d-- > 0;) {
      off += (rem % box[d] + begin[d]) * stride[d];
      rem /= box[d];
    }
    if (dir == Box::read) std::copy(x + off, x + off + run, o + row * run);
    else std::copy(x + row * run, x + (row + 1) * run, o + off);
  }
}

}  // namespace

void pad(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& before,
         const std::vector<int64_t>& out_shape, float value, float* o) {
  int64_t total = 1;
  for (int64_t d : out_shape) total *= d;
  std::fill(o, o + total, value);
  copy_box(Box::write, x, o, shape, before, out_shape);
}

void slice(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& begin,
           const std::vector<int64_t>& out_shape, float* o) {
  copy_box(Box::read, x, o, out_shape, begin, shape);
}

namespace {

// Below the thresholds these loops run without OpenMP at all: even a parallel region that the
// if clause makes serial allocates a team and costs microseconds, as much as a small op.
template <class F>
void map(F f, const float* x, float* o, int64_t n) {
  if (n <= kParallelMin) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
    return;
  }
#pragma omp parallel
  {
    // A thread-local copy keeps captured values (alpha) loop-invariant, so the loop vectorises.
    const F g = f;
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) o[i] = g(x[i]);
  }
}

// Scalar libm calls: accurate, used for ops that are not hot in training.
template <class F>
void map_scalar(F f, const float* x, float* o, int64_t n) {
  if (n <= kParallelMin / 8) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
}

}  // namespace

void unary(UnOp op, const float* x, float* o, int64_t n, float alpha) {
  switch (op) {
    case UnOp::exp: return map([](float v) { return vexp(v); }, x, o, n);
    case UnOp::log: return map_scalar([](float v) { return std::log(v); }, x, o, n);
    case UnOp::sigmoid: return map([](float v) { return vsigmoid(v); }, x, o, n);
    case UnOp::tanh: return map([](float v) { return vtanh(v); }, x, o, n);
    case UnOp::erf: return map_scalar([](float v) { return std::erf(v); }, x, o, n);
    case UnOp::relu: return map([](float v) { return v < 0.f ? 0.f : v; }, x, o, n);
    case UnOp::relu6: return map([](float v) { return v < 0.f ? 0.f : (v > 6.f ? 6.f : v); }, x, o, n);
    case UnOp::sqrt: return map([](float v) { return std::sqrt(v); }, x, o, n);
    case UnOp::rsqrt: return map([](float v) { return 1.f / std::sqrt(v); }, x, o, n);
    case UnOp::square: return map([](float v) { return v * v; }, x, o, n);
    case UnOp::neg: return map([](float v) { return -v; }, x, o, n);
    case UnOp::abs: return map([](float v) { return std::fabs(v); }, x, o, n);
    case UnOp::reciprocal: return map([](float v) { return 1.f / v; }, x, o, n);
    case UnOp::step: return map([alpha](float v) { return v != v ? v : (v > 0.f ? 1.f : alpha); }, x, o, n);
    case UnOp::elu: return map([](float v) { return v >= 0.f ? v : vexp(v) - 1.f; }, x, o, n);
    case UnOp::leaky_relu: return map([alpha](float v) { return v < 0.f ? alpha * v : v; }, x, o, n);
    case UnOp::log1p: return map_scalar([](float v) { return std::log1p(v); }, x, o, n);
    case UnOp::expm1: return map_scalar([](float v) { return std::expm1(v); }, x, o, n);
  }
}

namespace {

constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kTanhC = 0.79788456080286536f;  // sqrt(2/pi)
constexpr float kTanhA = 0.044715f;

// Two inputs in lockstep; erf (std::erf) is scalar, so the gelu loops do not vectorise.
template <class F>
void map2(F f, const float* x, const float* y, float* o, int64_t n) {
  if (n <= kParallelMin / 8) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
}

}  // namespace

void act(ActOp op, const float* x, float* o, int64_t n, float alpha) {
  switch (op) {
    case ActOp::gelu:
      return map_scalar([](float v) { return v * 0.5f * (1.f + std::erf(v * kSqrtHalf)); }, x, o, n);
    case ActOp::gelu_tanh:
      return map([](float v) { return v * 0.5f * (1.f + vtanh(kTanhC * (v + kTanhA * (v * (v * v))))); }, x, o, n);
    case ActOp::swish:
      return map([alpha](float v) { return v * vsigmoid(v * alpha); }, x, o, n);
  }
}

void act_grad(ActOp op, const float* x, const float* dy, float* o, int64_t n, float alpha) {
  switch (op) {
    case ActOp::gelu:
      return map2([](float v, float g) {
        const float cdf = 0.5f * (1.f + std::erf(v * kSqrtHalf));
        return g * (cdf + v * kInvSqrt2Pi * vexp(-0.5f * v * v));
      }, x, dy, o, n);
    case ActOp::gelu_tanh:
      return map2([](float v, float g) {
        const float t = vtanh(kTanhC * (v + kTanhA * (v * (v * v))));
        return g * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * kTanhC * (1.f + 3.f * kTanhA * v * v));
      }, x, dy, o, n);
    case ActOp::swish:
      return map2([alpha](float v, float g) {
        const float s = vsigmoid(v * alpha);
        return g * s * (1.f + alpha * v * (1.f - s));
      }, x, dy, o, n);
  }
}

void one_hot(const int32_t* idx, int64_t n, int64_t depth, float on, float off, float* out) {
#pragma omp parallel for schedule(static) if (n * depth > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float* row = out + i * depth;
    std::fill(row, row + depth, off);
    if (idx[i] >= 0 && idx[i] < depth) row[idx[i]] = on;
  }
}

}  // namespace nk
