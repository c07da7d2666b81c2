// A decoding program: the layers of a stack as a list of native ops over a file of
// row-major registers, so that one call runs every layer of a token with no JavaScript in
// between.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels.h"
#include "vmath.h"

namespace nk {

namespace {

// The logit soft-cap c · tanh(x / c) in tfjs's order: divide, tanh, multiply.
void soft_cap(const float* x, float* y, int64_t n, float c) {
  for (int64_t i = 0; i < n; ++i) y[i] = vtanh(x[i] / c) * c;
}

}  // namespace

Program::Program(std::vector<ProgramOp> ops, std::vector<int64_t> widths, int result, const std::vector<ProgramParam>& params, Weights weights)
    : ops_(std::move(ops)), widths_(std::move(widths)), result_(result), registers_(widths_.size()) {
  // The shapes the ops assume, checked once here: a wrong one would read or write past an array.
  const auto need = [](bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
  };
  const auto size = [&](int p) { return params.at(p).rows * params.at(p).cols; };
  const auto width = [&](int r) { return widths_.at(r); };
  for (const ProgramParam& p : params) sizes_.push_back(p.rows * p.cols);
  // An attention op's slot: its heads and head size, cache floats per position and state per sequence.
  const auto claim = [&](const ProgramOp& op, int64_t row, int64_t state) {
    if (static_cast<size_t>(op.slot) >= slot_heads_.size()) {
      slot_heads_.resize(op.slot + 1, 0);
      slot_dh_.resize(op.slot + 1, 0);
      slot_row_.resize(op.slot + 1, 0);
      slot_state_.resize(op.slot + 1, 0);
    }
    slot_heads_[op.slot] = op.heads;
    slot_dh_[op.slot] = op.dh;
    slot_row_[op.slot] = row;
    slot_state_[op.slot] = state;
  };
  for (const ProgramOp& op : ops_) {
    switch (op.code) {
      case ProgramOp::Code::norm:
        need(width(op.y) == width(op.x) && (op.dh == 0 || (op.dh > 0 && width(op.x) % op.dh == 0 && op.bias < 0)),
             "a norm's output must have its input's width, and heads (no bias) divide it");
        need(size(op.gain) == (op.dh > 0 ? op.dh : width(op.x)) && (op.bias < 0 || size(op.bias) == width(op.x)),
             "a norm's gain and bias must have its input's width, or the head's");
        break;
      case ProgramOp::Code::linear:
        for (const ProgramLinear& l : op.targets)
          need(size(l.w) == width(op.x) * width(l.y) && (l.bias < 0 || size(l.bias) == width(l.y)),
               "a product's weight must be [output width, input width] and its bias [output width]");
        break;
      case ProgramOp::Code::attend:
        need(op.slot >= 0 && op.heads > 0 && op.dh > 0 && 2 * op.half <= op.dh, "an attend op needs a slot, heads and half ≤ dh / 2");
        for (int r : {op.q, op.k, op.v, op.y}) need(width(r) == op.heads * op.dh, "an attend op's registers must be heads × dh wide");
        need(op.slopes < 0 || size(op.slopes) == op.heads, "ALiBi needs one slope per head");
        claim(op, op.heads * op.dh, 0);
        break;
      case ProgramOp::Code::window: {
        need(op.slot >= 0 && op.heads > 0 && op.dh > 0 && 2 * op.half <= op.dh && op.window > 0, "a window op needs a slot, heads, a window and half ≤ dh / 2");
        const bool longformer = op.kg >= 0;
        for (int r : {op.q, op.k, op.v, op.y}) need(width(r) == op.heads * op.dh, "a window op's registers must be heads × dh wide");
        need(op.slopes < 0 || size(op.slopes) == op.heads, "ALiBi needs one slope per head");
        need(op.dilation >= 0 && size(op.dilation) == op.heads, "a window op needs one dilation per head");
        if (longformer)
          need(op.vg >= 0 && op.x >= 0 && op.globals >= 0 && width(op.kg) == op.heads * op.dh && width(op.vg) == op.heads * op.dh &&
                   size(op.wqg) == op.heads * op.dh * width(op.x) && (op.bqg < 0 || size(op.bqg) == op.heads * op.dh),
               "Longformer's global projections must be heads × dh wide, from its input");
        claim(op, op.heads * op.dh * (longformer ? 2 : 1), 0);
        break;
      }
      case ProgramOp::Code::linformer: {
        need(op.slot >= 0 && op.heads > 0 && op.dh > 0 && 2 * op.half <= op.dh && op.rank > 0 && op.length > 0 && op.block >= 0,
             "a linformer op needs a slot, heads, a rank, a length and half ≤ dh / 2");
        for (int r : {op.q, op.k, op.v, op.y}) need(width(r) == op.heads * op.dh, "a linformer op's registers must be heads × dh wide");
        for (int m : {op.e, op.f})
          need(m >= 0 && (size(m) == op.rank * op.length || size(m) == op.heads * op.rank * op.length), "Linformer's projections must be [heads or 1, rank, length]");
        claim(op, op.heads * op.dh, op.block > 0 ? op.heads * 2 * op.rank * op.dh : 0);
        break;
      }
      case ProgramOp::Code::act:
        need(width(op.y) == width(op.x) && op.act >= 0 && op.act <= ProgramOp::kCap && (op.act != ProgramOp::kCap || op.alpha > 0.f),
             "an activation keeps the width, of a known kind (a cap above zero)");
        break;
      case ProgramOp::Code::mul:
      case ProgramOp::Code::add:
        need(width(op.y) == width(op.x) && width(op.b) == width(op.x), "elementwise ops take and give one width");
        break;
      case ProgramOp::Code::gather:
        need(op.x >= 0 && op.y >= 0 && width(op.y) == width(op.x), "a gather keeps the width");
        break;
      case ProgramOp::Code::scatter:
        need(op.x >= 0 && op.y >= 0 && op.b >= 0 && width(op.y) == width(op.x) && width(op.b) == width(op.x), "a scatter keeps the width");
        break;
      case ProgramOp::Code::route:
        need(op.x >= 0 && op.b >= 0 && op.y >= 0 && width(op.x) == 1 && width(op.y) == width(op.b) && op.block >= 0, "a route reads one score per row, and keeps the width");
        routed_.resize(std::max(routed_.size(), static_cast<size_t>(op.block + 1)), 0);
        break;
      case ProgramOp::Code::combine:
        need(op.x >= 0 && op.b >= 0 && op.y >= 0 && op.g >= 0 && width(op.g) == 1 && width(op.b) == width(op.x) && width(op.y) == width(op.x),
             "a combine keeps the width, with one router score per row");
        break;
      case ProgramOp::Code::exit:
        need(op.x >= 0 && op.b >= 0 && width(op.b) == width(op.x) && size(op.gain) == width(op.x) && (op.bias < 0 || size(op.bias) == width(op.x)),
             "an exit reads two states of one width, and the final norm's gain and bias");
        need(op.targets.size() == 1 && op.targets[0].y == result_ && size(op.targets[0].w) == width(op.x) * width(result_) &&
                 op.measure >= ProgramOp::kSoftmax && op.measure <= ProgramOp::kLast,
             "an exit's head writes the result, [result width, state width], by a known measure");
        break;
    }
  }
  slots_.resize(slot_heads_.size());
  // Under int8 the products' weights are stored as int8 blocks, each row [in] as its groups;
  // a parameter the other ops read as floats cannot be one of them.
  std::vector<bool> int8(params.size(), false);
  if (weights == Weights::int8) {
    for (const ProgramOp& op : ops_)
      if (op.code == ProgramOp::Code::linear || op.code == ProgramOp::Code::exit)
        for (const ProgramLinear& l : op.targets) {
          const ProgramParam& p = params.at(l.w);
          need((p.transpose ? p.rows : p.cols) == width(op.x), "an int8 product's weight rows must be its input's width");
          int8[l.w] = true;
        }
    for (const ProgramOp& op : ops_) {
      for (int p : {op.gain, op.bias, op.slopes, op.dilation, op.globals, op.wqg, op.bqg, op.e, op.f})
        need(p < 0 || !int8[p], "a parameter read as floats is also an int8 product's weight");
      for (const ProgramLinear& l : op.targets) need(l.bias < 0 || !int8[l.bias], "a product's bias is also an int8 product's weight");
    }
  }
  // Floats of the arena a parameter takes: its values, or its int8 blocks (9 floats each).
  const auto floats = [&](size_t i) {
    const ProgramParam& p = params[i];
    const int64_t in = p.transpose ? p.rows : p.cols;
    const size_t n = int8[i] ? static_cast<size_t>(p.rows * p.cols / in * q8_groups(in)) * (sizeof(Q8Block) / sizeof(float)) : static_cast<size_t>(p.rows * p.cols);
    return (n + 15) / 16 * 16;
  };
  // Every parameter is copied (matrices transposed to [out, in], the order the streaming
  // kernel reads them) into one huge-page arena, in the order the ops use them: a token is
  // one pass over all of it.
  size_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) total += floats(i);
  arena_ = huge_alloc(std::max<size_t>(total, 1), &region_);
  if (arena_ == nullptr) throw std::runtime_error("out of memory for a copy of the weights");
  float* at = arena_;
  std::vector<float> rows;
  for (size_t i = 0; i < params.size(); ++i) {
    const ProgramParam& p = params[i];
    const float* values = p.values;
    float* to = at;
    if (int8[i]) {
      if (p.transpose) {
        rows.resize(static_cast<size_t>(p.rows * p.cols));
        transpose(p.values, {p.rows, p.cols}, {1, 0}, rows.data(), 4);
        values = rows.data();
      }
      const int64_t in = p.transpose ? p.rows : p.cols;
      q8_quantise(values, p.rows * p.cols / in, in, reinterpret_cast<Q8Block*>(to));
      params_.push_back(nullptr);
      quantised_.push_back(reinterpret_cast<const Q8Block*>(to));
    } else {
      if (p.transpose) transpose(p.values, {p.rows, p.cols}, {1, 0}, to, 4);
      else std::copy(p.values, p.values + p.rows * p.cols, to);
      params_.push_back(to);
      quantised_.push_back(nullptr);
    }
    at += floats(i);
  }
}

