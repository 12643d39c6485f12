/**
 * A bag-of-words baseline: multinomial naive Bayes on word counts with add-alpha (Laplace)
 * smoothing, as in Manning, Raghavan & Schütze, Introduction to Information Retrieval, ch. 13:
 *
 *   P(c)     = documents of class c / documents
 *   P(w | c) = (count of w in class c + alpha) / (words in class c + alpha * |V|)
 *   predict  argmax_c  log P(c) + sum over the document's words w (with repeats) of log P(w | c)
 *
 * V is the training vocabulary; words never seen in training are skipped at prediction time.
 */

/** Lower-cased runs of letters and digits (with inner apostrophes), the document's words. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+(?:'[\p{L}]+)*/gu) ?? [];
}

export class NaiveBayes {
  private readonly logPrior = new Map<string, number>();
  private readonly logLikelihood = new Map<string, Map<string, number>>();
  /** log P(w | c) of a word seen in training but never in class c. */
  private readonly logUnseen = new Map<string, number>();
  readonly labels: string[];
  readonly vocabularySize: number;

  constructor(texts: readonly string[], labels: readonly string[], readonly alpha = 1) {
    if (texts.length !== labels.length) throw new RangeError(`NaiveBayes: ${texts.length} texts but ${labels.length} labels`);
    if (texts.length === 0) throw new RangeError('NaiveBayes: no training documents');
    if (!(alpha > 0)) throw new RangeError(`NaiveBayes: alpha must be > 0 but is ${alpha}`);
    this.labels = [...new Set(labels)].sort();
    const counts = new Map(this.labels.map((l) => [l, new Map<string, number>()]));
    const docs = new Map(this.labels.map((l) => [l, 0]));
    const vocabulary = new Set<string>();
    texts.forEach((text, i) => {
      const c = counts.get(labels[i])!;
      docs.set(labels[i], docs.get(labels[i])! + 1);
      for (const w of words(text)) {
        c.set(w, (c.get(w) ?? 0) + 1);
        vocabulary.add(w);
      }
    });
    this.vocabularySize = vocabulary.size;
    for (const label of this.labels) {
      const c = counts.get(label)!;
      let total = 0;
      for (const n of c.values()) total += n;
      const denominator = total + alpha * vocabulary.size;
      this.logPrior.set(label, Math.log(docs.get(label)! / texts.length));
      this.logUnseen.set(label, Math.log(alpha / denominator));
      const table = new Map<string, number>();
      for (const [w, n] of c) table.set(w, Math.log((n + alpha) / denominator));
      this.logLikelihood.set(label, table);
    }
  }

  /** log P(c) + sum log P(w | c) for each label, in the order of `labels`. */
  scores(text: string): number[] {
    const ws = words(text);
    return this.labels.map((label) => {
      const table = this.logLikelihood.get(label)!;
      const unseen = this.logUnseen.get(label)!;
      let s = this.logPrior.get(label)!;
      for (const w of ws) {
        const v = table.get(w);
        if (v !== undefined) s += v;
        else if (this.isKnown(w)) s += unseen;
      }
      return s;
    });
  }

  private isKnown(word: string): boolean {
    for (const table of this.logLikelihood.values()) if (table.has(word)) return true;
    return false;
  }

  /** The most probable label (the first in sorted order on a tie). */
  predict(text: string): string {
    const s = this.scores(text);
    let best = 0;
    for (let i = 1; i < s.length; i++) if (s[i] > s[best]) best = i;
    return this.labels[best];
  }
}
