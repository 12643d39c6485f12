// The kernel bindings: one function per declaration in kernels.inc, same name and argument order.
// Each validates its arguments (napi/args.h: every JavaScript value is read first, then pointers are
// taken with no JavaScript in between), resolves tensors to pointers on one device and calls the
// backend; each is registered through function<> (napi/binding.h), which turns backend failures
// into JS Errors naming the kernel and never lets a C++ exception reach V8. Kernels run synchronously on the calling thread: each is short (milliseconds) and
// the TypeScript model calls them in sequence, so a worker hop per kernel would only add latency;
// long jobs (a training run) yield to the event loop between steps instead.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/ggml_quant.h"
#include "gptune/device.h"
#include "gptune/ggml_blocks.h"
#include "gptune/kernels.h"
#include "napi/args.h"
#include "napi/binding.h"
#include "napi/bindings.h"

namespace gptune::napi {
namespace {

#ifdef GPTUNE_WITH_CUDA
#define GPTUNE_DISPATCH(args, fn, ...) \
  ((args).device() == Device::Cpu ? cpu::fn(__VA_ARGS__) : cuda::fn(__VA_ARGS__))
#else
#define GPTUNE_DISPATCH(args, fn, ...) cpu::fn(__VA_ARGS__)
#endif

// Int arguments arrive as host Int32Arrays. On CUDA they are staged through device scratch
// buffers that grow as needed and are reused across calls (one slot per argument position).
class IntStaging {
 public:
  const int* in(Args& args, int slot, const IntArg& a) { return stage(args, slot, a, true); }
  int* out(Args& args, int slot, const IntArg& a) { return stage(args, slot, a, false); }
  void copy_back(Args& args, int slot, const IntArg& a) {
#ifdef GPTUNE_WITH_CUDA
    if (args.device() == Device::Cuda && a.ptr)
      cuda::copy_to_host(a.ptr, slots_[slot].ptr, static_cast<size_t>(a.numel) * sizeof(int32_t));
#endif
  }

 private:
  int* stage(Args& args, int slot, const IntArg& a, bool upload) {
    if (!a.ptr || args.device() == Device::Cpu) return a.ptr;
#ifdef GPTUNE_WITH_CUDA
    Slot& s = slots_[slot];
    size_t bytes = static_cast<size_t>(a.numel) * sizeof(int32_t);
    if (bytes > s.capacity) {
      if (s.ptr) cuda::free_device(s.ptr);
      s.ptr = nullptr;
      s.capacity = 0;
      s.ptr = cuda::malloc_device(bytes);
      s.capacity = bytes;
    }
    if (upload) cuda::copy_to_device(s.ptr, a.ptr, bytes);
    return static_cast<int*>(s.ptr);
#else
    return a.ptr;
#endif
  }
  struct Slot {
    void* ptr = nullptr;
    size_t capacity = 0;
  };
  Slot slots_[4];
};

IntStaging& staging() {
  static IntStaging s;
  return s;
}

void check_ids(Args& args, const IntArg& ids, int64_t n, int64_t limit, const char* name, const char* what,
               bool allow_ignore = false, int ignore_index = -100) {
  for (int64_t i = 0; i < n; ++i) {
    int32_t id = ids.ptr[i];
    if (allow_ignore && id == ignore_index) continue;
    if (id < 0 || id >= limit)
      args.fail_range(std::string(name) + "[" + std::to_string(i) + "] = " + std::to_string(id) + " is outside [0, " +
                      std::to_string(limit) + ") (" + what + ")");
  }
}

Napi::Value MatmulForward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_forward", 7);
  int N = a.dim(4, "N"), C = a.dim(5, "C"), OC = a.dim(6, "OC");
  auto out = a.floats(0, "out", a.product({N, OC}));
  auto inp = a.floats(1, "inp", a.product({N, C}));
  auto weight = a.floats(2, "weight", a.product({OC, C}));
  auto bias = a.floats_opt(3, "bias", OC);
  GPTUNE_DISPATCH(a, matmul_forward, out.ptr, inp.ptr, weight.ptr, bias.ptr, N, C, OC);
  return info.Env().Undefined();
}

Napi::Value MatmulBackward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_backward", 9);
  int N = a.dim(6, "N"), C = a.dim(7, "C"), OC = a.dim(8, "OC");
  auto dinp = a.floats_opt(0, "dinp", a.product({N, C}));
  auto dweight = a.floats_opt(1, "dweight", a.product({OC, C}));
  auto dbias = a.floats_opt(2, "dbias", OC);
  auto dout = a.floats(3, "dout", a.product({N, OC}));
  auto inp = a.floats(4, "inp", a.product({N, C}));
  auto weight = a.floats(5, "weight", a.product({OC, C}));
  GPTUNE_DISPATCH(a, matmul_backward, dinp.ptr, dweight.ptr, dbias.ptr, dout.ptr, inp.ptr, weight.ptr, N, C, OC);
  return info.Env().Undefined();
}

// NF4 storage of n weights (kernels.inc): packed codes, 8-bit block absmax, their float32 scales and
// the mean offset, each checked to hold what n needs.
struct Nf4Args {
  ByteArg<uint8_t> packed, qabsmax;
  FloatArg absmax2, offset;
};
Nf4Args nf4_args(Args& a, size_t first, int64_t n) {
  const int64_t blocks = (n + 63) / 64;
  Nf4Args w;
  w.packed = a.uint8s(first, "packed", (n + 1) / 2);
  w.qabsmax = a.uint8s(first + 1, "qabsmax", blocks);
  w.absmax2 = a.floats(first + 2, "absmax2", (blocks + 255) / 256);
  w.offset = a.floats(first + 3, "offset", 1);
  return w;
}

Napi::Value QuantizeInt8(const Napi::CallbackInfo& info) {
  Args a(info, "quantize_int8", 5);
  int OC = a.dim(3, "OC"), C = a.dim(4, "C");
  auto q = a.int8s(0, "q", a.product({OC, C}));
  auto scale = a.floats(1, "scale", OC);
  auto weight = a.floats(2, "weight", a.product({OC, C}));
  GPTUNE_DISPATCH(a, quantize_int8, q.ptr, scale.ptr, weight.ptr, OC, C);
  return info.Env().Undefined();
}

Napi::Value DequantizeInt8(const Napi::CallbackInfo& info) {
  Args a(info, "dequantize_int8", 5);
  int OC = a.dim(3, "OC"), C = a.dim(4, "C");
  auto weight = a.floats(0, "weight", a.product({OC, C}));
  auto q = a.int8s(1, "q", a.product({OC, C}));
  auto scale = a.floats(2, "scale", OC);
  GPTUNE_DISPATCH(a, dequantize_int8, weight.ptr, q.ptr, scale.ptr, OC, C);
  return info.Env().Undefined();
}

