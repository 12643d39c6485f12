// Matrix products for the linear layers, C (M,N) = alpha * op(A) op(B) + beta * C (+ bias), on two
// paths chosen by set_matmul_precision():
//   bf16 (default): operands are first cast to bf16 copies in backend scratch, each row padded with
//     zeros to a multiple of 8 elements so every 16-byte chunk is wholly inside or outside the
//     matrix; then a tensor-core kernel: 128x128x32 block tiles, 8 warps of 64x32, mma.sync
//     m16n8k16 with fp32 accumulators, ldmatrix from padded (bank-conflict-free) shared tiles,
//     3-stage cp.async pipeline. Operands stored with the reduction dimension contiguous are read
//     with ldmatrix, the others with ldmatrix.trans, so no transposing copy is ever made.
//   fp32: a SIMT kernel, 128x128x16 block tiles, 8x8 outputs per thread, register-prefetched
//     double-buffered shared tiles.
// Layout vocabulary: an operand is "K-contiguous" when consecutive k are adjacent in memory:
//   A (M,K) row-major is K-contiguous; A^T stored (K,M) is M-contiguous.
//   B (K,N) row-major is N-contiguous; B stored (N,K) (nn.Linear's weight) is K-contiguous.
// Either bf16 path can instead go through cuBLASLt (cublaslt.cu, set_matmul_backend()): it takes
// the same bf16 operand copies, so the two differ only in the GEMM itself.
#include <cstring>
#include "common.cuh"
#include "cublaslt.h"
#include "gptune/cuda_options.h"
#include "mma.cuh"

namespace gptune::cuda {

namespace {

bool g_matmul_bf16 = true;

// ---------------------------------------------------------------------------------------------
// fp32 -> bf16 cast with row padding: dst (rows, ld_dst) bf16, ld_dst = cols rounded up to 8;
// dst[r][c] = src[r * ld_src + c] for c < cols, 0 for cols <= c < ld_dst.
__global__ void cast_bf16_padded_kernel(__nv_bfloat16* dst, int ld_dst, const float* src, long long ld_src, int rows,
                                        int cols, bool vectorized) {
  const int chunks_per_row = ld_dst / 8;
  const long long total = static_cast<long long>(rows) * chunks_per_row;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long chunk = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; chunk < total; chunk += stride) {
    const long long r = chunk / chunks_per_row;
    const int c0 = static_cast<int>(chunk % chunks_per_row) * 8;
    const float* s = src + r * ld_src + c0;
    float v[8];
    if (vectorized && c0 + 8 <= cols) {
      const float4 lo = reinterpret_cast<const float4*>(s)[0], hi = reinterpret_cast<const float4*>(s)[1];
      v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = c0 + j < cols ? s[j] : 0.0f;
    }
    uint4 packed;
    packed.x = pack_bf16x2(v[0], v[1]);
    packed.y = pack_bf16x2(v[2], v[3]);
    packed.z = pack_bf16x2(v[4], v[5]);
    packed.w = pack_bf16x2(v[6], v[7]);
    *reinterpret_cast<uint4*>(dst + r * ld_dst + c0) = packed;
  }
}

// ---------------------------------------------------------------------------------------------
// bf16 tensor-core GEMM.
namespace tc {
constexpr int BM = 128, BN = 128, BK = 32, STAGES = 3, THREADS = 256;
constexpr int WARP_M = 64, WARP_N = 32;          // warp tile; warps arranged 2 (m) x 4 (n)
constexpr int MI = WARP_M / 16, NI = WARP_N / 8;  // mma tiles per warp
constexpr int PAD = 8;                            // bf16 elements of padding per shared row (16 bytes)
// Shared tile shapes: K-contiguous operands as [rows][BK + PAD], others as [BK][cols + PAD].
constexpr int kTileKContig = BM * (BK + PAD);      // == BN * (BK + PAD)
constexpr int kTileOther = BK * (BM + PAD);        // == BK * (BN + PAD)
static_assert(BM == BN, "tile sizes below assume square block tiles");
template <bool kKContig> __host__ __device__ constexpr int tile_elements() { return kKContig ? kTileKContig : kTileOther; }
template <bool kAK, bool kBK> constexpr size_t smem_bytes() {
  return static_cast<size_t>(STAGES) * (tile_elements<kAK>() + tile_elements<kBK>()) * sizeof(__nv_bfloat16);
}

// Issues the cp.async copies of one (rows x BK) or (BK x cols) operand tile. `outer` is the tile's
// first row/col index along M or N, k0 its first k. `extent` is M or N, `K` the reduction length,
// `ld` the operand's leading dimension (== padded8 of its contiguous extent).
template <bool kKContig>
__device__ __forceinline__ void load_tile(__nv_bfloat16* tile, const __nv_bfloat16* src, int outer, int k0, int extent,
                                          int K, int ld) {
  constexpr int kChunks = BM * BK / 8;  // 16-byte chunks per tile
#pragma unroll
  for (int i = 0; i < kChunks / THREADS; ++i) {
    const int chunk = threadIdx.x + i * THREADS;
    int row, col, g_row, g_col;
    bool valid;
    if (kKContig) {  // tile [BM][BK + PAD]: row = m (or n), col = k
      row = chunk / (BK / 8);
      col = chunk % (BK / 8) * 8;
      g_row = outer + row;
      g_col = k0 + col;
      valid = g_row < extent && g_col < ld;  // ld = padded K: the padding reads zeros
    } else {  // tile [BK][BM + PAD]: row = k, col = m (or n)
      row = chunk / (BM / 8);
      col = chunk % (BM / 8) * 8;
      g_row = k0 + row;
      g_col = outer + col;
      valid = g_row < K && g_col < ld;
    }
    constexpr int pitch = kKContig ? BK + PAD : BM + PAD;
    const __nv_bfloat16* g = valid ? src + static_cast<long long>(g_row) * ld + g_col : src;
    cp_async_16(tile + row * pitch + col, g, valid ? 16 : 0);
  }
}

template <bool kAK, bool kBK>
__global__ void __launch_bounds__(THREADS, 2)
    gemm_bf16_kernel(float* C, int ldc, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb, const float* bias,
                     int M, int N, int K, float alpha, float beta) {
#ifdef GPTUNE_CUDA_EMULATE
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(emu::dynamic_smem());
#else
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
#endif
  __nv_bfloat16* a_tiles = smem;                                   // STAGES x A tile
  __nv_bfloat16* b_tiles = smem + STAGES * tile_elements<kAK>();   // STAGES x B tile

  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_m = warp / 4, warp_n = warp % 4;
  const int k_tiles = (K + BK - 1) / BK;

  float acc[MI][NI][4];
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int ni = 0; ni < NI; ++ni)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0.0f;

