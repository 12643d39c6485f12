// Causal grouped-query self-attention on tensor cores for head size 64 (every GPT-2 size, SmolLM2,
// Llama 3.2): bf16 operands, fp32 accumulation, mma.sync m16n8k16, FlashAttention-2 style. qkv rows
// hold NH q heads, then NKV k heads, then NKV v heads; query head h reads kv head h / (NH/NKV). Same contract as attention.cu's fp32
// kernels (which stay the reference and the path for other head sizes); chosen by
// set_attention_precision(true).
//
// qkv and dout are first cast to bf16 copies in scratch. A block is 4 warps; each warp owns 16 rows
// (queries, or keys in the dK/dV kernel) of the block's 64, and keeps its operands as mma A
// fragments in registers; the other operand streams through shared memory in 64-row tiles
// (cp.async, two stages, rows padded to 72 bf16 so ldmatrix is conflict-free).
//   forward: S = Q K^T per tile, online softmax in base 2 on the accumulator fragments, the
//            probabilities re-packed in registers as the A operand of O += P V.
//   backward: like attention.cu, a dQ kernel (per query: S, P from lse, dP = dO V^T, dS, dQ += dS K)
//            and a dK/dV kernel (per key of one kv head, over the queries of every query head of its
//            group: S^T = K Q^T, P^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q), so no atomics. P and dS are rounded to bf16 for their products.
// Fragment bookkeeping (PTX ISA, mma.m16n8k16): lane = 4 g + t; an accumulator tile (16 x 8) holds
// rows g and g + 8, columns 2t and 2t + 1; two adjacent accumulator tiles (columns 16k .. 16k + 15)
// re-pack into one A fragment for the k-step k.
#include <cmath>

#include "common.cuh"
#include "mma.cuh"

namespace gptune::cuda {

namespace {

constexpr int D = 64;            // head size
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // rows per block (64)
constexpr int kTile = 64;        // streamed rows per tile
constexpr int kPitch = D + 8;    // bf16 per shared row: 144 bytes, 9 chunks of 16 -> ldmatrix rows hit distinct banks
constexpr int kTileElements = kTile * kPitch;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

using bf16 = __nv_bfloat16;

__device__ __forceinline__ bf16* dynamic_tiles() {
#ifdef GPTUNE_CUDA_EMULATE
  return reinterpret_cast<bf16*>(emu::dynamic_smem());
#else
  extern __shared__ __align__(16) unsigned char smem_raw[];
  return reinterpret_cast<bf16*>(smem_raw);
#endif
}

// cp.async copy of rows [first, first + kTile) of a (rows, ld) bf16 matrix into a tile; rows at or
// beyond `count` are zero-filled.
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* base, int ld, int first, int count) {
  for (int c = threadIdx.x; c < kTile * (D / 8); c += kThreads) {
    const int r = c / (D / 8), col = c % (D / 8) * 8;
    const bool valid = first + r < count;
    cp_async_16(tile + r * kPitch + col, valid ? base + static_cast<long long>(first + r) * ld + col : base, valid ? 16 : 0);
  }
}

// A fragments of 16 rows x 64 (4 k-steps) from a tile stored [row][d].
__device__ __forceinline__ void load_a_fragments(uint32_t (&a)[4][4], const bf16* tile, int row0, int lane) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) ldmatrix_x4(a[kk], tile + (row0 + lane % 16) * kPitch + kk * 16 + lane / 16 * 8);
}

// acc[n8 tile][4] += A (16 x 64, k = d) * B where B(k = d, n = tile row): the tile holds the n
// operand as [n][d], d contiguous. 8 n-tiles cover the tile's 64 rows.
__device__ __forceinline__ void mma_a_by_tile_rows(float (&acc)[8][4], const uint32_t (&a)[4][4], const bf16* tile, int lane) {
  const int matrix = lane / 8;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int nj = 0; nj < 4; ++nj) {
      uint32_t r[4];
      ldmatrix_x4(r, tile + (nj * 16 + matrix / 2 * 8 + lane % 8) * kPitch + kk * 16 + matrix % 2 * 8);
      const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
      mma_bf16_16816(acc[2 * nj], a[kk], b0);
      mma_bf16_16816(acc[2 * nj + 1], a[kk], b1);
    }
}

