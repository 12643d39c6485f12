/**
 * The Porter stemmer as NLTK's PorterStemmer computes it in its default NLTK_EXTENSIONS mode
 * (NLTK >= 3.2.2), which is what rouge-score's `use_stemmer=True` calls.
 *
 * Porter, M. "An algorithm for suffix stripping." Program 14.3 (1980): 130-137, plus NLTK's
 * departures: a table of irregular forms, words of 1-2 letters left alone, 'ies'/'ied' on
 * 4-letter words -> 'ie', y -> i only after a consonant that is not the first letter, ALLI
 * applied before the other step-2 rules, 'bli' -> 'ble', 'fulli' -> 'ful', 'logi' -> 'log',
 * and the two-letter vowel-consonant case counted as *o.
 *
 * Input is expected to be lowercase ASCII (rouge-score's tokens are [a-z0-9]+).
 */

// NLTK's irregular forms: word -> stem, bypassing the algorithm.
const IRREGULAR_FORMS = new Map<string, string>([
  ['sky', 'sky'],
  ['skies', 'sky'],
  ['dying', 'die'],
  ['lying', 'lie'],
  ['tying', 'tie'],
  ['news', 'news'],
  ['innings', 'inning'],
  ['inning', 'inning'],
  ['outings', 'outing'],
  ['outing', 'outing'],
  ['cannings', 'canning'],
  ['canning', 'canning'],
  ['howe', 'howe'],
  ['proceed', 'proceed'],
  ['exceed', 'exceed'],
  ['succeed', 'succeed'],
]);

function isVowelLetter(ch: string): boolean {
  return ch === 'a' || ch === 'e' || ch === 'i' || ch === 'o' || ch === 'u';
}

/** Porter's consonant: not a e i o u, and y only when at the start or after a vowel. */
function isConsonant(word: string, i: number): boolean {
  const ch = word[i];
  if (isVowelLetter(ch)) return false;
  if (ch === 'y') return i === 0 ? true : !isConsonant(word, i - 1);
  return true;
}

/** m in [C](VC){m}[V]: the number of vowel-to-consonant transitions. */
function measure(stem: string): number {
  let m = 0;
  for (let i = 1; i < stem.length; i++) if (!isConsonant(stem, i - 1) && isConsonant(stem, i)) m++;
  return m;
}

function containsVowel(stem: string): boolean {
  for (let i = 0; i < stem.length; i++) if (!isConsonant(stem, i)) return true;
  return false;
}

/** *d: ends with a double consonant. */
function endsDoubleConsonant(word: string): boolean {
  const n = word.length;
  return n >= 2 && word[n - 1] === word[n - 2] && isConsonant(word, n - 1);
}

/** *o: ends consonant-vowel-consonant with the last not w, x, y; NLTK also counts a 2-letter vc word. */
function endsCvc(word: string): boolean {
  const n = word.length;
  const last = word[n - 1];
  const cvc =
    n >= 3 &&
    isConsonant(word, n - 3) &&
    !isConsonant(word, n - 2) &&
    isConsonant(word, n - 1) &&
    last !== 'w' &&
    last !== 'x' &&
    last !== 'y';
  return cvc || (n === 2 && !isConsonant(word, 0) && isConsonant(word, 1));
}

const hasPositiveMeasure = (stem: string) => measure(stem) > 0;
const hasMeasureAboveOne = (stem: string) => measure(stem) > 1;

/** (suffix, replacement, condition on the stem left after removing the suffix, or null). */
type SuffixRule = [string, string, ((stem: string) => boolean) | null];

/**
 * The first rule whose suffix the word ends with decides: if its condition holds on the stem
 * the suffix is replaced, otherwise the word is returned unchanged (later rules are not tried).
 */
function applyFirstMatchingRule(word: string, rules: SuffixRule[]): string {
  for (const [suffix, replacement, condition] of rules) {
    if (word.endsWith(suffix)) {
      const stem = word.slice(0, word.length - suffix.length);
      return condition === null || condition(stem) ? stem + replacement : word;
    }
  }
  return word;
}

function step1a(word: string): string {
  if (word.endsWith('ies') && word.length === 4) return word.slice(0, -3) + 'ie'; // 'dies' -> 'die'
  return applyFirstMatchingRule(word, [
    ['sses', 'ss', null],
    ['ies', 'i', null],
    ['ss', 'ss', null],
    ['s', '', null],
  ]);
}

function step1b(word: string): string {
  if (word.endsWith('ied')) return word.slice(0, -3) + (word.length === 4 ? 'ie' : 'i'); // 'died', 'spied'
  if (word.endsWith('eed')) {
    const stem = word.slice(0, -3);
    return measure(stem) > 0 ? stem + 'ee' : word;
  }
  let stem: string | null = null;
  for (const suffix of ['ed', 'ing']) {
    if (word.endsWith(suffix) && containsVowel(word.slice(0, -suffix.length))) {
      stem = word.slice(0, -suffix.length);
      break;
    }
  }
  if (stem === null) return word;

  // Tidy-up after removing -ed/-ing.
  if (stem.endsWith('at') || stem.endsWith('bl') || stem.endsWith('iz')) return stem + 'e';
  if (endsDoubleConsonant(stem)) {
    const last = stem[stem.length - 1];
    return last === 'l' || last === 's' || last === 'z' ? stem : stem.slice(0, -1);
  }
  if (measure(stem) === 1 && endsCvc(stem)) return stem + 'e';
  return stem;
}