Napi::Value MatmulInt8Forward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_int8_forward", 8);
  int N = a.dim(5, "N"), C = a.dim(6, "C"), OC = a.dim(7, "OC");
  auto out = a.floats(0, "out", a.product({N, OC}));
  auto inp = a.floats(1, "inp", a.product({N, C}));
  auto q = a.int8s(2, "q", a.product({OC, C}));
  auto scale = a.floats(3, "scale", OC);
  auto bias = a.floats_opt(4, "bias", OC);
  GPTUNE_DISPATCH(a, matmul_int8_forward, out.ptr, inp.ptr, q.ptr, scale.ptr, bias.ptr, N, C, OC);
  return info.Env().Undefined();
}

Napi::Value MatmulInt8Backward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_int8_backward", 7);
  int N = a.dim(4, "N"), C = a.dim(5, "C"), OC = a.dim(6, "OC");
  auto dinp = a.floats_opt(0, "dinp", a.product({N, C}));
  auto dout = a.floats(1, "dout", a.product({N, OC}));
  auto q = a.int8s(2, "q", a.product({OC, C}));
  auto scale = a.floats(3, "scale", OC);
  GPTUNE_DISPATCH(a, matmul_int8_backward, dinp.ptr, dout.ptr, q.ptr, scale.ptr, N, C, OC);
  return info.Env().Undefined();
}

Napi::Value QuantizeNf4(const Napi::CallbackInfo& info) {
  Args a(info, "quantize_nf4", 6);
  int64_t n = a.count(5, "n");
  if (n < 1) a.fail_range("n must be at least 1 (the number of weights to quantize) but it is 0");
  const int64_t blocks = (n + 63) / 64;
  auto packed = a.uint8s(0, "packed", (n + 1) / 2);
  auto qabsmax = a.uint8s(1, "qabsmax", blocks);
  auto absmax2 = a.floats(2, "absmax2", (blocks + 255) / 256);
  auto offset = a.floats(3, "offset", 1);
  auto weight = a.floats(4, "weight", n);
  GPTUNE_DISPATCH(a, quantize_nf4, packed.ptr, qabsmax.ptr, absmax2.ptr, offset.ptr, weight.ptr, n);
  return info.Env().Undefined();
}

Napi::Value DequantizeNf4(const Napi::CallbackInfo& info) {
  Args a(info, "dequantize_nf4", 6);
  int64_t n = a.count(5, "n");
  if (n < 1) a.fail_range("n must be at least 1 (the number of weights to dequantize) but it is 0");
  auto weight = a.floats(0, "weight", n);
  Nf4Args w = nf4_args(a, 1, n);
  GPTUNE_DISPATCH(a, dequantize_nf4, weight.ptr, w.packed.ptr, w.qabsmax.ptr, w.absmax2.ptr, w.offset.ptr, n);
  return info.Env().Undefined();
}

Napi::Value MatmulNf4Forward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_nf4_forward", 10);
  int N = a.dim(7, "N"), C = a.dim(8, "C"), OC = a.dim(9, "OC");
  auto out = a.floats(0, "out", a.product({N, OC}));
  auto inp = a.floats(1, "inp", a.product({N, C}));
  Nf4Args w = nf4_args(a, 2, a.product({OC, C}));
  auto bias = a.floats_opt(6, "bias", OC);
  GPTUNE_DISPATCH(a, matmul_nf4_forward, out.ptr, inp.ptr, w.packed.ptr, w.qabsmax.ptr, w.absmax2.ptr, w.offset.ptr, bias.ptr,
                  N, C, OC);
  return info.Env().Undefined();
}

Napi::Value MatmulNf4Backward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_nf4_backward", 9);
  int N = a.dim(6, "N"), C = a.dim(7, "C"), OC = a.dim(8, "OC");
  auto dinp = a.floats_opt(0, "dinp", a.product({N, C}));
  auto dout = a.floats(1, "dout", a.product({N, OC}));
  Nf4Args w = nf4_args(a, 2, a.product({OC, C}));
  GPTUNE_DISPATCH(a, matmul_nf4_backward, dinp.ptr, dout.ptr, w.packed.ptr, w.qabsmax.ptr, w.absmax2.ptr, w.offset.ptr, N, C,
                  OC);
  return info.Env().Undefined();
}

Napi::Value MatmulBf16Forward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_bf16_forward", 7);
  int N = a.dim(4, "N"), C = a.dim(5, "C"), OC = a.dim(6, "OC");
  auto out = a.floats(0, "out", a.product({N, OC}));
  auto inp = a.floats(1, "inp", a.product({N, C}));
  auto w = a.uint16s(2, "w", a.product({OC, C}));
  auto bias = a.floats_opt(3, "bias", OC);
  GPTUNE_DISPATCH(a, matmul_bf16_forward, out.ptr, inp.ptr, w.ptr, bias.ptr, N, C, OC);
  return info.Env().Undefined();
}

Napi::Value MatmulBf16Backward(const Napi::CallbackInfo& info) {
  Args a(info, "matmul_bf16_backward", 6);
  int N = a.dim(3, "N"), C = a.dim(4, "C"), OC = a.dim(5, "OC");
  auto dinp = a.floats_opt(0, "dinp", a.product({N, C}));
  auto dout = a.floats(1, "dout", a.product({N, OC}));
  auto w = a.uint16s(2, "w", a.product({OC, C}));
  GPTUNE_DISPATCH(a, matmul_bf16_backward, dinp.ptr, dout.ptr, w.ptr, N, C, OC);
  return info.Env().Undefined();
}

Napi::Value ConvertF32ToBf16(const Napi::CallbackInfo& info) {
  Args a(info, "convert_f32_to_bf16", 3);
  int64_t n = a.count(2, "n");
  auto w_out = a.uint16s(0, "w_out", n);
  auto inp = a.floats(1, "inp", n);
  GPTUNE_DISPATCH(a, convert_f32_to_bf16, w_out.ptr, inp.ptr, n);
  return info.Env().Undefined();
}

// A GGML block-format weight (kernels.inc): its type id, checked to be one of the six block types.
int ggml_type_arg(Args& a, size_t i) {
  const int type = a.integer(i, "type");
  if (!ggml::is_block_type(type))
    a.fail_range("type must be a GGML block type id, 2 (Q4_0), 6 (Q5_0), 8 (Q8_0), 12 (Q4_K), 13 (Q5_K) or 14 (Q6_K), but it is " +
                 std::to_string(type));
  return type;
}

// The bytes of `rows` rows of C values stored as `type`, C checked to be a whole number of blocks.
int64_t ggml_weight_bytes(Args& a, int type, int rows, int C) {
  const int bs = ggml::block_size(type);
  if (C % bs != 0)
    a.fail_range("C (" + std::to_string(C) + ") must be a multiple of " + std::to_string(bs) + ", the block of " +
                 ggml::type_name(type));
  return a.product({rows, C / bs, ggml::block_bytes(type)});
}