// acc[d tile][4] += P (16 x 64 tile rows, as 4 A fragments) * tile (64 tile rows x 64 d): B(k = tile
// row, n = d) with the tile stored [row][d], so ldmatrix transposes.
__device__ __forceinline__ void mma_p_by_tile(float (&acc)[8][4], const uint32_t (&p)[4][4], const bf16* tile, int lane) {
  const int matrix = lane / 8;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int dj = 0; dj < 4; ++dj) {
      uint32_t r[4];
      ldmatrix_x4_trans(r, tile + (kk * 16 + matrix % 2 * 8 + lane % 8) * kPitch + dj * 16 + matrix / 2 * 8);
      const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
      mma_bf16_16816(acc[2 * dj], p[kk], b0);
      mma_bf16_16816(acc[2 * dj + 1], p[kk], b1);
    }
}

// Accumulator tiles (16 x 64 fp32) -> A fragments (16 x 64 bf16) for the next product.
__device__ __forceinline__ void pack_a_fragments(uint32_t (&a)[4][4], const float (&acc)[8][4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    a[kk][0] = pack_bf16x2(acc[2 * kk][0], acc[2 * kk][1]);
    a[kk][1] = pack_bf16x2(acc[2 * kk][2], acc[2 * kk][3]);
    a[kk][2] = pack_bf16x2(acc[2 * kk + 1][0], acc[2 * kk + 1][1]);
    a[kk][3] = pack_bf16x2(acc[2 * kk + 1][2], acc[2 * kk + 1][3]);
  }
}

__device__ __forceinline__ void zero(float (&acc)[8][4]) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[j][r] = 0.0f;
}

// Adds scale * acc (rows row0 and row0 + 8 of a 16-row warp slice, 64 channels) into dst rows of
// stride ld (fp32), skipping rows >= T.
__device__ __forceinline__ void add_rows(float* dst, long long ld, const float (&acc)[8][4], int row_g, int T, int t,
                                         float scale, bool accumulate) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row_g + half * 8;
    if (row >= T) continue;
    float* d = dst + static_cast<long long>(row) * ld;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = j * 8 + 2 * t + e;
        d[c] = (accumulate ? d[c] : 0.0f) + scale * acc[j][half * 2 + e];
      }
  }
}

