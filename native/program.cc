// A decoding program: the layers of a stack as a list of native ops over a file of
// row-major registers, so that one call runs every layer of a token with no JavaScript in
// between. Layers it cannot compute are "external" ops: the program stops there, the caller
// computes the layer (with tfjs) from one register into another and resumes it.
#include <algorithm>
#include <stdexcept>

#include "kernels.h"

namespace nk {

Program::Program(std::vector<ProgramOp> ops, std::vector<int64_t> widths, int result, const std::vector<ProgramParam>& params)
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
        need(width(op.y) == width(op.x) && size(op.gain) == width(op.x) && (op.bias < 0 || size(op.bias) == width(op.x)),
             "a norm's gain, bias and output must have its input's width");
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
        need(width(op.y) == width(op.x) && op.act >= 0 && op.act <= ProgramOp::kRelu2, "an activation keeps the width, of a known kind");
        break;
      case ProgramOp::Code::mul:
      case ProgramOp::Code::add:
        need(width(op.y) == width(op.x) && width(op.b) == width(op.x), "elementwise ops take and give one width");
        break;
      case ProgramOp::Code::external:
        need(op.x >= 0 && op.y >= 0, "an external op reads and writes a register");
        break;
    }
  }
  slots_.resize(slot_heads_.size());
  // Every parameter is copied (matrices transposed to [out, in], the order the streaming
  // kernel reads them) into one huge-page arena, in the order the ops use them: a token is
  // one pass over all of it.
  size_t total = 0;
  for (const ProgramParam& p : params) total += (static_cast<size_t>(p.rows * p.cols) + 15) / 16 * 16;
  arena_ = huge_alloc(std::max<size_t>(total, 1), &region_);
  if (arena_ == nullptr) throw std::runtime_error("out of memory for a copy of the weights");
  float* at = arena_;
  for (const ProgramParam& p : params) {
    if (p.transpose) transpose(p.values, {p.rows, p.cols}, {1, 0}, at, 4);
    else std::copy(p.values, p.values + p.rows * p.cols, at);
    params_.push_back(at);
    at += (static_cast<size_t>(p.rows * p.cols) + 15) / 16 * 16;
  }
}

Program::~Program() { huge_free(region_); }

int Program::start(const float* x, int64_t batch, int64_t t, int64_t offset, std::vector<ProgramExtra> extras) {
  if (!extras.empty() && extras.size() != slots_.size()) throw std::runtime_error("one extra per attention slot, or none");
  for (size_t i = 0; i < slots_.size(); ++i) {
    const ProgramSlot& s = slots_[i];
    if (s.kc == nullptr || offset < 0 || offset + t > s.capacity || batch * s.capacity * slot_row_[i] > s.cache_length)
      throw std::runtime_error("attention slot " + std::to_string(i) + " is not bound to a cache that holds these positions");
    if (slot_state_[i] > 0 && (s.state == nullptr || 1 + batch * slot_state_[i] > s.state_length))
      throw std::runtime_error("attention slot " + std::to_string(i) + " is not bound to the state of this batch");
    if (s.qcos != nullptr && offset + t > s.positions)
      throw std::runtime_error("attention slot " + std::to_string(i) + ": the rotation tables stop before these positions");
  }
  batch_ = batch;
  t_ = t;
  offset_ = offset;
  extras_ = std::move(extras);
  for (size_t r = 0; r < registers_.size(); ++r) registers_[r].resize(static_cast<size_t>(batch * t * widths_[r]));
  std::copy(x, x + batch * t * widths_[0], registers_[0].begin());
  next_ = 0;
  return resume();
}

