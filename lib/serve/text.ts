/**
 * A generated sequence's text as its tokens arrive, cut at the first stop string (not included, as
 * OpenAI and vLLM do). Text is released only once it cannot change: a trailing U+FFFD (a character
 * whose UTF-8 bytes are split across tokens) and a tail that could be the start of a stop string are
 * held back. The released pieces, concatenated, are the final text, streamed or not.
 */
import type { Tokenizer } from '../tokenizer';

export class StopStringText {
  private readonly tokens: number[] = [];
  /** The text released so far. */
  text = '';
  /** Whether a stop string ended the text. */
  stopped = false;

  constructor(private readonly tokenizer: Tokenizer, private readonly stops: readonly string[]) {}

  /** Adds a token; returns the text it releases ('' when nothing yet). Nothing after a stop. */
  push(token: number): string {
    if (this.stopped) return '';
    this.tokens.push(token);
    const full = this.tokenizer.decode(this.tokens);
    let cut = -1;
    for (const stop of this.stops) {
      const at = full.indexOf(stop, Math.max(0, this.text.length - stop.length + 1));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      return this.release(full.slice(0, cut));
    }
    let safe = full.replace(/\uFFFD+$/, '').length;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, full.length); n > 0; n--) {
        if (full.endsWith(stop.slice(0, n))) {
          safe = Math.min(safe, full.length - n);
          break;
        }
      }
    }
    return this.release(full.slice(0, safe));
  }

  /** The sequence ended: releases what was held back. */
  finish(): string {
    return this.stopped ? '' : this.release(this.tokenizer.decode(this.tokens));
  }

  private release(upTo: string): string {
    // A decoder that rewrites earlier text (rare) releases nothing more until its text extends ours.
    if (!upTo.startsWith(this.text)) return '';
    const piece = upTo.slice(this.text.length);
    this.text = upTo;
    return piece;
  }
}
