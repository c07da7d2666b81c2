// Kernel entry points shared by the N-API glue (addon.cc) and the implementations.
// Every kernel writes a caller-owned, preallocated output and never aliases its inputs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nk {

// Thread pool (one OpenMP pool, shared with oneDNN).
int physical_cores();
void set_threads(int n);
int threads();

// Matmul: out[b] = op(A[b]) * op(B[b]) (+ bias[N]) then activation; batches broadcast when 1.
enum class Act : int { none = 0, relu = 1, relu6 = 2, sigmoid = 3, elu = 4, leaky_relu = 5 };
struct MatmulShape {
  int64_t batch_a, batch_b, m, n, k;
  bool trans_a, trans_b;
};
// fp32; bf16 inputs on oneDNN's bf16 kernels (fp32 accumulation and output); or fp32 kernels
// on inputs rounded to bf16, which gives bf16 numerics on CPUs without bf16 hardware.
enum class Precision : int { fp32 = 0, bf16 = 1, bf16_rounded = 2 };
// Whether the row counts of the matmuls that follow change from call to call (see matmul.cc).
void set_varying_rows(bool on);
// Returns an empty string on success, else why it could not run.
std::string matmul(const MatmulShape& s, const float* a, const float* b, const float* bias, Act act,
                   float alpha, float* out, Precision precision);
// One AdamW update (src/optimizer/adamw.ts) of n parameters: p_out, m_out, v_out from p, g, m, v.
// The scalars are float32, as the composed update's scalar tensors are.
struct AdamWScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, decay_factor, bias2_sqrt, eps, step_size;
  bool decay;
};
void adamw(const float* p, const float* g, const float* m, const float* v, int64_t n, const AdamWScalars& s, float* p_out,
           float* m_out, float* v_out);
// Newton–Schulz orthogonalisation (src/optimizer/newton-schulz.ts) of g [rows, cols]: `steps`
// iterations X ← a·X + (b·A + c·A²)·X from g/(‖g‖_F + 1e-7), coefficients {a, b, c}. Returns
// an empty string on success, else why it could not run.
std::string newton_schulz(const float* g, int64_t rows, int64_t cols, int steps, const float coef[3], float* out);
// One Muon update (src/optimizer/muon.ts) of each [rows, cols] matrix of a group: p_out, m_out
// from p, g, m. Float32 scalars as the composed update's: step_size is lr·√max(1, cols/rows).
struct MuonScalars {
  float beta, one_minus_beta, decay_factor, step_size;
  float coefficients[3];
  int steps;
  bool nesterov, decay;
};
struct MuonMatrix {
  const float* p;
  const float* g;
  const float* m;
  float* p_out;
  float* m_out;
  int64_t rows, cols;
  MuonScalars s;
};
std::string muon(const std::vector<MuonMatrix>& group);
// Whether bf16 matmul runs on native hardware support (AMX or avx512_bf16).
bool bf16_native();
std::string isa_name();

// Elementwise.
enum class BinOp : int { add = 0, sub, mul, div, max, min, sqdiff, pow, prelu };
void binary(BinOp op, const float* a, const std::vector<int64_t>& a_shape, const float* b,
            const std::vector<int64_t>& b_shape, float* out, const std::vector<int64_t>& out_shape);
// int32 versions of add, sub, mul, max, min; false for other ops.
bool binary_i32(BinOp op, const int32_t* a, const std::vector<int64_t>& a_shape, const int32_t* b,
                const std::vector<int64_t>& b_shape, int32_t* out, const std::vector<int64_t>& out_shape);
// Comparisons and logical ops with broadcasting; bool (uint8) output.
enum class Elem : int { f32 = 0, i32 = 1, u8 = 2 };
enum class CmpOp : int { equal = 0, not_equal, less, less_equal, greater, greater_equal, logical_and, logical_or };
void compare(CmpOp op, const void* a, const std::vector<int64_t>& a_shape, const void* b,
             const std::vector<int64_t>& b_shape, uint8_t* out, const std::vector<int64_t>& out_shape, Elem elem);