  auto load_stage = [&](int stage, int kt) {
    load_tile<kAK>(a_tiles + stage * tile_elements<kAK>(), A, m0, kt * BK, M, K, lda);
    load_tile<kBK>(b_tiles + stage * tile_elements<kBK>(), B, n0, kt * BK, N, K, ldb);
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    cp_async_commit();  // always commit, so group counting is the same on every path
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<STAGES - 2>();  // this thread's copies of tile kt have landed...
    __syncthreads();              // ...and everyone's; also, nobody still reads stage (kt - 1) % STAGES
    if (kt + STAGES - 1 < k_tiles) load_stage((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
    cp_async_commit();

    const __nv_bfloat16* a_tile = a_tiles + (kt % STAGES) * tile_elements<kAK>();
    const __nv_bfloat16* b_tile = b_tiles + (kt % STAGES) * tile_elements<kBK>();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t a_frag[MI][4], b_frag[NI][2];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
        const int m_base = warp_m * WARP_M + mi * 16;
        if (kAK) {  // [m][k]: matrices (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15)
          ldmatrix_x4(a_frag[mi], a_tile + (m_base + lane % 16) * (BK + PAD) + kk + lane / 16 * 8);
        } else {    // [k][m], transposed on load; same four matrices
          const int matrix = lane / 8;
          ldmatrix_x4_trans(a_frag[mi], a_tile + (kk + matrix / 2 * 8 + lane % 8) * (BM + PAD) + m_base + matrix % 2 * 8);
        }
      }
#pragma unroll
      for (int nj = 0; nj < NI / 2; ++nj) {  // two n8 tiles per ldmatrix.x4
        const int n_base = warp_n * WARP_N + nj * 16;
        const int matrix = lane / 8;
        uint32_t r[4];
        if (kBK) {  // [n][k]: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
          ldmatrix_x4(r, b_tile + (n_base + matrix / 2 * 8 + lane % 8) * (BK + PAD) + kk + matrix % 2 * 8);
        } else {    // [k][n], transposed on load; same four matrices
          ldmatrix_x4_trans(r, b_tile + (kk + matrix % 2 * 8 + lane % 8) * (BN + PAD) + n_base + matrix / 2 * 8);
        }
        b_frag[2 * nj][0] = r[0];
        b_frag[2 * nj][1] = r[1];
        b_frag[2 * nj + 1][0] = r[2];
        b_frag[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) mma_bf16_16816(acc[mi][ni], a_frag[mi], b_frag[ni]);
    }
  }

  // Epilogue: accumulator (mi, ni, r) is row g (+8 for r >= 2), column 2t (+1 for odd r).
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int ni = 0; ni < NI; ++ni)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = m0 + warp_m * WARP_M + mi * 16 + g + (r >= 2 ? 8 : 0);
        const int col = n0 + warp_n * WARP_N + ni * 8 + 2 * t + (r & 1);
        if (row < M && col < N) {
          float* c = C + static_cast<long long>(row) * ldc + col;
          float v = alpha * acc[mi][ni][r];
          if (beta != 0.0f) v += beta * *c;
          if (bias) v += bias[col];
          *c = v;
        }
      }
}
}  // namespace tc