// Elements a row-strided (N, stride) buffer needs when rows hold `cols` used columns.
int64_t strided_numel(Args& a, int N, int stride, int cols, const char* stride_name) {
  if (stride < cols)
    a.fail_range(std::string(stride_name) + " (" + std::to_string(stride) + ") must be at least OC (" + std::to_string(cols) + ")");
  return a.product({N - 1, stride}) + cols;
}

Napi::Value QuantizeGgml(const Napi::CallbackInfo& info) {
  Args a(info, "quantize_ggml", 5);
  const int type = ggml_type_arg(a, 2);
  const int rows = a.dim(3, "rows"), C = a.dim(4, "C");
  auto blocks = a.uint8s(0, "blocks", ggml_weight_bytes(a, type, rows, C));
  auto weight = a.floats(1, "weight", a.product({rows, C}));
  GPTUNE_DISPATCH(a, quantize_ggml, blocks.ptr, weight.ptr, type, rows, C);
  return info.Env().Undefined();
}

Napi::Value DequantizeGgml(const Napi::CallbackInfo& info) {
  Args a(info, "dequantize_ggml", 5);
  const int type = ggml_type_arg(a, 2);
  const int rows = a.dim(3, "rows"), C = a.dim(4, "C");
  auto weight = a.floats(0, "weight", a.product({rows, C}));
  auto blocks = a.uint8s(1, "blocks", ggml_weight_bytes(a, type, rows, C));
  GPTUNE_DISPATCH(a, dequantize_ggml, weight.ptr, blocks.ptr, type, rows, C);
  return info.Env().Undefined();
}

// matmul_ggml_forward and, for Reference, the CPU's scalar reference of it (exposed for tests).
template <bool Reference>
Napi::Value MatmulGgmlForward(const Napi::CallbackInfo& info) {
  Args a(info, Reference ? "matmul_ggml_forward_reference" : "matmul_ggml_forward", 9);
  const int type = ggml_type_arg(a, 4);
  const int N = a.dim(5, "N"), C = a.dim(6, "C"), OC = a.dim(7, "OC"), out_stride = a.dim(8, "out_stride");
  auto out = a.floats(0, "out", strided_numel(a, N, out_stride, OC, "out_stride"));
  auto inp = a.floats(1, "inp", a.product({N, C}));
  auto w = a.uint8s(2, "w", ggml_weight_bytes(a, type, OC, C));
  auto bias = a.floats_opt(3, "bias", OC);
  if (Reference) {
    if (a.device() != Device::Cpu) a.fail_range("the reference is exposed for CPU tensors only");
    cpu::matmul_ggml_forward_reference(out.ptr, inp.ptr, w.ptr, bias.ptr, type, N, C, OC, out_stride);
  } else {
    GPTUNE_DISPATCH(a, matmul_ggml_forward, out.ptr, inp.ptr, w.ptr, bias.ptr, type, N, C, OC, out_stride);
  }
  return info.Env().Undefined();
}

template <bool Reference>
Napi::Value MatmulGgmlBackward(const Napi::CallbackInfo& info) {
  Args a(info, Reference ? "matmul_ggml_backward_reference" : "matmul_ggml_backward", 8);
  const int type = ggml_type_arg(a, 3);
  const int N = a.dim(4, "N"), C = a.dim(5, "C"), OC = a.dim(6, "OC"), dout_stride = a.dim(7, "dout_stride");
  auto dinp = a.floats_opt(0, "dinp", a.product({N, C}));
  auto dout = a.floats(1, "dout", strided_numel(a, N, dout_stride, OC, "dout_stride"));
  auto w = a.uint8s(2, "w", ggml_weight_bytes(a, type, OC, C));
  if (Reference) {
    if (a.device() != Device::Cpu) a.fail_range("the reference is exposed for CPU tensors only");
    cpu::matmul_ggml_backward_reference(dinp.ptr, dout.ptr, w.ptr, type, N, C, OC, dout_stride);
  } else {
    GPTUNE_DISPATCH(a, matmul_ggml_backward, dinp.ptr, dout.ptr, w.ptr, type, N, C, OC, dout_stride);
  }
  return info.Env().Undefined();
}

Napi::Value EncoderForward(const Napi::CallbackInfo& info) {
  Args a(info, "encoder_forward", 9);
  int B = a.dim(5, "B"), T = a.dim(6, "T"), C = a.dim(7, "C"), pos_offset = a.dim(8, "pos_offset", 0);
  int64_t BT = a.product({B, T});
  auto out = a.floats(0, "out", a.product({BT, C}));
  auto tokens = a.ints(1, "tokens", BT);
  auto positions = a.ints_opt(2, "positions", BT);
  auto wte = a.floats(3, "wte", C);
  auto wpe = a.floats_opt(4, "wpe", C);  // null: no learned position table (Llama family)
  check_ids(a, tokens, BT, wte.numel / C, "tokens", "token ids must be below the vocabulary size");
  if (wpe.ptr) {
    int64_t max_pos = wpe.numel / C;
    if (positions.ptr) check_ids(a, positions, BT, max_pos, "positions", "positions must be below n_positions");
    else if (int64_t{pos_offset} + T > max_pos)
      a.fail_range("pos_offset + T = " + std::to_string(int64_t{pos_offset} + T) + " exceeds n_positions = " + std::to_string(max_pos));
  }
  auto& st = staging();
  GPTUNE_DISPATCH(a, encoder_forward, out.ptr, st.in(a, 0, tokens), st.in(a, 1, positions), wte.ptr, wpe.ptr, B, T, C, pos_offset);
  return info.Env().Undefined();
}

Napi::Value EncoderBackward(const Napi::CallbackInfo& info) {
  Args a(info, "encoder_backward", 9);
  int B = a.dim(5, "B"), T = a.dim(6, "T"), C = a.dim(7, "C"), pos_offset = a.dim(8, "pos_offset", 0);
  int64_t BT = a.product({B, T});
  auto dwte = a.floats_opt(0, "dwte", C);
  auto dwpe = a.floats_opt(1, "dwpe", C);
  auto dout = a.floats(2, "dout", a.product({BT, C}));
  auto tokens = a.ints(3, "tokens", BT);
  auto positions = a.ints_opt(4, "positions", BT);
  if (dwte.ptr) check_ids(a, tokens, BT, dwte.numel / C, "tokens", "token ids must be below the vocabulary size");
  if (dwpe.ptr) {
    int64_t max_pos = dwpe.numel / C;
    if (positions.ptr) check_ids(a, positions, BT, max_pos, "positions", "positions must be below n_positions");
    else if (int64_t{pos_offset} + T > max_pos)
      a.fail_range("pos_offset + T = " + std::to_string(int64_t{pos_offset} + T) + " exceeds n_positions = " + std::to_string(max_pos));
  }
  auto& st = staging();
  GPTUNE_DISPATCH(a, encoder_backward, dwte.ptr, dwpe.ptr, dout.ptr, st.in(a, 0, tokens), st.in(a, 1, positions), B, T, C, pos_offset);
  return info.Env().Undefined();
}

