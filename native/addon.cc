// N-API glue: unpacks typed arrays and shapes, checks sizes, calls the kernels.
// Sizes are checked here because a wrong length would mean writing outside a JS buffer.
#include <napi.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "kernels.h"

namespace {

struct View {
  void* data;
  size_t length;
  size_t elem;
};

View view(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  auto t = v.As<Napi::TypedArray>();
  auto* base = static_cast<char*>(t.ArrayBuffer().Data());
  return {base + t.ByteOffset(), t.ElementLength(), t.ElementSize()};
}

float* f32(const Napi::Value& v, const char* what, size_t need) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  View w = view(v, what);
  if (w.length < need)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " is shorter than its shape says");
  return static_cast<float*>(w.data);
}

const int32_t* i32(const Napi::Value& v, const char* what, size_t need) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an Int32Array");
  View w = view(v, what);
  if (w.length < need) throw Napi::RangeError::New(v.Env(), std::string(what) + " is too short");
  return static_cast<const int32_t*>(w.data);
}

int64_t num(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }

std::vector<int64_t> dims(const Napi::Value& v) {
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out[i] = a.Get(i).As<Napi::Number>().Int64Value();
  return out;
}

size_t size_of(const std::vector<int64_t>& s) {
  size_t n = 1;
  for (int64_t d : s) n *= static_cast<size_t>(d);
  return n;
}

// matmul(a, b, out, [batchA, batchB, m, n, k], transA, transB, bias | null, act, alpha, precision) -> error or ""
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  const auto d = dims(info[3]);
  const nk::MatmulShape s{d[0], d[1], d[2], d[3], d[4], info[4].ToBoolean(), info[5].ToBoolean()};
  const float* a = f32(info[0], "a", s.batch_a * s.m * s.k);
  const float* b = f32(info[1], "b", s.batch_b * s.k * s.n);
  float* out = f32(info[2], "out", std::max(s.batch_a, s.batch_b) * s.m * s.n);
  const float* bias = info[6].IsNull() ? nullptr : f32(info[6], "bias", s.n);
  const auto act = static_cast<nk::Act>(num(info[7]));
  const float alpha = info[8].As<Napi::Number>().FloatValue();
  const auto precision = static_cast<nk::Precision>(num(info[9]));
  return Napi::String::New(info.Env(), nk::matmul(s, a, b, bias, act, alpha, out, precision));
}

// binary(op, a, aShape, b, bShape, out, outShape): float32, or int32 for add/sub/mul/max/min.
Napi::Value Binary(const Napi::CallbackInfo& info) {
  const auto as = dims(info[2]), bs = dims(info[4]), os = dims(info[6]);
  const auto op = static_cast<nk::BinOp>(num(info[0]));
  if (info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    int32_t* out = const_cast<int32_t*>(i32(info[5], "out", size_of(os)));
    if (!nk::binary_i32(op, i32(info[1], "a", size_of(as)), as, i32(info[3], "b", size_of(bs)), bs, out, os))
      throw Napi::TypeError::New(info.Env(), "binary: op has no int32 version");
    return info.Env().Undefined();
  }
  nk::binary(op, f32(info[1], "a", size_of(as)), as, f32(info[3], "b", size_of(bs)), bs,
             f32(info[5], "out", size_of(os)), os);
  return info.Env().Undefined();
}

// compare(op, a, aShape, b, bShape, out: Uint8Array, outShape); a and b of one element type.
Napi::Value Compare(const Napi::CallbackInfo& info) {
  const auto as = dims(info[2]), bs = dims(info[4]), os = dims(info[6]);
  const View a = view(info[1], "a"), b = view(info[3], "b"), o = view(info[5], "out");
  const auto type = info[1].As<Napi::TypedArray>().TypedArrayType();
  nk::Elem elem;
  if (type == napi_float32_array) elem = nk::Elem::f32;
  else if (type == napi_int32_array) elem = nk::Elem::i32;
  else if (type == napi_uint8_array) elem = nk::Elem::u8;
  else throw Napi::TypeError::New(info.Env(), "compare: unsupported element type");
  if (info[3].As<Napi::TypedArray>().TypedArrayType() != type || o.elem != 1 || a.length < size_of(as) ||
      b.length < size_of(bs) || o.length < size_of(os))
    throw Napi::RangeError::New(info.Env(), "compare: mismatched buffers");
  nk::compare(static_cast<nk::CmpOp>(num(info[0])), a.data, as, b.data, bs, static_cast<uint8_t*>(o.data), os, elem);
  return info.Env().Undefined();
}

