// cuBLASLt, loaded at run time with dlopen(), as the second implementation of the bf16 matrix
// products (matmul.cu keeps its own tensor-core kernel as the first, and the fp32 path).
//
// Why dlopen: the addon must build where no cuBLAS is installed (no headers, no libraries) and load
// where the GPU machine has none; so there is no #include <cublasLt.h> and no link dependency.
// The few types, enum values and function signatures we use are declared below, each with where
// it comes from. The numbering of these enums is part of cuBLAS's ABI (NVIDIA appends, never
// renumbers), so one set of values serves libcublasLt.so.12 and .so.13.
//
// Row-major via the column-major identity: cuBLASLt is column-major, and a row-major (R,C) matrix
// with leading dimension ld is, read column-major, its transpose (C,R) with the same ld. So the
// row-major C (M,N) = op(A) op(B) is computed as the column-major C^T (N,M) = op(B)^T op(A)^T:
// cuBLASLt's "A" is our B and its "B" is our A, m = N, n = M, k = K.
#include "dl_symbol.h"

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#ifndef GPTUNE_CUDA_EMULATE
#include <dlfcn.h>
#include <library_types.h>  // cudaDataType: CUDA_R_16BF = 14, CUDA_R_32F = 0 (ships with nvcc)
#endif

#include "common.cuh"
#include "cublaslt.h"
#include "gptune/cuda_options.h"