// A normalisation's eps: a positive number (0 would divide by zero on a zero row).
double positive_eps(Args& a, size_t i) {
  double eps = a.number(i, "eps");
  if (!(eps > 0)) a.fail_type(i, "eps", "a positive number");
  return eps;
}

Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  Args a(info, "layernorm_forward", 9);
  int N = a.dim(6, "N"), C = a.dim(7, "C");
  double eps = positive_eps(a, 8);
  auto out = a.floats(0, "out", a.product({N, C}));
  auto mean = a.floats_opt(1, "mean", N);
  auto rstd = a.floats_opt(2, "rstd", N);
  auto inp = a.floats(3, "inp", a.product({N, C}));
  auto weight = a.floats(4, "weight", C);
  auto bias = a.floats(5, "bias", C);
  GPTUNE_DISPATCH(a, layernorm_forward, out.ptr, mean.ptr, rstd.ptr, inp.ptr, weight.ptr, bias.ptr, N, C, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "layernorm_backward", 10);
  int N = a.dim(8, "N"), C = a.dim(9, "C");
  auto dinp = a.floats_opt(0, "dinp", a.product({N, C}));
  auto dweight = a.floats_opt(1, "dweight", C);
  auto dbias = a.floats_opt(2, "dbias", C);
  auto dout = a.floats(3, "dout", a.product({N, C}));
  auto inp = a.floats(4, "inp", a.product({N, C}));
  auto weight = a.floats(5, "weight", C);
  auto mean = a.floats(6, "mean", N);
  auto rstd = a.floats(7, "rstd", N);
  GPTUNE_DISPATCH(a, layernorm_backward, dinp.ptr, dweight.ptr, dbias.ptr, dout.ptr, inp.ptr, weight.ptr, mean.ptr, rstd.ptr, N, C);
  return info.Env().Undefined();
}

Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  Args a(info, "gelu_forward", 3);
  int64_t n = a.count(2, "n");
  auto out = a.floats(0, "out", n);
  auto inp = a.floats(1, "inp", n);
  GPTUNE_DISPATCH(a, gelu_forward, out.ptr, inp.ptr, n);
  return info.Env().Undefined();
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "gelu_backward", 4);
  int64_t n = a.count(3, "n");
  auto dinp = a.floats(0, "dinp", n);
  auto inp = a.floats(1, "inp", n);
  auto dout = a.floats(2, "dout", n);
  GPTUNE_DISPATCH(a, gelu_backward, dinp.ptr, inp.ptr, dout.ptr, n);
  return info.Env().Undefined();
}

// A dropout probability p (LoRA's, the model's): a number with p in [0, 1) once rounded to float32
// (the kernels' type; a p that rounds to 1 would make the 1/(1-p) scale infinite).
float dropout_probability(Args& a, size_t i) {
  const double p = a.number(i, "dropout");
  if (!(p >= 0 && static_cast<float>(p) < 1.0f))
    a.fail_range("dropout must be a probability in [0, 1) but it is " + Napi::Number::New(a.env(), p).ToString().Utf8Value());
  return static_cast<float>(p);
}

// The dropout mask's seed: a whole number in [0, 2^53-1], exactly representable in a JS number.
uint64_t dropout_seed(Args& a, size_t i) {
  const double seed = a.number(i, "seed", false);
  if (!(seed >= 0 && std::floor(seed) == seed && seed <= 9007199254740991.0))
    a.fail_range("seed must be a whole number between 0 and 2^53-1 but it is " +
                 Napi::Number::New(a.env(), seed).ToString().Utf8Value());
  return static_cast<uint64_t>(seed);
}

Napi::Value DropoutForward(const Napi::CallbackInfo& info) {
  Args a(info, "dropout_forward", 6);
  int64_t n = a.count(3, "n");
  const float p = dropout_probability(a, 4);
  const uint64_t seed = dropout_seed(a, 5);
  auto out = a.floats(0, "out", n);
  auto inp = a.floats(1, "inp", n);
  auto residual = a.floats_opt(2, "residual", n);
  GPTUNE_DISPATCH(a, dropout_forward, out.ptr, inp.ptr, residual.ptr, n, p, seed);
  return info.Env().Undefined();
}

Napi::Value DropoutBackward(const Napi::CallbackInfo& info) {
  Args a(info, "dropout_backward", 5);
  int64_t n = a.count(2, "n");
  const float p = dropout_probability(a, 3);
  const uint64_t seed = dropout_seed(a, 4);
  auto dinp = a.floats(0, "dinp", n);
  auto dout = a.floats(1, "dout", n);
  GPTUNE_DISPATCH(a, dropout_backward, dinp.ptr, dout.ptr, n, p, seed);
  return info.Env().Undefined();
}

Napi::Value ResidualForward(const Napi::CallbackInfo& info) {
  Args a(info, "residual_forward", 4);
  int64_t n = a.count(3, "n");
  auto out = a.floats(0, "out", n);
  auto x = a.floats(1, "a", n);
  auto y = a.floats(2, "b", n);
  GPTUNE_DISPATCH(a, residual_forward, out.ptr, x.ptr, y.ptr, n);
  return info.Env().Undefined();
}

Napi::Value AddInplace(const Napi::CallbackInfo& info) {
  Args a(info, "add_inplace", 3);
  int64_t n = a.count(2, "n");
  auto dst = a.floats(0, "dst", n);
  auto src = a.floats(1, "src", n);
  GPTUNE_DISPATCH(a, add_inplace, dst.ptr, src.ptr, n);
  return info.Env().Undefined();
}

Napi::Value ScaleInplace(const Napi::CallbackInfo& info) {
  Args a(info, "scale_inplace", 3);
  int64_t n = a.count(2, "n");
  auto x = a.floats(0, "x", n);
  double s = a.number(1, "s");
  GPTUNE_DISPATCH(a, scale_inplace, x.ptr, static_cast<float>(s), n);
  return info.Env().Undefined();
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  Args a(info, "fill", 3);
  int64_t n = a.count(2, "n");
  auto x = a.floats(0, "x", n);
  float value = static_cast<float>(a.number(1, "value", false));
  GPTUNE_DISPATCH(a, fill, x.ptr, value, n);
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Args a(info, "sum_squares", 2);
  int64_t n = a.count(1, "n");
  auto x = a.floats(0, "x", n);
  double s = GPTUNE_DISPATCH(a, sum_squares, x.ptr, n);
  return Napi::Number::New(info.Env(), s);
}

