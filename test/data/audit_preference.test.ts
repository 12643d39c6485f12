/**
 * The data audit on preference pairs (DPO/ORPO data): a pair is one unit for duplicates and leakage
 * (prompt + chosen + rejected), PII is looked for in each of the three (and in each message of a
 * message-list prompt), and a pair's length is its longer side as training renders it. Through the
 * library, `gptune data audit`, and the model card of a `--method dpo` run.
 */
import * as fs from 'fs';
import * as path from 'path';
import { auditSplits, auditSummaryLines, loadAuditSplit } from '../../lib/data';
import { loadTokenizer } from '../../lib/tokenizer';
import { expectCleanFailure, gptune, lastJSON } from '../cli/run';
import { tempDir, TINY } from '../helpers';

const tokenizer = loadTokenizer(TINY);
const pair = (prompt: string, chosen: string, rejected: string) => JSON.stringify({ prompt, chosen, rejected });

describe('data audit of preference pairs', () => {
  const dir = tempDir('gptune-audit-pref-');
  const SAME = pair('Q: which harbour is the oldest?\nA:', ' the northern one', ' no idea');
  const train = path.join(dir, 'train.jsonl');
  const validation = path.join(dir, 'validation.jsonl');
  beforeAll(() => {
    fs.writeFileSync(train, [
      SAME, // 1
      pair('Write to me at ann.lee@example.org please', ' sure', ' no'), // 2: email in the prompt
      pair('Q: where is the server?', ' at 10.1.2.3 in the rack', ' nowhere'), // 3: IPv4 in chosen
      pair('Q: pay how?', ' by invoice', ' card 4111 1111 1111 1111'), // 4: card in rejected
      SAME, // 5: the same pair again (within train)
      JSON.stringify({ prompt: [{ role: 'user', content: 'call +44 20 7946 0958 now' }], chosen: [{ role: 'assistant', content: 'ok' }], rejected: [{ role: 'assistant', content: 'no' }] }), // 6
    ].join('\n') + '\n');
    fs.writeFileSync(validation, [pair('Q: what tide today?\nA:', ' high at noon', ' low'), SAME].join('\n') + '\n');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('pairs are read as pairs: duplicates within and across splits, PII in prompt, chosen and rejected', () => {
    const splits = [loadAuditSplit('train', train), loadAuditSplit('validation', validation)];
    expect(splits.map((s) => s.records.map((r) => r.kind))).toEqual([Array(6).fill('preference'), Array(2).fill('preference')]);
    const r = auditSplits(splits);
    expect(r.splits.map((s) => [s.name, s.kind, s.units, s.unit])).toEqual([['train', 'preference', 6, 'pair'], ['validation', 'preference', 2, 'pair']]);
    expect(r.duplicates.within).toEqual({ train: { exact: 1, near: 0 }, validation: { exact: 0, near: 0 } });
    expect(r.duplicates.across).toEqual([{ a: 'train', b: 'validation', exact: 1, near: 0 }]);
    expect(r.leakage).toEqual({ found: true, exact: 1, near: 0 });
    expect(r.duplicates.exact_groups[0].locations.map((l) => [l.split, l.line])).toEqual([['train', 1], ['train', 5], ['validation', 2]]);
    expect(r.pii.findings.map((f) => [f.line, f.kind, f.field])).toEqual([
      [2, 'email', 'prompt'], [3, 'ipv4', 'chosen'], [4, 'credit_card', 'rejected'], [6, 'phone', 'prompt[0].content'],
    ]);
    expect(r.balance).toBeNull();
    expect(auditSummaryLines(r)[0]).toBe(`splits: train 6 pairs (${train}); validation 2 pairs (${validation})`);
  });

  test('a pair that differs in one answer only is a near-duplicate, not an exact one', () => {
    // Each side: 11 words in all (prompt 7 + chosen 2 + rejected 2 after normalization); the last word differs:
    // 9 shingles each, 8 shared, Jaccard 8/10 = 0.8 (>= the default threshold).
    const a = pair('one two three four five six seven', ' eight nine', ' ten eleven');
    const b = pair('one two three four five six seven', ' eight nine', ' ten twelve');
    const file = path.join(dir, 'near.jsonl');
    fs.writeFileSync(file, `${a}\n${b}\n`);
    const r = auditSplits([loadAuditSplit('train', file)]);
    expect(r.duplicates.within.train).toEqual({ exact: 0, near: 1 });
    expect(r.duplicates.near_pairs[0].jaccard).toBe(8 / 10);
  });

  test('lengths: the longer side of each pair, prompt + answer + EOS in tokens; pairs longer than seq_len', () => {
    // Lines 1-5 (string prompts, rendered "{prompt}{completion}" + EOS; the tiny GPT-2 tokenizer adds no BOS).
    const file = path.join(dir, 'strings.jsonl');
    const lines = fs.readFileSync(train, 'utf8').trim().split('\n').slice(0, 5);
    fs.writeFileSync(file, lines.join('\n') + '\n');
    const expected = lines.map((l) => JSON.parse(l)).map((p) => Math.max(...[p.chosen, p.rejected].map((answer: string) => tokenizer.encode(p.prompt).length + tokenizer.encode(answer).length + 1)));
    const seqLen = [...expected].sort((x, y) => x - y)[2];
    const lengths = auditSplits([loadAuditSplit('train', file)], { tokenizer, seqLen }).lengths![0];
    expect([lengths.min, lengths.max]).toEqual([Math.min(...expected), Math.max(...expected)]);
    const over = expected.map((tokens, i) => ({ line: i + 1, tokens })).filter((x) => x.tokens > seqLen);
    expect(over.length).toBeGreaterThan(0);
    expect(lengths.truncated.map((t) => ({ line: t.line, tokens: t.tokens }))).toEqual(over);
  });

  test('gptune data audit reads preference files (with --json), and --redact rewrites their strings', () => {
    const r = gptune('data', 'audit', train, '--validation', validation, '--json');
    expect(r.code).toBe(0);
    const report = lastJSON(r.stdout) as { splits: Array<{ kind: string; unit: string }>; leakage: { exact: number }; pii: { total: number } };
    expect(report.splits.map((s) => [s.kind, s.unit])).toEqual([['preference', 'pair'], ['preference', 'pair']]);
    expect(report.leakage.exact).toBe(1);
    expect(report.pii.total).toBe(4);
    const redacted = path.join(dir, 'redacted.jsonl');
    const readable = gptune('data', 'audit', train, '--redact', redacted);
    expect(readable.code).toBe(0);
    expect(readable.stdout).toContain('splits: train 6 pairs');
    const lines = fs.readFileSync(redacted, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[1].prompt).toBe('Write to me at [EMAIL] please');
    expect(lines[3].rejected).toBe(' card [CREDIT_CARD]');
    expect(lines[0]).toEqual(JSON.parse(SAME));
    // A bad pair line: one line naming the file and line, nothing written.
    const bad = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(bad, `${SAME}\n${JSON.stringify({ prompt: 'q', chosen: '', rejected: 'x' })}\n`);
    expectCleanFailure(['data', 'audit', bad, '--json', path.join(dir, 'never.json')], /bad\.jsonl:2: the chosen answer is empty/, path.join(dir, 'never.json'));
  });
});
