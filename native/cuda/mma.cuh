// Thin wrappers over the PTX instructions the tensor-core kernels use (Ampere-style, valid on sm_80
// and sm_90): cp.async 16-byte copies into shared memory, ldmatrix, and mma.sync m16n8k16 with
// bf16 operands and fp32 accumulators. In GPTUNE_CUDA_EMULATE builds they call the emulator's
// implementations of the same semantics (emulator.cuh spells out the fragment layouts).
#pragma once
#include "common.cuh"

namespace gptune::cuda {

// Copies 16 bytes from global to shared memory asynchronously; src_bytes (0 or 16) bytes are read
// and the rest zero-filled, so out-of-range tile chunks cost no branch divergence and read nothing.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
#ifdef GPTUNE_CUDA_EMULATE
  emu::cp_async_16(smem_dst, gmem_src, src_bytes);
#else
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes) : "memory");
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef GPTUNE_CUDA_EMULATE
  emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most `Pending` of this thread's committed groups are still in flight.
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
#ifdef GPTUNE_CUDA_EMULATE
  emu::cp_async_wait(Pending);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
#endif
}

// Four 8x8 bf16 matrices from shared memory; lane i gives the address of row i%8 of matrix i/8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem_row) {
#ifdef GPTUNE_CUDA_EMULATE
  emu::ldmatrix_x4(r, smem_row, false);
#else
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
#endif
}

// As ldmatrix_x4, each matrix transposed: for operands stored with the other dimension contiguous.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row) {
#ifdef GPTUNE_CUDA_EMULATE
  emu::ldmatrix_x4(r, smem_row, true);
#else
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
#endif
}

// d (16x8 fp32) += a (16x16 bf16, row) * b (16x8 bf16, col); d is both accumulator input and output.
__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
#ifdef GPTUNE_CUDA_EMULATE
  emu::mma_bf16_16816(d, a, b, d);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Two floats as a bf16 pair in one register (lo in the low half), rounded to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const uint32_t l = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
  const uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
  return l | (h << 16);
}

}  // namespace gptune::cuda