namespace gptune::cuda {

namespace {

// ---------------------------------------------------------------------------------------------
// Backend setting.
MatmulBackend g_backend = MatmulBackend::Auto;
bool g_backend_known = false;  // false until GPTUNE_CUDA_MATMUL was read or set_matmul_backend called

const char* setting_name(MatmulBackend b) {
  return b == MatmulBackend::Native ? "native" : b == MatmulBackend::CublasLt ? "cublaslt" : "auto";
}

MatmulBackend backend_setting() {
  if (!g_backend_known) {
    const char* env = std::getenv("GPTUNE_CUDA_MATMUL");
    const std::string value = env ? env : "";
    if (value.empty() || value == "auto") g_backend = MatmulBackend::Auto;
    else if (value == "native") g_backend = MatmulBackend::Native;
    else if (value == "cublaslt") g_backend = MatmulBackend::CublasLt;
    else  // stays unknown: every matmul reports it until the variable or the setting is fixed
      throw Error("GPTUNE_CUDA_MATMUL: expected auto, native or cublaslt but received '" + value + "'");
    g_backend_known = true;
  }
  return g_backend;
}

#ifndef GPTUNE_CUDA_EMULATE
// ---------------------------------------------------------------------------------------------
// Our declarations of the cuBLASLt subset we call. Sources: NVIDIA's cublasLt.h (CUDA 12.6) and
// cublas_api.h (CUDA 13.0, CUBLAS_VER 13.0.0), as published in the toolkit, and the cuBLAS
// documentation (docs.nvidia.com/cuda/cublas, "cuBLASLt API Reference").
namespace lt {
using Status = int;               // cublasStatus_t (an enum): CUBLAS_STATUS_SUCCESS = 0 (cublas_api.h)
constexpr Status kSuccess = 0;
struct Context;                   // cublasLt.h: typedef struct cublasLtContext* cublasLtHandle_t
using Handle = Context*;
// cublasLt.h: cublasLtMatmulDesc_t = cublasLtMatmulDescOpaque_t*, cublasLtMatrixLayout_t =
// cublasLtMatrixLayoutOpaque_t*, cublasLtMatmulPreference_t = cublasLtMatmulPreferenceOpaque_t*:
// pointers to structs we never look inside, created and destroyed by the library.
using MatmulDesc = void*;
using Layout = void*;
using Preference = void*;
// cublasLt.h: typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
struct Algo {
  uint64_t data[8];
};
// cublasLt.h: cublasLtMatmulHeuristicResult_t { cublasLtMatmulAlgo_t algo; size_t workspaceSize;
// cublasStatus_t state; float wavesCount; int reserved[4]; }
struct HeuristicResult {
  Algo algo;
  size_t workspace_size;
  Status state;
  float waves_count;
  int reserved[4];
};
static_assert(sizeof(HeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 64 + 8 + 4 + 4 + 16 bytes");

constexpr int kCompute32F = 68;         // cublasComputeType_t CUBLAS_COMPUTE_32F (cublas_api.h)
constexpr int32_t kOpN = 0, kOpT = 1;   // cublasOperation_t CUBLAS_OP_N, CUBLAS_OP_T (cublas_api.h)
// cublasLtMatmulDescAttributes_t (cublasLt.h); the value types the library checks sizes against:
constexpr int kDescTransA = 3;          // int32_t
constexpr int kDescTransB = 4;          // int32_t
constexpr int kDescEpilogue = 7;        // uint32_t
constexpr int kDescBiasPointer = 8;     // const void*; bias length = rows of D; type = D's (fp32 here)
// cublasLtEpilogue_t (cublasLt.h)
constexpr uint32_t kEpilogueDefault = 1;  // CUBLASLT_EPILOGUE_DEFAULT
constexpr uint32_t kEpilogueBias = 4;     // CUBLASLT_EPILOGUE_BIAS: D += bias broadcast over columns
// cublasLtMatmulPreferenceAttributes_t (cublasLt.h)
constexpr int kPrefMaxWorkspaceBytes = 1;  // uint64_t
constexpr int kPrefMinAlignmentA = 5;      // uint32_t each, default 256: an algorithm chosen under the
constexpr int kPrefMinAlignmentB = 6;      // default may need 256-byte aligned pointers, which views
constexpr int kPrefMinAlignmentC = 7;      // at arbitrary float offsets are not, so we state the
constexpr int kPrefMinAlignmentD = 8;      // real alignment
// cudaDataType (library_types.h)
constexpr cudaDataType kBF16 = CUDA_R_16BF;
constexpr cudaDataType kF32 = CUDA_R_32F;

// Signatures as declared in cublasLt.h (enum parameters are C enums, passed as int).
struct Api {
  Status (*create)(Handle*);                                                        // cublasLtCreate
  size_t (*get_version)();                                                          // cublasLtGetVersion
  Status (*desc_create)(MatmulDesc*, int compute_type, cudaDataType scale_type);    // cublasLtMatmulDescCreate
  Status (*desc_destroy)(MatmulDesc);                                               // cublasLtMatmulDescDestroy
  Status (*desc_set)(MatmulDesc, int attribute, const void* value, size_t bytes);   // cublasLtMatmulDescSetAttribute
  Status (*layout_create)(Layout*, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld);  // cublasLtMatrixLayoutCreate
  Status (*layout_destroy)(Layout);                                                 // cublasLtMatrixLayoutDestroy
  Status (*preference_create)(Preference*);                                         // cublasLtMatmulPreferenceCreate
  Status (*preference_destroy)(Preference);                                         // cublasLtMatmulPreferenceDestroy
  Status (*preference_set)(Preference, int attribute, const void* value, size_t bytes);  // cublasLtMatmulPreferenceSetAttribute
  Status (*heuristic)(Handle, MatmulDesc, Layout a, Layout b, Layout c, Layout d, Preference, int requested,
                      HeuristicResult* results, int* returned);                     // cublasLtMatmulAlgoGetHeuristic
  Status (*matmul)(Handle, MatmulDesc, const void* alpha, const void* a, Layout, const void* b, Layout,
                   const void* beta, const void* c, Layout, void* d, Layout, const Algo*, void* workspace,
                   size_t workspace_bytes, cudaStream_t);                           // cublasLtMatmul
};
}  // namespace lt

// cuBLAS's recommended workspace on Hopper (cublasSetWorkspace docs: 32 MiB; 4 MiB before Hopper).
constexpr size_t kWorkspaceBytes = 32u << 20;

struct Library {
  bool loaded = false;
  std::string path, reason;
  long long version = 0;
  lt::Api api{};
};


// Tries $GPTUNE_CUBLASLT, libcublasLt.so.13, .so.12, .so in that order; the first that opens and
// has every symbol wins. Never throws; on failure `reason` lists what each candidate said.
void load(Library& lib) {
  std::string candidates[4];
  int count = 0;
  if (const char* env = std::getenv("GPTUNE_CUBLASLT"); env && *env) candidates[count++] = env;
  for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) candidates[count++] = name;
  std::string reasons;
  for (int i = 0; i < count; ++i) {
    const std::string& name = candidates[i];
    void* so = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!so) {
      const char* error = dlerror();
      reasons += (reasons.empty() ? "" : "; ") + std::string(error ? error : (name + ": dlopen failed"));
      continue;
    }
    lt::Api api{};
    std::string missing;
    resolve_symbol(so, "cublasLtCreate", api.create, missing);
    resolve_symbol(so, "cublasLtGetVersion", api.get_version, missing);
    resolve_symbol(so, "cublasLtMatmulDescCreate", api.desc_create, missing);
    resolve_symbol(so, "cublasLtMatmulDescDestroy", api.desc_destroy, missing);
    resolve_symbol(so, "cublasLtMatmulDescSetAttribute", api.desc_set, missing);
    resolve_symbol(so, "cublasLtMatrixLayoutCreate", api.layout_create, missing);
    resolve_symbol(so, "cublasLtMatrixLayoutDestroy", api.layout_destroy, missing);
    resolve_symbol(so, "cublasLtMatmulPreferenceCreate", api.preference_create, missing);
    resolve_symbol(so, "cublasLtMatmulPreferenceDestroy", api.preference_destroy, missing);
    resolve_symbol(so, "cublasLtMatmulPreferenceSetAttribute", api.preference_set, missing);
    resolve_symbol(so, "cublasLtMatmulAlgoGetHeuristic", api.heuristic, missing);
    resolve_symbol(so, "cublasLtMatmul", api.matmul, missing);
    if (!missing.empty()) {
      reasons += (reasons.empty() ? "" : "; ") + name + ": lacks " + missing;
      dlclose(so);
      continue;
    }
    lib.loaded = true;
    lib.path = name;
    lib.version = static_cast<long long>(api.get_version());
    lib.api = api;
    lib.reason.clear();
    return;  // never dlclose()d: descriptors and cached plans live as long as the process
  }
  lib.reason = reasons;
}

Library& library() {
  static Library lib;
  static std::once_flag once;
  std::call_once(once, [] { load(lib); });
  return lib;
}

const char* status_name(lt::Status s) {
  switch (s) {  // cublasStatus_t (cublas_api.h, CUDA 13.0)
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "an unknown cuBLAS status";
  }
}

void check(lt::Status s, const char* call) {
  if (s != lt::kSuccess) throw Error(std::string("cuBLASLt: ") + call + " failed with " + status_name(s) + " (" + std::to_string(s) + ")");
}

// Largest power of two (at most 256) dividing the address: what to promise the heuristic.
uint32_t alignment_of(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

// One handle per device (created on first use there; kept for the process's lifetime).
lt::Handle handle_for_current_device() {
  static lt::Handle handles[64] = {};
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= 64) throw Error("cuBLASLt: CUDA device index " + std::to_string(device) + " is beyond the 64 gptune supports");
  if (!handles[device]) check(library().api.create(&handles[device]), "cublasLtCreate");
  return handles[device];
}

// A matmul descriptor, layouts and the heuristic's algorithm for one problem (shape, transposes,
// leading dimensions, pointer alignments, bias or not), built once and reused: building costs
// tens of microseconds of host time, more than a small GEMM takes on the device.
struct Plan {
  bool usable = false;      // the heuristic found an algorithm
  bool bias_fused = false;  // through CUBLASLT_EPILOGUE_BIAS (else a separate kernel adds it)
  lt::MatmulDesc desc = nullptr;
  lt::Layout a = nullptr, b = nullptr, c = nullptr;  // cuBLASLt's A (our B), B (our A), C = D
  lt::Algo algo{};
};
using PlanKey = std::array<long long, 14>;

// Asks the heuristic for its best algorithm; false when it has none.
bool choose_algorithm(Plan& plan, const void* a, const void* b, const void* c) {
  const lt::Api& api = library().api;
  lt::Preference preference = nullptr;
  check(api.preference_create(&preference), "cublasLtMatmulPreferenceCreate");
  const uint64_t workspace = kWorkspaceBytes;
  const uint32_t align_a = alignment_of(a), align_b = alignment_of(b), align_c = alignment_of(c);
  lt::Status s = api.preference_set(preference, lt::kPrefMaxWorkspaceBytes, &workspace, sizeof workspace);
  if (s == lt::kSuccess) s = api.preference_set(preference, lt::kPrefMinAlignmentA, &align_a, sizeof align_a);
  if (s == lt::kSuccess) s = api.preference_set(preference, lt::kPrefMinAlignmentB, &align_b, sizeof align_b);
  if (s == lt::kSuccess) s = api.preference_set(preference, lt::kPrefMinAlignmentC, &align_c, sizeof align_c);
  if (s == lt::kSuccess) s = api.preference_set(preference, lt::kPrefMinAlignmentD, &align_c, sizeof align_c);
  lt::HeuristicResult result{};
  int returned = 0;
  lt::Status found = s == lt::kSuccess
      ? api.heuristic(handle_for_current_device(), plan.desc, plan.a, plan.b, plan.c, plan.c, preference, 1, &result, &returned)
      : s;
  api.preference_destroy(preference);
  check(s, "cublasLtMatmulPreferenceSetAttribute");
  // NOT_SUPPORTED (no heuristic for this configuration) and zero results both mean "not here".
  if (found != lt::kSuccess || returned < 1 || result.state != lt::kSuccess) return false;
  plan.algo = result.algo;
  return true;
}

Plan build_plan(bool a_k_contig, bool b_k_contig, int M, int N, int K, int lda, int ldb, int ldc,
                const void* A, const void* B, const void* C, const float* bias) {
  const lt::Api& api = library().api;
  Plan plan;
  check(api.desc_create(&plan.desc, lt::kCompute32F, lt::kF32), "cublasLtMatmulDescCreate");
  // cuBLASLt's A = op(B)^T (N,K): our B stored (N,K) row-major reads column-major as (K,N), so it
  // needs a transpose; stored (K,N) it reads as (N,K) already.
  const int32_t trans_a = b_k_contig ? lt::kOpT : lt::kOpN;
  // cuBLASLt's B = op(A)^T (K,M): our A stored (M,K) reads as (K,M); stored (K,M) it reads as (M,K).
  const int32_t trans_b = a_k_contig ? lt::kOpN : lt::kOpT;
  check(api.desc_set(plan.desc, lt::kDescTransA, &trans_a, sizeof trans_a), "cublasLtMatmulDescSetAttribute(TRANSA)");
  check(api.desc_set(plan.desc, lt::kDescTransB, &trans_b, sizeof trans_b), "cublasLtMatmulDescSetAttribute(TRANSB)");
  // Layouts describe the stored matrices (before the transposes), column-major.
  check(api.layout_create(&plan.a, lt::kBF16, b_k_contig ? K : N, b_k_contig ? N : K, ldb), "cublasLtMatrixLayoutCreate(A)");
  check(api.layout_create(&plan.b, lt::kBF16, a_k_contig ? K : M, a_k_contig ? M : K, lda), "cublasLtMatrixLayoutCreate(B)");
  check(api.layout_create(&plan.c, lt::kF32, N, M, ldc), "cublasLtMatrixLayoutCreate(C)");
  if (bias) {
    // The heuristic reads the bias pointer's value (not its data) to learn its alignment.
    const uint32_t epilogue = lt::kEpilogueBias;
    check(api.desc_set(plan.desc, lt::kDescEpilogue, &epilogue, sizeof epilogue), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
    check(api.desc_set(plan.desc, lt::kDescBiasPointer, &bias, sizeof bias), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
    plan.bias_fused = plan.usable = choose_algorithm(plan, B, A, C);
    if (plan.usable) return plan;
    const uint32_t plain = lt::kEpilogueDefault;  // no fused bias for this problem: add it separately
    check(api.desc_set(plan.desc, lt::kDescEpilogue, &plain, sizeof plain), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
  }
  plan.usable = choose_algorithm(plan, B, A, C);
  return plan;
}

// C (M,N) row-major, leading dimension ldc: every row += bias (N).
__global__ void add_bias_rows_kernel(float* C, int ldc, const float* bias, int M, int N) {
  const long long total = static_cast<long long>(M) * N;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const long long row = i / N;
    const int col = static_cast<int>(i % N);
    C[row * ldc + col] += bias[col];
  }
}
#endif  // GPTUNE_CUDA_EMULATE

}  // namespace

void set_matmul_backend(int backend) {
  if (backend < 0 || backend > 2)
    throw Error("set_matmul_backend: expected 0 (auto), 1 (native) or 2 (cublaslt) but received " + std::to_string(backend));
  const auto wanted = static_cast<MatmulBackend>(backend);
  if (wanted == MatmulBackend::CublasLt) {
    const CublasLtInfo info = cublaslt_info();
    if (!info.loaded) throw Error("matmul backend 'cublaslt': cuBLASLt could not be loaded (" + info.reason + ")");
  }
  g_backend = wanted;
  g_backend_known = true;
}

const char* matmul_backend_setting() { return setting_name(backend_setting()); }

const char* matmul_backend_name() { return matmul_uses_cublaslt() ? "cublaslt" : "native"; }

CublasLtInfo cublaslt_info() {
#ifdef GPTUNE_CUDA_EMULATE
  return {false, "", 0, "the CPU emulator build has no cuBLASLt"};
#else
  const Library& lib = library();
  return {lib.loaded, lib.path, lib.version, lib.reason};
#endif
}

bool matmul_uses_cublaslt() {
  const MatmulBackend b = backend_setting();
  if (b == MatmulBackend::Native) return false;
  const CublasLtInfo info = cublaslt_info();
  if (b == MatmulBackend::CublasLt && !info.loaded)
    throw Error("GPTUNE_CUDA_MATMUL=cublaslt: cuBLASLt could not be loaded (" + info.reason + ")");
  return info.loaded;
}

bool cublaslt_gemm_bf16(bool a_k_contig, bool b_k_contig, int M, int N, int K, float alpha, const __nv_bfloat16* A,
                        int lda, const __nv_bfloat16* B, int ldb, float beta, float* C, int ldc, const float* bias) {
#ifdef GPTUNE_CUDA_EMULATE
  return false;
#else
  static std::mutex mutex;
  static std::map<PlanKey, Plan> plans;
  const lt::Api& api = library().api;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const PlanKey key = {device, a_k_contig, b_k_contig, M, N, K, lda, ldb, ldc, bias != nullptr,
                       alignment_of(A), alignment_of(B), alignment_of(C), bias ? alignment_of(bias) : 0};
  std::lock_guard<std::mutex> lock(mutex);
  auto found = plans.find(key);
  if (found == plans.end()) found = plans.emplace(key, build_plan(a_k_contig, b_k_contig, M, N, K, lda, ldb, ldc, A, B, C, bias)).first;
  const Plan& plan = found->second;
  if (!plan.usable) {
    if (backend_setting() == MatmulBackend::CublasLt)
      throw Error("cuBLASLt has no algorithm for this matmul (M=" + std::to_string(M) + ", N=" + std::to_string(N) +
                  ", K=" + std::to_string(K) + "); use the matmul backend 'auto' or 'native'");
    return false;
  }
  if (plan.bias_fused)  // the pointer differs from call to call; its alignment is part of the key
    check(api.desc_set(plan.desc, lt::kDescBiasPointer, &bias, sizeof bias), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
  void* workspace = scratch(Scratch::MatmulWorkspace, kWorkspaceBytes);
  check(api.matmul(handle_for_current_device(), plan.desc, &alpha, B, plan.a, A, plan.b, &beta, C, plan.c, C, plan.c,
                   &plan.algo, workspace, kWorkspaceBytes, stream()),
        "cublasLtMatmul");
  if (bias && !plan.bias_fused) {
    const int threads = 256;
    launch(add_bias_rows_kernel, dim3(grid_for(static_cast<long long>(M) * N, threads)), dim3(threads), 0, C, ldc, bias, M, N);
  }
  return true;
#endif
}

}  // namespace gptune::cuda
