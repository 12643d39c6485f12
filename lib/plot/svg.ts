/**
 * Curves as a standalone SVG: a grid of panels, each with its own axes (ticks at 1-2-5 steps), one
 * polyline per series with markers at its points, and a legend. No dependencies, so the demo's
 * report renders on GitHub and in any browser, and the training dashboard (lib/dashboard) draws its
 * live page and report.html with the same code. Each polyline carries its series' name and exact
 * values (`data-series`, `data-points="x,y x,y ..."`, numbers as JavaScript prints them), so a
 * reader or a test can take the plotted data from the SVG rather than from pixels.
 */

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** Dashed line (e.g. training loss beside validation loss). */
  dashed?: boolean;
}

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** A vertical dashed line at this x with a label (e.g. the best step), drawn when x lies in the plotted range. */
  markX?: { x: number; label: string };
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];
const PANEL_W = 460, PANEL_H = 300;
const MARGIN = { left: 58, right: 16, top: 34, bottom: 46 };

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Tick values covering [lo, hi] at a 1-2-5 step, about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 10000) return `${Number((v / 1000).toPrecision(4))}k`;
  return String(Number(v.toPrecision(4)));
}

function panelSvg(panel: Panel, x0: number, y0: number, colorOffset: number): string {
  const all = panel.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const parts: string[] = [];
  const plotW = PANEL_W - MARGIN.left - MARGIN.right, plotH = PANEL_H - MARGIN.top - MARGIN.bottom;
  const left = x0 + MARGIN.left, top = y0 + MARGIN.top;
  parts.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + 20}" text-anchor="middle" font-weight="bold">${escapeXml(panel.title)}</text>`);
  parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
  if (all.length === 0) return parts.join('\n');
  let xMin = Math.min(...all.map((p) => p[0])), xMax = Math.max(...all.map((p) => p[0]));
  let yMin = Math.min(...all.map((p) => p[1])), yMax = Math.max(...all.map((p) => p[1]));
  if (xMax === xMin) xMax = xMin + 1;
  if (yMax === yMin) {
    // A flat series (a constant learning rate) is drawn mid-panel on a range of its own scale.
    const half = yMin === 0 ? 0.5 : Math.abs(yMin) * 0.1;
    yMin -= half;
    yMax += half;
  }
  const pad = (yMax - yMin) * 0.05;
  yMin -= pad;
  yMax += pad;
  const sx = (x: number) => left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y: number) => top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;
  for (const t of niceTicks(xMin, xMax)) {
    parts.push(`<line x1="${sx(t).toFixed(1)}" y1="${top + plotH}" x2="${sx(t).toFixed(1)}" y2="${top + plotH + 4}" stroke="#666"/>`);
    parts.push(`<text x="${sx(t).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle" font-size="11">${formatTick(t)}</text>`);
  }
  for (const t of niceTicks(yMin, yMax)) {
    parts.push(`<line x1="${left}" y1="${sy(t).toFixed(1)}" x2="${left + plotW}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" font-size="11">${formatTick(t)}</text>`);
  }
  parts.push(`<text x="${left + plotW / 2}" y="${y0 + PANEL_H - 8}" text-anchor="middle" font-size="12">${escapeXml(panel.xLabel)}</text>`);
  parts.push(`<text transform="translate(${x0 + 14},${top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(panel.yLabel)}</text>`);
  const mark = panel.markX;
  if (mark && mark.x >= xMin && mark.x <= xMax) {
    const x = sx(mark.x).toFixed(1);
    parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + plotH}" stroke="#555" stroke-dasharray="2,3" data-mark-x="${mark.x}"/>`);
    // The label goes on the side of the line with room for it.
    const right = sx(mark.x) < left + plotW * 0.75;
    const labelX = (sx(mark.x) + (right ? 3 : -3)).toFixed(1);
    parts.push(`<text x="${labelX}" y="${top + plotH - 6}" text-anchor="${right ? 'start' : 'end'}" font-size="11" fill="#555">${escapeXml(mark.label)}</text>`);
  }
  panel.series.forEach((s, i) => {
    const color = COLORS[(colorOffset + i) % COLORS.length];
    const finite = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const pts = finite.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    const values = finite.map(([x, y]) => `${x},${y}`).join(' ');
    const dash = s.dashed ? ' stroke-dasharray="5,3"' : '';
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8"${dash} data-series="${escapeXml(s.name)}" data-points="${values}" points="${pts.join(' ')}"/>`);
    if (!s.dashed && pts.length <= 40) for (const p of pts) parts.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="2.5" fill="${color}"/>`);
    const ly = top + 14 + i * 15;
    parts.push(`<line x1="${left + plotW - 150}" y1="${ly - 4}" x2="${left + plotW - 132}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${dash}/>`);
    parts.push(`<text x="${left + plotW - 128}" y="${ly}" font-size="11">${escapeXml(s.name)}</text>`);
  });
  return parts.join('\n');
}

/** Panels laid out two per row. */
export function lossCurvesSvg(panels: readonly Panel[]): string {
  const columns = Math.min(2, panels.length);
  const rows = Math.ceil(panels.length / columns);
  const width = columns * PANEL_W, height = rows * PANEL_H;
  const body = panels.map((p, i) => panelSvg(p, (i % columns) * PANEL_W, Math.floor(i / columns) * PANEL_H, i));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
