// Token + position embedding.
//   forward:  out (B,T,C) = wte[tokens] + wpe[positions], one thread per element (or float4).
//   backward: dwte[id] += sum of the dout rows whose token is id (dwpe likewise by position). Many
//             rows share an id (repeated tokens, padding, every batch row at one position), and
//             float atomics would add them in a different order, so with different rounding, on
//             every run. Instead the sums are formed in a fixed order, so the result is
//             bit-identical from run to run (a resumed GPU run can equal an uninterrupted one):
//     1. sort the (id, row) pairs of all B*T rows on the device (bitonic, in scratch); the pairs
//        are unique, so the sorted order is unique and each id's rows sit together in row order;
//     2. cut the sorted list into fixed chunks of kChunkRows; a block per (chunk, channel slice)
//        sums each id's rows within the chunk in row order and adds the sum to the table when the
//        id lies wholly inside the chunk, else keeps it as the chunk's partial for that id;
//     3. for an id spanning chunks, the chunk where it starts adds its partials in chunk order.
//   The positional table without `positions` needs no sort: position pos_offset + t gets the rows
//   b*T + t, summed over b in order by one thread per (t, channel).
#include "common.cuh"

namespace gptune::cuda {

namespace {

__device__ __forceinline__ int position_of(const int* positions, int pos_offset, long long row, int T) {
  return positions ? positions[row] : pos_offset + static_cast<int>(row % T);
}

// out (B,T,C) = wte[tokens] + wpe[positions] (wte[tokens] alone when wpe is null); `vectorized`
// handles 4 channels per step (C % 4 == 0 and all pointers 16-byte aligned).
__global__ void encoder_forward_kernel(float* out, const int* tokens, const int* positions, const float* wte,
                                       const float* wpe, long long rows, int T, int C, int pos_offset, bool vectorized) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vectorized) {
    const int C4 = C / 4;
    for (long long i = first; i < rows * C4; i += stride) {
      const long long row = i / C4;
      const int c4 = static_cast<int>(i % C4);
      const float4 a = reinterpret_cast<const float4*>(wte + static_cast<long long>(tokens[row]) * C)[c4];
      const float4 b = wpe ? reinterpret_cast<const float4*>(wpe + static_cast<long long>(position_of(positions, pos_offset, row, T)) * C)[c4]
                           : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      reinterpret_cast<float4*>(out + row * C)[c4] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    }
  } else {
    for (long long i = first; i < rows * C; i += stride) {
      const long long row = i / C;
      const int c = static_cast<int>(i % C);
      out[i] = wte[static_cast<long long>(tokens[row]) * C + c] +
               (wpe ? wpe[static_cast<long long>(position_of(positions, pos_offset, row, T)) * C + c] : 0.0f);
    }
  }
}

// ---- backward: sort (id, row) pairs ----
// A sort key is id << 32 | row: ascending keys group rows by id, and by row within an id. Padding
// up to a power of two uses the largest key, which sorts last.
constexpr int kSortTile = 4096;    // keys per block in the shared-memory stages (32 KiB)
constexpr int kSortThreads = 1024;
constexpr uint64_t kPaddingKey = ~uint64_t(0);

__device__ __forceinline__ uint32_t id_of(uint64_t key) { return static_cast<uint32_t>(key >> 32); }
__device__ __forceinline__ long long row_of(uint64_t key) { return static_cast<long long>(key & 0xffffffffu); }

// Bitonic compare-exchange of elements i and i + j, for the stages j = j_first, j_first/2, .., 1 of
// the merge of width k, on a tile in shared memory whose first element has global index `base`.
// Each stage pairs every element exactly once, so a barrier between stages is all it needs.
__device__ __forceinline__ void bitonic_tile_stages(uint64_t* tile_keys, long long base, int tile, long long k,
                                                    int j_first) {
  for (int j = j_first; j > 0; j >>= 1) {
    for (int p = threadIdx.x; p < tile / 2; p += blockDim.x) {
      const int i = ((p & ~(j - 1)) << 1) | (p & (j - 1));  // lower element of pair p
      const bool ascending = ((base + i) & k) == 0;
      const uint64_t a = tile_keys[i], b = tile_keys[i + j];
      if ((a > b) == ascending) tile_keys[i] = b, tile_keys[i + j] = a;
    }
    __syncthreads();
  }
}

// keys (padded) <- the keys of rows [0, n) of ids, each tile of `tile` keys bitonic-sorted in the
// direction its position asks for (ascending when padded == tile).
__global__ void sort_tiles_kernel(uint64_t* keys, const int* ids, long long n, int tile) {
  __shared__ uint64_t tile_keys[kSortTile];
  const long long base = static_cast<long long>(blockIdx.x) * tile;
  for (int i = threadIdx.x; i < tile; i += blockDim.x) {
    const long long row = base + i;
    tile_keys[i] = row < n ? (static_cast<uint64_t>(static_cast<uint32_t>(ids[row])) << 32) | static_cast<uint64_t>(row)
                           : kPaddingKey;
  }
  __syncthreads();
  for (int k = 2; k <= tile; k <<= 1) bitonic_tile_stages(tile_keys, base, tile, k, k / 2);
  for (int i = threadIdx.x; i < tile; i += blockDim.x) keys[base + i] = tile_keys[i];
}

