/**
 * Named-entity recognition as generation: the tags of a sentence (IOB2) become text the model
 * writes, and the model's text becomes tags again.
 *
 * The output form: one line per entity, in sentence order, "TYPE: span", the span being the
 * entity's tokens joined by single spaces; the single line "none" when the sentence has no entity.
 *
 *   tokens  EU  rejects  German  call  to  boycott  British  lamb  .
 *   tags    B-ORG  O     B-MISC  O     O   O        B-MISC   O     O
 *   text    ORG: EU
 *           MISC: German
 *           MISC: British
 *
 * Decoding (decodeEntities) reads any text: each non-blank line that is "TYPE: span" (TYPE a word
 * without spaces or colons) is matched to the sentence's tokens left to right, starting after the
 * previous entity's last token; a span not found there is looked for from the start among tokens no
 * entity holds yet (a model may list entities out of order). "none" lines are ignored; any other line
 * is malformed, and a well-formed line whose span is nowhere among the free tokens is unmatched: both
 * are counted, neither stops decoding. Tokens are compared exactly (case and punctuation included).
 */

/** A tag is "O", "B-TYPE" or "I-TYPE" (TYPE without whitespace), as IOB2 writes them. */
const TAG = /^(?:O|([BI])-(\S+))$/;

/** What is wrong with a tag sequence: the position of the first bad tag (0-based) and why. */
export interface TagProblem {
  position: number;
  problem: string;
}

/**
 * The first violation of IOB2 in `tags`: a tag of another form (IOB1 files and BIOES tags are
 * refused, not guessed at), or an I-TYPE that does not continue a B-TYPE or I-TYPE of the same type.
 */
export function findTagProblem(tags: readonly string[]): TagProblem | null {
  let previousType: string | null = null; // the type of the entity the previous tag is in
  for (let i = 0; i < tags.length; i++) {
    const match = TAG.exec(tags[i]);
    if (match === null) return { position: i, problem: `unknown tag ${JSON.stringify(tags[i])}: expected O, B-TYPE or I-TYPE (IOB2)` };
    const [, prefix, type] = match;
    if (prefix === 'I' && previousType !== type) {
      const after = i === 0 ? 'starts the sentence' : `follows ${tags[i - 1]}`;
      return { position: i, problem: `${tags[i]} ${after}: an entity starts with B-${type} (IOB2; convert IOB1 data first)` };
    }
    previousType = prefix === undefined ? null : type;
  }
  return null;
}

/** An entity: its type and tokens [start, end). */
export interface EntitySpan {
  type: string;
  start: number;
  end: number;
}

/** The entities of valid IOB2 tags (see findTagProblem), in order. */
export function entitySpans(tags: readonly string[]): EntitySpan[] {
  const spans: EntitySpan[] = [];
  tags.forEach((tag, i) => {
    if (tag.startsWith('B-')) spans.push({ type: tag.slice(2), start: i, end: i + 1 });
    else if (tag.startsWith('I-')) spans[spans.length - 1].end = i + 1;
  });
  return spans;
}

/** The text a model is trained to write for a sentence: "TYPE: span" lines, or "none". */
export function formatEntities(tokens: readonly string[], tags: readonly string[]): string {
  const spans = entitySpans(tags);
  if (spans.length === 0) return NO_ENTITIES;
  return spans.map((s) => `${s.type}: ${tokens.slice(s.start, s.end).join(' ')}`).join('\n');
}

export const NO_ENTITIES = 'none';

export interface DecodedEntities {
  /** IOB2 tags, one per token. */
  tags: string[];
  entities: EntitySpan[];
  /** Non-blank lines that are neither "TYPE: span" nor "none". */
  malformed: number;
  /** "TYPE: span" lines whose span is not among the tokens no earlier entity holds. */
  unmatched: number;
}

const ENTITY_LINE = /^([^\s:]+)\s*:\s*(\S.*)$/;

/** Where `span` occurs in tokens[from, to) with none of its tokens taken, or -1. */
function findFree(tokens: readonly string[], span: readonly string[], taken: Uint8Array, from: number, to: number): number {
  for (let i = from; i + span.length <= to; i++) {
    let k = 0;
    while (k < span.length && !taken[i + k] && tokens[i + k] === span[k]) k++;
    if (k === span.length) return i;
  }
  return -1;
}

/** A model's "TYPE: span" text back to IOB2 tags over `tokens` (see the file comment for the rules). */
export function decodeEntities(text: string, tokens: readonly string[]): DecodedEntities {
  const taken = new Uint8Array(tokens.length);
  const entities: EntitySpan[] = [];
  let malformed = 0, unmatched = 0, cursor = 0;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.toLowerCase() === NO_ENTITIES) continue;
    const match = ENTITY_LINE.exec(line);
    if (match === null) {
      malformed++;
      continue;
    }
    const [, type, spanText] = match;
    const span = spanText.trim().split(/\s+/);
    let start = findFree(tokens, span, taken, cursor, tokens.length);
    if (start < 0) start = findFree(tokens, span, taken, 0, tokens.length);
    if (start < 0) {
      unmatched++;
      continue;
    }
    taken.fill(1, start, start + span.length);
    entities.push({ type, start, end: start + span.length });
    cursor = start + span.length;
  }
  const tags = new Array<string>(tokens.length).fill('O');
  for (const e of entities) {
    tags[e.start] = `B-${e.type}`;
    for (let i = e.start + 1; i < e.end; i++) tags[i] = `I-${e.type}`;
  }
  entities.sort((a, b) => a.start - b.start);
  return { tags, entities, malformed, unmatched };
}