// select(cond: Uint8Array, a, b, out), all the same length.
Napi::Value Select(const Napi::CallbackInfo& info) {
  const View c = view(info[0], "cond");
  const size_t n = c.length;
  if (c.elem != 1) throw Napi::TypeError::New(info.Env(), "select: cond must be a Uint8Array");
  nk::select(static_cast<const uint8_t*>(c.data), f32(info[1], "a", n), f32(info[2], "b", n), f32(info[3], "out", n),
             static_cast<int64_t>(n));
  return info.Env().Undefined();
}

// pad(x, shape, before, outShape, value, out)
Napi::Value Pad(const Napi::CallbackInfo& info) {
  const auto shape = dims(info[1]), before = dims(info[2]), os = dims(info[3]);
  if (shape.size() != before.size() || shape.size() != os.size())
    throw Napi::RangeError::New(info.Env(), "pad: ranks differ");
  for (size_t d = 0; d < shape.size(); ++d)
    if (before[d] < 0 || before[d] + shape[d] > os[d]) throw Napi::RangeError::New(info.Env(), "pad: bad padding");
  nk::pad(f32(info[0], "x", size_of(shape)), shape, before, os, info[4].As<Napi::Number>().FloatValue(),
          f32(info[5], "out", size_of(os)));
  return info.Env().Undefined();
}

// slice(x, shape, begin, outShape, out)
Napi::Value Slice(const Napi::CallbackInfo& info) {
  const auto shape = dims(info[1]), begin = dims(info[2]), os = dims(info[3]);
  if (shape.size() != begin.size() || shape.size() != os.size())
    throw Napi::RangeError::New(info.Env(), "slice: ranks differ");
  for (size_t d = 0; d < shape.size(); ++d)
    if (begin[d] < 0 || begin[d] + os[d] > shape[d]) throw Napi::RangeError::New(info.Env(), "slice: box outside the input");
  nk::slice(f32(info[0], "x", size_of(shape)), shape, begin, os, f32(info[4], "out", size_of(os)));
  return info.Env().Undefined();
}

// unary(op, x, out, alpha)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  const size_t n = view(info[1], "x").length;
  nk::unary(static_cast<nk::UnOp>(num(info[0])), f32(info[1], "x", n), f32(info[2], "out", n),
            static_cast<int64_t>(n), info[3].As<Napi::Number>().FloatValue());
  return info.Env().Undefined();
}

// act(op, x, out, alpha)
Napi::Value Act(const Napi::CallbackInfo& info) {
  const size_t n = view(info[1], "x").length;
  nk::act(static_cast<nk::ActOp>(num(info[0])), f32(info[1], "x", n), f32(info[2], "out", n), static_cast<int64_t>(n),
          info[3].As<Napi::Number>().FloatValue());
  return info.Env().Undefined();
}

// actGrad(op, x, dy, out, alpha)
Napi::Value ActGrad(const Napi::CallbackInfo& info) {
  const size_t n = view(info[1], "x").length;
  nk::act_grad(static_cast<nk::ActOp>(num(info[0])), f32(info[1], "x", n), f32(info[2], "dy", n), f32(info[3], "out", n),
               static_cast<int64_t>(n), info[4].As<Napi::Number>().FloatValue());
  return info.Env().Undefined();
}

// xent(x, targets, n, v, nll, lse)
Napi::Value Xent(const Napi::CallbackInfo& info) {
  const int64_t n = num(info[2]), v = num(info[3]);
  nk::xent(f32(info[0], "x", n * v), i32(info[1], "targets", n), n, v, f32(info[4], "nll", n), f32(info[5], "lse", n));
  return info.Env().Undefined();
}

// xentGrad(x, lse, targets, scale, n, v, out)
Napi::Value XentGrad(const Napi::CallbackInfo& info) {
  const int64_t n = num(info[4]), v = num(info[5]);
  nk::xent_grad(f32(info[0], "x", n * v), f32(info[1], "lse", n), i32(info[2], "targets", n), f32(info[3], "scale", n), n, v,
                f32(info[6], "out", n * v));
  return info.Env().Undefined();
}

// softXent(s, t, n, v, invT, reverse, lseS, lseT, div)
Napi::Value SoftXent(const Napi::CallbackInfo& info) {
  const int64_t n = num(info[2]), v = num(info[3]);
  nk::soft_xent(f32(info[0], "s", n * v), f32(info[1], "t", n * v), n, v, info[4].As<Napi::Number>().FloatValue(),
                info[5].As<Napi::Boolean>().Value(), f32(info[6], "lseS", n), f32(info[7], "lseT", n), f32(info[8], "div", n));
  return info.Env().Undefined();
}

