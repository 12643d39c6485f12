// llama.cpp's own quantizer and ggml's own dequantizers (node-llama-cpp's prebuilt libllama and
// libggml-base) as a command for test/gguf/llama_quantize.test.ts:
//   llama_quantize IN.gguf OUT.gguf FTYPE      llama_model_quantize, the core of the llama-quantize tool
//                                              (FTYPE: llama_ftype, e.g. 2 Q4_0, 7 Q8_0, 15 Q4_K_M);
//                                              default parameters (no importance matrix, not pure,
//                                              output tensor quantized), one thread
//   llama_quantize dequantize TYPE N IN OUT    N values of ggml type TYPE (2 Q4_0, 6 Q5_0, 8 Q8_0,
//                                              12 Q4_K, 13 Q5_K, 14 Q6_K): blocks read from IN, float32 to OUT
// compiled by the test against the libraries, with the prototypes and the parameter struct declared
// here from include/llama.h and ggml/src/ggml-quants.h of the release node-llama-cpp ships (v0.4.0).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" {
// llama.h: struct llama_model_quantize_params (the enums are int-sized).
struct llama_model_quantize_params {
  int32_t nthread;
  int32_t ftype;
  int32_t output_tensor_type;
  int32_t token_embedding_type;
  bool allow_requantize;
  bool quantize_output_tensor;
  bool only_copy;
  bool pure;
  bool keep_split;
  bool dry_run;
  const void* imatrix;
  const void* kv_overrides;
  const void* tt_overrides;
  const int32_t* prune_layers;
  size_t max_buf_size;
};
llama_model_quantize_params llama_model_quantize_default_params(void);
uint32_t llama_model_quantize(const char* fname_inp, const char* fname_out, const llama_model_quantize_params* params);
void llama_backend_init(void);
// ggml-quants.h (the block pointers taken as void: the bytes are the file's).
void dequantize_row_q4_0(const void* x, float* y, int64_t k);
void dequantize_row_q5_0(const void* x, float* y, int64_t k);
void dequantize_row_q8_0(const void* x, float* y, int64_t k);
void dequantize_row_q4_K(const void* x, float* y, int64_t k);
void dequantize_row_q5_K(const void* x, float* y, int64_t k);
void dequantize_row_q6_K(const void* x, float* y, int64_t k);
}

static int dequantize(int type, long n, const char* in, const char* out) {
  void (*row)(const void*, float*, int64_t) = nullptr;
  switch (type) {
    case 2: row = dequantize_row_q4_0; break;
    case 6: row = dequantize_row_q5_0; break;
    case 8: row = dequantize_row_q8_0; break;
    case 12: row = dequantize_row_q4_K; break;
    case 13: row = dequantize_row_q5_K; break;
    case 14: row = dequantize_row_q6_K; break;
    default: std::fprintf(stderr, "unknown type %d\n", type); return 2;
  }
  std::FILE* f = std::fopen(in, "rb");
  if (!f) return 1;
  std::fseek(f, 0, SEEK_END);
  long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  unsigned char* blocks = static_cast<unsigned char*>(std::malloc(size));
  float* values = static_cast<float*>(std::malloc(n * sizeof(float)));
  if (std::fread(blocks, 1, size, f) != static_cast<size_t>(size)) return 1;
  std::fclose(f);
  row(blocks, values, n);
  std::FILE* g = std::fopen(out, "wb");
  if (!g || std::fwrite(values, sizeof(float), n, g) != static_cast<size_t>(n)) return 1;
  std::fclose(g);
  std::free(blocks);
  std::free(values);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "dequantize") return dequantize(std::atoi(argv[2]), std::atol(argv[3]), argv[4], argv[5]);
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s IN.gguf OUT.gguf FTYPE | dequantize TYPE N IN OUT\n", argv[0]);
    return 2;
  }
  llama_backend_init();
  llama_model_quantize_params params = llama_model_quantize_default_params();
  params.ftype = std::atoi(argv[3]);
  params.nthread = 1;
  return llama_model_quantize(argv[1], argv[2], &params) == 0 ? 0 : 1;
}
