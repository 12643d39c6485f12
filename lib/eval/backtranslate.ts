/**
 * Back-translation for `gptune data augment --method backtranslate`: a text goes through one model
 * (A -> B, the forward model) and back through another (B -> A, the backward model); what comes back
 * says the same in other words. Each model is asked with a prompt template holding `{text}`
 * (DEFAULT_TRANSLATION_TEMPLATE unless given: give a model fine-tuned for translation the template it
 * was trained with) and continues it as `gptune generate` would: greedy unless temperature > 0, up to
 * the text's token count + max(16, 25%) new tokens, stopping at EOS and, when the original text is
 * one line, at the first line break (in both directions). Surrounding whitespace of each translation is removed.
 */
import type { Paraphraser } from '../data';
import type { Decoder } from '../model/decoder';
import type { Tokenizer } from '../tokenizer';
import { generateOutputs, isMultiLine } from './generation';

export const DEFAULT_TRANSLATION_TEMPLATE = 'Translate the following text.\nText: {text}\nTranslation:';

export interface TranslationModel {
  model: Decoder;
  tokenizer: Tokenizer;
  /** The prompt, with {text} where the text goes (default DEFAULT_TRANSLATION_TEMPLATE). */
  template?: string;
}

export interface BackTranslationOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
  maxNewTokens?: number;
}

/** Checks a translation template: exactly where the text goes must be marked. */
export function checkTranslationTemplate(template: string, label: string): void {
  if (!template.includes('{text}')) throw new RangeError(`${label}: expected a template holding {text} (where the text goes) but received ${JSON.stringify(template)}`);
}

/** `oneLine`: the original text is one line, so both translations stop at a line break. */
function translate(m: TranslationModel, text: string, seed: number, oneLine: boolean, o: BackTranslationOptions): string {
  const template = m.template ?? DEFAULT_TRANSLATION_TEMPLATE;
  const prompt = template.split('{text}').join(text);
  const run = generateOutputs(m.model, m.tokenizer, [{ prompt, reference: text }], { ...o, seed, stopAtNewline: oneLine });
  return run.outputs[0].output.trim();
}

/** A Paraphraser that translates with `forward`, then back with `backward` (an empty forward translation gives ''). */
export function backTranslator(forward: TranslationModel, backward: TranslationModel, options: BackTranslationOptions = {}): Paraphraser {
  checkTranslationTemplate(forward.template ?? DEFAULT_TRANSLATION_TEMPLATE, 'forward template');
  checkTranslationTemplate(backward.template ?? DEFAULT_TRANSLATION_TEMPLATE, 'backward template');
  return (text, seed) => {
    const oneLine = !isMultiLine(text);
    const pivot = translate(forward, text, seed, oneLine, options);
    return pivot === '' ? '' : translate(backward, pivot, seed + 1, oneLine, options);
  };
}