// softXentGrad(s, t, lse, targets, lseS, lseT, div, ceScale, kdScale, n, v, invT, reverse, out)
Napi::Value SoftXentGrad(const Napi::CallbackInfo& info) {
  const int64_t n = num(info[9]), v = num(info[10]);
  nk::soft_xent_grad(f32(info[0], "s", n * v), f32(info[1], "t", n * v), f32(info[2], "lse", n), i32(info[3], "targets", n),
                     f32(info[4], "lseS", n), f32(info[5], "lseT", n), f32(info[6], "div", n), f32(info[7], "ceScale", n),
                     f32(info[8], "kdScale", n), n, v, info[11].As<Napi::Number>().FloatValue(), info[12].As<Napi::Boolean>().Value(),
                     f32(info[13], "out", n * v));
  return info.Env().Undefined();
}

// norm(x, gain, bias | null, rows, d, eps, center, y, mean, rstd)
Napi::Value Norm(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[3]), d = num(info[4]);
  const float* bias = info[2].IsNull() ? nullptr : f32(info[2], "bias", d);
  nk::norm(f32(info[0], "x", rows * d), f32(info[1], "gain", d), bias, rows, d, info[5].As<Napi::Number>().FloatValue(),
           info[6].As<Napi::Boolean>().Value(), f32(info[7], "y", rows * d), f32(info[8], "mean", rows), f32(info[9], "rstd", rows));
  return info.Env().Undefined();
}

// normGrad(x, gain, mean, rstd, dy, rows, d, center, dx, dgain, dbias | null)
Napi::Value NormGrad(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[5]), d = num(info[6]);
  float* dbias = info[10].IsNull() ? nullptr : f32(info[10], "dbias", d);
  nk::norm_grad(f32(info[0], "x", rows * d), f32(info[1], "gain", d), f32(info[2], "mean", rows), f32(info[3], "rstd", rows),
                f32(info[4], "dy", rows * d), rows, d, info[7].As<Napi::Boolean>().Value(), f32(info[8], "dx", rows * d),
                f32(info[9], "dgain", d), dbias);
  return info.Env().Undefined();
}

// adamw(p, g, m, v, [beta1, 1 - beta1, beta2, 1 - beta2, decayFactor, bias2Sqrt, eps, stepSize], decay, pOut, mOut, vOut)
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  const auto n = static_cast<int64_t>(view(info[0], "p").length);
  const float* sc = f32(info[4], "scalars", 8);
  const nk::AdamWScalars s{sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], info[5].As<Napi::Boolean>().Value()};
  nk::adamw(f32(info[0], "p", n), f32(info[1], "g", n), f32(info[2], "m", n), f32(info[3], "v", n), n, s, f32(info[6], "pOut", n),
            f32(info[7], "mOut", n), f32(info[8], "vOut", n));
  return info.Env().Undefined();
}

// newtonSchulz(g, rows, cols, steps, [a, b, c], out)
Napi::Value NewtonSchulz(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[1]), cols = num(info[2]);
  const std::string err = nk::newton_schulz(f32(info[0], "g", rows * cols), rows, cols, static_cast<int>(num(info[3])),
                                            f32(info[4], "coefficients", 3), f32(info[5], "out", rows * cols));
  if (!err.empty()) throw Napi::Error::New(info.Env(), "newtonSchulz: " + err);
  return info.Env().Undefined();
}

// muon([p...], [g...], [m...], [rows, cols, ...], [beta, 1 - beta, decayFactor, stepSize, ...], [decay...], steps, nesterov,
//      [a, b, c], [pOut...], [mOut...])
Napi::Value Muon(const Napi::CallbackInfo& info) {
  const auto list = [&](int k) { return info[k].As<Napi::Array>(); };
  const uint32_t count = list(0).Length();
  for (int k : {1, 2, 5, 9, 10})
    if (list(k).Length() != count) throw Napi::RangeError::New(info.Env(), "muon: the group's lists differ in length");
  const std::vector<int64_t> shape = dims(info[3]);
  if (shape.size() != 2 * count) throw Napi::RangeError::New(info.Env(), "muon: need rows and cols per matrix");
  const float* sc = f32(info[4], "scalars", 4 * count);
  const float* coef = f32(info[8], "coefficients", 3);
  const int steps = static_cast<int>(num(info[6]));
  const bool nesterov = info[7].As<Napi::Boolean>().Value();
  std::vector<nk::MuonMatrix> group;
  for (uint32_t i = 0; i < count; ++i) {
    const int64_t rows = shape[2 * i], cols = shape[2 * i + 1], n = rows * cols;
    const float* s = sc + 4 * i;
    const nk::MuonScalars scalars{s[0], s[1], s[2], s[3], {coef[0], coef[1], coef[2]}, steps, nesterov, list(5).Get(i).ToBoolean().Value()};
    group.push_back({f32(list(0).Get(i), "p", n), f32(list(1).Get(i), "g", n), f32(list(2).Get(i), "m", n), f32(list(9).Get(i), "pOut", n),
                     f32(list(10).Get(i), "mOut", n), rows, cols, scalars});
  }
  const std::string err = nk::muon(group);
  if (!err.empty()) throw Napi::Error::New(info.Env(), "muon: " + err);
  return info.Env().Undefined();
}

