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