// out = cond ? a : b, all of n elements.
void select(const uint8_t* cond, const float* a, const float* b, float* out, int64_t n);
// Constant padding: out_shape[d] = shape[d] + before[d] + after[d].
void pad(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& before,
         const std::vector<int64_t>& out_shape, float value, float* out);
// The box begin[d] .. begin[d] + out_shape[d] of x (the inverse of pad).
void slice(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& begin,
           const std::vector<int64_t>& out_shape, float* out);
enum class UnOp : int {
  exp = 0, log, sigmoid, tanh, erf, relu, relu6, sqrt, rsqrt, square, neg, abs, reciprocal, step,
  elu, leaky_relu, log1p, expm1
};
void unary(UnOp op, const float* x, float* out, int64_t n, float alpha);
// FFN activations in one pass each way, so training keeps only x for the backward pass.
// act: out = f(x); act_grad: out = dy * f'(x). alpha is swish's beta.
// Softmax cross-entropy of logits x [n, v]: lse[i] = log Σ_j exp x[i, j], nll[i] = lse[i] − x[i, t_i]
// (NaN for a target outside [0, v)); the gradient out = (softmax(x) − onehot(t)) · scale[i].
void xent(const float* x, const int32_t* targets, int64_t n, int64_t v, float* nll, float* lse);
void xent_grad(const float* x, const float* lse, const int32_t* targets, const float* scale, int64_t n, int64_t v,
               float* out);
// Distillation's soft targets at temperature T (inv_t = 1/T) for student logits s and teacher
// logits t [n, v]: lse_s[i] = log Σ exp(s/T), lse_t[i] = log Σ exp(t/T), div[i] = KL(p_t ∥ p_s),
// or KL(p_s ∥ p_t) when reverse. The gradient out = (softmax(s) − onehot)·ce_scale[i] +
// g_soft·kd_scale[i], with g_soft = p_s − p_t (forward) or p_s·(log p_s − log p_t − div) (reverse);
// lse is the hard-target kernel's.
void soft_xent(const float* s, const float* t, int64_t n, int64_t v, float inv_t, bool reverse, float* lse_s,
               float* lse_t, float* div);
void soft_xent_grad(const float* s, const float* t, const float* lse, const int32_t* targets, const float* lse_s,
                    const float* lse_t, const float* div, const float* ce_scale, const float* kd_scale, int64_t n,
                    int64_t v, float inv_t, bool reverse, float* out);
// Normalisation of x [rows, d] over its last axis: y = (x − μ)·r·gain (+ bias, when not null) with
// r = 1/√(var + eps), μ the row mean when center (LayerNorm) and 0 otherwise (RMSNorm); mean and
// rstd per row.
void norm(const float* x, const float* gain, const float* bias, int64_t rows, int64_t d, float eps, bool center, float* y,
          float* mean, float* rstd);
// Its gradient given dy: dx [rows, d], dgain [d] and, when not null, dbias [d].
void norm_grad(const float* x, const float* gain, const float* mean, const float* rstd, const float* dy, int64_t rows,
               int64_t d, bool center, float* dx, float* dgain, float* dbias);
enum class ActOp : int { gelu = 0, gelu_tanh, swish };
void act(ActOp op, const float* x, float* out, int64_t n, float alpha);
void act_grad(ActOp op, const float* x, const float* dy, float* out, int64_t n, float alpha);

// Reductions over the middle axis of x viewed as [outer, r, inner].
enum class RedOp : int { sum = 0, mean, max, min, prod };
void reduce(RedOp op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner);

