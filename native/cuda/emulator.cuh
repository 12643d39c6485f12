// A CPU emulator for the subset of CUDA that gptune's kernels use, so the kernels' indexing, tiling,
// barriers and warp-collective code can be checked on machines without a GPU (this one has nvcc but
// no device). Compiled only with -DGPTUNE_CUDA_EMULATE by the harness test/gpu/emulated_kernels.cc;
// never part of the addon.
//
// Model: one CUDA block at a time; each CUDA thread of the block is a ucontext fiber on one OS
// thread, switched only at barriers (__syncthreads, warp collectives), so `__shared__` variables can
// be plain statics. Two knobs widen what it catches:
//   GPTUNE_EMU_ORDER=reverse   run the fibers of a block in reverse order between barriers, so a
//                              read that misses a barrier sees stale data in one of the two orders;
//   GPTUNE_EMU_CP_ASYNC=late   perform cp.async copies only when cp.async.wait_group forces them
//                              (=early performs them at issue), so a missing wait reads stale tiles.
// Warp collectives (shuffles, ldmatrix, mma.sync) exchange values through a per-warp buffer between
// two warp barriers; a lane that skips a collective deadlocks, and the scheduler reports it.
// Dynamic shared memory is filled with 0xFF (NaN in fp32 and bf16) before each block, device
// allocations too, so a read of something nothing wrote shows up as NaN in the outputs.
#pragma once
#ifndef GPTUNE_CUDA_EMULATE
#error "emulator.cuh is only for GPTUNE_CUDA_EMULATE builds"
#endif

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define GPTUNE_EMU_ASAN 1
#endif

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__

// ---- vector types ----
struct uint3 { unsigned x = 0, y = 0, z = 0; };
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) int4 { int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ---- bf16 (storage + round-to-nearest-even conversion, as __float2bfloat16_rn) ----
struct __nv_bfloat16 { uint16_t bits; };
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<uint16_t>(u >> 16)};
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return {u}; }
inline float __bfloat162float(__nv_bfloat16 b) {
  uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- math intrinsics (host equivalents; the device versions are approximations within a few ulp) ----
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <typename T> inline T __ldg(const T* p) { return *p; }

// ---- runtime API subset ----
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorNoDevice = 100 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
typedef struct CUstream_st* cudaStream_t;
constexpr unsigned cudaStreamNonBlocking = 1;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor;
  int multiProcessorCount;
};
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
  }
  return "unknown error";
}
inline const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }

namespace emu {
// A small multiprocessor count, so grid-stride loops and per-block partial sums run several rounds.
constexpr int kMultiprocessors = 3;
constexpr size_t kTotalMemory = size_t(4) << 30;
inline size_t& allocated_bytes() { static size_t n = 0; return n; }
}  // namespace emu

inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::snprintf(p->name, sizeof p->name, "gptune CUDA emulator");
  p->totalGlobalMem = emu::kTotalMemory;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = emu::kMultiprocessors;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? emu::kMultiprocessors : 227 * 1024;
  return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  *total = emu::kTotalMemory;
  *free_bytes = emu::kTotalMemory - emu::allocated_bytes();
  return cudaSuccess;
}
// Allocations are 256-byte aligned like cudaMalloc's; the size sits in the header in front of the
// returned pointer. Exact size at the end (no rounding) so AddressSanitizer flags any read past it.
constexpr size_t kAllocHeader = 256;
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (bytes > emu::kTotalMemory - emu::allocated_bytes()) return cudaErrorMemoryAllocation;
  void* base = nullptr;
  if (posix_memalign(&base, kAllocHeader, kAllocHeader + bytes) != 0) return cudaErrorMemoryAllocation;
  *static_cast<size_t*>(base) = bytes;
  *p = static_cast<char*>(base) + kAllocHeader;
  std::memset(*p, 0xFF, bytes);  // NaN poison: reads of never-written memory show up in results
  emu::allocated_bytes() += bytes;
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  char* base = static_cast<char*>(p) - kAllocHeader;
  emu::allocated_bytes() -= *reinterpret_cast<size_t*>(base);
  std::free(base);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t = nullptr) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k) { return cudaMemcpyAsync(dst, src, bytes, k); }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t = nullptr) {
  if (bytes) std::memset(p, v, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static int dummy;
  *s = reinterpret_cast<cudaStream_t>(&dummy);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
template <typename F> inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }

// ---- the block scheduler ----
namespace emu {

struct CopyJob {
  void* dst;
  const void* src;
  int src_bytes;
};

struct Barrier {
  int expected = 0;
  int arrived = 0;
  unsigned generation = 0;
};

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  uint3 thread_idx;
  int lane = 0, warp = 0;
  bool done = false;
  std::vector<CopyJob> open_group;                 // cp.async copies since the last commit
  std::vector<std::vector<CopyJob>> pending;       // committed groups, oldest first
};

struct WarpState {
  Barrier barrier;
  uint64_t exchange[32][16];  // per-lane staging for collectives
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<WarpState> warps;
  Barrier barrier;
  ucontext_t scheduler;
  uint3 block_idx;
  dim3 block_dim, grid_dim;
  const std::function<void()>* body = nullptr;
  std::vector<unsigned char> dynamic_smem;
  Fiber* current = nullptr;
  bool progressed = false;
#ifdef GPTUNE_EMU_ASAN
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
#endif
};

inline Block& block() {
  static Block b;
  return b;
}
inline Fiber& current() { return *block().current; }

inline bool reverse_order() {
  static int v = [] { const char* e = std::getenv("GPTUNE_EMU_ORDER"); return e && std::strcmp(e, "reverse") == 0 ? 1 : 0; }();
  return v != 0;
}
inline bool late_copies() {
  static int v = [] { const char* e = std::getenv("GPTUNE_EMU_CP_ASYNC"); return e && std::strcmp(e, "early") == 0 ? 0 : 1; }();
  return v != 0;
}

inline void switch_to_scheduler() {
  Block& b = block();
#ifdef GPTUNE_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, b.scheduler_stack_bottom, b.scheduler_stack_size);
#endif
  swapcontext(&b.current->context, &b.scheduler);
#ifdef GPTUNE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

inline void barrier_wait(Barrier& bar) {
  Block& b = block();
  unsigned generation = bar.generation;
  b.progressed = true;
  if (++bar.arrived == bar.expected) {
    bar.arrived = 0;
    ++bar.generation;
    return;
  }
  while (bar.generation == generation) switch_to_scheduler();
}

inline void cp_async_commit();
inline void cp_async_wait(int allowed_pending);

inline void fiber_entry() {
  Block& b = block();
#ifdef GPTUNE_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack_bottom, &b.scheduler_stack_size);
#endif
  (*b.body)();
  Fiber& f = current();
  // A kernel that exits with copies in flight is legal only if nothing reads them; perform them.
  cp_async_commit();
  cp_async_wait(0);
  f.done = true;
  b.progressed = true;
#ifdef GPTUNE_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, b.scheduler_stack_bottom, b.scheduler_stack_size);
#endif
  // Returning switches to uc_link (the scheduler).
}

inline void run_grid(dim3 grid, dim3 block_dim, size_t smem_bytes, const std::function<void()>& body) {
  Block& b = block();
  const int threads = static_cast<int>(block_dim.x * block_dim.y * block_dim.z);
  if (threads <= 0 || threads > 1024) {
    std::fprintf(stderr, "emulator: bad block size %d\n", threads);
    std::abort();
  }
  if (smem_bytes > 227 * 1024) {
    std::fprintf(stderr, "emulator: %zu bytes of dynamic shared memory exceeds the 227 KiB limit\n", smem_bytes);
    std::abort();
  }
  constexpr size_t kStack = 256 * 1024;
  b.fibers.resize(threads);
  b.warps.resize((threads + 31) / 32);
  b.block_dim = block_dim;
  b.grid_dim = grid;
  b.body = &body;
  b.dynamic_smem.assign(smem_bytes + 16, 0xFF);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.block_idx = {bx, by, bz};
        std::memset(b.dynamic_smem.data(), 0xFF, b.dynamic_smem.size());
        b.barrier = Barrier{threads, 0, 0};
        for (size_t w = 0; w < b.warps.size(); ++w)
          b.warps[w].barrier = Barrier{std::min(32, threads - static_cast<int>(w) * 32), 0, 0};
        for (int t = 0; t < threads; ++t) {
          Fiber& f = b.fibers[t];
          f.stack.resize(kStack);
          f.thread_idx = {t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
          f.lane = t % 32;
          f.warp = t / 32;
          f.done = false;
          f.open_group.clear();
          f.pending.clear();
          getcontext(&f.context);
          f.context.uc_stack.ss_sp = f.stack.data();
          f.context.uc_stack.ss_size = kStack;
          f.context.uc_link = &b.scheduler;
          makecontext(&f.context, fiber_entry, 0);
        }
        for (;;) {
          bool alive = false;
          b.progressed = false;
          for (int i = 0; i < threads; ++i) {
            Fiber& f = b.fibers[reverse_order() ? threads - 1 - i : i];
            if (f.done) continue;
            alive = true;
            b.current = &f;
#ifdef GPTUNE_EMU_ASAN
            void* fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, f.stack.data(), kStack);
#endif
            swapcontext(&b.scheduler, &f.context);
#ifdef GPTUNE_EMU_ASAN
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
          }
          if (!alive) break;
          if (!b.progressed) {
            std::fprintf(stderr, "emulator: deadlock in block (%u,%u,%u): threads wait at barriers that others never reach\n", bx, by, bz);
            std::abort();
          }
        }
      }
  b.current = nullptr;
}

// ---- warp collectives ----
inline WarpState& my_warp() { return block().warps[current().warp]; }

// Every lane publishes v, then reads the value of lane `src`; a source outside the caller's
// width segment (or past a partial warp) returns the caller's own value, as the hardware does.
template <typename T>
inline T shuffle(T v, int src, int width) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  WarpState& w = my_warp();
  const int lane = current().lane;
  std::memcpy(&w.exchange[lane][0], &v, sizeof(T));
  barrier_wait(w.barrier);
  const int segment = lane / width * width;
  if (src < segment || src >= segment + width || src >= w.barrier.expected) src = lane;
  T r;
  std::memcpy(&r, &w.exchange[src][0], sizeof(T));
  barrier_wait(w.barrier);
  return r;
}

}  // namespace emu