// reduce(op, x, out, outer, r, inner)
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  const int64_t outer = num(info[3]), r = num(info[4]), inner = num(info[5]);
  nk::reduce(static_cast<nk::RedOp>(num(info[0])), f32(info[1], "x", outer * r * inner),
             f32(info[2], "out", outer * inner), outer, r, inner);
  return info.Env().Undefined();
}

// softmax(x, out, rows, cols)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[2]), cols = num(info[3]);
  nk::softmax(f32(info[0], "x", rows * cols), f32(info[1], "out", rows * cols), rows, cols);
  return info.Env().Undefined();
}

// softmaxMargin(logits, out, rows, v)
Napi::Value SoftmaxMargin(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[2]), v = num(info[3]);
  nk::softmax_margins(f32(info[0], "logits", rows * v), f32(info[1], "out", rows), rows, v);
  return info.Env().Undefined();
}

// rowCosines(a, b, out, rows, d)
Napi::Value RowCosines(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[3]), d = num(info[4]);
  nk::row_cosines(f32(info[0], "a", rows * d), f32(info[1], "b", rows * d), f32(info[2], "out", rows), rows, d);
  return info.Env().Undefined();
}

// causalSoftmax(x, out, rows, tq, tk)
Napi::Value CausalSoftmax(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[2]), tq = num(info[3]), tk = num(info[4]);
  nk::causal_softmax(f32(info[0], "x", rows * tk), f32(info[1], "out", rows * tk), rows, tq, tk);
  return info.Env().Undefined();
}

// causalSoftmaxGrad(y, dy, dx, rows, tq, tk)
Napi::Value CausalSoftmaxGrad(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[3]), tq = num(info[4]), tk = num(info[5]);
  nk::causal_softmax_grad(f32(info[0], "y", rows * tk), f32(info[1], "dy", rows * tk), f32(info[2], "dx", rows * tk), rows,
                          tq, tk);
  return info.Env().Undefined();
}

// reluBiasGrad(y, dy, dz, db, rows, cols)
Napi::Value ReluBiasGrad(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info[4]), cols = num(info[5]);
  nk::relu_bias_grad(f32(info[0], "y", rows * cols), f32(info[1], "dy", rows * cols), rows, cols,
                     f32(info[2], "dz", rows * cols), f32(info[3], "db", cols));
  return info.Env().Undefined();
}

// transpose(x, shape, perm, out): any typed array with 1- or 4-byte elements, same type both sides.
Napi::Value Transpose(const Napi::CallbackInfo& info) {
  const auto shape = dims(info[1]), perm = dims(info[2]);
  const View x = view(info[0], "x"), o = view(info[3], "out");
  const size_t n = size_of(shape);
  if (x.elem != o.elem || (x.elem != 4 && x.elem != 1) || x.length < n || o.length < n)
    throw Napi::RangeError::New(info.Env(), "transpose: mismatched buffers");
  nk::transpose(static_cast<const float*>(x.data), shape, perm, static_cast<float*>(o.data),
                static_cast<int>(x.elem));
  return info.Env().Undefined();
}

// gather(x, idx, out, outer, dim, inner) -> index position out of range, or -1
Napi::Value Gather(const Napi::CallbackInfo& info) {
  const int64_t outer = num(info[3]), dim = num(info[4]), inner = num(info[5]);
  const View x = view(info[0], "x"), o = view(info[2], "out");
  const size_t n_idx = view(info[1], "idx").length;
  const int32_t* idx = i32(info[1], "idx", n_idx);
  if (x.elem != o.elem || x.length < static_cast<size_t>(outer * dim * inner) ||
      o.length < static_cast<size_t>(outer * inner) * n_idx)
    throw Napi::RangeError::New(info.Env(), "gather: mismatched buffers");
  return Napi::Number::New(info.Env(), static_cast<double>(nk::gather(x.data, static_cast<int>(x.elem), idx,
                                                                       n_idx, o.data, outer, dim, inner)));
}

// scatterAdd(x, ids, out, count, inner, numSegments)
Napi::Value ScatterAdd(const Napi::CallbackInfo& info) {
  const int64_t count = num(info[3]), inner = num(info[4]), seg = num(info[5]);
  nk::scatter_add(f32(info[0], "x", count * inner), i32(info[1], "ids", count), count, inner,
                  f32(info[2], "out", seg * inner), seg);
  return info.Env().Undefined();
}