// Softmax over the last axis of x viewed as [rows, cols]; softmax_row is one row, on this thread.
void softmax(const float* x, float* out, int64_t rows, int64_t cols);
void softmax_row(const float* x, float* out, int64_t cols);
// Top-1 minus top-2 probability of softmax_row(logits) (equal ones both count, so a tie gives
// 0), bit for bit, exps being scratch of v; softmax_margins writes it for each row of [rows, v]
// without writing the probabilities out (one row of scratch per thread stays in cache).
float softmax_margin(const float* logits, float* exps, int64_t v);
void softmax_margins(const float* logits, float* out, int64_t rows, int64_t v);
// Cosine of each row of a and b [rows, d], clamped to [-1, 1] (NaN stays): the composed
// sum(a·b) / sqrt(sum(a²)·sum(b²)) in its float32 steps, each sum by the Sum kernel's own
// row sum, so the bits are the composition's. row_cosine is one row, on this thread, products
// being scratch of 3·d.
float row_cosine(const float* a, const float* b, int64_t d, float* products);
void row_cosines(const float* a, const float* b, float* out, int64_t rows, int64_t d);
// Causal softmax of attention scores x viewed as [rows, tq, tk]: query i (row % tq) sees keys
// j <= i + tk − tq, the rest get probability 0, as an additive −1e9 mask gives them, without
// building or reading one. Its gradient dx = dy·y − (Σ dy·y)·y, in the composed gradient's
// float32 operations with the sum in double (as the native Sum), so the bits are the same.
void causal_softmax(const float* x, float* out, int64_t rows, int64_t tq, int64_t tk);
void causal_softmax_grad(const float* y, const float* dy, float* dx, int64_t rows, int64_t tq, int64_t tk);
// Backward pass of relu(x·w + b) from its output y [rows, cols]: dz = dy where y > 0, else 0, and
// db = Σ_rows dz, in one pass.
void relu_bias_grad(const float* y, const float* dy, int64_t rows, int64_t cols, float* dz, float* db);

// Layout.
void transpose(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& perm,
               float* out, int elem_bytes);
// Gathers rows of x viewed as [outer, dim, inner]; returns the first out-of-range index
// position, or -1.
int64_t gather(const void* x, int elem_bytes, const int32_t* idx, int64_t n_idx, void* out,
               int64_t outer, int64_t dim, int64_t inner);
// out[numSeg, inner] = sum of x rows [count, inner] by segment id; ids outside [0, numSeg) drop.
void scatter_add(const float* x, const int32_t* ids, int64_t count, int64_t inner, float* out,
                 int64_t num_seg);
void one_hot(const int32_t* idx, int64_t n, int64_t depth, float on, float off, float* out);

// Int8 weights (llama.cpp's Q8_0 with an fp32 scale, llama2.c's runq): a row of `in` values
// as groups of 32 along it, each d = max|w| / 127 and q = round(w / d); a shorter last group
// is padded with zeros. 36 bytes, 9 floats, so blocks sit in the float arena.
constexpr int64_t kQ8Group = 32;
struct Q8Block {
  float d;
  int8_t q[kQ8Group];
};
inline int64_t q8_groups(int64_t in) { return (in + kQ8Group - 1) / kQ8Group; }
// Quantises rows [rows, in] into blocks [rows, q8_groups(in)].
void q8_quantise(const float* x, int64_t rows, int64_t in, Q8Block* out);