// One stage (k, j) of the bitonic merge for j >= the tile size: pairs lie in different tiles.
__global__ void merge_stage_kernel(uint64_t* keys, long long padded, long long k, long long j) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long p = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; p < padded / 2; p += stride) {
    const long long i = ((p & ~(j - 1)) << 1) | (p & (j - 1));
    const bool ascending = (i & k) == 0;
    const uint64_t a = keys[i], b = keys[i + j];
    if ((a > b) == ascending) keys[i] = b, keys[i + j] = a;
  }
}

// The stages j < tile of the merge of width k (> tile), one tile per block.
__global__ void merge_tiles_kernel(uint64_t* keys, long long k, int tile) {
  __shared__ uint64_t tile_keys[kSortTile];
  const long long base = static_cast<long long>(blockIdx.x) * tile;
  for (int i = threadIdx.x; i < tile; i += blockDim.x) tile_keys[i] = keys[base + i];
  __syncthreads();
  bitonic_tile_stages(tile_keys, base, tile, k, tile / 2);
  for (int i = threadIdx.x; i < tile; i += blockDim.x) keys[base + i] = tile_keys[i];
}

// Sorts the keys of ids (n) into keys (padded_size(n)), ascending.
long long padded_size(long long n) {
  long long padded = 1;
  while (padded < n) padded <<= 1;
  return padded;
}
void sort_row_keys(uint64_t* keys, const int* ids, long long n) {
  const long long padded = padded_size(n);
  const int tile = static_cast<int>(padded < kSortTile ? padded : kSortTile);
  const int threads = tile / 2 < 32 ? 32 : (tile / 2 > kSortThreads ? kSortThreads : tile / 2);
  launch(sort_tiles_kernel, dim3(static_cast<unsigned>(padded / tile)), dim3(threads), 0, keys, ids, n, tile);
  for (long long k = 2LL * tile; k <= padded; k <<= 1) {
    for (long long j = k / 2; j >= tile; j >>= 1)
      launch(merge_stage_kernel, dim3(grid_for(padded / 2, 256)), dim3(256), 0, keys, padded, k, j);
    launch(merge_tiles_kernel, dim3(static_cast<unsigned>(padded / tile)), dim3(threads), 0, keys, k, tile);
  }
}

// ---- backward: sum the sorted rows ----
constexpr int kChunkRows = 32;      // sorted rows per chunk
constexpr int kChannelThreads = 128;  // channels per block (one per thread)

// Block (chunk, channel slice): for each id among the chunk's sorted keys, the sum of its dout rows
// (in row order). An id wholly inside the chunk is added to table (id, C) here, the only place that
// adds to that row. Otherwise its sum goes to partials (chunks, 2, C): slot 0 when the id began in
// an earlier chunk (the chunk's first id), slot 1 when it begins here and continues (its last id).
__global__ void sum_chunks_kernel(float* __restrict__ table, float* __restrict__ partials,
                                  const uint64_t* __restrict__ keys, const float* __restrict__ dout, long long n, int C) {
  __shared__ uint64_t chunk_keys[kChunkRows];
  __shared__ uint64_t neighbours[2];  // the keys just before and just after the chunk (padding if none)
  const long long chunk = blockIdx.x;
  const long long begin = chunk * kChunkRows;
  const int count = static_cast<int>(n - begin < kChunkRows ? n - begin : kChunkRows);
  for (int k = threadIdx.x; k < count; k += blockDim.x) chunk_keys[k] = keys[begin + k];
  if (threadIdx.x == 0) {
    neighbours[0] = begin > 0 ? keys[begin - 1] : kPaddingKey;
    neighbours[1] = begin + count < n ? keys[begin + count] : kPaddingKey;
  }
  __syncthreads();
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;  // no barrier follows
  // Ids never reach 2^32 - 1 (they index tables), so a padding neighbour never matches one.
  const uint32_t id_before = id_of(neighbours[0]), id_after = id_of(neighbours[1]);
  float sum = 0.0f;
  for (int k0 = 0; k0 < count; k0 += 4) {
    float g[4];  // four rows' loads in flight before the adds that need them
#pragma unroll
    for (int u = 0; u < 4; ++u) g[u] = k0 + u < count ? dout[row_of(chunk_keys[k0 + u]) * C + c] : 0.0f;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int k = k0 + u;
      if (k >= count) break;
      const uint32_t id = id_of(chunk_keys[k]);
      sum += g[u];
      const bool last = k == count - 1;
      if (!last && id_of(chunk_keys[k + 1]) == id) continue;
      // Keys are sorted, so only the chunk's first id can equal id_before, only its last id_after.
      const bool began_before = id_before == id;
      const bool continues = last && id_after == id;
      if (began_before)
        partials[(chunk * 2 + 0) * C + c] = sum;
      else if (continues)
        partials[(chunk * 2 + 1) * C + c] = sum;
      else
        table[static_cast<long long>(id) * C + c] += sum;
      sum = 0.0f;
    }
  }
}

