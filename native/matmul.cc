// Matmul through oneDNN. Primitives are cached by shape: creating one costs far more than
// running the small attention matmuls it serves (0.2–1.2 ms here, more than a 300-row linear
// layer). Where the caller says row counts vary (early exit's evaluation gathers another number
// of rows at every block of every batch), one primitive per shape but the row count serves
// every count, given at execution, instead of one never reused per count. Training keeps its
// exact-shape primitives, which oneDNN may specialise, so its numbers do not depend on this.
#include <dnnl.hpp>
#include <omp.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kernels.h"

namespace nk {

using dnnl::memory;
using tag_dims = memory::dims;

static dnnl::engine& eng() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

static dnnl::stream& strm() {
  static dnnl::stream s(eng());
  return s;
}

bool bf16_native() {
  const auto isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

std::string isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

namespace {

// One (possibly batched) problem after batch folding: A [batch, m, k], B [batch or 1, k, n].
struct Problem {
  int64_t batch, batch_b, m, n, k;
  bool ta, tb, bias;
  Act act;
  float alpha;
  bool bf16;
  int threads;
  auto tie() const { return std::tie(batch, batch_b, m, n, k, ta, tb, bias, act, alpha, bf16, threads); }
  bool operator<(const Problem& o) const { return tie() < o.tie(); }
};

struct Prepared {
  dnnl::matmul prim;
  memory::desc a, b, bias, c;
  // The row count is given at execution (a and c then describe m rows only when run).
  bool runtime_m;
};

constexpr int64_t kRuntime = DNNL_RUNTIME_DIM_VAL;

// A dimension or stride that is m's multiple, or oneDNN's runtime placeholder when m is.
int64_t times(int64_t m, int64_t x) { return m == kRuntime ? kRuntime : m * x; }

memory::desc operand(int64_t batch, int64_t rows, int64_t cols, bool trans, memory::data_type dt) {
  // Logical [batch, rows, cols]; stored [batch, cols, rows] when transposed.
  if (trans) return memory::desc({batch, rows, cols}, dt, {times(rows, cols), 1, rows});
  return memory::desc({batch, rows, cols}, dt, {times(rows, cols), cols, 1});
}

dnnl::algorithm act_alg(Act act) {
  switch (act) {
    case Act::relu: case Act::leaky_relu: return dnnl::algorithm::eltwise_relu;
    case Act::relu6: return dnnl::algorithm::eltwise_clip;
    case Act::sigmoid: return dnnl::algorithm::eltwise_logistic;
    case Act::elu: return dnnl::algorithm::eltwise_elu;
    default: return dnnl::algorithm::undef;
  }
}

std::unique_ptr<Prepared> create(const Problem& p) {
  const auto in_t = p.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  auto out = std::make_unique<Prepared>();
  out->runtime_m = p.m == kRuntime;
  out->a = operand(p.batch, p.m, p.k, p.ta, in_t);
  out->b = operand(p.batch_b, p.k, p.n, p.tb, in_t);
  out->c = memory::desc({p.batch, p.m, p.n}, memory::data_type::f32, {times(p.m, p.n), p.n, 1});
  if (p.bias) out->bias = memory::desc({1, 1, p.n}, memory::data_type::f32, {p.n, p.n, 1});
  dnnl::primitive_attr attr;
  if (p.act != Act::none) {
    dnnl::post_ops ops;
    float alpha = 0.f, beta = 0.f;
    if (p.act == Act::relu6) beta = 6.f;
    if (p.act == Act::elu) alpha = 1.f;
    if (p.act == Act::leaky_relu) alpha = p.alpha;
    ops.append_eltwise(1.f, act_alg(p.act), alpha, beta);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::desc d = p.bias ? dnnl::matmul::desc(out->a, out->b, out->bias, out->c)
                                      : dnnl::matmul::desc(out->a, out->b, out->c);
  out->prim = dnnl::matmul(dnnl::matmul::primitive_desc(d, attr, eng()));
  return out;
}

// Set by the caller around work whose row counts change from call to call (set_varying_rows).
bool varying_rows = false;

const Prepared& prepare(const Problem& p) {
  // Null where no implementation takes a shape's row count at execution.
  static std::map<Problem, std::unique_ptr<Prepared>> cache;
  const auto get = [](const Problem& q) -> const Prepared* {
    auto it = cache.find(q);
    if (it == cache.end()) {
      std::unique_ptr<Prepared> made;
      try {
        made = create(q);
      } catch (const dnnl::error&) {
        if (q.m != kRuntime) throw;
      }
      it = cache.emplace(q, std::move(made)).first;
    }
    return it->second.get();
  };
  if (varying_rows) {
    Problem any = p;
    any.m = kRuntime;
    if (const Prepared* shared = get(any)) return *shared;
  }
  return *get(p);
}

// Round-to-nearest-even fp32 bits -> bf16 bits, keeping NaN a (quiet) NaN.
static inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void to_bf16(const float* src, uint16_t* dst, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits(src[i]);
}

// fp32 -> nearest bf16 -> fp32.
void round_bf16(const float* src, float* dst, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t r = static_cast<uint32_t>(bf16_bits(src[i])) << 16;
    std::memcpy(&dst[i], &r, 4);
  }
}

void run(const Problem& p, const void* a, const void* b, const float* bias, float* c) {
  const Prepared& pr = prepare(p);
  const auto in_t = p.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  memory am(pr.runtime_m ? operand(p.batch, p.m, p.k, p.ta, in_t) : pr.a, eng(), const_cast<void*>(a));
  memory bm(pr.b, eng(), const_cast<void*>(b));
  memory cm(pr.runtime_m ? memory::desc({p.batch, p.m, p.n}, memory::data_type::f32, {p.m * p.n, p.n, 1}) : pr.c, eng(), c);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
  if (p.bias) args.emplace(DNNL_ARG_BIAS, memory(pr.bias, eng(), const_cast<float*>(bias)));
  pr.prim.execute(strm(), args);
  strm().wait();
}

}  // namespace

void set_varying_rows(bool on) { varying_rows = on; }

std::string matmul(const MatmulShape& s, const float* a, const float* b, const float* bias, Act act,
                   float alpha, float* out, Precision precision) {
  const int64_t bat = std::max(s.batch_a, s.batch_b);
  if (!((s.batch_a == s.batch_b) || s.batch_a == 1 || s.batch_b == 1))
    return "batch dims must be equal or 1";
  if (bat == 0 || s.m == 0 || s.n == 0) return "";
  if (s.k == 0) {
    // oneDNN rejects zero-sized reductions; the product is then just bias + activation.
    return "empty reduction";
  }
  if (s.batch_a == 1 && s.batch_b == 1 && s.trans_a && !s.trans_b && bias == nullptr && act == Act::none &&
      s.m >= 2 * s.n) {
    // oneDNN runs A^T·B at about half speed when A^T has many more rows than B has columns (a
    // weight gradient X^T·dY of a wide X: the tied head's, the FFN's down projection's); the
    // same product as (B^T·A)^T runs at full speed, and transposing the small result is cheap.
    static std::vector<float> swapped;
    if (swapped.size() < static_cast<size_t>(s.m * s.n)) swapped.resize(s.m * s.n);
    const std::string err = matmul({1, 1, s.n, s.m, s.k, true, false}, b, a, nullptr, Act::none, 0.f, swapped.data(), precision);
    if (!err.empty()) return err;
    transpose(swapped.data(), {s.n, s.m}, {1, 0}, out, 4);
    return "";
  }
  const bool bf16 = precision == Precision::bf16;
  const int64_t na = s.batch_a * s.m * s.k, nb = s.batch_b * s.k * s.n;
  // Scratch persists across calls so large copies do not fault in fresh pages each time.
  static std::vector<float> a_round, b_round;
  static std::vector<uint16_t> a16, b16;
  if (precision == Precision::bf16_rounded) {
    // bf16 numerics on any CPU: bf16 inputs are exact in fp32, and fp32 accumulation is what
    // the bf16 hardware path does too.
    if (a_round.size() < static_cast<size_t>(na)) a_round.resize(na);
    if (b_round.size() < static_cast<size_t>(nb)) b_round.resize(nb);
    round_bf16(a, a_round.data(), na);
    round_bf16(b, b_round.data(), nb);
    a = a_round.data();
    b = b_round.data();
  }
  const void* ap = a;
  const void* bp = b;
  if (bf16) {
    if (a16.size() < static_cast<size_t>(na)) a16.resize(na);
    if (b16.size() < static_cast<size_t>(nb)) b16.resize(nb);
    to_bf16(a, a16.data(), na);
    to_bf16(b, b16.data(), nb);
    ap = a16.data();
    bp = b16.data();
  }
  const int64_t es = bf16 ? 2 : 4;
  const bool ta = s.trans_a;
  // Small products finish before a second thread would have started; forking for them only
  // adds latency (and waits on a busy core when the machine is shared).
  const double flops = 2.0 * static_cast<double>(bat) * s.m * s.n * s.k;
  const int threads = omp_get_max_threads();
  const bool serial = flops < 3.2e7 && threads > 1;
  if (serial) omp_set_num_threads(1);
  struct Restore {
    bool on;
    int n;
    ~Restore() {
      if (on) omp_set_num_threads(n);
    }
  } restore{serial, threads};
  try {
    if (s.batch_b == 1 && !ta) {
      // A's batches stack into rows of one GEMM against the shared B.
      run({1, 1, s.batch_a * s.m, s.n, s.k, false, s.trans_b, bias != nullptr, act, alpha, bf16, omp_get_max_threads()}, ap, bp,
          bias, out);
    } else if (s.batch_a == s.batch_b) {
      run({bat, bat, s.m, s.n, s.k, ta, s.trans_b, bias != nullptr, act, alpha, bf16, omp_get_max_threads()}, ap, bp, bias,
          out);
    } else {
      const Problem one{1, 1, s.m, s.n, s.k, ta, s.trans_b, bias != nullptr, act, alpha, bf16, omp_get_max_threads()};
      for (int64_t i = 0; i < bat; ++i) {
        const char* ai = static_cast<const char*>(ap) + (s.batch_a == 1 ? 0 : i * s.m * s.k * es);
        const char* bi = static_cast<const char*>(bp) + (s.batch_b == 1 ? 0 : i * s.k * s.n * es);
        run(one, ai, bi, bias, out + i * s.m * s.n);
      }
    }
  } catch (const dnnl::error& e) {
    return std::string("oneDNN: ") + e.what();
  }
  return "";
}

}  // namespace nk