// Incremental decoding (decode.cc). rows_linear: y = x · wᵀ (+ bias) for each target, x
// [rows, in], w [out, in] row-major (a transposed weight, or a tied head's embedding), all
// targets in one pass of the threads; "" or why it could not run. Targets with int8 weights
// (wq, w null; all of a call's or none) quantise x the same way per row and group, and each
// group's int32 dot product is scaled by d_w · d_x in fp32.
struct LinearTarget {
  const float* w;
  const float* bias;
  int64_t out;
  float* y;
  const Q8Block* wq = nullptr;
};
std::string rows_linear(const float* x, int64_t rows, int64_t in, const std::vector<LinearTarget>& targets);
// Zeroed memory for arrays a decoding step streams in full, 2 MiB-aligned and advised for
// transparent huge pages: a pass over tens of MB of weights in 4 KiB pages misses the TLB on
// every page and restarts the prefetchers at every page boundary. nullptr when out of memory;
// huge_free releases the region.
struct HugeRegion {
  void* base;
  size_t length;
};
float* huge_alloc(size_t floats, HugeRegion* region);
void huge_free(const HugeRegion& region);
// Attention of tq new queries per sequence over a position-major cache [batch, capacity,
// heads, dh] holding `offset` positions. q, k, v, out are [batch, tq, heads * dh]; q is scaled
// and q, k are rotated in place (tables [tq, dh], when given, pairs (j, j + half)); the new
// keys and values are written at offset.. of the cache. Scores get slopes[h] · (i − j)
// (ALiBi, slopes negated), bias [heads, tq, offset + tq] and mask (uint8, the same shape)
// when given.
struct AttendShape {
  int64_t batch, tq, heads, dh, offset, capacity, half;
  float scale;
};
struct AttendInputs {
  float* q;
  float* k;
  const float* v;
  float* kc;
  float* vc;
  float* out;
  const float *qcos, *qsin, *kcos, *ksin;
  const float* slopes;
  const float* bias;
  const uint8_t* mask;
};
void attend(const AttendShape& s, const AttendInputs& in);
// Sliding-window and Longformer attention (attend_kinds.cc), as attend without a mask: query i
// of head h sees i, i − d, …, i − window·d (d = dilation[h]) and the global positions up to i.
// Longformer (kg non-null) packs each head's cache as [k | k_g] and [v | v_g] (2·dh floats);
// its rows at global positions attend instead with Q_g = x · wqgᵀ (+ bqg), wqg [heads · dh, in],
// over every earlier position's K_g and V_g (kg, vg [batch, tq, heads · dh], kg rotated here).
struct WindowInputs {
  int64_t window;
  const float* dilation;  // [heads], whole numbers
  const float* globals;   // ascending positions, n_globals of them
  int64_t n_globals;
  const float* x;
  int64_t in;
  const float *wqg, *bqg;
  float* kg;
  const float* vg;
  float qk_eps;  // > 0: Q_g RMS-normalised per head before it is scaled (QK-norm)
};
void window_attend(const AttendShape& s, const AttendInputs& in, const WindowInputs& w);
// Linformer (attend_kinds.cc), projections e and f [heads (per_head) or 1, rank, length].
// Causal (block > 0): each query sees the compressed complete blocks before its own and its
// block so far; state holds the positions compressed so far at [0], then Σ E·K and Σ F·V
// [batch, heads, 2, rank, dh], brought up to date from the cache as blocks complete. Not
// causal (block 0): the call's rows, from position 0, compressed together.
// Throws std::runtime_error past the projection length, and for a non-causal call at offset > 0.
struct LinformerInputs {
  const float *e, *f;
  bool per_head;
  int64_t rank, length, block;
  float* state;
};
void linformer_attend(const AttendShape& s, const AttendInputs& in, const LinformerInputs& l);

