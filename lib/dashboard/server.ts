/**
 * The dashboard's HTTP server: Node's http on 127.0.0.1 only, serving
 *   GET /                the live page (lib/dashboard/page.ts)
 *   GET /state?since=V   {version, html}: the page's body when the history changed since version V, else 204
 * and nothing else. The training loop yields to the event loop between steps, and a request costs
 * one render of the body at most once per history version (cached), so an open page costs a run
 * next to nothing; a closed browser costs nothing (no connection is held open). Requests naming
 * another host are refused (a web page cannot reach the dashboard through DNS rebinding).
 */
import * as http from 'http';
import type { AddressInfo } from 'net';
import { UsageError } from '../errors';
import type { RunHistory } from '../train/history';
import { dashboardBody, dashboardPage } from './page';

export interface DashboardSource {
  /** The page's title (the run's folder). */
  title: string;
  /** The history as it is now; called for each request. */
  current(): RunHistory;
}

export interface DashboardServer {
  /** http://127.0.0.1:PORT/ */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Starts serving `source` on 127.0.0.1:`port` (0: a free port the system picks). A port in use or
 * refused is a UsageError naming `label` (the flag or key that gave the port) and the port.
 */
export async function startDashboardServer(port: number, source: DashboardSource, label: string): Promise<DashboardServer> {
  // One rendered body per (history object, version): polls of an unchanged run cost a comparison.
  let cached: { history: RunHistory; version: number; token: string; html: string } | null = null;
  let generation = 0;
  const snapshot = () => {
    const history = source.current();
    if (cached === null || cached.history !== history || cached.version !== history.version) {
      if (cached?.history !== history) generation++;
      cached = { history, version: history.version, token: `${generation}.${history.version}`, html: dashboardBody(history, source.title) };
    }
    return cached;
  };
  const server = http.createServer((req, res) => {
    try {
      const address = server.address() as AddressInfo;
      const host = req.headers.host ?? '';
      if (host !== `127.0.0.1:${address.port}` && host !== `localhost:${address.port}`) {
        res.writeHead(403, { 'Content-Type': 'text/plain' }).end('the dashboard answers requests for 127.0.0.1 only\n');
        return;
      }
      if (req.method !== 'GET') {
        res.writeHead(405, { Allow: 'GET', 'Content-Type': 'text/plain' }).end('GET only\n');
        return;
      }
      const url = new URL(req.url ?? '/', `http://${host}`);
      const headers = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };
      if (url.pathname === '/') {
        const s = snapshot();
        res.writeHead(200, { ...headers, 'Content-Type': 'text/html; charset=utf-8' }).end(dashboardPage(s.history, { title: source.title, live: true, version: s.token }));
      } else if (url.pathname === '/state') {
        const s = snapshot();
        if (url.searchParams.get('since') === s.token) res.writeHead(204, headers).end();
        else res.writeHead(200, { ...headers, 'Content-Type': 'application/json' }).end(JSON.stringify({ version: s.token, html: s.html }));
      } else {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      }
    } catch (e) {
      // A history that cannot be read (a run folder being replaced) must not take the server, or a training run, down.
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`${(e as Error).message}\n`);
    }
  });
  // Errors of single connections (a browser closed mid-response) are the client's business.
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'is in use by another program' : e.code === 'EACCES' ? 'may not be used by this user' : `cannot be listened on (${e.code ?? e.message})`;
      reject(new UsageError(`${label} ${port}: port ${port} on 127.0.0.1 ${why}; give another port, or 0 for any free one`));
    });
    server.listen(port, '127.0.0.1', () => resolve());
  });
  // After listening, an error must not become an uncaught exception in the training process.
  server.on('error', () => undefined);
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}/`,
    port: actual,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
