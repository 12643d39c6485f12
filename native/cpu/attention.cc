// Causal grouped-query self-attention on the CPU, flash-attention style (declarations in kernels.inc).
//
// The (T,T) score matrix never exists: each (b, h) is cut into query tiles of kQueryTile rows, and
// each query tile walks the key tiles of kKeyTile keys up to the diagonal with an online softmax
// (running max and running sum per query), so the scratch per thread is O(tile).
//
// Layout. Every tile product is C (R,N) = A (R,K) . B (K,N) where B's rows are contiguous vectors and
// A is read one scalar at a time (broadcast), so K and V tiles are used straight from qkv without
// being transposed. Scores are kept transposed, St (keys, queries): St = K_tile (nk,hs) . Qt (hs,nq),
// where Qt is the query tile packed once per tile, transposed and pre-scaled by 1/sqrt(hs). The
// per-query softmax statistics are then vectors along St's rows, so the online softmax vectorises
// across queries without horizontal reductions.
//   forward, per query tile:  St = K.Qt;  online softmax over St's columns;  O = diag(alpha) O + P.V
//   backward, per query tile: St = K.Qt;  dPt = V.dOt;  P = exp(St - lse);  dS = P (dP - D) / sqrt(hs)
//                             dV += P^T.dO;  dK += dS^T.Q;  dQ += dS.K      with D_i = dO_i . O_i
// Dropout on the probabilities (training), FlashAttention's way: the softmax statistics (running
// max, sum, lse) are those of the undropped P, and only the P that multiplies V is dropped,
// O = (P o Z) V with Z the mask's multipliers (0 or 1/(1-p)). The backward regenerates Z tile by
// tile from (seed, index) instead of storing a (T,T) mask per head: dPt is masked (dP = Z o (V.dO)),
// dS = P (dP - D) keeps D_i = dO_i . O_i (= sum_j P_ij dP_ij, O being the dropped output), and dV
// takes (P o Z)^T.dO. Z is applied with the dropout tile kernels (row_kernels.h) to St's layout
// (keys, queries), which is why the mask's index is key-major (kernels.inc).
// The three tile primitives (product, online softmax step, softmax backward) come in a portable
// version here and an AVX-512 version in attention_avx512.cc, chosen at run time.
//
// Grouped-query heads change only which rows a query head reads: query head h takes its keys and
// values from kv head h / (NH/NKV), so the tile loops are those of multi-head attention. In the
// backward the query heads of one group add into the same dk and dv, so a work unit is a whole
// group (b, kv head) rather than one (b, h): its heads run one after another on one thread.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/parallel.h"
#include "cpu/row_kernels.h"
#include "gptune/kernels.h"