// Grouped-query heads: NH query heads share NKV key/value heads, NH a multiple of NKV.
void check_heads(Args& a, int NH, int NKV) {
  if (NH % NKV != 0) a.fail_range("NH (" + std::to_string(NH) + ") must be divisible by NKV (" + std::to_string(NKV) + ")");
}

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Args a(info, "attention_forward", 11);
  int B = a.dim(4, "B"), T = a.dim(5, "T"), NH = a.dim(6, "NH"), NKV = a.dim(7, "NKV"), HS = a.dim(8, "HS");
  check_heads(a, NH, NKV);
  const float p = dropout_probability(a, 9);
  const uint64_t seed = dropout_seed(a, 10);
  auto out = a.floats(0, "out", a.product({B, T, NH, HS}));
  auto lse = a.floats(1, "lse", a.product({B, NH, T}));
  auto qkv = a.floats(2, "qkv", a.product({B, T, NH + 2 * int64_t{NKV}, HS}));
  auto seg = a.ints_opt(3, "segment_ids", a.product({B, T}));
  GPTUNE_DISPATCH(a, attention_forward, out.ptr, lse.ptr, qkv.ptr, staging().in(a, 0, seg), B, T, NH, NKV, HS, p, seed);
  return info.Env().Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Args a(info, "attention_backward", 13);
  int B = a.dim(6, "B"), T = a.dim(7, "T"), NH = a.dim(8, "NH"), NKV = a.dim(9, "NKV"), HS = a.dim(10, "HS");
  check_heads(a, NH, NKV);
  const float p = dropout_probability(a, 11);
  const uint64_t seed = dropout_seed(a, 12);
  const int64_t qkv_size = a.product({B, T, NH + 2 * int64_t{NKV}, HS}), out_size = a.product({B, T, NH, HS});
  auto dqkv = a.floats(0, "dqkv", qkv_size);
  auto dout = a.floats(1, "dout", out_size);
  auto qkv = a.floats(2, "qkv", qkv_size);
  auto out = a.floats(3, "out", out_size);
  auto lse = a.floats(4, "lse", a.product({B, NH, T}));
  auto seg = a.ints_opt(5, "segment_ids", a.product({B, T}));
  GPTUNE_DISPATCH(a, attention_backward, dqkv.ptr, dout.ptr, qkv.ptr, out.ptr, lse.ptr, staging().in(a, 0, seg), B, T, NH, NKV, HS, p, seed);
  return info.Env().Undefined();
}

Napi::Value AttentionCachedForward(const Napi::CallbackInfo& info) {
  Args a(info, "attention_cached_forward", 11);
  int B = a.dim(4, "B"), Tq = a.dim(5, "Tq"), past = a.dim(6, "past", 0), maxT = a.dim(7, "maxT");
  int NH = a.dim(8, "NH"), NKV = a.dim(9, "NKV"), HS = a.dim(10, "HS");
  check_heads(a, NH, NKV);
  if (int64_t{past} + Tq > maxT)
    a.fail_range("past + Tq = " + std::to_string(int64_t{past} + Tq) + " exceeds the cache length maxT = " + std::to_string(maxT));
  auto out = a.floats(0, "out", a.product({B, Tq, NH, HS}));
  auto kcache = a.floats(1, "kcache", a.product({B, maxT, NKV, HS}));
  auto vcache = a.floats(2, "vcache", a.product({B, maxT, NKV, HS}));
  auto qkv = a.floats(3, "qkv", a.product({B, Tq, NH + 2 * int64_t{NKV}, HS}));
  GPTUNE_DISPATCH(a, attention_cached_forward, out.ptr, kcache.ptr, vcache.ptr, qkv.ptr, B, Tq, past, maxT, NH, NKV, HS);
  return info.Env().Undefined();
}

Napi::Value AttentionCachedRowsForward(const Napi::CallbackInfo& info) {
  Args a(info, "attention_cached_rows_forward", 13);
  int B = a.dim(6, "B"), Tq = a.dim(7, "Tq"), S = a.dim(8, "S"), maxT = a.dim(9, "maxT");
  int NH = a.dim(10, "NH"), NKV = a.dim(11, "NKV"), HS = a.dim(12, "HS");
  check_heads(a, NH, NKV);
  auto out = a.floats(0, "out", a.product({B, Tq, NH, HS}));
  auto kcache = a.floats(1, "kcache", a.product({S, maxT, NKV, HS}));
  auto vcache = a.floats(2, "vcache", a.product({S, maxT, NKV, HS}));
  auto qkv = a.floats(3, "qkv", a.product({B, Tq, NH + 2 * int64_t{NKV}, HS}));
  auto slots = a.ints(4, "slots", B);
  auto pasts = a.ints(5, "pasts", B);
  // Two rows writing one slot would race and read each other's keys: slots must be distinct.
  std::vector<bool> taken(S, false);
  for (int b = 0; b < B; ++b) {
    const int slot = slots.ptr[b], past = pasts.ptr[b];
    if (slot < 0 || slot >= S)
      a.fail_range("slots[" + std::to_string(b) + "] = " + std::to_string(slot) + " is outside [0, S = " + std::to_string(S) + ")");
    if (taken[slot]) a.fail_range("slots[" + std::to_string(b) + "] = " + std::to_string(slot) + " is given to two rows");
    taken[slot] = true;
    if (past < 0 || int64_t{past} + Tq > maxT)
      a.fail_range("pasts[" + std::to_string(b) + "] + Tq = " + std::to_string(int64_t{past} + Tq) +
                   " is outside [Tq, maxT = " + std::to_string(maxT) + "]");
  }
  GPTUNE_DISPATCH(a, attention_cached_rows_forward, out.ptr, kcache.ptr, vcache.ptr, qkv.ptr, staging().in(a, 0, slots),
                  staging().in(a, 1, pasts), B, Tq, S, maxT, NH, NKV, HS);
  return info.Env().Undefined();
}

// ---- Llama-family kernels (RMSNorm, QK-norm, RoPE, SwiGLU) ----


Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnorm_forward", 7);
  int N = a.dim(4, "N"), C = a.dim(5, "C");
  double eps = positive_eps(a, 6);
  auto out = a.floats(0, "out", a.product({N, C}));
  auto rstd = a.floats_opt(1, "rstd", N);
  auto inp = a.floats(2, "inp", a.product({N, C}));
  auto weight = a.floats(3, "weight", C);
  GPTUNE_DISPATCH(a, rmsnorm_forward, out.ptr, rstd.ptr, inp.ptr, weight.ptr, N, C, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnorm_backward", 8);
  int N = a.dim(6, "N"), C = a.dim(7, "C");
  auto dinp = a.floats_opt(0, "dinp", a.product({N, C}));
  auto dweight = a.floats_opt(1, "dweight", C);
  auto dout = a.floats(2, "dout", a.product({N, C}));
  auto inp = a.floats(3, "inp", a.product({N, C}));
  auto weight = a.floats(4, "weight", C);
  auto rstd = a.floats(5, "rstd", N);
  GPTUNE_DISPATCH(a, rmsnorm_backward, dinp.ptr, dweight.ptr, dout.ptr, inp.ptr, weight.ptr, rstd.ptr, N, C);
  return info.Env().Undefined();
}

