// Causal grouped-query self-attention, flash style, fp32 on the SIMT cores. qkv rows are
// (NH+2*NKV)*hs wide (kernels.inc); query head h reads kv head h / (NH/NKV).
//
// Work split (all three kernels): a block owns 64 rows (queries, or keys in the dK/dV kernel) of
// one (batch, head); each row is handled by TPR = HS_MAX/16 adjacent threads, each owning 16 of the
// head's channels (float4 chunks p, p+TPR, p+2TPR, p+3TPR, so the TPR threads of a row read
// different banks). A dot product over the head is 16 FMAs per thread plus log2(TPR) shuffles.
// The other operand streams through shared memory in tiles of 64 rows; nothing of size (T,T) is
// ever stored.
//   forward:  online softmax over key tiles (in base 2: scores are pre-multiplied by log2(e)),
//             writes out and lse = log-sum-exp of the scaled scores (natural log).
//   backward: D_i = dot(dout_i, out_i) first; then a key-major kernel accumulates dK, dV over the
//             queries that see each key (a block owns keys of one kv head and walks the queries of
//             every query head of its group, so dK/dV need no atomics), and a query-major kernel
//             accumulates dQ over the keys each query sees. Probabilities are recomputed from lse in both. Two passes cost ~40% more
//             arithmetic than one, but need no atomics: results are deterministic.
// Head sizes up to 128 are supported (templates for 16/32/64/128; channels beyond hs are zero).
// With set_attention_precision(true), head size 64 goes to the tensor-core kernels of
// attention_bf16.cu instead (decoding with the KV cache always stays here).
// Masking: key j is visible to query i when j <= i (+ the cache offset when decoding) and, with
// segment_ids, when both carry the same segment id.
// Dropout on the probabilities (training; kernels.inc): every thread of a (query, key) pair draws
// the multiplier z of gptune/dropout_mask.h (index ((b*NH + h)*T + key)*T + query) where it needs it,
// nothing is stored: the forward sums the undropped p for the softmax and accumulates z p v; the
// backward uses dv += z p dout and ds = p (z dp - D), D = dot(dout, out) of the dropped out. The
// bf16 kernels have no dropout: with p > 0 every head size runs here.
#include <cmath>
#include <string>

#include "common.cuh"
#include "gptune/cuda_options.h"
#include "gptune/dropout_mask.h"