namespace gptune::cpu {

// The SIMD-specific inner loops. Shapes use the tile letters: nk keys, nq queries, hs head size.
struct AttentionTileOps {
  // C (R,N) with row stride ldc  =  A (R,K) . B (K,N) with B's row stride ldb, where element (r,k) of A
  // is A[r*a_row + k*a_col] (so A may be a transposed view). With accumulate, C += A.B instead, or
  // C = row_scale[r] * C + A.B when row_scale is non-null.
  void (*product)(float* C, int64_t ldc, const float* A, int64_t a_row, int64_t a_col,
                  const float* B, int64_t ldb, int R, int N, int K, bool accumulate,
                  const float* row_scale);
  // One online-softmax step over a transposed score tile St (nk,nq) with row stride ld: per query i,
  // new_max = max(row_max[i], St[:,i]); St[j,i] becomes exp(St[j,i] - new_max) (0 where it was -inf);
  // rescale[i] = exp(row_max[i] - new_max); row_sum[i] = row_sum[i] * rescale[i] + sum_j St[j,i].
  void (*online_softmax)(float* St, int64_t ld, int nk, int nq, float* row_max, float* row_sum,
                         float* rescale);
  // Softmax backward over a tile: St (nk,nq) of scores becomes P = exp(St - lse[i]) and dPt (nk,nq)
  // becomes scale * P * (dPt - D[i]); both with row stride ld.
  void (*softmax_backward)(float* St, float* dPt, int64_t ld, int nk, int nq, const float* lse,
                           const float* D, float scale);
};

#if defined(GPTUNE_X86)
// attention_avx512.cc (compiled with AVX-512 flags; only called after cpu_has_avx512()).
void attention_product_avx512(float* C, int64_t ldc, const float* A, int64_t a_row, int64_t a_col,
                              const float* B, int64_t ldb, int R, int N, int K, bool accumulate,
                              const float* row_scale);
void attention_online_softmax_avx512(float* St, int64_t ld, int nk, int nq, float* row_max,
                                     float* row_sum, float* rescale);
void attention_softmax_backward_avx512(float* St, float* dPt, int64_t ld, int nk, int nq,
                                       const float* lse, const float* D, float scale);
#endif

namespace {

constexpr int kQueryTile = 64;  // St's row length: 4 AVX-512 vectors of queries
constexpr int kKeyTile = 64;
constexpr int kPackMinRows = 8;  // a product re-reads its B tile once per 6 rows of A (AVX-512)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---- portable tile primitives (baseline x86-64; the compiler vectorises the inner loops) ----

void product_portable(float* C, int64_t ldc, const float* A, int64_t a_row, int64_t a_col,
                      const float* B, int64_t ldb, int R, int N, int K, bool accumulate,
                      const float* row_scale) {
  for (int r = 0; r < R; ++r) {
    float* c = C + r * ldc;
    if (!accumulate) {
      std::fill(c, c + N, 0.0f);
    } else if (row_scale) {
      for (int n = 0; n < N; ++n) c[n] *= row_scale[r];
    }
    for (int k = 0; k < K; ++k) {
      const float a = A[r * a_row + k * a_col];
      const float* b = B + k * ldb;
      for (int n = 0; n < N; ++n) c[n] += a * b[n];
    }
  }
}

void online_softmax_portable(float* St, int64_t ld, int nk, int nq, float* row_max,
                             float* row_sum, float* rescale) {
  // Row by row over St so the inner loops run along contiguous queries (nq <= kQueryTile).
  float new_max[kQueryTile], base[kQueryTile];
  std::copy(row_max, row_max + nq, new_max);
  for (int j = 0; j < nk; ++j)
    for (int i = 0; i < nq; ++i) new_max[i] = std::max(new_max[i], St[j * ld + i]);
  for (int i = 0; i < nq; ++i) {
    // A query with every key so far masked keeps max -inf; subtracting 0 instead of -inf keeps
    // exp(-inf - base) = 0 rather than NaN.
    base[i] = new_max[i] == kNegInf ? 0.0f : new_max[i];
    rescale[i] = std::exp(row_max[i] - base[i]);
    row_sum[i] *= rescale[i];
    row_max[i] = new_max[i];
  }
  for (int j = 0; j < nk; ++j) {
    float* s = St + j * ld;
    for (int i = 0; i < nq; ++i) {
      s[i] = std::exp(s[i] - base[i]);
      row_sum[i] += s[i];
    }
  }
}

void softmax_backward_portable(float* St, float* dPt, int64_t ld, int nk, int nq,
                               const float* lse, const float* D, float scale) {
  for (int j = 0; j < nk; ++j) {
    float* s = St + j * ld;
    float* dp = dPt + j * ld;
    for (int i = 0; i < nq; ++i) {
      const float p = std::exp(s[i] - lse[i]);
      s[i] = p;
      dp[i] = scale * p * (dp[i] - D[i]);
    }
  }
}

const AttentionTileOps& tile_ops_portable() {
  static const AttentionTileOps ops{product_portable, online_softmax_portable,
                                    softmax_backward_portable};
  return ops;
}

bool force_portable = false;  // test hook, see attention_use_portable_path

const AttentionTileOps& tile_ops() {
#if defined(GPTUNE_X86)
  static const AttentionTileOps avx512{attention_product_avx512, attention_online_softmax_avx512,
                                       attention_softmax_backward_avx512};
  if (!force_portable && cpu_has_avx512()) return avx512;
#endif
  return tile_ops_portable();
}

// ---- masking shared by the forward and backward ----

// Which (key, query) pairs of a tile may attend: keys [k0, k0+nk) at positions k0.., queries
// [q0, q0+nq) at positions qpos0... Segments (only in non-cached attention, where positions are
// indices) additionally require equal ids.
enum class TileVisibility { kNone, kAll, kSome };

bool uniform(const int* ids, int begin, int n) {
  for (int i = 1; i < n; ++i)
    if (ids[begin + i] != ids[begin]) return false;
  return true;
}

TileVisibility classify_tile(const int* segments, int k0, int nk, int q0, int qpos0, int nq) {
  if (k0 > qpos0 + nq - 1) return TileVisibility::kNone;  // wholly above the diagonal
  const bool causal_all = k0 + nk - 1 <= qpos0;
  if (!segments) return causal_all ? TileVisibility::kAll : TileVisibility::kSome;
  if (uniform(segments, q0, nq) && uniform(segments, k0, nk)) {
    if (segments[q0] != segments[k0]) return TileVisibility::kNone;
    return causal_all ? TileVisibility::kAll : TileVisibility::kSome;
  }
  // A tile straddling a segment boundary: look for any visible pair (tiles like this are few).
  for (int i = 0; i < nq; ++i)
    for (int j = 0; j < nk && k0 + j <= qpos0 + i; ++j)
      if (segments[k0 + j] == segments[q0 + i]) return TileVisibility::kSome;
  return TileVisibility::kNone;
}

// Sets the scores of invisible pairs in St (nk,nq) to -inf.
void mask_tile(float* St, int64_t ld, const int* segments, int k0, int nk, int q0, int qpos0,
               int nq) {
  for (int j = 0; j < nk; ++j) {
    float* s = St + j * ld;
    // causal: key k0+j is hidden from the queries before it, i < k0 + j - qpos0
    std::fill(s, s + std::clamp(k0 + j - qpos0, 0, nq), kNegInf);
    if (segments)
      for (int i = 0; i < nq; ++i)
        if (segments[k0 + j] != segments[q0 + i]) s[i] = kNegInf;
  }
}

// ---- scratch and packing ----

size_t round_up16(size_t n) { return (n + 15) / 16 * 16; }

// Float scratch owned by one thread for one kernel call, handed out in 64-byte aligned pieces.
class Scratch {
 public:
  explicit Scratch(size_t capacity) : storage_(capacity + 16) {
    const auto address = reinterpret_cast<uintptr_t>(storage_.data());
    next_ = storage_.data() + ((64 - address % 64) % 64) / sizeof(float);
  }
  float* take(size_t n) {
    float* piece = next_;
    next_ += round_up16(n);
    return piece;
  }