Napi::Value QknormForward(const Napi::CallbackInfo& info) {
  Args a(info, "qknorm_forward", 10);
  int N = a.dim(5, "N"), NH = a.dim(6, "NH"), NKV = a.dim(7, "NKV"), HS = a.dim(8, "HS");
  double eps = positive_eps(a, 9);
  check_heads(a, NH, NKV);
  const int64_t qkv_size = a.product({N, NH + 2 * int64_t{NKV}, HS});
  auto out = a.floats(0, "out", qkv_size);
  auto rstd = a.floats_opt(1, "rstd", a.product({N, NH + int64_t{NKV}}));
  auto inp = a.floats(2, "inp", qkv_size);
  auto q_weight = a.floats(3, "q_weight", HS);
  auto k_weight = a.floats(4, "k_weight", HS);
  GPTUNE_DISPATCH(a, qknorm_forward, out.ptr, rstd.ptr, inp.ptr, q_weight.ptr, k_weight.ptr, N, NH, NKV, HS, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value QknormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "qknorm_backward", 12);
  int N = a.dim(8, "N"), NH = a.dim(9, "NH"), NKV = a.dim(10, "NKV"), HS = a.dim(11, "HS");
  check_heads(a, NH, NKV);
  const int64_t qkv_size = a.product({N, NH + 2 * int64_t{NKV}, HS});
  auto dinp = a.floats_opt(0, "dinp", qkv_size);
  auto dq_weight = a.floats_opt(1, "dq_weight", HS);
  auto dk_weight = a.floats_opt(2, "dk_weight", HS);
  auto dout = a.floats(3, "dout", qkv_size);
  auto inp = a.floats(4, "inp", qkv_size);
  auto q_weight = a.floats(5, "q_weight", HS);
  auto k_weight = a.floats(6, "k_weight", HS);
  auto rstd = a.floats(7, "rstd", a.product({N, NH + int64_t{NKV}}));
  GPTUNE_DISPATCH(a, qknorm_backward, dinp.ptr, dq_weight.ptr, dk_weight.ptr, dout.ptr, inp.ptr, q_weight.ptr, k_weight.ptr,
                  rstd.ptr, N, NH, NKV, HS);
  return info.Env().Undefined();
}

// rope_forward and rope_backward share their arguments: (qkv|dqkv, cos, sin, positions, B, T, NH, NKV, HS, max_pos, pos_offset).
template <bool Backward>
Napi::Value Rope(const Napi::CallbackInfo& info) {
  const char* kernel = Backward ? "rope_backward" : "rope_forward";
  Args a(info, kernel, 11);
  int B = a.dim(4, "B"), T = a.dim(5, "T"), NH = a.dim(6, "NH"), NKV = a.dim(7, "NKV"), HS = a.dim(8, "HS");
  int max_pos = a.dim(9, "max_pos"), pos_offset = a.dim(10, "pos_offset", 0);
  check_heads(a, NH, NKV);
  if (HS % 2 != 0) a.fail_range("HS (" + std::to_string(HS) + ") must be even: RoPE rotates pairs of channels");
  const int64_t BT = a.product({B, T});
  auto qkv = a.floats(0, Backward ? "dqkv" : "qkv", a.product({BT, NH + 2 * int64_t{NKV}, HS}));
  auto cos = a.floats(1, "cos", a.product({max_pos, HS / 2}));
  auto sin = a.floats(2, "sin", a.product({max_pos, HS / 2}));
  auto positions = a.ints_opt(3, "positions", BT);
  if (positions.ptr) check_ids(a, positions, BT, max_pos, "positions", "positions must be below max_pos");
  else if (int64_t{pos_offset} + T > max_pos)
    a.fail_range("pos_offset + T = " + std::to_string(int64_t{pos_offset} + T) + " exceeds max_pos = " + std::to_string(max_pos));
  const int* pos = staging().in(a, 0, positions);
  if (Backward) GPTUNE_DISPATCH(a, rope_backward, qkv.ptr, cos.ptr, sin.ptr, pos, B, T, NH, NKV, HS, max_pos, pos_offset);
  else GPTUNE_DISPATCH(a, rope_forward, qkv.ptr, cos.ptr, sin.ptr, pos, B, T, NH, NKV, HS, max_pos, pos_offset);
  return info.Env().Undefined();
}

Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  Args a(info, "swiglu_forward", 4);
  int N = a.dim(2, "N"), H = a.dim(3, "H");
  auto out = a.floats(0, "out", a.product({N, H}));
  auto inp = a.floats(1, "inp", a.product({N, 2, H}));
  GPTUNE_DISPATCH(a, swiglu_forward, out.ptr, inp.ptr, N, H);
  return info.Env().Undefined();
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "swiglu_backward", 5);
  int N = a.dim(3, "N"), H = a.dim(4, "H");
  auto dinp = a.floats(0, "dinp", a.product({N, 2, H}));
  auto dout = a.floats(1, "dout", a.product({N, H}));
  auto inp = a.floats(2, "inp", a.product({N, 2, H}));
  GPTUNE_DISPATCH(a, swiglu_backward, dinp.ptr, dout.ptr, inp.ptr, N, H);
  return info.Env().Undefined();
}

// ---- LoRA adapters ----

// The dimensions and scalars lora_forward and lora_backward share, arguments first..first+8:
// N, C, R, OC, ld, offset, scaling, dropout, seed.
struct LoraDims {
  int N, C, R, OC, ld, offset;
  float scaling, dropout;
  uint64_t seed;
  int64_t rows_extent;  // floats of an (N, ld) buffer the adapter's columns reach: (N-1)*ld + offset + OC
};
LoraDims lora_dims(Args& a, size_t first) {
  LoraDims d;
  d.N = a.dim(first, "N");
  d.C = a.dim(first + 1, "C");
  d.R = a.dim(first + 2, "R");
  d.OC = a.dim(first + 3, "OC");
  d.ld = a.dim(first + 4, "ld");
  d.offset = a.dim(first + 5, "offset", 0);
  const double scaling = a.number(first + 6, "scaling");
  d.scaling = static_cast<float>(scaling);
  if (!std::isfinite(d.scaling))
    a.fail_range("scaling must be finite in float32 but it is " + Napi::Number::New(a.env(), scaling).ToString().Utf8Value());
  d.dropout = dropout_probability(a, first + 7);
  d.seed = dropout_seed(a, first + 8);
  if (int64_t{d.offset} + d.OC > d.ld)
    a.fail_range("offset + OC = " + std::to_string(int64_t{d.offset} + d.OC) + " exceeds ld = " + std::to_string(d.ld) +
                 ": the adapter's columns must lie inside each row");
  d.rows_extent = a.product({d.N - 1, d.ld}) + d.offset + d.OC;
  return d;
}