// ---- forward ----
__global__ void __launch_bounds__(kThreads)
    attention_forward_bf16_kernel(float* out, float* lse, const bf16* qkv, int ld, const int* segment_ids, int T, int NH,
                                  int NKV, float scale_log2) {
  bf16* q_tile = dynamic_tiles();
  bf16* k_tiles = q_tile + kTileElements;        // 2 stages
  bf16* v_tiles = k_tiles + 2 * kTileElements;   // 2 stages
  const int b = blockIdx.y / NH, h = blockIdx.y % NH, kv = h / (NH / NKV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int q0 = blockIdx.x * kRows;
  const bf16* base = qkv + static_cast<long long>(b) * T * ld + h * D;
  const bf16* k_base = qkv + static_cast<long long>(b) * T * ld + (NH + kv) * D;
  const bf16* v_base = k_base + NKV * D;
  const int* segments = segment_ids ? segment_ids + static_cast<long long>(b) * T : nullptr;
  const int key_end = imin(T, q0 + kRows);
  const int tiles = (key_end + kTile - 1) / kTile;

  load_tile(q_tile, base, ld, q0, T);
  load_tile(k_tiles, k_base, ld, 0, key_end);
  load_tile(v_tiles, v_base, ld, 0, key_end);
  cp_async_commit();

  const int row_g = q0 + warp * 16 + g;  // this thread's rows: row_g and row_g + 8
  int row_segment[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) row_segment[half] = segments && row_g + half * 8 < T ? segments[row_g + half * 8] : 0;

  uint32_t q_frag[4][4];
  float o[8][4];
  zero(o);
  float running_max[2] = {-INFINITY, -INFINITY}, running_sum[2] = {0.0f, 0.0f};  // sums: this thread's columns only

  for (int kt = 0; kt < tiles; ++kt) {
    cp_async_wait<0>();
    __syncthreads();  // tile kt landed for everyone; stage (kt + 1) % 2 is no longer read
    if (kt == 0) load_a_fragments(q_frag, q_tile, warp * 16, lane);
    if (kt + 1 < tiles) {
      const int stage = (kt + 1) % 2;
      load_tile(k_tiles + stage * kTileElements, k_base, ld, (kt + 1) * kTile, key_end);
      load_tile(v_tiles + stage * kTileElements, v_base, ld, (kt + 1) * kTile, key_end);
    }
    cp_async_commit();
    const bf16* k_tile = k_tiles + (kt % 2) * kTileElements;
    const bf16* v_tile = v_tiles + (kt % 2) * kTileElements;

    float s[8][4];
    zero(s);
    mma_a_by_tile_rows(s, q_frag, k_tile, lane);

    // Scale to base-2 units and mask: key = kt*64 + 8j + 2t + e is visible to row r when key <= r,
    // both < T, and (with segments) same segment.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int half = r / 2, row = row_g + half * 8, key = kt * kTile + j * 8 + 2 * t + (r & 1);
        const bool visible = key <= row && row < T && key < T && (!segments || segments[key] == row_segment[half]);
        s[j][r] = visible ? s[j][r] * scale_log2 : -INFINITY;
        tile_max[half] = fmaxf(tile_max[half], s[j][r]);
      }
    float shift[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      // The 4 threads of a quad share rows.
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 1));
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 2));
      const float new_max = fmaxf(running_max[half], tile_max[half]);
      shift[half] = new_max == -INFINITY ? 0.0f : new_max;  // all masked so far: exp2(-inf - 0) = 0
      const float correction = exp2f(running_max[half] - shift[half]);
      running_sum[half] *= correction;
#pragma unroll
      for (int j = 0; j < 8; ++j) o[j][half * 2] *= correction, o[j][half * 2 + 1] *= correction;
      running_max[half] = new_max;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        s[j][r] = exp2f(s[j][r] - shift[r / 2]);
        running_sum[r / 2] += s[j][r];
      }
    uint32_t p_frag[4][4];
    pack_a_fragments(p_frag, s);
    mma_p_by_tile(o, p_frag, v_tile, lane);
  }

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    running_sum[half] += __shfl_xor_sync(0xffffffffu, running_sum[half], 1);
    running_sum[half] += __shfl_xor_sync(0xffffffffu, running_sum[half], 2);
  }
  const long long out_width = static_cast<long long>(NH) * D;
  float* out_bh = out + static_cast<long long>(b) * T * out_width + h * D;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row_g + half * 8;
    if (row >= T) continue;
    const float inv = 1.0f / running_sum[half];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) out_bh[row * out_width + j * 8 + 2 * t + e] = o[j][half * 2 + e] * inv;
    if (lse && t == 0)
      lse[(static_cast<long long>(b) * NH + h) * T + row] = running_max[half] * kLn2 + logf(running_sum[half]);
  }
}