// oneHot(idx, out, depth, on, off)
Napi::Value OneHot(const Napi::CallbackInfo& info) {
  const size_t n = view(info[0], "idx").length;
  const int64_t depth = num(info[2]);
  nk::one_hot(i32(info[0], "idx", n), static_cast<int64_t>(n), depth, info[3].As<Napi::Number>().FloatValue(),
              info[4].As<Napi::Number>().FloatValue(), f32(info[1], "out", n * depth));
  return info.Env().Undefined();
}

// A decoding program handed to JavaScript as an external value that deletes it when collected.
nk::Program* program_of(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a decoding program");
  return v.As<Napi::External<nk::Program>>().Data();
}

int int_field(const Napi::Object& o, const char* name, int fallback) {
  const Napi::Value v = o.Get(name);
  return v.IsUndefined() ? fallback : static_cast<int>(v.As<Napi::Number>().Int32Value());
}

float float_field(const Napi::Object& o, const char* name, float fallback) {
  const Napi::Value v = o.Get(name);
  return v.IsUndefined() ? fallback : v.As<Napi::Number>().FloatValue();
}

// decodeProgram(ops: object[], widths: number[], result, params: { values, rows, cols, transpose }[],
// int8: boolean) -> program (int8: the products' weights stored as int8 blocks). Op fields as nk::ProgramOp names them; registers and parameters are checked here.
Napi::Value DecodeProgram(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const auto widths = dims(info[1]);
  const int result = static_cast<int>(num(info[2]));
  const auto list = info[3].As<Napi::Array>();
  std::vector<nk::ProgramParam> params;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    const auto p = list.Get(i).As<Napi::Object>();
    const int64_t rows = num(p.Get("rows")), cols = num(p.Get("cols"));
    params.push_back({f32(p.Get("values"), "parameter", rows * cols), rows, cols, p.Get("transpose").ToBoolean()});
  }
  const int registers = static_cast<int>(widths.size()), n = static_cast<int>(params.size());
  const auto reg = [&](int r, bool optional) {
    if ((optional && r == -1) || (r >= 0 && r < registers)) return r;
    throw Napi::RangeError::New(env, "decodeProgram: register " + std::to_string(r) + " out of range");
  };
  const auto param = [&](int p, bool optional) {
    if ((optional && p == -1) || (p >= 0 && p < n)) return p;
    throw Napi::RangeError::New(env, "decodeProgram: parameter " + std::to_string(p) + " out of range");
  };
  const auto ops = info[0].As<Napi::Array>();
  std::vector<nk::ProgramOp> program;
  for (uint32_t i = 0; i < ops.Length(); ++i) {
    const auto o = ops.Get(i).As<Napi::Object>();
    nk::ProgramOp op;
    const int code = int_field(o, "code", -1);
    if (code < 0 || code > static_cast<int>(nk::ProgramOp::Code::combine)) throw Napi::RangeError::New(env, "decodeProgram: unknown op code " + std::to_string(code));
    op.code = static_cast<nk::ProgramOp::Code>(code);
    op.x = reg(int_field(o, "x", -1), true);
    op.y = reg(int_field(o, "y", -1), true);
    op.b = reg(int_field(o, "b", -1), true);
    op.gain = param(int_field(o, "gain", -1), true);
    op.bias = param(int_field(o, "bias", -1), true);
    op.eps = float_field(o, "eps", 0.f);
    op.center = o.Get("center").ToBoolean();
    op.q = reg(int_field(o, "q", -1), true);
    op.k = reg(int_field(o, "k", -1), true);
    op.v = reg(int_field(o, "v", -1), true);
    op.heads = int_field(o, "heads", 0);
    op.dh = int_field(o, "dh", 0);
    op.half = int_field(o, "half", 0);
    op.slot = int_field(o, "slot", -1);
    op.slopes = param(int_field(o, "slopes", -1), true);
    op.scale = float_field(o, "scale", 1.f);
    op.act = int_field(o, "act", 0);
    op.alpha = float_field(o, "alpha", 0.f);
    op.window = int_field(o, "window", 0);
    op.dilation = param(int_field(o, "dilation", -1), true);
    op.globals = param(int_field(o, "globals", -1), true);
    op.kg = reg(int_field(o, "kg", -1), true);
    op.vg = reg(int_field(o, "vg", -1), true);
    op.wqg = param(int_field(o, "wqg", -1), true);
    op.bqg = param(int_field(o, "bqg", -1), true);
    op.e = param(int_field(o, "e", -1), true);
    op.f = param(int_field(o, "f", -1), true);
    op.rank = int_field(o, "rank", 0);
    op.length = int_field(o, "length", 0);
    op.compact = o.Get("compact").ToBoolean();
    op.block = int_field(o, "block", -1);
    op.measure = int_field(o, "measure", 0);
    op.g = reg(int_field(o, "g", -1), true);
    if (o.Get("threshold").IsNumber()) op.threshold = o.Get("threshold").As<Napi::Number>().DoubleValue();
    const Napi::Value targets = o.Get("targets");
    if (targets.IsArray()) {
      const auto t = targets.As<Napi::Array>();
      for (uint32_t j = 0; j < t.Length(); ++j) {
        const auto l = t.Get(j).As<Napi::Object>();
        op.targets.push_back({param(int_field(l, "w", -1), false), param(int_field(l, "bias", -1), true), reg(int_field(l, "y", -1), false)});
      }
    }
    program.push_back(std::move(op));
  }
  try {
    auto* p = new nk::Program(std::move(program), widths, reg(result, false), params, info[4].ToBoolean() ? nk::Weights::int8 : nk::Weights::fp32);
    return Napi::External<nk::Program>::New(env, p, [](Napi::Env, nk::Program* q) { delete q; });
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("decodeProgram: ") + e.what());
  }
}