Napi::Value LoraForward(const Napi::CallbackInfo& info) {
  Args a(info, "lora_forward", 14);
  const LoraDims d = lora_dims(a, 5);
  auto out = a.floats(0, "out", d.rows_extent);
  auto u = a.floats(1, "u", a.product({d.N, d.R}));
  auto inp = a.floats(2, "inp", a.product({d.N, d.C}));
  auto A = a.floats(3, "A", a.product({d.R, d.C}));
  auto B = a.floats(4, "B", a.product({d.OC, d.R}));
  GPTUNE_DISPATCH(a, lora_forward, out.ptr, u.ptr, inp.ptr, A.ptr, B.ptr, d.N, d.C, d.R, d.OC, d.ld, d.offset, d.scaling,
                  d.dropout, d.seed);
  return info.Env().Undefined();
}

Napi::Value LoraBackward(const Napi::CallbackInfo& info) {
  Args a(info, "lora_backward", 18);
  const LoraDims d = lora_dims(a, 9);
  auto dinp = a.floats_opt(0, "dinp", a.product({d.N, d.C}));
  auto dA = a.floats_opt(1, "dA", a.product({d.R, d.C}));
  auto dB = a.floats_opt(2, "dB", a.product({d.OC, d.R}));
  auto du = a.floats(3, "du", a.product({d.N, d.R}));
  auto dout = a.floats(4, "dout", d.rows_extent);
  auto u = a.floats(5, "u", a.product({d.N, d.R}));
  auto inp = a.floats(6, "inp", a.product({d.N, d.C}));
  auto A = a.floats(7, "A", a.product({d.R, d.C}));
  auto B = a.floats(8, "B", a.product({d.OC, d.R}));
  GPTUNE_DISPATCH(a, lora_backward, dinp.ptr, dA.ptr, dB.ptr, du.ptr, dout.ptr, u.ptr, inp.ptr, A.ptr, B.ptr, d.N, d.C, d.R,
                  d.OC, d.ld, d.offset, d.scaling, d.dropout, d.seed);
  return info.Env().Undefined();
}

Napi::Value CrossentropyForward(const Napi::CallbackInfo& info) {
  Args a(info, "crossentropy_forward", 8);
  int N = a.dim(5, "N"), V = a.dim(6, "V");
  int ignore_index = a.integer(7, "ignore_index");
  auto losses = a.floats(0, "losses", N);
  auto lse = a.floats(1, "lse", N);
  auto predictions = a.ints_opt(2, "predictions", N);
  auto logits = a.floats(3, "logits", a.product({N, V}));
  auto targets = a.ints(4, "targets", N);
  check_ids(a, targets, N, V, "targets", "targets must be token ids below V or the ignore index", true, ignore_index);
  auto& st = staging();
  GPTUNE_DISPATCH(a, crossentropy_forward, losses.ptr, lse.ptr, st.out(a, 1, predictions), logits.ptr,
                  st.in(a, 0, targets), N, V, ignore_index);
  st.copy_back(a, 1, predictions);
  return info.Env().Undefined();
}

Napi::Value CrossentropyBackward(const Napi::CallbackInfo& info) {
  Args a(info, "crossentropy_backward", 9);
  int N = a.dim(6, "N"), V = a.dim(7, "V");
  int ignore_index = a.integer(8, "ignore_index");
  double scale = a.number(5, "scale");
  auto dlogits = a.floats(0, "dlogits", a.product({N, V}));
  auto logits = a.floats(1, "logits", a.product({N, V}));
  auto lse = a.floats(2, "lse", N);
  auto targets = a.ints(3, "targets", N);
  auto row_weights = a.floats_opt(4, "row_weights", N);
  check_ids(a, targets, N, V, "targets", "targets must be token ids below V or the ignore index", true, ignore_index);
  GPTUNE_DISPATCH(a, crossentropy_backward, dlogits.ptr, logits.ptr, lse.ptr, staging().in(a, 0, targets),
                  row_weights.ptr, static_cast<float>(scale), N, V, ignore_index);
  return info.Env().Undefined();
}

Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  Args a(info, "softmax_forward", 5);
  int N = a.dim(3, "N"), V = a.dim(4, "V");
  double inv_t = a.number(2, "inv_temperature");
  if (!(inv_t > 0)) a.fail_type(2, "inv_temperature", "a positive number");
  auto probs = a.floats(0, "probs", a.product({N, V}));
  auto logits = a.floats(1, "logits", a.product({N, V}));
  GPTUNE_DISPATCH(a, softmax_forward, probs.ptr, logits.ptr, static_cast<float>(inv_t), N, V);
  return info.Env().Undefined();
}