// ---- backward: dQ ----
__global__ void __launch_bounds__(kThreads)
    attention_backward_q_bf16_kernel(float* dqkv, const bf16* qkv, int ld, const bf16* dout, int ld_dout,
                                     const float* lse, const float* row_dot, const int* segment_ids, int T, int NH,
                                     int NKV, float scale, float scale_log2) {
  bf16* q_tile = dynamic_tiles();
  bf16* dout_tile = q_tile + kTileElements;
  bf16* k_tiles = dout_tile + kTileElements;     // 2 stages
  bf16* v_tiles = k_tiles + 2 * kTileElements;   // 2 stages
  const int b = blockIdx.y / NH, h = blockIdx.y % NH, kv = h / (NH / NKV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int q0 = blockIdx.x * kRows;
  const bf16* base = qkv + static_cast<long long>(b) * T * ld + h * D;
  const bf16* k_base = qkv + static_cast<long long>(b) * T * ld + (NH + kv) * D;
  const bf16* v_base = k_base + NKV * D;
  const bf16* dout_base = dout + static_cast<long long>(b) * T * ld_dout + h * D;
  const int* segments = segment_ids ? segment_ids + static_cast<long long>(b) * T : nullptr;
  const int key_end = imin(T, q0 + kRows);
  const int tiles = (key_end + kTile - 1) / kTile;

  load_tile(q_tile, base, ld, q0, T);
  load_tile(dout_tile, dout_base, ld_dout, q0, T);
  load_tile(k_tiles, k_base, ld, 0, key_end);
  load_tile(v_tiles, v_base, ld, 0, key_end);
  cp_async_commit();

  const int row_g = q0 + warp * 16 + g;
  const long long bh = static_cast<long long>(b) * NH + h;
  int row_segment[2];
  float row_lse2[2], row_d[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row_g + half * 8;
    const bool in = row < T;
    row_segment[half] = segments && in ? segments[row] : 0;
    row_lse2[half] = in ? lse[bh * T + row] * kLog2e : 0.0f;
    row_d[half] = in ? row_dot[bh * T + row] : 0.0f;
  }

  uint32_t q_frag[4][4], dout_frag[4][4];
  float dq[8][4];
  zero(dq);
  for (int kt = 0; kt < tiles; ++kt) {
    cp_async_wait<0>();
    __syncthreads();
    if (kt == 0) {
      load_a_fragments(q_frag, q_tile, warp * 16, lane);
      load_a_fragments(dout_frag, dout_tile, warp * 16, lane);
    }
    if (kt + 1 < tiles) {
      const int stage = (kt + 1) % 2;
      load_tile(k_tiles + stage * kTileElements, k_base, ld, (kt + 1) * kTile, key_end);
      load_tile(v_tiles + stage * kTileElements, v_base, ld, (kt + 1) * kTile, key_end);
    }
    cp_async_commit();
    const bf16* k_tile = k_tiles + (kt % 2) * kTileElements;
    const bf16* v_tile = v_tiles + (kt % 2) * kTileElements;

    float s[8][4], dp[8][4];
    zero(s);
    zero(dp);
    mma_a_by_tile_rows(s, q_frag, k_tile, lane);      // S = Q K^T
    mma_a_by_tile_rows(dp, dout_frag, v_tile, lane);  // dP = dO V^T
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int half = r / 2, row = row_g + half * 8, key = kt * kTile + j * 8 + 2 * t + (r & 1);
        const bool visible = key <= row && row < T && key < T && (!segments || segments[key] == row_segment[half]);
        const float p = visible ? exp2f(s[j][r] * scale_log2 - row_lse2[half]) : 0.0f;
        s[j][r] = p * (dp[j][r] - row_d[half]);  // dS (unscaled)
      }
    uint32_t ds_frag[4][4];
    pack_a_fragments(ds_frag, s);
    mma_p_by_tile(dq, ds_frag, k_tile, lane);  // dQ += dS K
  }
  const long long width = static_cast<long long>(NH + 2 * NKV) * D;  // of a dqkv row (fp32)
  add_rows(dqkv + static_cast<long long>(b) * T * width + h * D, width, dq, row_g, T, t, scale, true);
}