LinearTarget Program::target(const ProgramLinear& l, float* y) const {
  return {params_[l.w], l.bias >= 0 ? params_[l.bias] : nullptr, widths_[l.y], y, quantised_[l.w]};
}

Program::~Program() { huge_free(region_); }

void Program::run(const float* input, int64_t batch, int64_t t, int64_t offset, std::vector<ProgramExtra> extras) {
  if (!extras.empty() && extras.size() != slots_.size()) throw std::runtime_error("one extra per attention slot, or none");
  if (!slot_offsets_.empty() && slot_offsets_.size() != slots_.size()) throw std::runtime_error("one offset per attention slot, or none");
  offset_ = offset;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const ProgramSlot& s = slots_[i];
    const int64_t at = slot_offset(static_cast<int>(i));
    if (s.kc == nullptr || at < 0 || at + t > s.capacity || batch * s.capacity * slot_row_[i] > s.cache_length)
      throw std::runtime_error("attention slot " + std::to_string(i) + " is not bound to a cache that holds these positions");
    if (slot_state_[i] > 0 && (s.state == nullptr || 1 + batch * slot_state_[i] > s.state_length))
      throw std::runtime_error("attention slot " + std::to_string(i) + " is not bound to the state of this batch");
    if (s.qcos != nullptr && at + t > s.positions)
      throw std::runtime_error("attention slot " + std::to_string(i) + ": the rotation tables stop before these positions");
  }
  if (!forced_.empty() && static_cast<int64_t>(forced_.size()) != batch * t) throw std::runtime_error("one forced exit per row, or none");
  batch_ = batch;
  t_ = t;
  running_.resize(static_cast<size_t>(batch * t));
  for (size_t r = 0; r < running_.size(); ++r) running_[r] = static_cast<int64_t>(r);
  exited_.assign(running_.size(), -1);
  std::fill(routed_.begin(), routed_.end(), 0);
  extras_ = std::move(extras);
  for (size_t r = 0; r < registers_.size(); ++r) registers_[r].resize(static_cast<size_t>(batch * t * widths_[r]));
  std::copy(input, input + batch * t * widths_[0], registers_[0].begin());
  for (const ProgramOp& op : ops_) {
    const int64_t rows = op.compact ? running() : batch_ * t_;
    if (op.compact && rows == 0) continue;
    float* x = op.x >= 0 ? registers_[op.x].data() : nullptr;
    float* y = op.y >= 0 ? registers_[op.y].data() : nullptr;
    switch (op.code) {
      case ProgramOp::Code::norm:
        norm_rows(op, x, rows, y);
        break;
      case ProgramOp::Code::linear: {
        targets_.clear();
        for (const ProgramLinear& l : op.targets) targets_.push_back(target(l, registers_[l.y].data()));
        const std::string err = rows_linear(x, rows, widths_[op.x], targets_);
        if (!err.empty()) throw std::runtime_error(err);
        break;
      }
      case ProgramOp::Code::attend: {
        const ProgramSlot& s = slots_[op.slot];
        const ProgramExtra e = extra_of(op, rows);
        const AttendShape shape = shape_of(op, rows);
        // The tables from the first new position on.
        const auto at = [&](const float* table) { return table == nullptr ? nullptr : table + shape.offset * op.dh; };
        attend(shape, {registers_[op.q].data(), registers_[op.k].data(), registers_[op.v].data(), s.kc, s.vc, y, at(s.qcos), at(s.qsin), at(s.kcos),
                       at(s.ksin), op.slopes >= 0 ? params_[op.slopes] : nullptr, e.bias, e.mask});
        break;
      }
      case ProgramOp::Code::window: {
        const ProgramSlot& s = slots_[op.slot];
        const ProgramExtra e = extra_of(op, rows);
        const AttendShape shape = shape_of(op, rows);
        const auto at = [&](const float* table) { return table == nullptr ? nullptr : table + shape.offset * op.dh; };
        const bool longformer = op.kg >= 0;
        window_attend(shape,
                      {registers_[op.q].data(), registers_[op.k].data(), registers_[op.v].data(), s.kc, s.vc, y, at(s.qcos), at(s.qsin),
                       at(s.kcos), at(s.ksin), op.slopes >= 0 ? params_[op.slopes] : nullptr, e.bias, nullptr},
                      {op.window, params_[op.dilation], op.globals >= 0 ? params_[op.globals] : nullptr, op.globals >= 0 ? sizes_[op.globals] : 0,
                       x, longformer ? widths_[op.x] : 0, longformer ? params_[op.wqg] : nullptr, op.bqg >= 0 ? params_[op.bqg] : nullptr,
                       longformer ? registers_[op.kg].data() : nullptr, longformer ? registers_[op.vg].data() : nullptr, op.eps});
        break;
      }
      case ProgramOp::Code::linformer: {
        const ProgramSlot& s = slots_[op.slot];
        const AttendShape shape = shape_of(op, rows);
        const auto at = [&](const float* table) { return table == nullptr ? nullptr : table + shape.offset * op.dh; };
        linformer_attend(shape,
                         {registers_[op.q].data(), registers_[op.k].data(), registers_[op.v].data(), s.kc, s.vc, y, at(s.qcos), at(s.qsin),
                          at(s.kcos), at(s.ksin), nullptr, nullptr, nullptr},
                         {params_[op.e], params_[op.f], sizes_[op.e] != op.rank * op.length, op.rank, op.length, op.block, s.state});
        break;
      }
      case ProgramOp::Code::act: {
        const int64_t n = rows * widths_[op.x];
        if (op.act == ProgramOp::kCap) {
          soft_cap(x, y, n, op.alpha);
        } else if (op.act == ProgramOp::kRelu || op.act == ProgramOp::kRelu2) {
          for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];
          if (op.act == ProgramOp::kRelu2)
            for (int64_t i = 0; i < n; ++i) y[i] = y[i] * y[i];
        } else {
          act(static_cast<ActOp>(op.act), x, y, n, op.alpha);
        }
        break;
      }
      case ProgramOp::Code::mul: {
        const float* b = registers_[op.b].data();
        for (int64_t i = 0; i < rows * widths_[op.x]; ++i) y[i] = x[i] * b[i];
        break;
      }
      case ProgramOp::Code::add: {
        const float* b = registers_[op.b].data();
        for (int64_t i = 0; i < rows * widths_[op.x]; ++i) y[i] = x[i] + b[i];
        break;
      }
      case ProgramOp::Code::gather: {
        const int64_t d = widths_[op.x];
        for (size_t k = 0; k < running_.size(); ++k) std::copy(x + running_[k] * d, x + (running_[k] + 1) * d, y + k * d);
        break;
      }
      case ProgramOp::Code::scatter: {
        const int64_t d = widths_[op.x];
        const float* b = registers_[op.b].data();
        std::copy(b, b + rows * d, y);
        for (size_t k = 0; k < running_.size(); ++k) std::copy(x + k * d, x + (k + 1) * d, y + running_[k] * d);
        break;
      }
      case ProgramOp::Code::exit:
        exit_rows(op);
        break;
      case ProgramOp::Code::route: {
        const float* b = registers_[op.b].data();
        const int64_t d = widths_[op.b];
        running_.clear();
        for (int64_t r = 0; r < rows; ++r)
          if (x[r] > 0.f) running_.push_back(r);
        if (!running_.empty() && batch_ > 1) throw std::runtime_error("mixture-of-depths: decoding with a cache takes one sequence at a time");
        for (size_t k = 0; k < running_.size(); ++k) std::copy(b + running_[k] * d, b + (running_[k] + 1) * d, y + k * d);
        routed_[op.block] = static_cast<int32_t>(running_.size());
        break;
      }
      case ProgramOp::Code::combine: {
        const int64_t d = widths_[op.x];
        const float* b = registers_[op.b].data();
        const float* g = registers_[op.g].data();
        std::copy(b, b + rows * d, y);
        // tfjs's order: the change, times the gate, added.
        for (size_t k = 0; k < running_.size(); ++k) {
          const int64_t r = running_[k];
          const float gate = vsigmoid(g[r]);
          for (int64_t j = 0; j < d; ++j) y[r * d + j] = b[r * d + j] + (x[k * d + j] - b[r * d + j]) * gate;
        }
        break;
      }
    }
  }
}

