/**
 * Entity-level precision, recall and F1 and token-level accuracy for sequence labelling, as seqeval
 * (chakki-works/seqeval 1.2) computes them.
 *
 * mode 'default' is seqeval's conlleval-compatible chunking (sequence_labeling.get_entities): an I-
 * after O or after another type starts an entity, a type change ends one, and the sentences are
 * joined with an 'O' between them. mode 'strict' with scheme 'IOB2' is seqeval.scheme's IOB2
 * (mode='strict', scheme=IOB2): only B- starts an entity, an I- continues it only with the same
 * type, and a stray I- is no entity at all; a tag whose first letter is not I, O or B is an error.
 * Scores are fractions (0..1); a ratio with a zero denominator is 0 (zero_division='warn' without
 * the warning), and the macro average over no entity types at all is NaN, as numpy's mean of
 * nothing is.
 */

export type SeqevalMode = 'default' | 'strict';
export type SeqevalScheme = 'IOB2';

export interface SeqevalOptions {
  /** 'default' (conlleval-compatible, the default) or 'strict' (needs scheme). */
  mode?: SeqevalMode;
  /** The tagging scheme of strict mode; seqeval's classification_report detects IOB2 for B/I/O tags. */
  scheme?: SeqevalScheme;
}

export interface SeqevalFigures {
  precision: number;
  recall: number;
  f1: number;
  /** Gold entities (of this type, or of all types for the averages). */
  support: number;
}

export interface SeqevalReport {
  /** Micro averages over entities: seqeval's precision_score, recall_score, f1_score. */
  precision: number;
  recall: number;
  f1: number;
  /** Token-level accuracy: seqeval's accuracy_score. */
  accuracy: number;
  /** Per entity type, sorted by type name (seqeval's classification_report rows). */
  per_type: Record<string, SeqevalFigures>;
  micro_avg: SeqevalFigures;
  macro_avg: SeqevalFigures;
  weighted_avg: SeqevalFigures;
  /** Sentences and tokens scored. */
  sentences: number;
  tokens: number;
}

/** An entity: its type and the token span [start, end) within its sentence. */
export interface SeqevalEntity {
  type: string;
  start: number;
  end: number;
}

/**
 * One tag split as get_entities does (prefix style): the first character is the chunk tag, the type
 * is what follows the first '-' after it ('_' when there is none), so 'B-PER' -> ('B', 'PER'), 'O' -> ('O', '_').
 */
function splitDefault(label: string): [string, string] {
  const rest = label.slice(1);
  const dash = rest.indexOf('-');
  return [label.slice(0, 1), (dash < 0 ? rest : rest.slice(dash + 1)) || '_'];
}

// sequence_labeling.end_of_chunk: did a chunk end between the previous and this token?
function endOfChunk(prevTag: string, tag: string, prevType: string, type: string): boolean {
  if (prevTag === 'E' || prevTag === 'S') return true;
  if ((prevTag === 'B' || prevTag === 'I') && (tag === 'B' || tag === 'S' || tag === 'O')) return true;
  return prevTag !== 'O' && prevTag !== '.' && prevType !== type;
}

// sequence_labeling.start_of_chunk: did a chunk start at this token?
function startOfChunk(prevTag: string, tag: string, prevType: string, type: string): boolean {
  if (tag === 'B' || tag === 'S') return true;
  if ((prevTag === 'E' || prevTag === 'S' || prevTag === 'O') && (tag === 'E' || tag === 'I')) return true;
  return tag !== 'O' && tag !== '.' && prevType !== type;
}

/** seqeval's get_entities on one sentence (default mode), with end exclusive. */
export function seqevalEntitiesDefault(tags: readonly string[]): SeqevalEntity[] {
  const entities: SeqevalEntity[] = [];
  let prevTag = 'O', prevType = '', begin = 0;
  // A trailing 'O' closes an entity that runs to the end.
  [...tags, 'O'].forEach((label, i) => {
    const [tag, type] = splitDefault(label);
    if (endOfChunk(prevTag, tag, prevType, type)) entities.push({ type: prevType, start: begin, end: i });
    if (startOfChunk(prevTag, tag, prevType, type)) begin = i;
    prevTag = tag;
    prevType = type;
  });
  return entities;
}

/**
 * seqeval.scheme.Tokens(tags, IOB2).entities: a B- starts an entity that extends over the I- tokens
 * of the same type after it. Throws on a tag whose prefix IOB2 does not allow.
 */
export function seqevalEntitiesIob2(tags: readonly string[], where = 'tags'): SeqevalEntity[] {
  const parsed = tags.map((label, i) => {
    const prefix = label.slice(0, 1);
    if (prefix !== 'I' && prefix !== 'O' && prefix !== 'B') {
      throw new RangeError(`seqeval strict IOB2: ${where}[${i}] is ${JSON.stringify(label)}; expected O or a tag starting with B or I`);
    }
    // Token.tag: the rest with every leading and trailing '-' stripped, '_' when empty.
    return { prefix, type: label.slice(1).replace(/^-+|-+$/g, '') || '_' };
  });
  const entities: SeqevalEntity[] = [];
  for (let i = 0; i < parsed.length; i++) {
    if (parsed[i].prefix !== 'B') continue;
    let end = i + 1;
    while (end < parsed.length && parsed[end].prefix === 'I' && parsed[end].type === parsed[i].type) end++;
    entities.push({ type: parsed[i].type, start: i, end });
    i = end - 1;
  }
  return entities;
}