// decodeBind(program, slot, k, v, capacity, tables: [qcos, qsin, kcos, ksin] | null, positions):
// the cache of an attention slot and its rotation tables [positions, dh], until bound again.
Napi::Value DecodeBind(const Napi::CallbackInfo& info) {
  nk::Program* p = program_of(info[0]);
  const int slot = static_cast<int>(num(info[1]));
  if (slot < 0 || slot >= p->slots()) throw Napi::RangeError::New(info.Env(), "decodeBind: no such attention slot");
  const View k = view(info[2], "k cache"), v = view(info[3], "v cache");
  nk::ProgramSlot s;
  s.kc = f32(info[2], "k cache", 0);
  s.vc = f32(info[3], "v cache", 0);
  s.capacity = num(info[4]);
  s.cache_length = static_cast<int64_t>(std::min(k.length, v.length));
  if (!info[5].IsNull()) {
    const auto r = info[5].As<Napi::Array>();
    s.positions = num(info[6]);
    const size_t table = static_cast<size_t>(s.positions * p->slot_dh(slot));
    s.qcos = f32(r.Get(0u), "qcos", table);
    s.qsin = f32(r.Get(1u), "qsin", table);
    s.kcos = f32(r.Get(2u), "kcos", table);
    s.ksin = f32(r.Get(3u), "ksin", table);
  }
  p->bind(slot, s);
  return info.Env().Undefined();
}

// decodeState(program, slot, state): the running state of a slot that keeps one (a causal
// Linformer's compressed keys and values), written in place by the calls, until bound again.
Napi::Value DecodeState(const Napi::CallbackInfo& info) {
  nk::Program* p = program_of(info[0]);
  const int slot = static_cast<int>(num(info[1]));
  if (slot < 0 || slot >= p->slots() || p->slot_state(slot) == 0) throw Napi::RangeError::New(info.Env(), "decodeState: no such slot with a state");
  const View v = view(info[2], "state");
  p->bind_state(slot, f32(info[2], "state", 0), static_cast<int64_t>(v.length));
  return info.Env().Undefined();
}

// decodeStart(program, x, batch, t, offset, extras: per slot [bias, mask] flat | null): runs
// the program on x; the result is then in its result register. A slot's extras are
// [heads, t, start + t], start its own (decodeOffsets) or the call's offset.
Napi::Value DecodeStart(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  nk::Program* p = program_of(info[0]);
  const int64_t batch = num(info[2]), t = num(info[3]), offset = num(info[4]);
  std::vector<nk::ProgramExtra> extras;
  if (!info[5].IsNull()) {
    const auto list = info[5].As<Napi::Array>();
    if (static_cast<int>(list.Length()) != 2 * p->slots()) throw Napi::RangeError::New(env, "decodeStart: a bias and a mask per attention slot");
    for (int i = 0; i < p->slots(); ++i) {
      const size_t scores = static_cast<size_t>(p->slot_heads(i) * t * (p->slot_start(i, offset) + t));
      const Napi::Value bias = list.Get(2 * i), mask = list.Get(2 * i + 1);
      nk::ProgramExtra e{nullptr, nullptr};
      if (!bias.IsNull()) e.bias = f32(bias, "bias", scores);
      if (!mask.IsNull()) {
        const View m = view(mask, "mask");
        if (m.elem != 1 || m.length < scores) throw Napi::RangeError::New(env, "decodeStart: mask must be a Uint8Array of heads × t × keys");
        e.mask = static_cast<const uint8_t*>(m.data);
      }
      extras.push_back(e);
    }
  }
  const float* x = f32(info[1], "x", static_cast<size_t>(batch * t * p->width(0)));
  try {
    p->run(x, batch, t, offset, std::move(extras));
    return env.Undefined();
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("decoding: ") + e.what());
  }
}