// A decoding program (program.cc): a stack's layers as ops over registers (row-major
// activations [rows, width]), run in one call per decoding step. Parameters are indices into
// the program's own copy of them; registers hold batch · t rows of their width.
struct ProgramParam {
  const float* values;
  int64_t rows, cols;
  // Copied as [cols, rows]: a weight [in, out] read one output row at a time.
  bool transpose;
};
// The storage of the products' weights (linear and exit ops' targets): fp32, or int8 blocks.
enum class Weights : int { fp32 = 0, int8 = 1 };
struct ProgramLinear {
  int w, bias, y;  // parameter, parameter or -1, register
};
struct ProgramOp {
  enum class Code : int { norm = 0, linear = 1, attend = 2, act = 3, mul = 4, add = 5, window = 6, linformer = 7, gather = 8, scatter = 9, exit = 10, route = 11, combine = 12 };
  // act: ActOp values, then these; kCap is the logit soft-cap alpha · tanh(x / alpha).
  static constexpr int kRelu = 3, kRelu2 = 4, kCap = 5;
  Code code;
  int x = -1, y = -1, b = -1;       // registers: input, output, second input (mul, add)
  int gain = -1, bias = -1;         // norm: parameters (bias -1: none); with dh > 0, each dh-wide head of a row (QK-norm)
  float eps = 0.f;                  // norm; window: > 0, Longformer's Q_g is RMS-normalised per head with it (QK-norm)
  bool center = false;
  std::vector<ProgramLinear> targets;  // linear: y = x · wᵀ (+ bias) for each
  int q = -1, k = -1, v = -1;          // attend: registers, output in y
  int heads = 0, dh = 0, half = 0, slot = -1, slopes = -1;
  float scale = 1.f;
  int act = 0;  // act
  float alpha = 0.f;
  // window (also q … scale above): window, dilation and globals (parameters, globals -1 for
  // none); Longformer: kg, vg registers, Q_g from register x with parameters wqg, bqg.
  int window = 0, dilation = -1, globals = -1, kg = -1, vg = -1, wqg = -1, bqg = -1;
  // linformer (also q … scale above, but slopes): parameters e, f, and LinformerInputs' sizes
  // (its block size in `block` below).
  int e = -1, f = -1, rank = 0, length = 0;
  // compact: an op on the compact rows, gathered (skipped when there are none): early exit's
  // rows still running, mixture-of-depths' routed rows (then attend too, as one sequence).
  // Early exit. gather: y ← the running rows of x. scatter: y ←
  // b with its running rows from x. exit: the running rows' confidence after block `block`
  // (x: their compact state, b: the block's full input; final norm as a norm op's fields, head
  // in targets[0] whose y is the result), the leaving rows' logits into the result, and the
  // running set shrunk, its logits soft-capped when alpha > 0. Measures: 0 softmax margin, 1
  // saturation (cosine), 2 everyone leaves.
  bool compact = false;
  int block = -1, measure = 0;  // block: linformer's block size, or early exit's block index
  double threshold = 0;
  static constexpr int kSoftmax = 0, kSaturation = 1, kLast = 2;
  // Mixture-of-depths. route: the rows whose predictor output x is above zero become the
  // compact rows, y ← those rows of b (counted for block `block`); the block's ops are compact,
  // its attention at its slot's own offset. combine: y ← b, and at the routed rows b +
  // sigmoid(g) · (x − b), x the block's compact output, g the router's logits.
  int g = -1;
};
// What an attend op reads besides registers: its cache [batch, capacity, heads, dh] and, for
// rotary schemes, tables [positions, dh] by absolute position. Bound once, and again when the
// caller's arrays change (a new cache, a grown one); lengths in floats, for the checks.
struct ProgramSlot {
  float* kc = nullptr;
  float* vc = nullptr;
  int64_t capacity = 0, cache_length = 0;
  const float *qcos = nullptr, *qsin = nullptr, *kcos = nullptr, *ksin = nullptr;
  int64_t positions = 0;
  // A causal Linformer's running sums (LinformerInputs::state), state_length floats.
  float* state = nullptr;
  int64_t state_length = 0;
};
// Per call and attend op: an additive score bias and a mask, each [heads, t, offset + t], or
// null; for a routed block's slot, offset is its own held length (see Program::offsets).
struct ProgramExtra {
  const float* bias;
  const uint8_t* mask;
};
class Program {
 public:
  Program(std::vector<ProgramOp> ops, std::vector<int64_t> widths, int result, const std::vector<ProgramParam>& params, Weights weights);
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;
  void bind(int slot, const ProgramSlot& s) { slots_.at(slot) = s; }
  void bind_state(int slot, float* state, int64_t length) {
    slots_.at(slot).state = state;
    slots_.at(slot).state_length = length;
  }
  // Register 0 ← input, then runs the ops (the result is register `result`). extras: one per
  // slot, or none. Throws std::runtime_error on failure, and when a slot's bound arrays cannot
  // hold the call.
  void run(const float* input, int64_t batch, int64_t t, int64_t offset, std::vector<ProgramExtra> extras);
  // A register's storage and its length in floats.
  float* reg(int r, int64_t* length);
  int64_t width(int r) const { return widths_.at(r); }
  // Attention slots, and the heads and head size of each (from its attend op).
  int slots() const { return static_cast<int>(slot_heads_.size()); }
  int64_t slot_heads(int i) const { return slot_heads_.at(i); }
  int64_t slot_dh(int i) const { return slot_dh_.at(i); }
  // Floats of state a slot needs per sequence (a causal Linformer's sums), 0 for none.
  int64_t slot_state(int i) const { return slot_state_.at(i); }
  // Early exit: the block each row must leave after (kFree: its confidence decides), for the
  // next calls; empty: none forced. After a call: per row the block it left after.
  static constexpr int32_t kFree = INT32_MIN;
  void force(std::vector<int32_t> forced) { forced_ = std::move(forced); }
  const std::vector<int32_t>& exits() const { return exited_; }
  // Mixture-of-depths: per attention slot the position its new keys start at (empty: the
  // call's offset), for the next calls; after a call, per block the rows routed through it.
  void offsets(std::vector<int64_t> o) { slot_offsets_ = std::move(o); }
  const std::vector<int32_t>& routed() const { return routed_; }
  // The position a slot's new keys start at in a call from `offset`.
  int64_t slot_start(int slot, int64_t offset) const { return static_cast<size_t>(slot) < slot_offsets_.size() ? slot_offsets_[slot] : offset; }