namespace gptune::cuda {

namespace {

bool g_attention_bf16 = false;

constexpr int kRows = 64;        // rows (queries or keys) per block
// Rows of the streamed operand per shared-memory tile: two fp32 tiles must fit the 48 KiB of
// static shared memory.
template <int HS> __host__ __device__ constexpr int tile_rows() { return HS <= 64 ? 64 : 32; }
// Resident blocks per multiprocessor to plan registers for: 512 threads per SM, at most 128
// registers per thread (a row's state is 32-64 floats plus a chunk of scores).
template <int HS> __host__ __device__ constexpr int kMinBlocks() { return 512 / (kRows * HS / 16); }
constexpr int kChannels = 16;    // channels per thread
constexpr int kChunk = 8;         // keys per online-softmax update in the forward
constexpr int kBackwardChunk = 4;  // keys per step in the dQ kernel (8 would spill)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Where the q, k, v rows of one (batch, head) live. Row r of q for batch b and head h starts at
// q + b * q_batch + r * q_row + h * hs; k and v likewise with kv_batch / kv_row and kv head
// h / group in place of h.
struct AttentionViews {
  const float* q;
  const float* k;
  const float* v;
  long long q_row, q_batch, kv_row, kv_batch;
  float* out;  // row r: out + b * out_batch + r * out_row + h * hs
  long long out_row, out_batch;
  float* lse;  // (B, NH, Tq) or null
  const int* segment_ids;  // (B, T) or null; only when keys and queries are the same positions
  int Tq, Tk;              // query and key counts
  int query_offset;        // query r sits at position r + query_offset (the KV-cache length)
  // Continuous batching (both null otherwise): batch b's keys and values are those of cache slot
  // slots[b] (k + slots[b] * kv_batch), its query r sits at pasts[b] + r and it has pasts[b] + Tq keys.
  const int* slots;
  const int* pasts;
  int NH, group, hs;       // group = NH / NKV query heads per kv head
  bool vectorized;         // every row start 16-byte aligned and hs % 4 == 0
  DropoutMask drop;        // on the probabilities (training only: Tq == Tk, no offset); inactive: none
};

// The dropout multiplier of (b, h, query, key) for T queries and keys (1 when d is inactive).
__device__ __forceinline__ float attention_dropout(const DropoutMask& d, int b, int NH, int h, int T, int query, int key) {
  if (!d.active) return 1.0f;
  const uint64_t index = ((static_cast<uint64_t>(b) * NH + h) * T + key) * static_cast<uint64_t>(T) + query;
  return dropout_multiplier(d, index);
}

// Channel of this thread's element e (0..15): chunk (e / 4) * TPR + part, lane e % 4 of the chunk.
template <int TPR>
__device__ __forceinline__ int channel_of(int part, int e) {
  return ((e / 4) * TPR + part) * 4 + e % 4;
}

// Loads this thread's 16 channels of one row (zero beyond hs).
template <int TPR>
__device__ __forceinline__ void load_row(float (&dst)[kChannels], const float* row, int part, int hs, bool vectorized,
                                         float scale) {
#pragma unroll
  for (int chunk = 0; chunk < kChannels / 4; ++chunk) {
    const int c = (chunk * TPR + part) * 4;
    if (vectorized && c < hs) {  // hs % 4 == 0, so the whole chunk is inside the head
      const float4 v = *reinterpret_cast<const float4*>(row + c);
      dst[chunk * 4 + 0] = v.x * scale, dst[chunk * 4 + 1] = v.y * scale;
      dst[chunk * 4 + 2] = v.z * scale, dst[chunk * 4 + 3] = v.w * scale;
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) dst[chunk * 4 + e] = c + e < hs ? row[c + e] * scale : 0.0f;
    }
  }
}

// Copies rows [first, first + tile_rows) of one (batch, head) operand into a shared tile
// [tile_rows][HS], zero-filling rows past `count` and channels past hs.
template <int HS>
__device__ __forceinline__ void load_tile(float* tile, const float* base, long long row_stride, int first, int count,
                                          int hs, bool vectorized) {
  constexpr int kTile = tile_rows<HS>();
  if (vectorized) {
    for (int i = threadIdx.x; i < kTile * HS / 4; i += blockDim.x) {
      const int r = i / (HS / 4), c = i % (HS / 4) * 4;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (first + r < count && c < hs) v = *reinterpret_cast<const float4*>(base + (first + r) * row_stride + c);
      *reinterpret_cast<float4*>(tile + r * HS + c) = v;
    }
  } else {
    for (int i = threadIdx.x; i < kTile * HS; i += blockDim.x) {
      const int r = i / HS, c = i % HS;
      tile[r * HS + c] = first + r < count && c < hs ? base[(first + r) * row_stride + c] : 0.0f;
    }
  }
}

// This thread's part of dot(mine, tile row r).
template <int TPR, int HS>
__device__ __forceinline__ float partial_dot(const float (&mine)[kChannels], const float* tile, int r, int part) {
  float s = 0.0f;
#pragma unroll
  for (int chunk = 0; chunk < kChannels / 4; ++chunk) {
    const float4 t = *reinterpret_cast<const float4*>(tile + r * HS + (chunk * TPR + part) * 4);
    s = fmaf(mine[chunk * 4 + 0], t.x, s);
    s = fmaf(mine[chunk * 4 + 1], t.y, s);
    s = fmaf(mine[chunk * 4 + 2], t.z, s);
    s = fmaf(mine[chunk * 4 + 3], t.w, s);
  }
  return s;
}

// mine += w * tile row r (this thread's channels).
template <int TPR, int HS>
__device__ __forceinline__ void axpy_row(float (&mine)[kChannels], float w, const float* tile, int r, int part) {
#pragma unroll
  for (int chunk = 0; chunk < kChannels / 4; ++chunk) {
    const float4 t = *reinterpret_cast<const float4*>(tile + r * HS + (chunk * TPR + part) * 4);
    mine[chunk * 4 + 0] = fmaf(w, t.x, mine[chunk * 4 + 0]);
    mine[chunk * 4 + 1] = fmaf(w, t.y, mine[chunk * 4 + 1]);
    mine[chunk * 4 + 2] = fmaf(w, t.z, mine[chunk * 4 + 2]);
    mine[chunk * 4 + 3] = fmaf(w, t.w, mine[chunk * 4 + 3]);
  }
}

// Sum over the TPR adjacent threads of a row (they are adjacent lanes of one warp).
template <int TPR>
__device__ __forceinline__ float row_sum(float v) {
#pragma unroll
  for (int offset = 1; offset < TPR; offset <<= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Writes (or, with accumulate, adds) this thread's channels of a row.
template <int TPR>
__device__ __forceinline__ void store_row(float* row, const float (&value)[kChannels], int part, int hs, float scale,
                                          bool accumulate) {
#pragma unroll
  for (int e = 0; e < kChannels; ++e) {
    const int c = channel_of<TPR>(part, e);
    if (c < hs) row[c] = (accumulate ? row[c] : 0.0f) + value[e] * scale;
  }
}

// ---- forward (training and KV-cache decoding) ----
template <int HS>
__global__ void __launch_bounds__(kRows * HS / kChannels, kMinBlocks<HS>())
    attention_forward_kernel(AttentionViews a, float scale_log2) {
  constexpr int TPR = HS / kChannels;
  constexpr int kTile = tile_rows<HS>();
  __shared__ __align__(16) float k_tile[kTile * HS];
  __shared__ __align__(16) float v_tile[kTile * HS];
  __shared__ int segment_tile[kTile];
  const int b = blockIdx.y / a.NH, h = blockIdx.y % a.NH;
  const int part = threadIdx.x % TPR;
  const int query = blockIdx.x * kRows + threadIdx.x / TPR;
  const bool active = query < a.Tq;
  const int query_offset = a.pasts ? a.pasts[b] : a.query_offset;
  const int Tk = a.pasts ? query_offset + a.Tq : a.Tk;
  const long long kv_at = (a.slots ? a.slots[b] : b) * a.kv_batch;
  const int position = query + query_offset;
  const int* segments = a.segment_ids ? a.segment_ids + static_cast<long long>(b) * a.Tk : nullptr;
  const int query_segment = segments && active ? segments[query] : 0;

  float q[kChannels], o[kChannels];
  const float* q_row = a.q + b * a.q_batch + static_cast<long long>(active ? query : 0) * a.q_row + h * a.hs;
  load_row<TPR>(q, q_row, part, a.hs, a.vectorized, scale_log2);
#pragma unroll
  for (int e = 0; e < kChannels; ++e) o[e] = 0.0f;
  float running_max = -INFINITY, running_sum = 0.0f;  // base-2 units

  const float* k_base = a.k + kv_at + (h / a.group) * a.hs;
  const float* v_base = a.v + kv_at + (h / a.group) * a.hs;
  // Keys up to the last query position of this block (causal), at most Tk.
  const int last_query = imin(a.Tq, static_cast<int>(blockIdx.x + 1) * kRows) - 1;
  const int key_end = imin(Tk, last_query + query_offset + 1);
  for (int tile_start = 0; tile_start < key_end; tile_start += kTile) {
    __syncthreads();  // the previous tile is no longer read
    load_tile<HS>(k_tile, k_base + tile_start * a.kv_row, a.kv_row, 0, key_end - tile_start, a.hs, a.vectorized);
    load_tile<HS>(v_tile, v_base + tile_start * a.kv_row, a.kv_row, 0, key_end - tile_start, a.hs, a.vectorized);
    if (segments)
      for (int i = threadIdx.x; i < kTile; i += blockDim.x)
        segment_tile[i] = tile_start + i < a.Tk ? segments[tile_start + i] : -1;
    __syncthreads();
    const int tile_keys = imin(kTile, key_end - tile_start);
    for (int j0 = 0; j0 < tile_keys; j0 += kChunk) {
      float s[kChunk];
#pragma unroll
      for (int jj = 0; jj < kChunk; ++jj) s[jj] = row_sum<TPR>(partial_dot<TPR, HS>(q, k_tile, j0 + jj, part));
      float chunk_max = running_max;
#pragma unroll
      for (int jj = 0; jj < kChunk; ++jj) {
        const int key = tile_start + j0 + jj;  // < Tk whenever j0 + jj < tile_keys
        const bool ok = active && j0 + jj < tile_keys && key <= position &&
                        (!segments || segment_tile[j0 + jj] == query_segment);
        s[jj] = ok ? s[jj] : -INFINITY;
        chunk_max = fmaxf(chunk_max, s[jj]);
      }
      // Nothing visible yet (max still -inf): shift by 0 so every exp2 below is exp2(-inf) = 0 and
      // no NaN appears; no branch, so the lanes of a warp stay converged for the next shuffles.
      const float shift = chunk_max == -INFINITY ? 0.0f : chunk_max;
      const float correction = exp2f(running_max - shift);  // 0 when running_max = -inf
      running_sum *= correction;
#pragma unroll
      for (int e = 0; e < kChannels; ++e) o[e] *= correction;
#pragma unroll
      for (int jj = 0; jj < kChunk; ++jj) {
        const float p = exp2f(s[jj] - shift);  // 0 for masked keys
        running_sum += p;
        if (j0 + jj < tile_keys) {
          // Dropped keys still count in the softmax's sum; only their value is left out.
          const float z = active ? attention_dropout(a.drop, b, a.NH, h, a.Tq, query, tile_start + j0 + jj) : 1.0f;
          axpy_row<TPR, HS>(o, p * z, v_tile, j0 + jj, part);
        }
      }
      running_max = chunk_max;
    }
  }
  if (!active) return;
  float* out_row = a.out + b * a.out_batch + static_cast<long long>(query) * a.out_row + h * a.hs;
  store_row<TPR>(out_row, o, part, a.hs, 1.0f / running_sum, false);
  if (a.lse && part == 0)
    a.lse[(static_cast<long long>(b) * a.NH + h) * a.Tq + query] = running_max * kLn2 + logf(running_sum);
}

// ---- backward ----
// D (B, NH, T): dot(dout, out) per query row and head, dout and out (B,T,NH*hs); one warp per
// (row, head).
__global__ void attention_row_dot_kernel(float* D, const float* dout, const float* out, int B, int T, int NH, int hs) {
  const long long warp = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= static_cast<long long>(B) * T * NH) return;
  const int h = static_cast<int>(warp % NH);
  const long long row = warp / NH;  // b * T + t
  const long long width = static_cast<long long>(NH) * hs;
  const float* d = dout + row * width + h * hs;
  const float* o = out + row * width + h * hs;
  float s = 0.0f;
  for (int c = lane; c < hs; c += 32) s += d[c] * o[c];
  s = warp_sum(s);
  if (lane == 0) {
    const long long b = row / T, t = row % T;
    D[(b * NH + h) * T + t] = s;
  }
}

struct BackwardViews {
  float* dqkv;
  const float* qkv;
  const float* dout;
  const float* lse;       // (B, NH, T)
  const float* row_dot;   // D (B, NH, T)
  const int* segment_ids; // (B, T) or null
  int T, NH, NKV, hs;
  bool vectorized;
  DropoutMask drop;  // the forward's dropout on the probabilities; inactive: none
  // Floats per qkv row and per out row; channel offsets of query head h and of kv head g's k, v.
  __host__ __device__ long long qkv_width() const { return static_cast<long long>(NH + 2 * NKV) * hs; }
  __host__ __device__ long long out_width() const { return static_cast<long long>(NH) * hs; }
  __host__ __device__ long long q_at(int h) const { return static_cast<long long>(h) * hs; }
  __host__ __device__ long long k_at(int g) const { return static_cast<long long>(NH + g) * hs; }
  __host__ __device__ long long v_at(int g) const { return static_cast<long long>(NH + NKV + g) * hs; }
};

// dK, dV for 64 keys of one (b, kv head), over every query of every query head of its group that
// sees them.
//   p = exp(q.k * scale - lse_q), dv += p dout_q, ds = p (dout_q.v - D_q), dk += ds * scale * q.
template <int HS>
__global__ void __launch_bounds__(kRows * HS / kChannels, kMinBlocks<HS>())
    attention_backward_kv_kernel(BackwardViews a, float scale) {
  constexpr int TPR = HS / kChannels;
  constexpr int kTile = tile_rows<HS>();
  __shared__ __align__(16) float q_tile[kTile * HS];
  __shared__ __align__(16) float dout_tile[kTile * HS];
  __shared__ float lse_tile[kTile], dot_tile[kTile];
  __shared__ int segment_tile[kTile];
  const int b = blockIdx.y / a.NKV, g = blockIdx.y % a.NKV, group = a.NH / a.NKV;
  const int part = threadIdx.x % TPR;
  const int key = blockIdx.x * kRows + threadIdx.x / TPR;
  const bool active = key < a.T;
  const long long row_stride = a.qkv_width(), out_stride = a.out_width();
  const float* qkv_b = a.qkv + static_cast<long long>(b) * a.T * row_stride;
  const int* segments = a.segment_ids ? a.segment_ids + static_cast<long long>(b) * a.T : nullptr;
  const int key_segment = segments && active ? segments[key] : 0;

  float k[kChannels], v[kChannels], dk[kChannels], dv[kChannels];
  const long long key_row = static_cast<long long>(active ? key : 0) * row_stride;
  load_row<TPR>(k, qkv_b + key_row + a.k_at(g), part, a.hs, a.vectorized, scale * kLog2e);
  load_row<TPR>(v, qkv_b + key_row + a.v_at(g), part, a.hs, a.vectorized, 1.0f);
#pragma unroll
  for (int e = 0; e < kChannels; ++e) dk[e] = dv[e] = 0.0f;

  for (int h = g * group; h < (g + 1) * group; ++h) {
    const float* lse_bh = a.lse + (static_cast<long long>(b) * a.NH + h) * a.T;
    const float* dot_bh = a.row_dot + (static_cast<long long>(b) * a.NH + h) * a.T;
    // Queries from this block's first key on (earlier queries see none of its keys).
    for (int tile_start = blockIdx.x * kRows; tile_start < a.T; tile_start += kTile) {
      __syncthreads();
      load_tile<HS>(q_tile, qkv_b + tile_start * row_stride + a.q_at(h), row_stride, 0, a.T - tile_start, a.hs, a.vectorized);
      load_tile<HS>(dout_tile, a.dout + (static_cast<long long>(b) * a.T + tile_start) * out_stride + h * a.hs, out_stride, 0,
                    a.T - tile_start, a.hs, a.vectorized);
      for (int i = threadIdx.x; i < kTile; i += blockDim.x) {
        const bool in = tile_start + i < a.T;
        lse_tile[i] = in ? lse_bh[tile_start + i] * kLog2e : 0.0f;
        dot_tile[i] = in ? dot_bh[tile_start + i] : 0.0f;
        segment_tile[i] = in && segments ? segments[tile_start + i] : -1;
      }
      __syncthreads();
      const int tile_queries = imin(kTile, a.T - tile_start);
  #pragma unroll 2
      for (int i = 0; i < tile_queries; ++i) {
        // One query at a time: the row's 64 accumulators leave no registers for a batch of
        // speculatively loaded q/dout rows.
        const float s = row_sum<TPR>(partial_dot<TPR, HS>(k, q_tile, i, part));
        const float dp = row_sum<TPR>(partial_dot<TPR, HS>(v, dout_tile, i, part));
        const int query = tile_start + i;
        const bool ok = active && key <= query && (!segments || segment_tile[i] == key_segment);
        if (ok) {
          const float p = exp2f(s - lse_tile[i]);
          const float z = attention_dropout(a.drop, b, a.NH, h, a.T, query, key);
          axpy_row<TPR, HS>(dv, p * z, dout_tile, i, part);
          axpy_row<TPR, HS>(dk, p * (z * dp - dot_tile[i]), q_tile, i, part);
        }
      }
    }
  }  // query heads of the group
  if (!active) return;
  float* dqkv_row = a.dqkv + (static_cast<long long>(b) * a.T + key) * row_stride;
  store_row<TPR>(dqkv_row + a.k_at(g), dk, part, a.hs, scale, true);
  store_row<TPR>(dqkv_row + a.v_at(g), dv, part, a.hs, 1.0f, true);
}

// dQ for 64 queries of one (b, h), over every key they see: dq += ds * scale * k.
template <int HS>
__global__ void __launch_bounds__(kRows * HS / kChannels, kMinBlocks<HS>())
    attention_backward_q_kernel(BackwardViews a, float scale) {
  constexpr int TPR = HS / kChannels;
  constexpr int kTile = tile_rows<HS>();
  __shared__ __align__(16) float k_tile[kTile * HS];
  __shared__ __align__(16) float v_tile[kTile * HS];
  __shared__ int segment_tile[kTile];
  const int b = blockIdx.y / a.NH, h = blockIdx.y % a.NH, g = h / (a.NH / a.NKV);
  const int part = threadIdx.x % TPR;
  const int query = blockIdx.x * kRows + threadIdx.x / TPR;
  const bool active = query < a.T;
  const long long row_stride = a.qkv_width(), out_stride = a.out_width();
  const float* qkv_b = a.qkv + static_cast<long long>(b) * a.T * row_stride;
  const int* segments = a.segment_ids ? a.segment_ids + static_cast<long long>(b) * a.T : nullptr;
  const int query_segment = segments && active ? segments[query] : 0;

  float q[kChannels], d_out[kChannels], dq[kChannels];
  const long long query_row = static_cast<long long>(active ? query : 0);
  load_row<TPR>(q, qkv_b + query_row * row_stride + a.q_at(h), part, a.hs, a.vectorized, scale * kLog2e);
  load_row<TPR>(d_out, a.dout + (static_cast<long long>(b) * a.T + query_row) * out_stride + h * a.hs, part, a.hs,
                a.vectorized, 1.0f);
#pragma unroll
  for (int e = 0; e < kChannels; ++e) dq[e] = 0.0f;
  const long long bh = static_cast<long long>(b) * a.NH + h;
  const float lse2 = active ? a.lse[bh * a.T + query] * kLog2e : 0.0f;
  const float row_dot = active ? a.row_dot[bh * a.T + query] : 0.0f;

  const int last_query = imin(a.T, static_cast<int>(blockIdx.x + 1) * kRows) - 1;
  const int key_end = last_query + 1;
  for (int tile_start = 0; tile_start < key_end; tile_start += kTile) {
    __syncthreads();
    load_tile<HS>(k_tile, qkv_b + tile_start * row_stride + a.k_at(g), row_stride, 0, key_end - tile_start, a.hs,
                  a.vectorized);
    load_tile<HS>(v_tile, qkv_b + tile_start * row_stride + a.v_at(g), row_stride, 0, key_end - tile_start, a.hs,
                  a.vectorized);
    if (segments)
      for (int i = threadIdx.x; i < kTile; i += blockDim.x) segment_tile[i] = tile_start + i < a.T ? segments[tile_start + i] : -1;
    __syncthreads();
    const int tile_keys = imin(kTile, key_end - tile_start);
    for (int j0 = 0; j0 < tile_keys; j0 += kBackwardChunk) {
      float s[kBackwardChunk], dp[kBackwardChunk];
#pragma unroll
      for (int jj = 0; jj < kBackwardChunk; ++jj) {
        s[jj] = row_sum<TPR>(partial_dot<TPR, HS>(q, k_tile, j0 + jj, part));
        dp[jj] = row_sum<TPR>(partial_dot<TPR, HS>(d_out, v_tile, j0 + jj, part));
      }
#pragma unroll
      for (int jj = 0; jj < kBackwardChunk; ++jj) {
        const int j = j0 + jj, key = tile_start + j;
        const bool ok = active && j < tile_keys && key <= query && (!segments || segment_tile[j] == query_segment);
        if (ok) {
          const float z = attention_dropout(a.drop, b, a.NH, h, a.T, query, key);
          axpy_row<TPR, HS>(dq, exp2f(s[jj] - lse2) * (z * dp[jj] - row_dot), k_tile, j, part);
        }
      }
    }
  }
  if (!active) return;
  store_row<TPR>(a.dqkv + (static_cast<long long>(b) * a.T + query) * row_stride + a.q_at(h), dq, part, a.hs, scale, true);
}

// ---- dispatch ----
// Head sizes beyond 128, or heads that do not group (checked by the binding too).
void check_heads(const char* kernel, int NH, int NKV, int hs) {
  if (NH <= 0 || NKV <= 0 || NH % NKV != 0)
    throw Error(std::string(kernel) + ": expected positive NH and NKV with NH divisible by NKV, received NH=" +
                std::to_string(NH) + " NKV=" + std::to_string(NKV));
  if (hs <= 0 || hs > 128)
    throw Error(std::string(kernel) + ": the CUDA backend supports head sizes HS from 1 to 128, received HS=" +
                std::to_string(hs));
}

// Smallest supported template head size >= hs.
int template_head_size(int hs) { return hs <= 16 ? 16 : hs <= 32 ? 32 : hs <= 64 ? 64 : hs <= 128 ? 128 : 0; }

template <template <int> class Launcher, typename... Args>
void with_head_size(int hs, Args&&... args) {
  switch (template_head_size(hs)) {
    case 16: Launcher<16>::run(args...); break;
    case 32: Launcher<32>::run(args...); break;
    case 64: Launcher<64>::run(args...); break;
    default: Launcher<128>::run(args...); break;
  }
}

template <int HS>
struct ForwardLauncher {
  static void run(const AttentionViews& a, int B) {
    const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(a.hs));
    launch(attention_forward_kernel<HS>, dim3(static_cast<unsigned>(ceil_div(a.Tq, kRows)), B * a.NH),
           dim3(kRows * HS / kChannels), 0, a, scale_log2);
  }
};
template <int HS>
struct BackwardLauncher {
  static void run(const BackwardViews& a, int B) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(a.hs));
    const unsigned row_blocks = static_cast<unsigned>(ceil_div(a.T, kRows));
    const dim3 block(kRows * HS / kChannels);
    launch(attention_backward_kv_kernel<HS>, dim3(row_blocks, B * a.NKV), block, 0, a, scale);
    launch(attention_backward_q_kernel<HS>, dim3(row_blocks, B * a.NH), block, 0, a, scale);
  }
};