function step1c(word: string): string {
  // NLTK: y -> i only when preceded by a consonant that is not the whole stem ('happy', not 'by').
  return applyFirstMatchingRule(word, [['y', 'i', (stem) => stem.length > 1 && isConsonant(stem, stem.length - 1)]]);
}

function step2(word: string): string {
  if (word.endsWith('alli') && hasPositiveMeasure(word.slice(0, -4))) return step2(word.slice(0, -4) + 'al');
  return applyFirstMatchingRule(word, [
    ['ational', 'ate', hasPositiveMeasure],
    ['tional', 'tion', hasPositiveMeasure],
    ['enci', 'ence', hasPositiveMeasure],
    ['anci', 'ance', hasPositiveMeasure],
    ['izer', 'ize', hasPositiveMeasure],
    ['bli', 'ble', hasPositiveMeasure],
    ['alli', 'al', hasPositiveMeasure],
    ['entli', 'ent', hasPositiveMeasure],
    ['eli', 'e', hasPositiveMeasure],
    ['ousli', 'ous', hasPositiveMeasure],
    ['ization', 'ize', hasPositiveMeasure],
    ['ation', 'ate', hasPositiveMeasure],
    ['ator', 'ate', hasPositiveMeasure],
    ['alism', 'al', hasPositiveMeasure],
    ['iveness', 'ive', hasPositiveMeasure],
    ['fulness', 'ful', hasPositiveMeasure],
    ['ousness', 'ous', hasPositiveMeasure],
    ['aliti', 'al', hasPositiveMeasure],
    ['iviti', 'ive', hasPositiveMeasure],
    ['biliti', 'ble', hasPositiveMeasure],
    ['fulli', 'ful', hasPositiveMeasure],
    // The 'l' stays with the stem when measuring, so 'geologi' and 'theologi' qualify.
    ['logi', 'log', () => hasPositiveMeasure(word.slice(0, -3))],
  ]);
}

function step3(word: string): string {
  return applyFirstMatchingRule(word, [
    ['icate', 'ic', hasPositiveMeasure],
    ['ative', '', hasPositiveMeasure],
    ['alize', 'al', hasPositiveMeasure],
    ['iciti', 'ic', hasPositiveMeasure],
    ['ical', 'ic', hasPositiveMeasure],
    ['ful', '', hasPositiveMeasure],
    ['ness', '', hasPositiveMeasure],
  ]);
}

function step4(word: string): string {
  return applyFirstMatchingRule(word, [
    ['al', '', hasMeasureAboveOne],
    ['ance', '', hasMeasureAboveOne],
    ['ence', '', hasMeasureAboveOne],
    ['er', '', hasMeasureAboveOne],
    ['ic', '', hasMeasureAboveOne],
    ['able', '', hasMeasureAboveOne],
    ['ible', '', hasMeasureAboveOne],
    ['ant', '', hasMeasureAboveOne],
    ['ement', '', hasMeasureAboveOne],
    ['ment', '', hasMeasureAboveOne],
    ['ent', '', hasMeasureAboveOne],
    ['ion', '', (stem) => measure(stem) > 1 && (stem.endsWith('s') || stem.endsWith('t'))],
    ['ou', '', hasMeasureAboveOne],
    ['ism', '', hasMeasureAboveOne],
    ['ate', '', hasMeasureAboveOne],
    ['iti', '', hasMeasureAboveOne],
    ['ous', '', hasMeasureAboveOne],
    ['ive', '', hasMeasureAboveOne],
    ['ize', '', hasMeasureAboveOne],
  ]);
}

function step5a(word: string): string {
  // Both E rules are tried (unlike applyFirstMatchingRule): (m>1) E -> ; (m=1 and not *o) E -> .
  if (!word.endsWith('e')) return word;
  const stem = word.slice(0, -1);
  const m = measure(stem);
  if (m > 1) return stem;
  if (m === 1 && !endsCvc(stem)) return stem;
  return word;
}

function step5b(word: string): string {
  // (m > 1 and *d and *L) -> single letter; the measure is taken on the word minus one 'l'.
  return word.endsWith('ll') && measure(word.slice(0, -1)) > 1 ? word.slice(0, -1) : word;
}

/** NLTK PorterStemmer().stem(word) for a lowercase ASCII word. */
export function porterStem(word: string): string {
  const lower = word.toLowerCase();
  const irregular = IRREGULAR_FORMS.get(lower);
  if (irregular !== undefined) return irregular;
  if (lower.length <= 2) return lower;
  let stem = step1a(lower);
  stem = step1b(stem);
  stem = step1c(stem);
  stem = step2(stem);
  stem = step3(stem);
  stem = step4(stem);
  stem = step5a(stem);
  stem = step5b(stem);
  return stem;
}
