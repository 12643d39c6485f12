/** Shared pieces of the evaluation tests: an independent log-likelihood reference and a tiny trained classifier. */
import { Decoder } from '../../lib/model/decoder';
import { loadModel } from '../../lib/model/checkpoint';
import { Tokenizer } from '../../lib/tokenizer';
import { trainLM } from '../../lib/train/lm';
import { TINY } from '../helpers';

/**
 * log p(completion | prompt) the slow way: one forward pass over the whole sequence (batch 1,
 * no targets), the logits read back, log-softmax in float64, and the completion tokens'
 * log-probabilities summed. Prompts longer than the context keep their last tokens, as the
 * evaluator documents; an empty prompt is replaced by the context token.
 */
export function bruteForceLogProb(model: Decoder, prompt: readonly number[], completion: readonly number[], contextToken: number): number {
  const V = model.config.vocabSize;
  let context = prompt.length > 0 ? prompt.slice() : [contextToken];
  const maxContext = model.contextLength + 1 - completion.length;
  if (context.length > maxContext) context = context.slice(context.length - maxContext);
  const full = [...context, ...completion];
  const T = full.length - 1;
  model.forward(Int32Array.from(full.slice(0, T)), 1, T, null);
  const logits = model.logitsRows(0, T);
  let total = 0;
  for (let k = 0; k < completion.length; k++) {
    const t = context.length - 1 + k; // position t predicts full[t + 1]
    const row = logits.subarray(t * V, (t + 1) * V);
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, row[v]);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(row[v] - max);
    total += row[full[t + 1]] - max - Math.log(sum);
  }
  return total;
}

/**
 * A three-class toy task whose answer is known: the class is the colour named in the text,
 * surrounded by filler words. Labels: red, green, blue.
 */
export const TOY_LABELS = ['blue', 'green', 'red'];
const FILLERS = ['the', 'a', 'big', 'small', 'old', 'new', 'car', 'house', 'dog', 'cat', 'is', 'was', 'very', 'quite'];
const COLOUR_WORDS: Record<string, string[]> = { red: ['cherry', 'tomato'], green: ['grass', 'leaf'], blue: ['sky', 'ocean'] };

export interface ToyExample {
  text: string;
  label: string;
}

/** n examples, seeded, cycling through the labels so the classes are balanced. */
export function toyExamples(n: number, seed: number): ToyExample[] {
  let state = seed >>> 0 || 1;
  const rand = (k: number) => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state % k;
  };
  const labels = ['red', 'green', 'blue'];
  return Array.from({ length: n }, (_, i) => {
    const label = labels[i % 3];
    const words = Array.from({ length: 2 + rand(3) }, () => FILLERS[rand(FILLERS.length)]);
    const cue = COLOUR_WORDS[label][rand(2)];
    words.splice(rand(words.length + 1), 0, cue);
    return { text: words.join(' '), label };
  });
}

/** lib/data's default classification template renders {"text", "label"} records this way. */
export const toyPrompt = (text: string) => `Text: ${text}\nLabel:`;

/**
 * The tiny fixture model after a short language-model fine-tune (200 steps, ~0.5 s) on 600
 * "prompt label<|endoftext|>" examples: enough to learn that the colour word decides the label
 * (held-out accuracy 1.0 for every training seed tried, 2..5; with 60 examples it memorises
 * them instead and stays near chance). With endOfExample '\n' the examples follow one another
 * without EOS, so the model goes on after the label with a line break and a new example.
 */
export async function trainedToyClassifier(tokenizer: Tokenizer, endOfExample = '<|endoftext|>', steps = 200): Promise<Decoder> {
  const model = loadModel(TINY);
  const train = toyExamples(600, 7).map((e) => `${toyPrompt(e.text)} ${e.label}${endOfExample}`).join('');
  const tokens = Int32Array.from(tokenizer.encode(train));
  await trainLM(model, tokens, {
    steps, batchSize: 8, seqLen: 32, gradAccum: 1, lr: 1e-2, minLr: 1e-3, warmup: 10, schedule: 'cosine',
    gradClip: 1, shuffle: true, seed: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8,
  }, () => undefined);
  return model;
}