bool all_aligned(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16) return false;
  return true;
}

// Copies the k and v heads of qkv (B,Tq,W) rows, kv_width = NKV*hs floats each starting at
// channel k_offset (v right after), into cache rows [past, past+Tq) of kcache, vcache (B,maxT,kv_width).
// With slots and pasts (continuous batching), row b goes to slot slots[b] from position pasts[b] instead.
__global__ void kv_cache_write_kernel(float* kcache, float* vcache, const float* qkv, const int* slots,
                                      const int* pasts, int Tq, int past, int maxT, long long W, long long k_offset,
                                      int kv_width, long long total) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int c = static_cast<int>(i % kv_width);
    const long long bt = i / kv_width;  // b * Tq + t
    const long long b = bt / Tq, t = bt % Tq;
    const long long slot = slots ? slots[b] : b, first = pasts ? pasts[b] : past;
    const long long cache_row = (slot * maxT + first + t) * kv_width;
    kcache[cache_row + c] = qkv[bt * W + k_offset + c];
    vcache[cache_row + c] = qkv[bt * W + k_offset + kv_width + c];
  }
}

}  // namespace

void set_attention_precision(bool bf16) { g_attention_bf16 = bf16; }
bool attention_precision_bf16() { return g_attention_bf16; }

void attention_forward(float* out, float* lse, const float* qkv, const int* segment_ids, int B, int T, int NH, int NKV,
                       int HS, float dropout, uint64_t seed) {
  check_heads("attention_forward", NH, NKV, HS);
  if (B <= 0 || T <= 0) return;
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  if (g_attention_bf16 && HS == 64 && !drop.active) {
    attention_forward_bf16(out, lse, qkv, segment_ids, B, T, NH, NKV);
    return;
  }
  const long long W = static_cast<long long>(NH + 2 * NKV) * HS, out_width = static_cast<long long>(NH) * HS;
  AttentionViews a{};
  a.q = qkv, a.k = qkv + static_cast<long long>(NH) * HS, a.v = qkv + static_cast<long long>(NH + NKV) * HS;
  a.q_row = a.kv_row = W;
  a.q_batch = a.kv_batch = W * T;
  a.out = out, a.out_row = out_width, a.out_batch = out_width * T;
  a.lse = lse, a.segment_ids = segment_ids;
  a.Tq = a.Tk = T, a.query_offset = 0, a.NH = NH, a.group = NH / NKV, a.hs = HS;
  a.vectorized = HS % 4 == 0 && all_aligned({qkv, out});
  a.drop = drop;
  with_head_size<ForwardLauncher>(HS, a, B);
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                        const int* segment_ids, int B, int T, int NH, int NKV, int HS, float dropout, uint64_t seed) {
  check_heads("attention_backward", NH, NKV, HS);
  if (B <= 0 || T <= 0 || !dqkv) return;
  float* row_dot = static_cast<float*>(scratch(Scratch::Attention, static_cast<size_t>(B) * NH * T * sizeof(float)));
  const long long warps = static_cast<long long>(B) * T * NH;
  launch(attention_row_dot_kernel, dim3(static_cast<unsigned>(ceil_div(warps * 32, 256))), dim3(256), 0, row_dot, dout,
         out, B, T, NH, HS);
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  if (g_attention_bf16 && HS == 64 && !drop.active) {
    attention_backward_bf16(dqkv, dout, qkv, lse, row_dot, segment_ids, B, T, NH, NKV);
    return;
  }
  BackwardViews a{dqkv, qkv, dout, lse, row_dot, segment_ids, T, NH, NKV, HS,
                  HS % 4 == 0 && all_aligned({dqkv, qkv, dout}), drop};
  with_head_size<BackwardLauncher>(HS, a, B);
}

