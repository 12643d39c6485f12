/** An error in what the user asked for (a flag, a file, a config key): the CLI exits with 2. */
export class UsageError extends Error {}

/** A model folder that is not what it claims: config.json keys, safetensors shards, the shard index. */
export class ModelFormatError extends Error {}