int Program::resume() {
  const int64_t rows = batch_ * t_;
  while (next_ < ops_.size()) {
    const ProgramOp& op = ops_[next_++];
    float* x = op.x >= 0 ? registers_[op.x].data() : nullptr;
    float* y = op.y >= 0 ? registers_[op.y].data() : nullptr;
    switch (op.code) {
      case ProgramOp::Code::norm: {
        const int64_t d = widths_[op.x];
        scratch_.resize(static_cast<size_t>(2 * rows));
        norm(x, params_[op.gain], rows, d, op.eps, op.center, y, scratch_.data(), scratch_.data() + rows);
        if (op.bias >= 0) {
          const float* b = params_[op.bias];
          for (int64_t i = 0; i < rows * d; ++i) y[i] = y[i] + b[i % d];
        }
        break;
      }
      case ProgramOp::Code::linear: {
        targets_.clear();
        for (const ProgramLinear& l : op.targets)
          targets_.push_back({params_[l.w], l.bias >= 0 ? params_[l.bias] : nullptr, widths_[l.y], registers_[l.y].data()});
        const std::string err = rows_linear(x, rows, widths_[op.x], targets_);
        if (!err.empty()) throw std::runtime_error(err);
        break;
      }
      case ProgramOp::Code::attend: {
        const ProgramSlot& s = slots_[op.slot];
        const ProgramExtra e = extras_.empty() ? ProgramExtra{nullptr, nullptr} : extras_[op.slot];
        // The tables from the first new position on.
        const auto at = [&](const float* table) { return table == nullptr ? nullptr : table + offset_ * op.dh; };
        attend({batch_, t_, op.heads, op.dh, offset_, s.capacity, op.half, op.scale},
               {registers_[op.q].data(), registers_[op.k].data(), registers_[op.v].data(), s.kc, s.vc, y, at(s.qcos), at(s.qsin),
                at(s.kcos), at(s.ksin), op.slopes >= 0 ? params_[op.slopes] : nullptr, e.bias, e.mask});
        break;
      }
      case ProgramOp::Code::window: {
        const ProgramSlot& s = slots_[op.slot];
        const ProgramExtra e = extras_.empty() ? ProgramExtra{nullptr, nullptr} : extras_[op.slot];
        const auto at = [&](const float* table) { return table == nullptr ? nullptr : table + offset_ * op.dh; };
        const bool longformer = op.kg >= 0;
        window_attend({batch_, t_, op.heads, op.dh, offset_, s.capacity, op.half, op.scale},
                      {registers_[op.q].data(), registers_[op.k].data(), registers_[op.v].data(), s.kc, s.vc, y, at(s.qcos), at(s.qsin),
                       at(s.kcos), at(s.ksin), op.slopes >= 0 ? params_[op.slopes] : nullptr, e.bias, nullptr},
                      {op.window, params_[op.dilation], op.globals >= 0 ? params_[op.globals] : nullptr, op.globals >= 0 ? sizes_[op.globals] : 0,
                       x, longformer ? widths_[op.x] : 0, longformer ? params_[op.wqg] : nullptr, op.bqg >= 0 ? params_[op.bqg] : nullptr,
                       longformer ? registers_[op.kg].data() : nullptr, longformer ? registers_[op.vg].data() : nullptr});
        break;
      }
      case ProgramOp::Code::linformer: {
        const ProgramSlot& s = slots_[op.slot];
        const auto at = [&](const float* table) { return table == nullptr ? nullptr : table + offset_ * op.dh; };
        linformer_attend({batch_, t_, op.heads, op.dh, offset_, s.capacity, op.half, op.scale},
                         {registers_[op.q].data(), registers_[op.k].data(), registers_[op.v].data(), s.kc, s.vc, y, at(s.qcos), at(s.qsin),
                          at(s.kcos), at(s.ksin), nullptr, nullptr, nullptr},
                         {params_[op.e], params_[op.f], sizes_[op.e] != op.rank * op.length, op.rank, op.length, op.block, s.state});
        break;
      }
      case ProgramOp::Code::act: {
        const int64_t n = rows * widths_[op.x];
        if (op.act == ProgramOp::kRelu || op.act == ProgramOp::kRelu2) {
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
      case ProgramOp::Code::external:
        return op.external;
    }
  }
  return -1;
}

float* Program::reg(int r, int64_t* length) {
  *length = static_cast<int64_t>(registers_.at(r).size());
  return registers_[r].data();
}

}  // namespace nk