function divide(numerator: number, denominator: number): number {
  return denominator === 0 ? 0 : numerator / denominator;
}

function figures(tp: number, predicted: number, gold: number): SeqevalFigures {
  const precision = divide(tp, predicted), recall = divide(tp, gold);
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1, support: gold };
}

function checkSequences(yTrue: ReadonlyArray<readonly string[]>, yPred: ReadonlyArray<readonly string[]>): void {
  if (!Array.isArray(yTrue) || !Array.isArray(yPred)) throw new TypeError('seqeval: expected yTrue and yPred to be arrays of tag arrays');
  if (yTrue.length !== yPred.length) {
    throw new RangeError(`seqeval: yTrue has ${yTrue.length} sentences but yPred has ${yPred.length}`);
  }
  yTrue.forEach((tags, i) => {
    if (!Array.isArray(tags) || !Array.isArray(yPred[i])) throw new TypeError(`seqeval: expected sentence ${i} of yTrue and yPred to be arrays of tags`);
    if (tags.length !== yPred[i].length) {
      throw new RangeError(`seqeval: sentence ${i} has ${tags.length} gold tags but ${yPred[i].length} predicted tags`);
    }
    for (const [side, list] of [['yTrue', tags], ['yPred', yPred[i]]] as const) {
      list.forEach((tag, j) => {
        if (typeof tag !== 'string' || tag === '') throw new TypeError(`seqeval: ${side}[${i}][${j}] must be a non-empty string tag but received ${JSON.stringify(tag)}`);
      });
    }
  });
}

/**
 * seqeval's classification_report (output_dict) and accuracy_score in one: per-type figures and
 * their micro, macro and weighted averages, over the entities of every sentence.
 */
export function seqevalReport(
  yTrue: ReadonlyArray<readonly string[]>,
  yPred: ReadonlyArray<readonly string[]>,
  options: SeqevalOptions = {},
): SeqevalReport {
  const mode = options.mode ?? 'default';
  if (mode !== 'default' && mode !== 'strict') throw new RangeError(`seqeval: expected mode 'default' or 'strict' but received ${JSON.stringify(mode)}`);
  if (options.scheme !== undefined && options.scheme !== 'IOB2') throw new RangeError(`seqeval: expected scheme 'IOB2' but received ${JSON.stringify(options.scheme)}`);
  checkSequences(yTrue, yPred);

  // Entities keyed "sentence start end" per type; sets, as seqeval compares them.
  const collect = (sequences: ReadonlyArray<readonly string[]>, side: string) => {
    const byType = new Map<string, Set<string>>();
    const add = (e: SeqevalEntity, sentence: number) => {
      if (!byType.has(e.type)) byType.set(e.type, new Set());
      byType.get(e.type)!.add(`${sentence} ${e.start} ${e.end}`);
    };
    if (mode === 'strict') {
      sequences.forEach((tags, s) => seqevalEntitiesIob2(tags, `${side}[${s}]`).forEach((e) => add(e, s)));
    } else {
      // get_entities on a list of sentences flattens them with an 'O' after each; so do we, so
      // that even odd tags chunk exactly as there (positions are then global, sentence 0).
      for (const e of seqevalEntitiesDefault(sequences.flatMap((tags) => [...tags, 'O']))) add(e, 0);
    }
    return byType;
  };
  const gold = collect(yTrue, 'yTrue'), predicted = collect(yPred, 'yPred');
  // sorted(set(...)) in Python: code-unit order, which is what the default sort gives for these names.
  const types = Array.from(new Set([...gold.keys(), ...predicted.keys()])).sort();

  const perType: Record<string, SeqevalFigures> = {};
  let tpSum = 0, predSum = 0, goldSum = 0;
  for (const type of types) {
    const g = gold.get(type) ?? new Set<string>(), p = predicted.get(type) ?? new Set<string>();
    let tp = 0;
    for (const key of p) if (g.has(key)) tp++;
    perType[type] = figures(tp, p.size, g.size);
    tpSum += tp;
    predSum += p.size;
    goldSum += g.size;
  }

  const rows = types.map((t) => perType[t]);
  const mean = (field: 'precision' | 'recall' | 'f1') => rows.reduce((sum, r) => sum + r[field], 0) / rows.length;
  const macro = { precision: mean('precision'), recall: mean('recall'), f1: mean('f1'), support: goldSum };
  // Weighted by gold support; with no gold entity at all seqeval returns 0 (zero_division) instead.
  const weightedMean = (field: 'precision' | 'recall' | 'f1') => rows.reduce((sum, r) => sum + r[field] * r.support, 0) / goldSum;
  const weighted = goldSum === 0
    ? { precision: 0, recall: 0, f1: 0, support: 0 }
    : { precision: weightedMean('precision'), recall: weightedMean('recall'), f1: weightedMean('f1'), support: goldSum };
  const micro = figures(tpSum, predSum, goldSum);

  let tokens = 0, correct = 0;
  yTrue.forEach((tags, s) => {
    tags.forEach((tag, j) => {
      tokens++;
      if (tag === yPred[s][j]) correct++;
    });
  });

  return {
    precision: micro.precision,
    recall: micro.recall,
    f1: micro.f1,
    // accuracy_score divides by zero on no tokens; NaN says "no number" without throwing.
    accuracy: tokens === 0 ? NaN : correct / tokens,
    per_type: perType,
    micro_avg: micro,
    macro_avg: macro,
    weighted_avg: weighted,
    sentences: yTrue.length,
    tokens,
  };
}