Napi::Value AdamwUpdate(const Napi::CallbackInfo& info) {
  Args a(info, "adamw_update", 12);
  int64_t n = a.count(4, "n");
  double lr = a.number(5, "lr"), beta1 = a.number(6, "beta1"), beta2 = a.number(7, "beta2");
  double eps = a.number(8, "eps"), wd = a.number(9, "weight_decay"), grad_scale = a.number(10, "grad_scale");
  int step = a.dim(11, "step", 1);
  if (!(beta1 >= 0 && beta1 < 1)) a.fail_type(6, "beta1", "a number in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) a.fail_type(7, "beta2", "a number in [0, 1)");
  if (!(eps > 0)) a.fail_type(8, "eps", "a positive number");
  if (!(lr >= 0)) a.fail_type(5, "lr", "a number >= 0");
  if (!(wd >= 0)) a.fail_type(9, "weight_decay", "a number >= 0");
  auto params = a.floats(0, "params", n);
  auto m = a.floats(1, "m", n);
  auto v = a.floats(2, "v", n);
  auto grads = a.floats(3, "grads", n);
  GPTUNE_DISPATCH(a, adamw_update, params.ptr, m.ptr, v.ptr, grads.ptr, n, static_cast<float>(lr), static_cast<float>(beta1),
                  static_cast<float>(beta2), static_cast<float>(eps), static_cast<float>(wd), static_cast<float>(grad_scale), step);
  return info.Env().Undefined();
}

Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Args a(info, "sgemm", 13);
  bool ta = a.boolean(0, "transA"), tb = a.boolean(1, "transB");
  int M = a.dim(2, "M"), N = a.dim(3, "N"), K = a.dim(4, "K");
  double alpha = a.number(5, "alpha"), beta = a.number(10, "beta");
  int lda = a.dim(7, "lda"), ldb = a.dim(9, "ldb"), ldc = a.dim(12, "ldc");
  // Row-major op(A) is (M,K): stored A is (K,M) when transposed. Each stored row must fit in its
  // leading dimension, and the last row must end inside the buffer.
  int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  if (lda < a_cols) a.fail_range("lda (" + std::to_string(lda) + ") must be at least " + std::to_string(a_cols));
  if (ldb < b_cols) a.fail_range("ldb (" + std::to_string(ldb) + ") must be at least " + std::to_string(b_cols));
  if (ldc < N) a.fail_range("ldc (" + std::to_string(ldc) + ") must be at least N (" + std::to_string(N) + ")");
  auto A = a.floats(6, "A", a.product({a_rows - 1, lda}) + a_cols);
  auto Bm = a.floats(8, "B", a.product({b_rows - 1, ldb}) + b_cols);
  auto Cm = a.floats(11, "C", a.product({M - 1, ldc}) + N);
  if (a.device() != Device::Cpu) a.fail_range("sgemm is exposed for CPU tensors only");
  cpu::sgemm(ta, tb, M, N, K, static_cast<float>(alpha), A.ptr, lda, Bm.ptr, ldb, static_cast<float>(beta), Cm.ptr, ldc);
  return info.Env().Undefined();
}

}  // namespace

Napi::Object KernelBindings(Napi::Env env) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("matmul_forward", function<MatmulForward>(env, "matmul_forward"));
  k.Set("matmul_backward", function<MatmulBackward>(env, "matmul_backward"));
  k.Set("quantize_int8", function<QuantizeInt8>(env, "quantize_int8"));
  k.Set("dequantize_int8", function<DequantizeInt8>(env, "dequantize_int8"));
  k.Set("matmul_int8_forward", function<MatmulInt8Forward>(env, "matmul_int8_forward"));
  k.Set("matmul_int8_backward", function<MatmulInt8Backward>(env, "matmul_int8_backward"));
  k.Set("quantize_nf4", function<QuantizeNf4>(env, "quantize_nf4"));
  k.Set("dequantize_nf4", function<DequantizeNf4>(env, "dequantize_nf4"));
  k.Set("matmul_nf4_forward", function<MatmulNf4Forward>(env, "matmul_nf4_forward"));
  k.Set("matmul_nf4_backward", function<MatmulNf4Backward>(env, "matmul_nf4_backward"));
  k.Set("matmul_bf16_forward", function<MatmulBf16Forward>(env, "matmul_bf16_forward"));
  k.Set("matmul_bf16_backward", function<MatmulBf16Backward>(env, "matmul_bf16_backward"));
  k.Set("convert_f32_to_bf16", function<ConvertF32ToBf16>(env, "convert_f32_to_bf16"));
  k.Set("quantize_ggml", function<QuantizeGgml>(env, "quantize_ggml"));
  k.Set("dequantize_ggml", function<DequantizeGgml>(env, "dequantize_ggml"));
  k.Set("matmul_ggml_forward", function<MatmulGgmlForward<false>>(env, "matmul_ggml_forward"));
  k.Set("matmul_ggml_backward", function<MatmulGgmlBackward<false>>(env, "matmul_ggml_backward"));
  k.Set("encoder_forward", function<EncoderForward>(env, "encoder_forward"));
  k.Set("encoder_backward", function<EncoderBackward>(env, "encoder_backward"));
  k.Set("layernorm_forward", function<LayernormForward>(env, "layernorm_forward"));
  k.Set("layernorm_backward", function<LayernormBackward>(env, "layernorm_backward"));
  k.Set("gelu_forward", function<GeluForward>(env, "gelu_forward"));
  k.Set("gelu_backward", function<GeluBackward>(env, "gelu_backward"));
  k.Set("residual_forward", function<ResidualForward>(env, "residual_forward"));
  k.Set("dropout_forward", function<DropoutForward>(env, "dropout_forward"));
  k.Set("dropout_backward", function<DropoutBackward>(env, "dropout_backward"));
  k.Set("add_inplace", function<AddInplace>(env, "add_inplace"));
  k.Set("scale_inplace", function<ScaleInplace>(env, "scale_inplace"));
  k.Set("fill", function<Fill>(env, "fill"));
  k.Set("sum_squares", function<SumSquares>(env, "sum_squares"));
  k.Set("attention_forward", function<AttentionForward>(env, "attention_forward"));
  k.Set("attention_backward", function<AttentionBackward>(env, "attention_backward"));
  k.Set("attention_cached_forward", function<AttentionCachedForward>(env, "attention_cached_forward"));
  k.Set("attention_cached_rows_forward", function<AttentionCachedRowsForward>(env, "attention_cached_rows_forward"));
  k.Set("rmsnorm_forward", function<RmsnormForward>(env, "rmsnorm_forward"));
  k.Set("rmsnorm_backward", function<RmsnormBackward>(env, "rmsnorm_backward"));
  k.Set("qknorm_forward", function<QknormForward>(env, "qknorm_forward"));
  k.Set("qknorm_backward", function<QknormBackward>(env, "qknorm_backward"));
  k.Set("rope_forward", function<Rope<false>>(env, "rope_forward"));
  k.Set("rope_backward", function<Rope<true>>(env, "rope_backward"));
  k.Set("swiglu_forward", function<SwigluForward>(env, "swiglu_forward"));
  k.Set("swiglu_backward", function<SwigluBackward>(env, "swiglu_backward"));
  k.Set("lora_forward", function<LoraForward>(env, "lora_forward"));
  k.Set("lora_backward", function<LoraBackward>(env, "lora_backward"));
  k.Set("crossentropy_forward", function<CrossentropyForward>(env, "crossentropy_forward"));
  k.Set("crossentropy_backward", function<CrossentropyBackward>(env, "crossentropy_backward"));
  k.Set("softmax_forward", function<SoftmaxForward>(env, "softmax_forward"));
  k.Set("adamw_update", function<AdamwUpdate>(env, "adamw_update"));
  return k;
}

Napi::Function SgemmBinding(Napi::Env env) { return function<Sgemm>(env, "sgemm"); }

Napi::Object GgmlReferenceBindings(Napi::Env env) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("matmul_ggml_forward", function<MatmulGgmlForward<true>>(env, "matmul_ggml_forward_reference"));
  r.Set("matmul_ggml_backward", function<MatmulGgmlBackward<true>>(env, "matmul_ggml_backward_reference"));
  return r;
}

}  // namespace gptune::napi