 private:
  std::vector<float> storage_;
  float* next_;
};

// Rows [r0, r0+n) of a matrix with row stride ld, hs floats each, times scale, packed transposed
// into Mt (hs, kQueryTile): the B operand of the score products.
void pack_transposed(float* Mt, const float* M, int64_t ld, int r0, int n, int hs, float scale) {
  for (int i = 0; i < n; ++i) {
    const float* row = M + (r0 + i) * ld;
    for (int d = 0; d < hs; ++d) Mt[d * kQueryTile + i] = row[d] * scale;
  }
}

// Rows [r0, r0+n) of a matrix with row stride ld copied into P (n, packed_stride). The heads' rows
// in qkv are 3C floats apart, a multiple of 1 KiB for GPT-2, so a tile read in place maps onto a few
// L1 sets and is evicted between the passes the products make over it; packed, it stays in L1.
void pack_rows(float* P, int64_t packed_stride, const float* M, int64_t ld, int r0, int n, int hs) {
  for (int i = 0; i < n; ++i) std::memcpy(P + i * packed_stride, M + (r0 + i) * ld, sizeof(float) * hs);
}

// The calling thread's scratch for head size hs, kept between calls (pool threads live as long as
// the process) so decoding, with its many small calls, does not allocate each time.
template <typename TileScratch>
TileScratch& thread_scratch(int hs) {
  thread_local std::unique_ptr<TileScratch> scratch;
  if (!scratch || scratch->hs != hs) scratch = std::make_unique<TileScratch>(hs);
  return *scratch;
}

// Runs fn(unit) for units [0, n) on every pool thread, handing units out one at a time so uneven
// units (causal query tiles) balance.
template <typename Fn>
void for_each_unit_dynamic(int64_t n, Fn&& fn) {
  parallel_chunks(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) fn(unit);
  });
}

// Channel layout of one packed qkv row (B,T,(NH+2*NKV)*HS) and of one out row (B,T,NH*HS).
struct QkvLayout {
  QkvLayout(int NH, int NKV, int HS)
      : NH(NH), NKV(NKV), HS(HS), group(NH / NKV), row(int64_t(NH + 2 * NKV) * HS),
        out_row(int64_t(NH) * HS), kv_row(int64_t(NKV) * HS) {}
  int64_t q(int64_t h) const { return h * HS; }                             // query head h
  int64_t k(int64_t h) const { return (NH + h / group) * int64_t(HS); }        // its kv head's k
  int64_t v(int64_t h) const { return (NH + NKV + h / group) * int64_t(HS); }  // and v
  int NH, NKV, HS, group;
  int64_t row;      // floats per qkv row
  int64_t out_row;  // floats per out row
  int64_t kv_row;   // floats per k (or v) part of a row, and per KV-cache row
};

// ---- forward ----