// ---- backward: dK, dV ----
// A block owns 64 keys of one (b, kv head) and walks, for each query head of the kv head's group,
// the query tiles from its first key on; dK and dV accumulate over all of them in registers.
__global__ void __launch_bounds__(kThreads)
    attention_backward_kv_bf16_kernel(float* dqkv, const bf16* qkv, int ld, const bf16* dout, int ld_dout,
                                      const float* lse, const float* row_dot, const int* segment_ids, int T, int NH,
                                      int NKV, float scale, float scale_log2) {
  bf16* k_tile = dynamic_tiles();
  bf16* v_tile = k_tile + kTileElements;
  bf16* q_tiles = v_tile + kTileElements;         // 2 stages
  bf16* dout_tiles = q_tiles + 2 * kTileElements;  // 2 stages
  const int b = blockIdx.y / NKV, kv = blockIdx.y % NKV, group = NH / NKV;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int k0 = blockIdx.x * kRows;
  const bf16* qkv_b = qkv + static_cast<long long>(b) * T * ld;
  const bf16* k_base = qkv_b + (NH + kv) * D;
  const bf16* v_base = k_base + NKV * D;
  const int* segments = segment_ids ? segment_ids + static_cast<long long>(b) * T : nullptr;
  // Queries from this block's first key on: earlier ones see none of its keys. Step i covers query
  // tile first_tile + i % per_head of query head kv * group + i / per_head.
  const int first_tile = k0 / kTile, per_head = (T + kTile - 1) / kTile - first_tile, steps = group * per_head;
  auto q_base = [&](int step) { return qkv_b + (kv * group + step / per_head) * D; };
  auto dout_base = [&](int step) {
    return dout + static_cast<long long>(b) * T * ld_dout + (kv * group + step / per_head) * D;
  };
  auto tile_of = [&](int step) { return first_tile + step % per_head; };

  load_tile(k_tile, k_base, ld, k0, T);
  load_tile(v_tile, v_base, ld, k0, T);
  load_tile(q_tiles, q_base(0), ld, tile_of(0) * kTile, T);
  load_tile(dout_tiles, dout_base(0), ld_dout, tile_of(0) * kTile, T);
  cp_async_commit();

  const int key_g = k0 + warp * 16 + g;  // this thread's keys: key_g and key_g + 8
  int key_segment[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) key_segment[half] = segments && key_g + half * 8 < T ? segments[key_g + half * 8] : 0;

  uint32_t k_frag[4][4], v_frag[4][4];
  float dk[8][4], dv[8][4];
  zero(dk);
  zero(dv);
  for (int i = 0; i < steps; ++i) {
    const int qt = tile_of(i), h = kv * group + i / per_head;
    cp_async_wait<0>();
    __syncthreads();
    if (i == 0) {
      load_a_fragments(k_frag, k_tile, warp * 16, lane);
      load_a_fragments(v_frag, v_tile, warp * 16, lane);
    }
    if (i + 1 < steps) {
      const int stage = (i + 1) % 2;
      load_tile(q_tiles + stage * kTileElements, q_base(i + 1), ld, tile_of(i + 1) * kTile, T);
      load_tile(dout_tiles + stage * kTileElements, dout_base(i + 1), ld_dout, tile_of(i + 1) * kTile, T);
    }
    cp_async_commit();
    const bf16* q_tile = q_tiles + (i % 2) * kTileElements;
    const bf16* dout_tile = dout_tiles + (i % 2) * kTileElements;
    const long long bh = static_cast<long long>(b) * NH + h;
    const float* lse_bh = lse + bh * T;
    const float* dot_bh = row_dot + bh * T;

    float s[8][4], dp[8][4];  // transposed: rows = keys, columns = queries
    zero(s);
    zero(dp);
    mma_a_by_tile_rows(s, k_frag, q_tile, lane);      // S^T = K Q^T
    mma_a_by_tile_rows(dp, v_frag, dout_tile, lane);  // dP^T = V dO^T
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int query = qt * kTile + j * 8 + 2 * t + e;
        const bool query_in = query < T;
        const float q_lse2 = query_in ? lse_bh[query] * kLog2e : 0.0f;
        const float q_dot = query_in ? dot_bh[query] : 0.0f;
        const int q_segment = segments && query_in ? segments[query] : 0;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int key = key_g + half * 8, r = half * 2 + e;
          const bool visible = key <= query && query_in && key < T && (!segments || q_segment == key_segment[half]);
          const float p = visible ? exp2f(s[j][r] * scale_log2 - q_lse2) : 0.0f;
          s[j][r] = p;
          dp[j][r] = p * (dp[j][r] - q_dot);  // dS^T (unscaled)
        }
      }
    uint32_t p_frag[4][4], ds_frag[4][4];
    pack_a_fragments(p_frag, s);
    pack_a_fragments(ds_frag, dp);
    mma_p_by_tile(dv, p_frag, dout_tile, lane);  // dV += P^T dO
    mma_p_by_tile(dk, ds_frag, q_tile, lane);    // dK += dS^T Q
  }
  const long long width = static_cast<long long>(NH + 2 * NKV) * D;  // of a dqkv row (fp32)
  float* dqkv_b = dqkv + static_cast<long long>(b) * T * width;
  add_rows(dqkv_b + (NH + kv) * D, width, dk, key_g, T, t, scale, true);
  add_rows(dqkv_b + (NH + NKV + kv) * D, width, dv, key_g, T, t, 1.0f, true);
}