AttendShape Program::shape_of(const ProgramOp& op, int64_t rows) const {
  return {op.compact ? 1 : batch_, op.compact ? rows : t_, op.heads, op.dh, slot_offset(op.slot), slots_[op.slot].capacity, op.half, op.scale};
}

ProgramExtra Program::extra_of(const ProgramOp& op, int64_t rows) {
  if (extras_.empty()) return {nullptr, nullptr};
  const ProgramExtra e = extras_[op.slot];
  // Routing is one sequence at a time (the route op checks), so rows ≤ t: the routed queries
  // are the first rows of the caller's [heads, t, from + t], against their first from + rows keys.
  if (!op.compact || rows == t_) return e;
  const int64_t from = slot_offset(op.slot), all = from + t_, keys = from + rows;
  const auto repack = [&](const auto* source, auto& to) {
    if (source == nullptr) return static_cast<decltype(to.data())>(nullptr);
    to.resize(static_cast<size_t>(op.heads * rows * keys));
    for (int64_t h = 0; h < op.heads; ++h)
      for (int64_t i = 0; i < rows; ++i) std::copy(source + (h * t_ + i) * all, source + (h * t_ + i) * all + keys, to.data() + (h * rows + i) * keys);
    return to.data();
  };
  return {repack(e.bias, compact_bias_), repack(e.mask, compact_mask_)};
}