// One (b, h) of a forward problem. Query t sits at absolute position first_query_pos + t; the keys
// are positions 0 .. first_query_pos + num_queries - 1.
struct ForwardHead {
  const float* q;
  int64_t q_stride;  // row t of this head's q: q + t * q_stride (hs floats)
  const float* k;
  const float* v;
  int64_t kv_stride;
  float* out;
  int64_t out_stride;
  float* lse;           // (num_queries) or null
  const int* segments;  // (num_queries) or null; only when first_query_pos == 0
  int num_queries;
  int first_query_pos;
  // Dropout on the probabilities (training only: first_query_pos == 0, so keys and queries are
  // both 0..T-1): key j, query i has mask index (mask_row0 + j) * num_queries + i.
  const DropoutMask* drop;  // null or inactive: none
  int64_t mask_row0;        // (b * NH + h) * T
};

struct ForwardScratch {
  explicit ForwardScratch(int hs)
      : hs(hs),
        row_stride(round_up16(hs)),
        buffer(round_up16(size_t(hs) * kQueryTile) + size_t(kKeyTile) * kQueryTile +
               size_t(kQueryTile + kKeyTile) * row_stride + 3 * kQueryTile),
        qt(buffer.take(size_t(hs) * kQueryTile)),
        st(buffer.take(size_t(kKeyTile) * kQueryTile)),
        o(buffer.take(size_t(kQueryTile) * row_stride)),
        v(buffer.take(size_t(kKeyTile) * row_stride)),
        row_max(buffer.take(kQueryTile)),
        row_sum(buffer.take(kQueryTile)),
        rescale(buffer.take(kQueryTile)) {}
  int hs;
  int64_t row_stride;  // of o and v: hs rounded up to whole vectors
  Scratch buffer;
  float* qt;       // (hs, kQueryTile) scaled queries, transposed
  float* st;       // (kKeyTile, kQueryTile) scores, then probabilities
  float* o;        // (kQueryTile, row_stride) unnormalised output accumulator
  float* v;        // (kKeyTile, row_stride) the key tile's values
  float* row_max;  // (kQueryTile)
  float* row_sum;  // (kQueryTile)
  float* rescale;  // (kQueryTile)
};

void forward_query_tile(const AttentionTileOps& ops, const ForwardHead& head, int hs, int q0,
                        ForwardScratch& s) {
  const int nq = std::min(kQueryTile, head.num_queries - q0);
  const int qpos0 = head.first_query_pos + q0;
  const float scale = 1.0f / std::sqrt(float(hs));
  pack_transposed(s.qt, head.q, head.q_stride, q0, nq, hs, scale);
  std::fill(s.row_max, s.row_max + nq, kNegInf);
  std::fill(s.row_sum, s.row_sum + nq, 0.0f);
  std::fill(s.o, s.o + nq * s.row_stride, 0.0f);

  const int num_keys = qpos0 + nq;  // the last query sees keys up to its own position
  for (int k0 = 0; k0 < num_keys; k0 += kKeyTile) {
    const int nk = std::min(kKeyTile, num_keys - k0);
    const TileVisibility visibility = classify_tile(head.segments, k0, nk, q0, qpos0, nq);
    if (visibility == TileVisibility::kNone) continue;
    ops.product(s.st, kQueryTile, head.k + k0 * head.kv_stride, head.kv_stride, 1, s.qt,
                kQueryTile, nk, nq, hs, false, nullptr);
    if (visibility == TileVisibility::kSome)
      mask_tile(s.st, kQueryTile, head.segments, k0, nk, q0, qpos0, nq);
    ops.online_softmax(s.st, kQueryTile, nk, nq, s.row_max, s.row_sum, s.rescale);
    // The sums above are the undropped probabilities'; only the P that multiplies V is dropped.
    if (head.drop && head.drop->active)
      GPTUNE_ROW_KERNEL(dropout_tile)(s.st, kQueryTile, s.st, kQueryTile, nk, nq, head.mask_row0 + k0, q0,
                                      head.num_queries, *head.drop, false);
    // O (nq,hs) = diag(rescale) O + P (nq,nk) . V (nk,hs), P read through St's transpose. The V tile
    // is read once per few query rows: worth packing unless there are only a few (decoding).
    const bool pack_v = nq >= kPackMinRows;
    if (pack_v) pack_rows(s.v, s.row_stride, head.v, head.kv_stride, k0, nk, hs);
    ops.product(s.o, s.row_stride, s.st, 1, kQueryTile, pack_v ? s.v : head.v + k0 * head.kv_stride,
                pack_v ? s.row_stride : head.kv_stride, nq, hs, nk, true, s.rescale);
  }

  for (int i = 0; i < nq; ++i) {
    const float inv_sum = 1.0f / s.row_sum[i];
    float* out_row = head.out + (q0 + i) * head.out_stride;
    const float* o_row = s.o + i * s.row_stride;
    for (int d = 0; d < hs; ++d) out_row[d] = o_row[d] * inv_sum;
    if (head.lse) head.lse[q0 + i] = s.row_max[i] + std::log(s.row_sum[i]);
  }
}