#define threadIdx (::emu::current().thread_idx)
#define blockIdx (::emu::block().block_idx)
#define blockDim (::emu::block().block_dim)
#define gridDim (::emu::block().grid_dim)

inline void __syncthreads() { emu::barrier_wait(emu::block().barrier); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::barrier_wait(emu::my_warp().barrier); }
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  return emu::shuffle(v, emu::current().lane ^ mask, width);
}
template <typename T> inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  return emu::shuffle(v, emu::current().lane + static_cast<int>(delta), width);
}
template <typename T> inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  return emu::shuffle(v, emu::current().lane / width * width + src % width, width);
}
inline float atomicAdd(float* p, float v) { float old = *p; *p = old + v; return old; }
inline double atomicAdd(double* p, double v) { double old = *p; *p = old + v; return old; }

namespace emu {
// The dynamic shared memory of the running block (extern __shared__ on the device).
inline unsigned char* dynamic_smem() { return block().dynamic_smem.data(); }

// cp.async.cg.shared.global [dst], [src], 16, src_bytes: copies src_bytes (0 or 16) and zero-fills.
inline void cp_async_16(void* dst, const void* src, int src_bytes) {
  if (reinterpret_cast<uintptr_t>(dst) % 16 || (src_bytes && reinterpret_cast<uintptr_t>(src) % 16)) {
    std::fprintf(stderr, "emulator: cp.async with a misaligned address (dst %p, src %p)\n", dst, src);
    std::abort();
  }
  std::memset(dst, 0, 16);  // the zero fill happens at completion on the device; here at issue
  if (late_copies()) {
    // Poison until the copy completes, so a read before the wait sees NaN.
    std::memset(dst, 0xFF, 16);
    current().open_group.push_back({dst, src, src_bytes});
  } else {
    if (src_bytes) std::memcpy(dst, src, src_bytes);
  }
}
inline void cp_async_commit() {
  Fiber& f = current();
  f.pending.push_back(std::move(f.open_group));
  f.open_group.clear();
}
inline void cp_async_wait(int allowed_pending) {
  Fiber& f = current();
  while (static_cast<int>(f.pending.size()) > allowed_pending) {
    for (auto& j : f.pending.front()) {
      std::memset(j.dst, 0, 16);
      if (j.src_bytes) std::memcpy(j.dst, j.src, j.src_bytes);
    }
    f.pending.erase(f.pending.begin());
  }
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane i supplies the address of row i%8 of
// matrix i/8; register r[m] receives, from matrix m, the pair (row lane/4, cols 2*(lane%4)+{0,1}),
// or with .trans the pair (rows 2*(lane%4)+{0,1}, col lane/4).
inline void ldmatrix_x4(uint32_t r[4], const void* row_address, bool trans) {
  WarpState& w = my_warp();
  const int lane = current().lane;
  if (reinterpret_cast<uintptr_t>(row_address) % 16) {
    std::fprintf(stderr, "emulator: ldmatrix row address %p is not 16-byte aligned\n", row_address);
    std::abort();
  }
  w.exchange[lane][0] = reinterpret_cast<uintptr_t>(row_address);
  barrier_wait(w.barrier);
  for (int m = 0; m < 4; ++m) {
    uint16_t lo, hi;
    if (!trans) {
      const uint16_t* row = reinterpret_cast<const uint16_t*>(w.exchange[m * 8 + lane / 4][0]);
      lo = row[2 * (lane % 4)];
      hi = row[2 * (lane % 4) + 1];
    } else {
      const uint16_t* row0 = reinterpret_cast<const uint16_t*>(w.exchange[m * 8 + 2 * (lane % 4)][0]);
      const uint16_t* row1 = reinterpret_cast<const uint16_t*>(w.exchange[m * 8 + 2 * (lane % 4) + 1][0]);
      lo = row0[lane / 4];
      hi = row1[lane / 4];
    }
    r[m] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  }
  barrier_wait(w.barrier);
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 d, a, b, c (PTX ISA fragment tables):
// groupID g = lane/4, t = lane%4; A (16x16): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..),
// a[3] = (g+8, 2t+8..); B (16x8, k x n): b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8.., n g);
// C/D (16x8): c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1).
inline void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  WarpState& w = my_warp();
  const int lane = current().lane;
  for (int i = 0; i < 4; ++i) w.exchange[lane][i] = a[i];
  for (int i = 0; i < 2; ++i) w.exchange[lane][4 + i] = b[i];
  barrier_wait(w.barrier);
  auto bf = [](uint64_t word, int half) { return __bfloat162float({static_cast<uint16_t>(word >> (16 * half))}); };
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = bf(w.exchange[l][0], h);
      A[g + 8][2 * t + h] = bf(w.exchange[l][1], h);
      A[g][2 * t + 8 + h] = bf(w.exchange[l][2], h);
      A[g + 8][2 * t + 8 + h] = bf(w.exchange[l][3], h);
      B[2 * t + h][g] = bf(w.exchange[l][4], h);
      B[2 * t + 8 + h][g] = bf(w.exchange[l][5], h);
    }
  }
  const int g = lane / 4, t = lane % 4;
  const int rows[4] = {g, g, g + 8, g + 8};
  const int cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  float out[4];
  for (int i = 0; i < 4; ++i) {
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc += A[rows[i]][k] * B[k][cols[i]];
    out[i] = acc;
  }
  barrier_wait(w.barrier);
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace emu
