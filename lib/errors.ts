/** An error in what the user asked for (a flag, a file, a config key): the CLI exits with 2. */
export class UsageError extends Error {}

/**
 * A model folder (or "new:" spec) that cannot be read as a checkpoint: a missing or contradictory file,
 * config.json key, index entry or tensor.
 */
export class CheckpointError extends UsageError {}

/** A run would need more memory than is available (or than --max-memory allows); nothing was allocated. */
export class MemoryBudgetError extends UsageError {}

/** Non-finite numbers where finite ones are required: a model's weights, a loss. */
export class NonFiniteError extends Error {}

/**
 * gptune cannot write where it was asked to (a read-only or full disk, a failed save): the message
 * names the folder or file, the reason, and where anything already computed was kept.
 */
export class OutputError extends Error {}

/** A file's contents are not what gptune reads (bad JSON, a missing or unsupported key); the message names the file and key. */
export class FileFormatError extends Error {}

/**
 * A model, tokenizer or adapter that the export format cannot represent as the user asked (a
 * tokenizer llama.cpp has no name for, an adapter that trained a whole module): nothing was written.
 */
export class ExportError extends UsageError {}

/**
 * A Hugging Face Hub model gptune cannot have as asked: a repository, revision or file that is not
 * there (404), one that is private or gated without a token that has access (401/403), weights only
 * as pytorch_model.bin, or (offline) a file missing from the cache. The message names the repository
 * and what to do.
 */
export class HubAccessError extends UsageError {}

/**
 * Talking to the Hub failed: it cannot be reached, a transfer broke off (the partial file is kept and
 * the next run resumes it), or a download does not match its size or sha256.
 */
export class HubError extends Error {}

/**
 * A data-parallel job cannot go on: a collective timed out (a rank died or hangs), NCCL or MPI failed. The
 * message names the rank that reports it and, when known, the ranks that never arrived; the CLI then ends
 * every rank of the job (MPI_Abort) with a non-zero exit.
 */
export class DistributedError extends Error {}