// Runs every query tile of num_heads heads; make_head(bh) describes head bh.
template <typename MakeHead>
void forward_heads(int64_t num_heads, int num_queries, int hs, MakeHead&& make_head) {
  const AttentionTileOps& ops = tile_ops();
  const int64_t tiles_per_head = (num_queries + kQueryTile - 1) / kQueryTile;
  // The most expensive (last, longest-causal) query tiles go first so the tail is cheap tiles.
  for_each_unit_dynamic(num_heads * tiles_per_head, [&](int64_t unit) {
    const int64_t tile = tiles_per_head - 1 - unit / num_heads;
    forward_query_tile(ops, make_head(unit % num_heads), hs, int(tile * kQueryTile),
                       thread_scratch<ForwardScratch>(hs));
  });
}

void check_heads(const char* kernel, int NH, int NKV, int HS) {
  if (NH <= 0 || NKV <= 0 || HS <= 0 || NH % NKV != 0)
    throw Error(std::string(kernel) + ": expected positive NH, NKV, HS with NH divisible by NKV, got NH=" +
                std::to_string(NH) + ", NKV=" + std::to_string(NKV) + ", HS=" + std::to_string(HS));
}

// ---- backward ----

struct BackwardScratch {
  explicit BackwardScratch(int hs)
      : hs(hs),
        row_stride(round_up16(hs)),
        buffer(2 * round_up16(size_t(hs) * kQueryTile) + 2 * size_t(kKeyTile) * kQueryTile +
               size_t(2 * kQueryTile + kKeyTile) * row_stride + 2 * kQueryTile),
        qt(buffer.take(size_t(hs) * kQueryTile)),
        dot(buffer.take(size_t(hs) * kQueryTile)),
        st(buffer.take(size_t(kKeyTile) * kQueryTile)),
        dpt(buffer.take(size_t(kKeyTile) * kQueryTile)),
        q(buffer.take(size_t(kQueryTile) * row_stride)),
        dout(buffer.take(size_t(kQueryTile) * row_stride)),
        k(buffer.take(size_t(kKeyTile) * row_stride)),
        lse(buffer.take(kQueryTile)),
        D(buffer.take(kQueryTile)) {}
  int hs;
  int64_t row_stride;  // of q, dout and k: hs rounded up to whole vectors
  Scratch buffer;
  float* qt;    // (hs, kQueryTile) scaled queries, transposed
  float* dot;   // (hs, kQueryTile) dout, transposed
  float* st;    // (kKeyTile, kQueryTile) scores, then probabilities
  float* dpt;   // (kKeyTile, kQueryTile) dP, then dS scaled by 1/sqrt(hs)
  float* q;     // (kQueryTile, row_stride) the query tile
  float* dout;  // (kQueryTile, row_stride) the query tile's dout
  float* k;     // (kKeyTile, row_stride) the key tile
  float* lse;   // (kQueryTile)
  float* D;     // (kQueryTile) dO_i . O_i
};

// One (b, h) of a backward problem: row t of q, k, v, dq, dk, dv is base + t * qkv_stride (hs
// floats), of out and dout base + t * out_stride.
struct BackwardHead {
  const float* q;
  const float* k;
  const float* v;
  float* dq;
  float* dk;
  float* dv;
  int64_t qkv_stride;
  const float* out;
  const float* dout;
  int64_t out_stride;
  const float* lse;     // (T)
  const int* segments;  // (T) or null
  int T;
  const DropoutMask* drop;  // the forward's dropout (ForwardHead), or null
  int64_t mask_row0;        // (b * NH + h) * T
};

