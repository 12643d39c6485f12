/** An error in what the user asked for (a flag, a file, a config key): the CLI exits with 2. */
export class UsageError extends Error {}

/** A file's contents are not what gptune reads (bad JSON, a missing or unsupported key); the message names the file and key. */
export class FileFormatError extends Error {}