void Program::norm_rows(const ProgramOp& op, const float* x, int64_t rows, float* y) {
  // Per head: each row's heads are rows of dh.
  const int64_t d = op.dh > 0 ? op.dh : widths_[op.x];
  rows = rows * (widths_[op.x] / d);
  scratch_.resize(static_cast<size_t>(2 * rows));
  norm(x, params_[op.gain], nullptr, rows, d, op.eps, op.center, y, scratch_.data(), scratch_.data() + rows);
  if (op.bias >= 0) {
    const float* b = params_[op.bias];
    for (int64_t i = 0; i < rows * d; ++i) y[i] = y[i] + b[i % d];
  }
}

// The measures are the batched kernels' own (softmax_margin, row_cosine), so a confidence at
// the threshold decides as it does in evaluation.
void Program::exit_rows(const ProgramOp& op) {
  const int64_t n = running(), d = widths_[op.x], v = widths_[result_];
  if (n == 0) return;
  const float* after = registers_[op.x].data();
  const float* before = registers_[op.b].data();
  float* result = registers_[result_].data();
  const auto head = [&](const float* state, int64_t rows, float* logits) {
    exit_normed_.resize(static_cast<size_t>(rows * d));
    norm_rows(op, state, rows, exit_normed_.data());
    targets_.assign(1, target({op.targets[0].w, -1, result_}, logits));
    const std::string err = rows_linear(exit_normed_.data(), rows, d, targets_);
    if (!err.empty()) throw std::runtime_error(err);
    if (op.alpha > 0.f) soft_cap(logits, logits, rows * v, op.alpha);
  };
  const auto leaves = [&](int64_t k, float confidence) {
    const int32_t forced = forced_.empty() ? kFree : forced_[running_[k]];
    return forced != kFree ? forced == op.block : static_cast<double>(confidence) > op.threshold;
  };
  leaving_.clear();
  if (op.measure == ProgramOp::kSoftmax) {
    // Every running row's exit logits are needed for its confidence; the leaving ones are kept.
    exit_logits_.resize(static_cast<size_t>(n * v));
    exit_probs_.resize(static_cast<size_t>(v));
    head(after, n, exit_logits_.data());
    for (int64_t k = 0; k < n; ++k)
      if (leaves(k, softmax_margin(exit_logits_.data() + k * v, exit_probs_.data(), v))) leaving_.push_back(k);
    for (size_t j = 0; j < leaving_.size(); ++j)
      std::copy(exit_logits_.data() + leaving_[j] * v, exit_logits_.data() + (leaving_[j] + 1) * v, result + running_[leaving_[j]] * v);
  } else {
    exit_products_.resize(static_cast<size_t>(3 * d));
    for (int64_t k = 0; k < n; ++k)
      if (op.measure == ProgramOp::kLast ||
          leaves(k, row_cosine(after + k * d, before + running_[k] * d, d, exit_products_.data())))
        leaving_.push_back(k);
    // Only the leaving rows pay for the head.
    const int64_t m = static_cast<int64_t>(leaving_.size());
    exit_state_.resize(static_cast<size_t>(m * d));
    exit_logits_.resize(static_cast<size_t>(m * v));
    for (int64_t j = 0; j < m; ++j) std::copy(after + leaving_[j] * d, after + (leaving_[j] + 1) * d, exit_state_.data() + j * d);
    if (m > 0) head(exit_state_.data(), m, exit_logits_.data());
    for (int64_t j = 0; j < m; ++j) std::copy(exit_logits_.data() + j * v, exit_logits_.data() + (j + 1) * v, result + running_[leaving_[j]] * v);
  }
  if (leaving_.empty()) return;
  for (int64_t k : leaving_) exited_[running_[k]] = op.block;
  // Both lists are in row order: one pass keeps the rows that stay.
  size_t kept = 0, j = 0;
  for (size_t k = 0; k < running_.size(); ++k) {
    if (j < leaving_.size() && leaving_[j] == static_cast<int64_t>(k)) ++j;
    else running_[kept++] = running_[k];
  }
  running_.resize(kept);
}

float* Program::reg(int r, int64_t* length) {
  *length = static_cast<int64_t>(registers_.at(r).size());
  return registers_[r].data();
}

}  // namespace nk