template <bool kAK, bool kBK>
void launch_gemm_bf16(float* C, int ldc, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb,
                      const float* bias, int M, int N, int K, float alpha, float beta) {
  constexpr size_t smem = tc::smem_bytes<kAK, kBK>();
  static bool attribute_set = false;  // per instantiation; the attribute is per kernel
  if (!attribute_set) {
    allow_dynamic_smem(tc::gemm_bf16_kernel<kAK, kBK>, smem);
    attribute_set = true;
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(N, tc::BN)), static_cast<unsigned>(ceil_div(M, tc::BM)));
  launch(tc::gemm_bf16_kernel<kAK, kBK>, grid, dim3(tc::THREADS), smem, C, ldc, A, lda, B, ldb, bias, M, N, K, alpha,
         beta);
}

// bf16 operands already cast (leading dimensions = padded8 of their contiguous extent).
void gemm_bf16(bool a_k_contig, bool b_k_contig, int M, int N, int K, float alpha, const __nv_bfloat16* A, int lda,
               const __nv_bfloat16* B, int ldb, float beta, float* C, int ldc, const float* bias) {
  if (a_k_contig && b_k_contig) launch_gemm_bf16<true, true>(C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
  else if (a_k_contig) launch_gemm_bf16<true, false>(C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
  else if (b_k_contig) launch_gemm_bf16<false, true>(C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
  else launch_gemm_bf16<false, false>(C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
}

// The bf16 product through cuBLASLt when the matmul backend selects it and it has an algorithm
// for this problem, else through our kernel; same arguments as gemm_bf16.
// Under `auto`, shapes with a dimension that is not a multiple of 8 stay on gptune's kernel: on an
// H200 cuBLASLt ran the tied LM head (N=16384, C=768, V=50257) at 93 / 178 TFLOP/s forward /
// backward against 162 / 235 for ours (bench/RESULTS.md), while it won by 2-3x on every
// multiple-of-8 layer shape. `cublaslt` (forced) uses it for every shape.
bool prefer_native_for_shape(int M, int N, int K) {
  return std::strcmp(matmul_backend_setting(), "auto") == 0 && (M % 8 != 0 || N % 8 != 0 || K % 8 != 0);
}

void gemm_bf16_any(bool a_k_contig, bool b_k_contig, int M, int N, int K, float alpha, const __nv_bfloat16* A, int lda,
                   const __nv_bfloat16* B, int ldb, float beta, float* C, int ldc, const float* bias) {
  if (!prefer_native_for_shape(M, N, K) && matmul_uses_cublaslt() &&
      cublaslt_gemm_bf16(a_k_contig, b_k_contig, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias))
    return;
  gemm_bf16(a_k_contig, b_k_contig, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias);
}

// ---------------------------------------------------------------------------------------------
// fp32 SIMT GEMM.
namespace simt {
constexpr int BM = 128, BN = 128, BK = 16, THREADS = 256;
constexpr int PITCH = BM + 4;  // shared rows [k][m] / [k][n], padded against store conflicts
constexpr int kLoads = BM * BK / THREADS;  // elements of each operand tile per thread (8)

// Element (outer, k) of an operand tile, for tile element `e` (0..BM*BK) in coalescing order:
// along k for K-contiguous operands, along m/n otherwise.
template <bool kKContig>
__device__ __forceinline__ void tile_coords(int e, int& outer, int& k) {
  if (kKContig) {
    outer = e / BK;
    k = e % BK;
  } else {
    k = e / BM;
    outer = e % BM;
  }
}

template <bool kKContig>
__device__ __forceinline__ float load_operand(const float* src, long long ld, int outer, int k, int extent, int K) {
  if (outer >= extent || k >= K) return 0.0f;
  return kKContig ? src[static_cast<long long>(outer) * ld + k] : src[static_cast<long long>(k) * ld + outer];
}

template <bool kAK, bool kBK>
__global__ void __launch_bounds__(THREADS, 2)
    gemm_fp32_kernel(float* C, int ldc, const float* A, int lda, const float* B, int ldb, const float* bias, int M, int N,
                     int K, float alpha, float beta) {
  __shared__ __align__(16) float a_tile[2][BK][PITCH];  // [k][m]
  __shared__ __align__(16) float b_tile[2][BK][PITCH];  // [k][n]
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int k_tiles = (K + BK - 1) / BK;

  float a_next[kLoads], b_next[kLoads];
  auto fetch = [&](int kt) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      int outer, k;
      tile_coords<kAK>(threadIdx.x + i * THREADS, outer, k);
      a_next[i] = load_operand<kAK>(A, lda, m0 + outer, kt * BK + k, M, K);
      tile_coords<kBK>(threadIdx.x + i * THREADS, outer, k);
      b_next[i] = load_operand<kBK>(B, ldb, n0 + outer, kt * BK + k, N, K);
    }
  };
  auto store = [&](int buffer) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      int outer, k;
      tile_coords<kAK>(threadIdx.x + i * THREADS, outer, k);
      a_tile[buffer][k][outer] = a_next[i];
      tile_coords<kBK>(threadIdx.x + i * THREADS, outer, k);
      b_tile[buffer][k][outer] = b_next[i];
    }
  };

  // Thread (tx, ty) owns rows {ty*4 + i, 64 + ty*4 + i} and columns {tx*4 + j, 64 + tx*4 + j}: two
  // float4 reads per operand per k, spread over all banks.
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  if (k_tiles > 0) {
    fetch(0);
    store(0);
  }
  __syncthreads();
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int buffer = kt % 2;
    if (kt + 1 < k_tiles) fetch(kt + 1);  // global loads in flight during the math below
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a_lo = *reinterpret_cast<const float4*>(&a_tile[buffer][k][ty * 4]);
      const float4 a_hi = *reinterpret_cast<const float4*>(&a_tile[buffer][k][64 + ty * 4]);
      const float4 b_lo = *reinterpret_cast<const float4*>(&b_tile[buffer][k][tx * 4]);
      const float4 b_hi = *reinterpret_cast<const float4*>(&b_tile[buffer][k][64 + tx * 4]);
      const float a[8] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
      const float b[8] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (kt + 1 < k_tiles) store(1 - buffer);  // that buffer was last read before the previous barrier
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (row >= M) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
      if (col >= N) continue;
      float* c = C + static_cast<long long>(row) * ldc + col;
      float v = alpha * acc[i][j];
      if (beta != 0.0f) v += beta * *c;
      if (bias) v += bias[col];
      *c = v;
    }
  }
}
}  // namespace simt

}  // namespace