constexpr size_t kForwardSmem = 5 * kTileElements * sizeof(bf16);
constexpr size_t kBackwardSmem = 6 * kTileElements * sizeof(bf16);

}  // namespace

void attention_forward_bf16(float* out, float* lse, const float* qkv, const int* segment_ids, int B, int T, int NH,
                            int NKV) {
  const int W = (NH + 2 * NKV) * D;
  const bf16* qkv16 = cast_to_bf16(Scratch::AttentionQKV, qkv, B * T, W, W);
  static bool attribute_set = false;
  if (!attribute_set) {
    allow_dynamic_smem(attention_forward_bf16_kernel, kForwardSmem);
    attribute_set = true;
  }
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(D));
  launch(attention_forward_bf16_kernel, dim3(static_cast<unsigned>(ceil_div(T, kRows)), B * NH), dim3(kThreads),
         kForwardSmem, out, lse, qkv16, padded8(W), segment_ids, T, NH, NKV, scale_log2);
}

void attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* row_dot,
                             const int* segment_ids, int B, int T, int NH, int NKV) {
  const int W = (NH + 2 * NKV) * D, out_width = NH * D;
  const bf16* qkv16 = cast_to_bf16(Scratch::AttentionQKV, qkv, B * T, W, W);
  const bf16* dout16 = cast_to_bf16(Scratch::AttentionDout, dout, B * T, out_width, out_width);
  static bool attribute_set = false;
  if (!attribute_set) {
    allow_dynamic_smem(attention_backward_q_bf16_kernel, kBackwardSmem);
    allow_dynamic_smem(attention_backward_kv_bf16_kernel, kBackwardSmem);
    attribute_set = true;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const unsigned row_blocks = static_cast<unsigned>(ceil_div(T, kRows));
  launch(attention_backward_kv_bf16_kernel, dim3(row_blocks, B * NKV), dim3(kThreads), kBackwardSmem, dqkv, qkv16,
         padded8(W), dout16, padded8(out_width), lse, row_dot, segment_ids, T, NH, NKV, scale, scale * kLog2e);
  launch(attention_backward_q_bf16_kernel, dim3(row_blocks, B * NH), dim3(kThreads), kBackwardSmem, dqkv, qkv16,
         padded8(W), dout16, padded8(out_width), lse, row_dot, segment_ids, T, NH, NKV, scale, scale * kLog2e);
}

}  // namespace gptune::cuda
