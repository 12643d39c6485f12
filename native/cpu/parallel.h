// A small persistent thread pool shared by all CPU kernels. Between jobs, workers spin for a few
// hundred microseconds (generation calls ~100 short kernels a token), then sleep on a condition
// variable. parallel_for splits [0, n) into contiguous chunks, one per thread, and the calling
// thread takes a chunk too, so threads == 1 runs inline with no synchronisation at all.
#pragma once
#include <cstdint>
#include <functional>

namespace gptune::cpu {

// Runs fn(begin, end, thread_index) over a partition of [0, n) into at most num_threads() chunks
// (fewer when n is small or min_chunk would be violated). Blocks until every chunk is done.
// Not re-entrant: a kernel running inside parallel_for must not call parallel_for again.
void parallel_for(int64_t n, int64_t min_chunk,
                  const std::function<void(int64_t begin, int64_t end, int thread)>& fn);

// Runs fn(thread_index) once on each of num_threads() threads (for kernels that partition work
// themselves, e.g. a GEMM splitting its macro-tiles).
void parallel_run(const std::function<void(int thread)>& fn);

// Runs fn(begin, end) over [0, n) cut into runs of `chunk` items (the last may be shorter), which
// the calling thread and the pool's workers take one at a time as each finishes its previous one:
// uneven items balance, and a worker the OS has not scheduled yet is not waited for (the others do
// its share). Any thread may run any chunk, so fn must not depend on which one does. Blocks until
// every chunk is done; not re-entrant, like parallel_for.
void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace gptune::cpu
