/** An error in what the user asked for (a flag, a file, a config key): the CLI exits with 2. */
export class UsageError extends Error {}