 private:
  std::vector<ProgramOp> ops_;
  std::vector<int64_t> widths_;
  int result_;
  std::vector<std::vector<float>> registers_;
  std::vector<const float*> params_;
  // Int8 blocks [out, groups] of the products' weights under Weights::int8, else null.
  std::vector<const Q8Block*> quantised_;
  LinearTarget target(const ProgramLinear& l, float* y) const;
  float* arena_ = nullptr;
  HugeRegion region_{};
  std::vector<int64_t> slot_heads_, slot_dh_;
  // Floats of cache per position, and of state per sequence, of each slot.
  std::vector<int64_t> slot_row_, slot_state_;
  std::vector<int64_t> sizes_;  // floats of each parameter
  std::vector<float> scratch_;
  std::vector<LinearTarget> targets_;
  std::vector<ProgramSlot> slots_;
  std::vector<ProgramExtra> extras_;
  int64_t batch_ = 0, t_ = 0, offset_ = 0;
  // Early exit's state in a call (see force, exits, running).
  void norm_rows(const ProgramOp& op, const float* x, int64_t rows, float* y);
  void exit_rows(const ProgramOp& op);
  std::vector<int64_t> running_, leaving_;
  // The rows still running (early exit) or routed (mixture-of-depths): the compact ops' rows.
  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  std::vector<int32_t> exited_, forced_;
  std::vector<float> exit_state_, exit_normed_, exit_logits_, exit_probs_, exit_products_;
  // Mixture-of-depths' (see offsets, routed).
  int64_t slot_offset(int slot) const { return slot_start(slot, offset_); }
  std::vector<int64_t> slot_offsets_;
  std::vector<int32_t> routed_;
  // An attention op's shape and extra: compact (routed) rows are one sequence at the slot's
  // own held length, their bias and mask the first rows of the caller's, repacked here.
  AttendShape shape_of(const ProgramOp& op, int64_t rows) const;
  ProgramExtra extra_of(const ProgramOp& op, int64_t rows);
  std::vector<float> compact_bias_;
  std::vector<uint8_t> compact_mask_;
};

}  // namespace nk

// Fused attention (native/attention.cc) of q [bh, t, dh] over k, v [bh, tk, dh], bh = batch·heads
// with the head fastest: query i sees keys [lo[i], hi[i]) (none when lo[i] ≥ hi[i]; the same
// ranges for every head), scores q·k plus slopes[head]·(i − j) when slopes is given (ALiBi).
// Forward: out [bh, t, dh] and the rows' log-sum-exp lse [bh, t] (a row that sees no key: 0 and
// −∞); backward: dq, dk, dv from those, dout and, when given, the gradient of lse.
namespace nk {
struct AttentionShape {
  int64_t bh, heads, t, tk, dh;
  const int32_t *lo, *hi;
};
// RoPE and xPos inside the kernel: q and k [t, dh] rows are rotated as x·cos + rotate_half(x)·sin
// with the pairs (j, j + half), by tables [t, dh] of their own (xPos scales queries and keys
// apart); the gradients with respect to the unrotated q and k come back through the transpose.
struct Rotation {
  int64_t half;
  const float *qcos, *qsin, *kcos, *ksin;
};
void attention(const AttentionShape& s, const float* q, const float* k, const float* v, const float* slopes,
               const Rotation* rotation, float* out, float* lse);
void attention_grad(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                    const float* lse, const float* dout, const float* dlse, const float* slopes, const Rotation* rotation,
                    float* dq, float* dk, float* dv);
}  // namespace nk
