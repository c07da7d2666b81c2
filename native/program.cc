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
        if (static_cast<size_t>(op.slot) >= slot_heads_.size()) {
          slot_heads_.resize(op.slot + 1, 0);
          slot_dh_.resize(op.slot + 1, 0);
        }
        slot_heads_[op.slot] = op.heads;
        slot_dh_[op.slot] = op.dh;
        break;
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
    if (s.kc == nullptr || offset < 0 || offset + t > s.capacity || batch * s.capacity * slot_heads_[i] * slot_dh_[i] > s.cache_length)
      throw std::runtime_error("attention slot " + std::to_string(i) + " is not bound to a cache that holds these positions");
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
