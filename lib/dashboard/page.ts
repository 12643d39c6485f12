/**
 * The training dashboard's page: one self-contained HTML document (inline CSS, inline SVG, and for
 * the live page a few lines of inline script; no request leaves the machine) drawn from a
 * RunHistory. The live page (`gptune train --dashboard`, `gptune dashboard RUN_DIR`) polls its
 * server's /state for the same body rendered anew; report.html is the page without the script.
 * The curves are lib/plot/svg.ts's panels, as in the demo's report, so both carry the plotted values
 * in data-points.
 */
import { lossCurvesSvg, Panel } from '../plot/svg';
import type { RunHistory } from '../train/history';

/** report.html: written beside a run's model in OUT. */
export const REPORT_FILE = 'report.html';

/**
 * Series longer than this are thinned to every k-th point (and the last) so that a long run's page
 * stays light; shorter ones are drawn point for point.
 */
export const MAX_PLOTTED_POINTS = 2000;

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function thin<T>(items: readonly T[]): readonly T[] {
  if (items.length <= MAX_PLOTTED_POINTS) return items;
  const stride = Math.ceil(items.length / MAX_PLOTTED_POINTS);
  const kept = items.filter((_, i) => i % stride === 0);
  if ((items.length - 1) % stride !== 0) kept.push(items[items.length - 1]);
  return kept;
}

/** Four panels: loss (training and validation, the best step marked), token accuracy, learning rate, throughput. */
export function dashboardPanels(h: RunHistory): Panel[] {
  const steps = thin(h.steps), evals = thin(h.evals);
  const best = h.best;
  const markX = best === null ? undefined : { x: best.step, label: `best ${best.step}` };
  return [
    {
      title: 'Loss', xLabel: 'step', yLabel: 'cross-entropy (nats/token)', markX,
      series: [
        { name: 'training', dashed: true, points: steps.map((s) => [s.step, s.loss] as const) },
        { name: 'validation', points: evals.map((e) => [e.step, e.val_loss] as const) },
      ],
    },
    {
      title: 'Token accuracy', xLabel: 'step', yLabel: 'argmax accuracy', markX,
      series: [
        { name: 'training', dashed: true, points: steps.map((s) => [s.step, s.token_accuracy] as const) },
        { name: 'validation', points: evals.map((e) => [e.step, e.val_token_accuracy] as const) },
      ],
    },
    { title: 'Learning rate', xLabel: 'step', yLabel: 'learning rate', series: [{ name: 'lr', points: steps.map((s) => [s.step, s.lr] as const) }] },
    { title: 'Throughput', xLabel: 'step', yLabel: 'tokens/s', series: [{ name: 'tokens/s', points: steps.map((s) => [s.step, s.tokens_per_s] as const) }] },
  ];
}

function formatNumber(x: number, digits = 4): string {
  return Number.isFinite(x) ? String(Number(x.toPrecision(digits))) : String(x);
}