namespace {

// attention_cached_forward and attention_cached_rows_forward: slots and pasts null for the former.
void cached_forward(float* out, float* kcache, float* vcache, const float* qkv, const int* slots, const int* pasts,
                    int B, int Tq, int past, int maxT, int NH, int NKV, int HS) {
  const long long W = static_cast<long long>(NH + 2 * NKV) * HS, out_width = static_cast<long long>(NH) * HS;
  const int kv_width = NKV * HS;
  const long long total = static_cast<long long>(B) * Tq * kv_width;
  launch(kv_cache_write_kernel, dim3(grid_for(total, 256)), dim3(256), 0, kcache, vcache, qkv, slots, pasts, Tq, past,
         maxT, W, static_cast<long long>(NH) * HS, kv_width, total);
  AttentionViews a{};
  a.q = qkv, a.k = kcache, a.v = vcache;
  a.q_row = W, a.q_batch = W * Tq;
  a.kv_row = kv_width, a.kv_batch = static_cast<long long>(kv_width) * maxT;
  a.out = out, a.out_row = out_width, a.out_batch = out_width * Tq;
  a.lse = nullptr, a.segment_ids = nullptr;
  a.Tq = Tq, a.Tk = past + Tq, a.query_offset = past, a.NH = NH, a.group = NH / NKV, a.hs = HS;
  a.slots = slots, a.pasts = pasts;
  a.vectorized = HS % 4 == 0 && all_aligned({qkv, out, kcache, vcache});
  a.drop = dropout_mask_params(0.0f, 0);  // no dropout when decoding
  with_head_size<ForwardLauncher>(HS, a, B);
}

}  // namespace

void attention_cached_forward(float* out, float* kcache, float* vcache, const float* qkv, int B, int Tq, int past,
                              int maxT, int NH, int NKV, int HS) {
  check_heads("attention_cached_forward", NH, NKV, HS);
  if (B <= 0 || Tq <= 0) return;
  cached_forward(out, kcache, vcache, qkv, nullptr, nullptr, B, Tq, past, maxT, NH, NKV, HS);
}

void attention_cached_rows_forward(float* out, float* kcache, float* vcache, const float* qkv, const int* slots,
                                   const int* pasts, int B, int Tq, int S, int maxT, int NH, int NKV, int HS) {
  check_heads("attention_cached_rows_forward", NH, NKV, HS);
  (void)S;  // the binding checks every slot against S
  if (B <= 0 || Tq <= 0) return;
  // The grid covers Tq queries per row; each row's key count comes from pasts inside the kernel.
  cached_forward(out, kcache, vcache, qkv, slots, pasts, B, Tq, 0, maxT, NH, NKV, HS);
}

}  // namespace gptune::cuda