void gemm_fp32(bool a_k_contig, bool b_k_contig, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc, const float* bias) {
  const dim3 grid(static_cast<unsigned>(ceil_div(N, simt::BN)), static_cast<unsigned>(ceil_div(M, simt::BM)));
  const dim3 block(simt::THREADS);
  if (a_k_contig && b_k_contig)
    launch(simt::gemm_fp32_kernel<true, true>, grid, block, 0, C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
  else if (a_k_contig)
    launch(simt::gemm_fp32_kernel<true, false>, grid, block, 0, C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
  else if (b_k_contig)
    launch(simt::gemm_fp32_kernel<false, true>, grid, block, 0, C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
  else
    launch(simt::gemm_fp32_kernel<false, false>, grid, block, 0, C, ldc, A, lda, B, ldb, bias, M, N, K, alpha, beta);
}

namespace {

// C (M,N) = alpha * op(A) op(B) + beta * C + bias, fp32 device operands, either precision.
void gemm_with_bias(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc, const float* bias) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // an empty sum: C = beta * C + bias, through the same epilogue with nothing to add
    K = 0;
  }
  const bool a_k_contig = !trans_a, b_k_contig = trans_b;
  if (!g_matmul_bf16 || K == 0) {
    gemm_fp32(a_k_contig, b_k_contig, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias);
    return;
  }
  // Stored shapes: A is (M,K) or, transposed, (K,M); B is (K,N) or, transposed, (N,K).
  const __nv_bfloat16* a16 = cast_to_bf16(Scratch::MatmulOperandA, A, trans_a ? K : M, trans_a ? M : K, lda);
  const __nv_bfloat16* b16 = cast_to_bf16(Scratch::MatmulOperandB, B, trans_b ? N : K, trans_b ? K : N, ldb);
  gemm_bf16_any(a_k_contig, b_k_contig, M, N, K, alpha, a16, padded8(trans_a ? M : K), b16, padded8(trans_b ? K : N),
                beta, C, ldc, bias);
}

}  // namespace

const __nv_bfloat16* cast_to_bf16(Scratch slot, const float* src, int rows, int cols, long long ld_src) {
  const int ld = padded8(cols);
  auto* dst = static_cast<__nv_bfloat16*>(scratch(slot, static_cast<size_t>(rows) * ld * sizeof(__nv_bfloat16) + 16));
  const bool vectorized = ld_src % 4 == 0 && aligned16(src);
  const int threads = 256;
  launch(cast_bf16_padded_kernel, dim3(grid_for(static_cast<long long>(rows) * (ld / 8), threads)), dim3(threads), 0,
         dst, ld, src, ld_src, rows, cols, vectorized);
  return dst;
}

void set_matmul_precision(bool bf16) { g_matmul_bf16 = bf16; }
bool matmul_precision_bf16() { return g_matmul_bf16; }

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  gemm_with_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr);
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
  // out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias
  gemm_with_bias(false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC, bias);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
  if (N <= 0) return;
  if (dbias) column_sums(dbias, nullptr, dout, nullptr, nullptr, nullptr, N, OC);
  if (C <= 0 || OC <= 0 || (!dinp && !dweight)) return;
  if (!g_matmul_bf16) {
    // dinp (N,C) += dout (N,OC) @ weight (OC,C);  dweight (OC,C) += dout^T @ inp (N,C)
    if (dinp) gemm_fp32(true, false, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C, nullptr);
    if (dweight) gemm_fp32(false, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C, nullptr);
    return;
  }
  // dout feeds both products; cast it once. Its bf16 copy is (N, padded8(OC)).
  const __nv_bfloat16* dout16 = cast_to_bf16(Scratch::MatmulOperandA, dout, N, OC, OC);
  if (dinp) {
    const __nv_bfloat16* weight16 = cast_to_bf16(Scratch::MatmulOperandB, weight, OC, C, C);
    gemm_bf16_any(true, false, N, C, OC, 1.0f, dout16, padded8(OC), weight16, padded8(C), 1.0f, dinp, C, nullptr);
  }
  if (dweight) {
    const __nv_bfloat16* inp16 = cast_to_bf16(Scratch::MatmulOperandC, inp, N, C, C);
    gemm_bf16_any(false, false, OC, C, N, 1.0f, dout16, padded8(OC), inp16, padded8(C), 1.0f, dweight, C, nullptr);
  }
}

}  // namespace gptune::cuda