// All query tiles of one (b, h); the calling thread owns this head's dq and its kv head's dk, dv.
void backward_head(const AttentionTileOps& ops, const BackwardHead& head, int hs, BackwardScratch& s) {
  const int64_t ld = head.qkv_stride, out_ld = head.out_stride;
  const int T = head.T;
  const int* segments = head.segments;
  const float scale = 1.0f / std::sqrt(float(hs));
  for (int q0 = 0; q0 < T; q0 += kQueryTile) {
    const int nq = std::min(kQueryTile, T - q0);
    pack_transposed(s.qt, head.q, ld, q0, nq, hs, scale);
    pack_transposed(s.dot, head.dout, out_ld, q0, nq, hs, 1.0f);
    pack_rows(s.q, s.row_stride, head.q, ld, q0, nq, hs);
    pack_rows(s.dout, s.row_stride, head.dout, out_ld, q0, nq, hs);
    for (int i = 0; i < nq; ++i) {
      const float* out_row = head.out + (q0 + i) * out_ld;
      const float* dout_row = s.dout + i * s.row_stride;
      float dot = 0.0f;
      for (int d = 0; d < hs; ++d) dot += dout_row[d] * out_row[d];
      s.D[i] = dot;
      s.lse[i] = head.lse[q0 + i];
    }
    for (int k0 = 0; k0 < q0 + nq; k0 += kKeyTile) {
      const int nk = std::min(kKeyTile, q0 + nq - k0);
      const TileVisibility visibility = classify_tile(segments, k0, nk, q0, q0, nq);
      if (visibility == TileVisibility::kNone) continue;
      ops.product(s.st, kQueryTile, head.k + k0 * ld, ld, 1, s.qt, kQueryTile, nk, nq, hs, false,
                  nullptr);
      ops.product(s.dpt, kQueryTile, head.v + k0 * ld, ld, 1, s.dot, kQueryTile, nk, nq, hs, false,
                  nullptr);
      if (visibility == TileVisibility::kSome)
        mask_tile(s.st, kQueryTile, segments, k0, nk, q0, q0, nq);
      const bool dropped = head.drop && head.drop->active;
      // dP = Z o (V.dO): the same mask as the forward's, regenerated (in place on dPt).
      if (dropped)
        GPTUNE_ROW_KERNEL(dropout_tile)(s.dpt, kQueryTile, s.dpt, kQueryTile, nk, nq, head.mask_row0 + k0, q0, T,
                                        *head.drop, false);
      ops.softmax_backward(s.st, s.dpt, kQueryTile, nk, nq, s.lse, s.D, scale);
      // dV takes the dropped probabilities P o Z.
      if (dropped)
        GPTUNE_ROW_KERNEL(dropout_tile)(s.st, kQueryTile, s.st, kQueryTile, nk, nq, head.mask_row0 + k0, q0, T,
                                        *head.drop, false);
      // dV (nk,hs) += P^T (nk,nq) . dO (nq,hs);  dK (nk,hs) += dS^T . Q;  dQ (nq,hs) += dS . K
      ops.product(head.dv + k0 * ld, ld, s.st, kQueryTile, 1, s.dout, s.row_stride, nk, hs, nq, true,
                  nullptr);
      ops.product(head.dk + k0 * ld, ld, s.dpt, kQueryTile, 1, s.q, s.row_stride, nk, hs, nq, true,
                  nullptr);
      pack_rows(s.k, s.row_stride, head.k, ld, k0, nk, hs);
      ops.product(head.dq + q0 * ld, ld, s.dpt, 1, kQueryTile, s.k, s.row_stride, nq, hs, nk, true,
                  nullptr);
    }
  }
}

}  // namespace

// Test hook for the standalone harness: run the portable tile primitives even on AVX-512 CPUs.
void attention_use_portable_path(bool portable) { force_portable = portable; }

void attention_forward(float* out, float* lse, const float* qkv, const int* segment_ids, int B,
                       int T, int NH, int NKV, int HS, float dropout, uint64_t seed) {
  check_heads("attention_forward", NH, NKV, HS);
  if (B <= 0 || T <= 0) return;
  const QkvLayout L(NH, NKV, HS);
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  forward_heads(int64_t(B) * NH, T, HS, [&](int64_t bh) {
    const int64_t b = bh / NH, h = bh % NH;
    const float* rows = qkv + b * T * L.row;
    return ForwardHead{rows + L.q(h), L.row, rows + L.k(h), rows + L.v(h), L.row,
                       out + b * T * L.out_row + h * HS, L.out_row,
                       lse ? lse + bh * T : nullptr, segment_ids ? segment_ids + b * T : nullptr,
                       T, 0, &drop, bh * T};
  });
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const int* segment_ids, int B, int T, int NH, int NKV,
                        int HS, float dropout, uint64_t seed) {
  check_heads("attention_backward", NH, NKV, HS);
  if (!dqkv || B <= 0 || T <= 0) return;
  const AttentionTileOps& ops = tile_ops();
  const QkvLayout L(NH, NKV, HS);
  const DropoutMask drop = dropout_mask_params(dropout, seed);
  // One unit per (b, kv head): the group's dq channels and its shared dk/dv channels belong to it
  // alone, so accumulation never races, and the group's heads add into dk/dv in a fixed order.
  for_each_unit_dynamic(int64_t(B) * NKV, [&](int64_t bg) {
    const int64_t b = bg / NKV, g = bg % NKV;
    const float* rows = qkv + b * T * L.row;
    float* drows = dqkv + b * T * L.row;
    BackwardScratch& scratch = thread_scratch<BackwardScratch>(HS);
    for (int64_t h = g * L.group; h < (g + 1) * L.group; ++h) {
      const int64_t out_offset = b * T * L.out_row + h * HS;
      const BackwardHead head{rows + L.q(h), rows + L.k(h), rows + L.v(h),
                              drows + L.q(h), drows + L.k(h), drows + L.v(h), L.row,
                              out + out_offset, dout + out_offset, L.out_row,
                              lse + (b * NH + h) * T, segment_ids ? segment_ids + b * T : nullptr, T,
                              &drop, (b * NH + h) * T};
      backward_head(ops, head, HS, scratch);
    }
  });
}

