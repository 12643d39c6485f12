/** An error in what the user asked for (a flag, a file, a config key): the CLI exits with 2. */
export class UsageError extends Error {}
/** A model folder that cannot be read as a checkpoint: a missing or contradictory file, index entry or tensor. */
export class CheckpointError extends UsageError {}