// decodeRegister(program, register, values, offset): copies values.length floats of the
// register, from offset, into values.
Napi::Value DecodeRegister(const Napi::CallbackInfo& info) {
  nk::Program* p = program_of(info[0]);
  int64_t length = 0;
  float* r = p->reg(static_cast<int>(num(info[1])), &length);
  const View v = view(info[2], "values");
  const int64_t offset = num(info[3]), n = static_cast<int64_t>(v.length);
  if (v.elem != 4 || offset < 0 || offset + n > length)
    throw Napi::RangeError::New(info.Env(), "decodeRegister: values outside the register");
  float* values = f32(info[2], "values", v.length);
  std::copy(r + offset, r + offset + n, values);
  return info.Env().Undefined();
}

// decodeForce(program, forced: Int32Array | null): early exit's forced exits per row of the
// next calls (INT32_MIN: the confidence decides), or none.
Napi::Value DecodeForce(const Napi::CallbackInfo& info) {
  nk::Program* p = program_of(info[0]);
  std::vector<int32_t> forced;
  if (!info[1].IsNull()) {
    const int32_t* f = i32(info[1], "forced", 0);
    forced.assign(f, f + view(info[1], "forced").length);
  }
  p->force(std::move(forced));
  return info.Env().Undefined();
}

// decodeOffsets(program, offsets: Int32Array | null): mixture-of-depths' per attention slot
// position its new keys start at, for the next calls, or none (the call's offset).
Napi::Value DecodeOffsets(const Napi::CallbackInfo& info) {
  nk::Program* p = program_of(info[0]);
  std::vector<int64_t> offsets;
  if (!info[1].IsNull()) {
    const int32_t* o = i32(info[1], "offsets", 0);
    offsets.assign(o, o + view(info[1], "offsets").length);
  }
  p->offsets(std::move(offsets));
  return info.Env().Undefined();
}

// decodeRouted(program, routed: Int32Array): copies per block the rows the last call routed
// through it (0 for a block not routed).
Napi::Value DecodeRouted(const Napi::CallbackInfo& info) {
  const std::vector<int32_t>& r = program_of(info[0])->routed();
  auto* out = const_cast<int32_t*>(i32(info[1], "routed", r.size()));
  std::copy(r.begin(), r.end(), out);
  return info.Env().Undefined();
}

// decodeExits(program, exits: Int32Array): copies per row of the last call the block it left
// after into exits.
Napi::Value DecodeExits(const Napi::CallbackInfo& info) {
  const std::vector<int32_t>& e = program_of(info[0])->exits();
  auto* out = const_cast<int32_t*>(i32(info[1], "exits", e.size()));
  std::copy(e.begin(), e.end(), out);
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("threads", nk::threads());
  o.Set("physicalCores", nk::physical_cores());
  o.Set("isa", nk::isa_name());
  o.Set("bf16Native", nk::bf16_native());
  return o;
}

Napi::Value SetVaryingRows(const Napi::CallbackInfo& info) {
  nk::set_varying_rows(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  nk::set_threads(static_cast<int>(num(info[0])));
  return info.Env().Undefined();
}

// The rotation of attention(Grad)'s q and k: [half, tables] with tables [qcos | qsin | kcos | ksin],
// each [t, dh] (q and k of one length); null: none.
std::optional<nk::Rotation> rotation_of(const Napi::Value& v, const nk::AttentionShape& s) {
  if (v.IsNull()) return std::nullopt;
  const auto list = v.As<Napi::Array>();
  const int64_t half = num(list.Get(0u));
  if (half < 1 || 2 * half > s.dh) throw Napi::RangeError::New(v.Env(), "attention: rotation half must be in [1, dh / 2]");
  if (s.tk != s.t) throw Napi::RangeError::New(v.Env(), "attention: a rotation needs as many keys as queries");
  const int64_t n = s.t * s.dh;
  const float* tables = f32(list.Get(1u), "rotation tables", 4 * n);
  return nk::Rotation{half, tables, tables + n, tables + 2 * n, tables + 3 * n};
}

// [bh, heads, t, tk, dh] and ranges [lo | hi] (t each, within [0, tk]).
nk::AttentionShape attention_shape(const Napi::Value& d0, const Napi::Value& ranges) {
  const auto d = dims(d0);
  const int32_t* r = i32(ranges, "ranges", 2 * d[2]);
  for (int64_t i = 0; i < 2 * d[2]; ++i)
    if (r[i] < 0 || r[i] > d[3]) throw Napi::RangeError::New(d0.Env(), "attention: a key range passes the keys");
  return nk::AttentionShape{d[0], d[1], d[2], d[3], d[4], r, r + d[2]};
}

// attention(q, k, v, [bh, heads, t, tk, dh], ranges, slopes | null, rotation | null, out, lse)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  const auto s = attention_shape(info[3], info[4]);
  const size_t n = s.bh * s.t * s.dh, kn = s.bh * s.tk * s.dh;
  const auto rotation = rotation_of(info[6], s);
  nk::attention(s, f32(info[0], "q", n), f32(info[1], "k", kn), f32(info[2], "v", kn),
                info[5].IsNull() ? nullptr : f32(info[5], "slopes", s.heads), rotation ? &*rotation : nullptr,
                f32(info[7], "out", n), f32(info[8], "lse", s.bh * s.t));
  return info.Env().Undefined();
}