// Block (chunk, channel slice): if the chunk's last id begins in this chunk and continues into the
// next, adds its partials, in chunk order, to table (id, C).
__global__ void add_spanning_kernel(float* __restrict__ table, const float* __restrict__ partials,
                                    const uint64_t* __restrict__ keys, long long n, long long chunks, int C) {
  const long long chunk = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C || chunk + 1 >= chunks) return;
  const long long next_begin = (chunk + 1) * kChunkRows;
  const uint32_t id = id_of(keys[next_begin - 1]);
  if (id_of(keys[next_begin]) != id) return;                             // ends in this chunk
  if (chunk > 0 && id_of(keys[chunk * kChunkRows - 1]) == id) return;  // began in an earlier chunk
  // end: the first sorted row after the id (binary search for the first key with a larger id).
  long long lo = next_begin, hi = n;
  while (lo < hi) {
    const long long mid = lo + (hi - lo) / 2;
    if (id_of(keys[mid]) == id) lo = mid + 1; else hi = mid;
  }
  const long long last_chunk = (lo - 1) / kChunkRows;
  float sum = partials[(chunk * 2 + 1) * C + c];
  for (long long other = chunk + 1; other <= last_chunk; ++other) sum += partials[(other * 2 + 0) * C + c];
  table[static_cast<long long>(id) * C + c] += sum;
}

// table (ids, C) += dout (n, C) row by row at ids (n): deterministic (see the top of the file).
void add_rows_by_id(float* table, const int* ids, const float* dout, long long n, int C) {
  const long long padded = padded_size(n);
  const long long chunks = ceil_div(n, kChunkRows);
  const size_t key_bytes = static_cast<size_t>(padded) * sizeof(uint64_t);
  char* buffer = static_cast<char*>(scratch(Scratch::EncoderSort, key_bytes + static_cast<size_t>(chunks) * 2 * C * sizeof(float)));
  uint64_t* keys = reinterpret_cast<uint64_t*>(buffer);        // (padded)
  float* partials = reinterpret_cast<float*>(buffer + key_bytes);  // (chunks, 2, C)
  sort_row_keys(keys, ids, n);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(ceil_div(C, kChannelThreads)));
  launch(sum_chunks_kernel, grid, dim3(kChannelThreads), 0, table, partials, keys, dout, n, C);
  launch(add_spanning_kernel, grid, dim3(kChannelThreads), 0, table, partials, keys, n, chunks, C);
}

// dwpe (pos_offset + t, C) += sum over b of dout (b, t, C), b in order; one thread per (t, channel).
__global__ void add_position_rows_kernel(float* dwpe, const float* dout, int B, int T, int C, int pos_offset) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long plane = static_cast<long long>(T) * C;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < plane; i += stride) {
    const long long t = i / C;
    const int c = static_cast<int>(i % C);
    float sum = 0.0f;
    for (int b = 0; b < B; ++b) sum += dout[b * plane + i];
    dwpe[(pos_offset + t) * C + c] += sum;
  }
}

}  // namespace

void encoder_forward(float* out, const int* tokens, const int* positions, const float* wte, const float* wpe, int B,
                     int T, int C, int pos_offset) {
  const long long rows = static_cast<long long>(B) * T;
  if (rows == 0 || C == 0) return;
  const bool vectorized = C % 4 == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe);
  const int threads = 256;
  launch(encoder_forward_kernel, dim3(grid_for(rows * (vectorized ? C / 4 : C), threads)), dim3(threads), 0, out,
         tokens, positions, wte, wpe, rows, T, C, pos_offset, vectorized);
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* tokens, const int* positions, int B,
                      int T, int C, int pos_offset) {
  const long long rows = static_cast<long long>(B) * T;
  if (rows == 0 || C == 0) return;
  if (dwte) add_rows_by_id(dwte, tokens, dout, rows, C);
  if (dwpe && positions) add_rows_by_id(dwpe, positions, dout, rows, C);
  if (dwpe && !positions)
    launch(add_position_rows_kernel, dim3(grid_for(static_cast<long long>(T) * C, 256)), dim3(256), 0, dwpe, dout, B,
           T, C, pos_offset);
}

}  // namespace gptune::cuda