namespace {

// attention_cached_forward over rows that each have a cache slot and a length: slot_of(b) and
// past_of(b) for row b; the caches are (slots, maxT, NKV*HS).
template <typename SlotOf, typename PastOf>
void cached_rows_forward(float* out, float* kcache, float* vcache, const float* qkv, int B, int Tq,
                         int maxT, const QkvLayout& L, int HS, SlotOf&& slot_of, PastOf&& past_of) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tq; ++t) {
      const float* row = qkv + (b * Tq + t) * L.row;
      const int64_t cache_row = (int64_t(slot_of(b)) * maxT + past_of(b) + t) * L.kv_row;
      std::memcpy(kcache + cache_row, row + L.k(0), sizeof(float) * L.kv_row);
      std::memcpy(vcache + cache_row, row + L.v(0), sizeof(float) * L.kv_row);
    }
  forward_heads(int64_t(B) * L.NH, Tq, HS, [&](int64_t bh) {
    const int64_t b = bh / L.NH, h = bh % L.NH;
    const int64_t slot = int64_t(slot_of(b)) * maxT * L.kv_row + (h / L.group) * HS;
    return ForwardHead{qkv + b * Tq * L.row + L.q(h), L.row, kcache + slot, vcache + slot, L.kv_row,
                       out + b * Tq * L.out_row + h * HS, L.out_row, nullptr, nullptr, Tq, past_of(b),
                       nullptr, 0};
  });
}

}  // namespace

void attention_cached_forward(float* out, float* kcache, float* vcache, const float* qkv, int B,
                              int Tq, int past, int maxT, int NH, int NKV, int HS) {
  check_heads("attention_cached_forward", NH, NKV, HS);
  if (B <= 0 || Tq <= 0) return;
  cached_rows_forward(out, kcache, vcache, qkv, B, Tq, maxT, QkvLayout(NH, NKV, HS), HS,
                      [](int64_t b) { return b; }, [past](int64_t) { return past; });
}

void attention_cached_rows_forward(float* out, float* kcache, float* vcache, const float* qkv,
                                   const int* slots, const int* pasts, int B, int Tq, int S,
                                   int maxT, int NH, int NKV, int HS) {
  check_heads("attention_cached_rows_forward", NH, NKV, HS);
  (void)S;  // the binding checks every slot against S
  if (B <= 0 || Tq <= 0) return;
  cached_rows_forward(out, kcache, vcache, qkv, B, Tq, maxT, QkvLayout(NH, NKV, HS), HS,
                      [slots](int64_t b) { return slots[b]; }, [pasts](int64_t b) { return pasts[b]; });
}

// ---- naive references: one full softmax per query row, accumulated in double ----

namespace {

// out_row (hs) and the returned log-sum-exp for one query attending keys j in [0, num_keys) where
// visible(j); key j's rows are k + j*kv_stride and v + j*kv_stride.
template <typename Visible>
double reference_row(float* out_row, const float* q_row, const float* k, const float* v,
                     int64_t kv_stride, int num_keys, int hs, Visible&& visible) {
  const double scale = 1.0 / std::sqrt(double(hs));
  std::vector<double> scores(num_keys, -std::numeric_limits<double>::infinity());
  double max_score = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < num_keys; ++j) {
    if (!visible(j)) continue;
    double dot = 0.0;
    for (int d = 0; d < hs; ++d) dot += double(q_row[d]) * k[j * kv_stride + d];
    scores[j] = dot * scale;
    max_score = std::max(max_score, scores[j]);
  }
  double sum = 0.0;
  std::vector<double> acc(hs, 0.0);
  for (int j = 0; j < num_keys; ++j) {
    if (!visible(j)) continue;
    const double p = std::exp(scores[j] - max_score);
    sum += p;
    for (int d = 0; d < hs; ++d) acc[d] += p * v[j * kv_stride + d];
  }
  for (int d = 0; d < hs; ++d) out_row[d] = float(acc[d] / sum);
  return max_score + std::log(sum);
}

}  // namespace