// attentionGrad(q, k, v, out, lse, dout, dlse | null, [bh, heads, t, tk, dh], ranges, slopes | null, rotation | null,
// dq, dk, dv)
Napi::Value AttentionGrad(const Napi::CallbackInfo& info) {
  const auto s = attention_shape(info[7], info[8]);
  const size_t n = s.bh * s.t * s.dh, kn = s.bh * s.tk * s.dh;
  const auto rotation = rotation_of(info[10], s);
  nk::attention_grad(s, f32(info[0], "q", n), f32(info[1], "k", kn), f32(info[2], "v", kn), f32(info[3], "out", n),
                     f32(info[4], "lse", s.bh * s.t), f32(info[5], "dout", n),
                     info[6].IsNull() ? nullptr : f32(info[6], "dlse", s.bh * s.t),
                     info[9].IsNull() ? nullptr : f32(info[9], "slopes", s.heads), rotation ? &*rotation : nullptr,
                     f32(info[11], "dq", n), f32(info[12], "dk", kn), f32(info[13], "dv", kn));
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Without an explicit OMP_NUM_THREADS, use one thread per physical core.
  if (std::getenv("OMP_NUM_THREADS") == nullptr) nk::set_threads(nk::physical_cores());
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("compare", Napi::Function::New(env, Compare));
  exports.Set("select", Napi::Function::New(env, Select));
  exports.Set("pad", Napi::Function::New(env, Pad));
  exports.Set("slice", Napi::Function::New(env, Slice));
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("act", Napi::Function::New(env, Act));
  exports.Set("xent", Napi::Function::New(env, Xent));
  exports.Set("norm", Napi::Function::New(env, Norm));
  exports.Set("normGrad", Napi::Function::New(env, NormGrad));
  exports.Set("xentGrad", Napi::Function::New(env, XentGrad));
  exports.Set("softXent", Napi::Function::New(env, SoftXent));
  exports.Set("softXentGrad", Napi::Function::New(env, SoftXentGrad));
  exports.Set("actGrad", Napi::Function::New(env, ActGrad));
  exports.Set("adamw", Napi::Function::New(env, AdamW));
  exports.Set("newtonSchulz", Napi::Function::New(env, NewtonSchulz));
  exports.Set("muon", Napi::Function::New(env, Muon));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("softmaxMargin", Napi::Function::New(env, SoftmaxMargin));
  exports.Set("rowCosines", Napi::Function::New(env, RowCosines));
  exports.Set("causalSoftmax", Napi::Function::New(env, CausalSoftmax));
  exports.Set("causalSoftmaxGrad", Napi::Function::New(env, CausalSoftmaxGrad));
  exports.Set("reluBiasGrad", Napi::Function::New(env, ReluBiasGrad));
  exports.Set("transpose", Napi::Function::New(env, Transpose));
  exports.Set("gather", Napi::Function::New(env, Gather));
  exports.Set("scatterAdd", Napi::Function::New(env, ScatterAdd));
  exports.Set("oneHot", Napi::Function::New(env, OneHot));
  exports.Set("decodeProgram", Napi::Function::New(env, DecodeProgram));
  exports.Set("decodeBind", Napi::Function::New(env, DecodeBind));
  exports.Set("decodeStart", Napi::Function::New(env, DecodeStart));
  exports.Set("decodeState", Napi::Function::New(env, DecodeState));
  exports.Set("decodeRegister", Napi::Function::New(env, DecodeRegister));
  exports.Set("decodeForce", Napi::Function::New(env, DecodeForce));
  exports.Set("decodeExits", Napi::Function::New(env, DecodeExits));
  exports.Set("decodeOffsets", Napi::Function::New(env, DecodeOffsets));
  exports.Set("decodeRouted", Napi::Function::New(env, DecodeRouted));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("setVaryingRows", Napi::Function::New(env, SetVaryingRows));
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionGrad", Napi::Function::New(env, AttentionGrad));
  return exports;
}

}  // namespace

NODE_API_MODULE(tfjs_native, Init)
