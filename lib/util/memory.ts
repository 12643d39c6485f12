/**
 * Memory budgets: how many bytes this process may still allocate, and byte sizes as people write
 * them ("8GB", "512MiB"). A run compares its memory plan (lib/model/decoder.ts planMemory) against
 * the budget before allocating anything, so an impossible size fails in milliseconds, not after
 * minutes of swapping or at the hands of the OOM killer.
 */
import * as fs from 'fs';
import * as os from 'os';
import { MemoryBudgetError } from '../errors';

const UNITS: Record<string, number> = {
  '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40,
};

/** Bytes of "8GB" (10^9), "512MiB" (2^20), "1.5G" (2^30, as free/ulimit write it) or a plain number of bytes; null when unreadable. */
export function parseByteSize(text: string | number): number | null {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text > 0 ? text : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return null;
  const unit = UNITS[m[2].toLowerCase()];
  if (unit === undefined) return null;
  const bytes = Math.floor(Number(m[1]) * unit);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : null;
}

/** "3.2 GB" (decimal units, as the sizes people type). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toPrecision(3)} ${units[unit]}`;
}

function readNumberFile(file: string): number | null {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/** MemAvailable of /proc/meminfo: free memory plus what the kernel can reclaim (page cache), in bytes. */
function memAvailable(): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Room left under this process's cgroup memory limit (v2 memory.max, else v1), null without a limit. */
function cgroupRoom(): number | null {
  const v2 = (() => {
    try {
      return fs.readFileSync('/sys/fs/cgroup/memory.max', 'utf8').trim();
    } catch {
      return null;
    }
  })();
  if (v2 !== null) {
    if (v2 === 'max' || !/^\d+$/.test(v2)) return null;
    return Math.max(0, Number(v2) - (readNumberFile('/sys/fs/cgroup/memory.current') ?? 0));
  }
  const limit = readNumberFile('/sys/fs/cgroup/memory/memory.limit_in_bytes');
  // cgroup v1 writes "no limit" as a number near 2^63.
  if (limit === null || limit >= 2 ** 60) return null;
  return Math.max(0, limit - (readNumberFile('/sys/fs/cgroup/memory/memory.usage_in_bytes') ?? 0));
}

export interface MemoryBudget {
  bytes: number;
  /** Where the number comes from, for messages. */
  source: string;
}

/**
 * What may still be allocated: MemAvailable (os.freemem() where /proc/meminfo is missing), lowered
 * to the room left under the cgroup limit when there is one, and to maxBytes when given.
 */
export function memoryBudget(maxBytes: number | null = null): MemoryBudget {
  const available = memAvailable();
  let budget: MemoryBudget = available !== null ? { bytes: available, source: 'available (MemAvailable)' } : { bytes: os.freemem(), source: 'free (os.freemem)' };
  const room = cgroupRoom();
  if (room !== null && room < budget.bytes) budget = { bytes: room, source: 'left under the cgroup memory limit' };
  if (maxBytes !== null && maxBytes < budget.bytes) budget = { bytes: maxBytes, source: 'allowed by max_memory (--max-memory)' };
  return budget;
}

/**
 * Throws MemoryBudgetError (one line: bytes needed by part, bytes available and from where, what to
 * lower) when `parts` need more than the budget.
 */
export function checkMemoryBudget(what: string, parts: Record<string, number>, maxBytes: number | null, lower: string): void {
  const total = Object.values(parts).reduce((a, b) => a + b, 0);
  const budget = memoryBudget(maxBytes);
  if (total <= budget.bytes) return;
  const detail = Object.entries(parts).filter(([, b]) => b > 0).map(([name, b]) => `${name} ${formatBytes(b)}`).join(', ');
  throw new MemoryBudgetError(`${what} needs ${formatBytes(total)} (${detail}) but ${formatBytes(budget.bytes)} is ${budget.source}; lower ${lower}`);
}