void attention_forward_reference(float* out, float* lse, const float* qkv, const int* segment_ids,
                                 int B, int T, int NH, int NKV, int HS) {
  const QkvLayout L(NH, NKV, HS);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const float* rows = qkv + b * T * L.row;
        const int* seg = segment_ids ? segment_ids + b * T : nullptr;
        const double row_lse = reference_row(
            out + (b * T + t) * L.out_row + h * HS, rows + t * L.row + L.q(h), rows + L.k(h),
            rows + L.v(h), L.row, t + 1, HS, [&](int j) { return !seg || seg[j] == seg[t]; });
        if (lse) lse[(b * NH + h) * T + t] = float(row_lse);
      }
}

void attention_backward_reference(float* dqkv, const float* dout, const float* qkv,
                                  const int* segment_ids, int B, int T, int NH, int NKV, int HS) {
  const QkvLayout L(NH, NKV, HS);
  const double scale = 1.0 / std::sqrt(double(HS));
  std::vector<double> p(T), dp(T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const int64_t rows = b * T * L.row;
        const float* q = qkv + rows + t * L.row + L.q(h);
        const float* dout_row = dout + (b * T + t) * L.out_row + h * HS;
        auto key = [&](int j) { return qkv + rows + j * L.row + L.k(h); };
        auto value = [&](int j) { return qkv + rows + j * L.row + L.v(h); };
        const int* seg = segment_ids ? segment_ids + b * T : nullptr;
        auto visible = [&](int j) { return !seg || seg[j] == seg[t]; };
        // probabilities of row t, recomputed from scratch (the reference needs no lse or out)
        double max_score = -std::numeric_limits<double>::infinity();
        for (int j = 0; j <= t; ++j) {
          if (!visible(j)) continue;
          double dot = 0.0;
          for (int d = 0; d < HS; ++d) dot += double(q[d]) * key(j)[d];
          p[j] = dot * scale;
          max_score = std::max(max_score, p[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= t; ++j) sum += visible(j) ? (p[j] = std::exp(p[j] - max_score)) : 0.0;
        double p_dot_dp = 0.0;
        for (int j = 0; j <= t; ++j) {
          if (!visible(j)) continue;
          p[j] /= sum;
          dp[j] = 0.0;
          for (int d = 0; d < HS; ++d) dp[j] += double(dout_row[d]) * value(j)[d];
          p_dot_dp += p[j] * dp[j];
        }
        for (int j = 0; j <= t; ++j) {
          if (!visible(j)) continue;
          const double ds = p[j] * (dp[j] - p_dot_dp) * scale;  // d loss / d (q.k) for pair (t, j)
          float* dq = dqkv + rows + t * L.row + L.q(h);
          float* dk = dqkv + rows + j * L.row + L.k(h);
          float* dv = dqkv + rows + j * L.row + L.v(h);
          for (int d = 0; d < HS; ++d) {
            dq[d] += float(ds * key(j)[d]);
            dk[d] += float(ds * q[d]);
            dv[d] += float(p[j] * dout_row[d]);
          }
        }
      }
}

void attention_cached_forward_reference(float* out, float* kcache, float* vcache, const float* qkv,
                                        int B, int Tq, int past, int maxT, int NH, int NKV, int HS) {
  const QkvLayout L(NH, NKV, HS);
  for (int64_t b = 0; b < B; ++b)
    for (int t = 0; t < Tq; ++t)
      for (int64_t c = 0; c < L.kv_row; ++c) {
        kcache[(b * maxT + past + t) * L.kv_row + c] = qkv[(b * Tq + t) * L.row + L.k(0) + c];
        vcache[(b * maxT + past + t) * L.kv_row + c] = qkv[(b * Tq + t) * L.row + L.v(0) + c];
      }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int t = 0; t < Tq; ++t) {
        const int64_t kv_head = (h / L.group) * HS;
        reference_row(out + (b * Tq + t) * L.out_row + h * HS, qkv + (b * Tq + t) * L.row + L.q(h),
                      kcache + b * maxT * L.kv_row + kv_head, vcache + b * maxT * L.kv_row + kv_head,
                      L.kv_row, past + t + 1, HS, [](int) { return true; });
      }
}

}  // namespace gptune::cpu
