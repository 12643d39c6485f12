/** gptune dashboard: the live training page for a run, from the metrics.jsonl it wrote into its --out folder. */
import * as fs from 'fs';
import * as path from 'path';
import { DEFAULT_DASHBOARD_PORT } from '../../config';
import { startDashboardServer } from '../../dashboard/server';
import { HISTORY_FILE, RunHistory } from '../../train/history';
import { UsageError } from '../args';
import { Command } from '../common';

/** The history file of RUN (a train --out folder, or a metrics.jsonl / --log file itself). */
function historyFileOf(run: string): string {
  if (!fs.existsSync(run)) throw new UsageError(`dashboard: ${run}: not found; expected a gptune train --out folder`);
  if (!fs.statSync(run).isDirectory()) return run;
  const file = path.join(run, HISTORY_FILE);
  if (!fs.existsSync(file)) {
    throw new UsageError(`dashboard: ${run}: not a gptune training run (no ${HISTORY_FILE}; gptune train writes it into its --out folder from the first step)`);
  }
  return file;
}

/** The history of `file`, read again only when its size or modification time changed (a live run appends to it). */
function historySource(file: string): () => RunHistory {
  let seen = '';
  let history: RunHistory | null = null;
  return () => {
    try {
      const st = fs.statSync(file);
      const key = `${st.size}:${st.mtimeMs}`;
      if (history === null || key !== seen) {
        history = RunHistory.read(file);
        seen = key;
      }
    } catch (e) {
      // A run folder being replaced (--overwrite) or cut back (--resume) keeps showing the last good read.
      if (history === null) throw e;
    }
    return history;
  };
}

export const dashboardCommand: Command = {
  positionals: true,
  usage: 'gptune dashboard RUN_DIR [--port N]',
  description:
    'Serves the training dashboard of a finished or running run on http://127.0.0.1:PORT/: training and validation loss, token accuracy, ' +
    'learning rate and throughput curves, the best step and the latest samples, from the metrics.jsonl that gptune train writes into its --out ' +
    'folder (a metrics.jsonl or --log file may be given instead). A running run\'s page follows it. Ctrl-C stops the server. ' +
    'The same page without a server is RUN_DIR/report.html.',
  flags: {
    port: { type: 'int', min: 0, default: DEFAULT_DASHBOARD_PORT, help: 'port on 127.0.0.1 (0: any free port)' },
    help: { type: 'bool', help: 'show this help' },
  },
  async run(v, positionals) {
    const [run, ...extra] = positionals;
    if (run === undefined) throw new UsageError('dashboard: expected a run folder, e.g. gptune dashboard ./tuned');
    if (extra.length > 0) throw new UsageError(`dashboard: expected one run folder but also received ${extra.map((e) => `'${e}'`).join(' ')}`);
    const port = v.port as number;
    if (port > 65535) throw new UsageError(`dashboard: --port: expected a whole number in [0, 65535] but received '${port}'`);
    const current = historySource(historyFileOf(run));
    // A file that is not a run's history fails here, before anything listens.
    const history = current();
    if (history.version === 0) throw new UsageError(`dashboard: ${run}: ${HISTORY_FILE} holds no lines yet`);
    const server = await startDashboardServer(port, { title: `gptune: ${path.resolve(run)}`, current }, 'dashboard: --port');
    process.stderr.write(`gptune dashboard: ${run} at ${server.url} (Ctrl-C stops)\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await server.close();
  },
};