function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s % 60} s` : `${s} s`;
}

/** 'running', or how the run ended (completed, early_stopping, interrupted, diverged). */
function runState(h: RunHistory): string {
  return h.end?.reason ?? 'running';
}

/** The page's body: status line, figures, curves and the latest samples. */
export function dashboardBody(h: RunHistory, title: string): string {
  const start = h.starts[h.starts.length - 1];
  const total = start?.total_steps ?? null;
  const last = h.steps[h.steps.length - 1];
  const state = runState(h);
  const best = h.best;
  const recent = h.steps.slice(-10).filter((s) => Number.isFinite(s.tokens_per_s));
  const throughput = recent.length > 0 ? recent.reduce((a, s) => a + s.tokens_per_s, 0) / recent.length : null;
  const lastEval = h.evals[h.evals.length - 1];
  const figures = [
    `<div class="figure" id="best"${best ? ` data-step="${best.step}" data-val-loss="${best.valLoss}"` : ''}><span>best step</span>${best ? `${best.step} <small>validation loss ${formatNumber(best.valLoss)}</small>` : '<small>no evaluation yet</small>'}</div>`,
    `<div class="figure" id="loss"><span>training loss</span>${last ? formatNumber(last.loss) : '-'}</div>`,
    `<div class="figure" id="val-loss"><span>validation loss</span>${lastEval ? `${formatNumber(lastEval.val_loss)} <small>at step ${lastEval.step}</small>` : '-'}</div>`,
    `<div class="figure" id="lr"><span>learning rate</span>${last ? formatNumber(last.lr, 3) : '-'}</div>`,
    `<div class="figure" id="throughput"><span>tokens/s (last 10 steps)</span>${throughput === null ? '-' : Math.round(throughput)}</div>`,
  ];
  const progress = total === null ? `step ${h.step}` : `step ${h.step} of ${total}`;
  const elapsed = last ? `, ${formatDuration(last.elapsed_s)} of training` : '';
  const model = start?.model ? ` &middot; model ${escapeHtml(start.model)}` : '';
  const latest = h.samples[h.samples.length - 1];
  const samples = latest === undefined ? '' : [
    `<section id="samples" data-step="${latest.step}"><h2>Samples after step ${latest.step} (greedy)</h2>`,
    ...latest.samples.map((s) => `<pre class="sample"><b>${escapeHtml(s.prompt)}</b>${escapeHtml(s.text)}</pre>`),
    '</section>',
  ].join('\n');
  return [
    `<header><h1>${escapeHtml(title)}</h1>`,
    `<p id="status" data-state="${state}" data-step="${h.step}"${total === null ? '' : ` data-total-steps="${total}"`}>${state.replace('_', ' ')} &middot; ${progress}${elapsed}${model}</p></header>`,
    `<section class="figures">${figures.join('')}</section>`,
    `<section id="curves">${lossCurvesSvg(dashboardPanels(h))}</section>`,
    samples,
  ].join('\n');
}

const STYLE = `
body { font-family: sans-serif; margin: 1.5em auto; max-width: 960px; color: #222; }
h1 { font-size: 1.3em; margin-bottom: 0.2em; word-break: break-all; }
h2 { font-size: 1.1em; }
#status { color: #555; margin-top: 0; }
.figures { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 1em 0; }
.figure { border: 1px solid #ddd; border-radius: 4px; padding: 0.4em 0.8em; font-size: 1.3em; min-width: 8em; }
.figure span { display: block; font-size: 0.55em; color: #666; }
.figure small { font-size: 0.55em; color: #666; }
#curves svg { max-width: 100%; height: auto; }
pre.sample { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; border-radius: 4px; }
#connection { color: #888; font-size: 0.85em; margin-top: 1.5em; }
`;

/**
 * Polls `state?since=VERSION` every second; a 200 brings {version, html} and replaces the body, a
 * 204 means nothing changed. When the server is gone (the run ended) the last state stays shown.
 */
const LIVE_SCRIPT = `
(function () {
  var main = document.getElementById('dashboard'), connection = document.getElementById('connection');
  function poll() {
    fetch('state?since=' + encodeURIComponent(main.getAttribute('data-version')), { cache: 'no-store' }).then(function (r) {
      if (r.status !== 200) return null;
      return r.json().then(function (s) { main.innerHTML = s.html; main.setAttribute('data-version', s.version); });
    }).then(function () {
      connection.textContent = 'live: updated every second';
      setTimeout(poll, 1000);
    }, function () {
      connection.textContent = 'the server stopped (the run ended?): showing the last state received';
      setTimeout(poll, 5000);
    });
  }
  setTimeout(poll, 1000);
})();
`;

/**
 * The whole page. Live: the body polls the server that served it. Static (report.html): no script,
 * and a Content-Security-Policy that forbids any request, so opening it from disk loads nothing.
 */
export function dashboardPage(h: RunHistory, o: { title: string; live: boolean; version?: string }): string {
  const policy = o.live
    ? "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"
    : "default-src 'none'; style-src 'unsafe-inline'";
  const footer = o.live ? 'live: connecting' : `report written ${new Date().toISOString()} by gptune`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${policy}">`,
    `<title>${escapeHtml(o.title)}</title>`,
    `<style>${STYLE}</style></head><body>`,
    `<main id="dashboard" data-version="${escapeHtml(o.version ?? String(h.version))}">`,
    dashboardBody(h, o.title),
    '</main>',
    `<footer id="connection">${footer}</footer>`,
    o.live ? `<script>${LIVE_SCRIPT}</script>` : '',
    '</body></html>',
    '',
  ].join('\n');
}
