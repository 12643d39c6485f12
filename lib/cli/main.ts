#!/usr/bin/env node
/**
 * gptune's command line. Results go to stdout (the last line is JSON with --json); errors go to
 * stderr as one line naming the problem, with a non-zero exit. Bad input fails before anything is
 * written; --out receives the model only when the whole run succeeds (before that it holds gptune's
 * manifest and the checkpoints, each written atomically). Each command lives in commands/.
 */
import { setPrecision, setThreads } from '../device';
import { abortJob, finishJob, inMpiJob, launcherRank } from '../train/distributed';
import { VERSION } from '../version';
import { closestName, formatHelp, parseFlags, UsageError } from './args';
import { Command, out, resolveModelFlags } from './common';
import { cardCommand } from './commands/card';
import { chatCommand } from './commands/chat';
import { dashboardCommand } from './commands/dashboard';
import { dataCommand } from './commands/data';
import { demoCommand } from './commands/demo';
import { downloadCommand } from './commands/download';
import { evalCommand } from './commands/eval';
import { exportCommand } from './commands/export';
import { generateCommand } from './commands/generate';
import { info } from './commands/info';
import { mergeCommand } from './commands/merge';
import { sampleCommand } from './commands/sample';
import { scoreCommand } from './commands/score';
import { serveCommand } from './commands/serve';
import { trainCommand } from './commands/train';

export const COMMANDS: Record<string, Command> = { info, eval: evalCommand, train: trainCommand, generate: generateCommand, chat: chatCommand, data: dataCommand, sample: sampleCommand, score: scoreCommand, merge: mergeCommand, card: cardCommand, export: exportCommand, demo: demoCommand, download: downloadCommand, dashboard: dashboardCommand, serve: serveCommand };

function mainHelp(): string {
  return [
    `gptune ${VERSION}: fine-tune GPT-2 and Llama-family (Llama, Mistral, Qwen2/3, SmolLM2) models on Node.js with native kernels`,
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.description.split('. ')[0]}`),
    '',
    'gptune COMMAND --help shows each command\'s options.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    out(mainHelp());
    return 0;
  }
  if (name === '--version') {
    out(VERSION);
    return 0;
  }
  const command = COMMANDS[name];
  try {
    if (!command) {
      const guess = closestName(name, Object.keys(COMMANDS));
      throw new UsageError(`unknown command '${name}'; ${guess === null ? `commands: ${Object.keys(COMMANDS).join(', ')}` : `did you mean ${guess}?`}`);
    }
    if (rest.includes('--help')) {
      out(formatHelp(command.usage, command.description, command.flags));
      return 0;
    }
    const { values, positionals } = parseFlags(name, rest, command.flags);
    if (positionals.length > 0 && !command.positionals) {
      throw new UsageError(`unexpected argument '${positionals[0]}' (options start with --; see gptune ${name} --help)`);
    }
    // Backend settings shared by every command that takes them (the commands don't repeat this).
    if (values.threads !== undefined) setThreads(values.threads as number);
    if (values.precision !== undefined) setPrecision(values.precision as 'fp32' | 'bf16');
    await resolveModelFlags(command, values);
    await command.run(values, positionals);
    return 0;
  } catch (e) {
    const message = (e as Error).message.split('\n')[0];
    const code = e instanceof UsageError ? 2 : 1;
    // In an MPI job every rank parsed the same command line: rank 0 reports what is wrong with it, the
    // others report only what happened to them (messages naming a rank, failures of their own).
    const rank = launcherRank();
    if (rank === null || rank === 0 || !(e instanceof UsageError) || message.startsWith('rank ')) {
      process.stderr.write(`gptune ${name ?? ''}: ${message.startsWith(name + ':') ? message.slice(name.length + 2) : message}\n`);
    }
    // A failure of this rank alone would leave the others waiting until their collective timeout: the whole
    // job ends now.
    // (Bad input fails on every rank alike: they leave MPI together, after rank 0 has reported it.)
    const ownFailure = !(e instanceof UsageError) || message.startsWith('rank ');
    if (inMpiJob()) {
      if (ownFailure) abortJob(code);
      else finishJob();
    }
    return code;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
