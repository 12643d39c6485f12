/**
 * Classification by label likelihood: no sampling. For each example, every candidate label's
 * completion is scored after the example's prompt, log p(completion | prompt) = the sum of the
 * completion tokens' log-probabilities, and the most likely label is the prediction.
 *
 * The completion of label L is what the training data renders for L (lib/data's template,
 * " " + L by default), followed by <|endoftext|> unless labelEos is false. With the EOS, a
 * label's score is the probability of the complete label string, so a label that is a prefix of
 * another (say "pos" and "positive") is not favoured just for being shorter, and the scored text
 * is exactly what fine-tuning taught the model to produce (an example ends with EOS).
 */
import { Decoder } from '../model/decoder';
import { encodeSequence, Tokenizer } from '../tokenizer';
import { CompletionItem, scoreCompletions } from './likelihood';
import { ClassificationReport, classificationReport } from './report';

export type LabelScoring = 'sum' | 'mean';

export interface ClassificationExample {
  /** The rendered prompt. */
  prompt: string;
  /** The true label. */
  label: string;
  /** The rendered completion for each candidate label, in the order of `labels`. */
  candidates: readonly string[];
}

export interface ClassificationOptions {
  /** 'sum' (default): total log-probability of the label's tokens; 'mean': per token. */
  labelScore?: LabelScoring;
  /** Append <|endoftext|> to every candidate completion (default true). */
  labelEos?: boolean;
  /** Rows per forward pass (default 16). */
  batchSize?: number;
  /** Called as scoring proceeds with the (example, label) pairs scored so far and their total. */
  onProgress?: (done: number, total: number) => void;
}

export interface ClassificationPrediction {
  label: string;
  predicted: string;
  /** Each candidate's score, in the order of the labels (log-probability: sum or per-token mean). */
  scores: number[];
}

export interface ClassificationEvalResult extends ClassificationReport {
  labels: string[];
  label_score: LabelScoring;
  label_eos: boolean;
  /** Examples whose prompt lost tokens on the left to fit n_positions. */
  truncated_examples: number;
  predictions: ClassificationPrediction[];
}

/** Index of the largest score; the first one on ties (the earlier label in the label order). */
export function argmax(scores: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i;
  return best;
}

/**
 * Scores every (example, label) pair and reports accuracy, macro P/R/F1, per-class figures and
 * the confusion matrix over `labels`. Prompt and completion are tokenised separately and
 * concatenated, as the training pipeline does, so the label tokens are the ones trained on.
 */
export function classifyExamples(
  model: Decoder,
  tokenizer: Tokenizer,
  examples: readonly ClassificationExample[],
  labels: readonly string[],
  options: ClassificationOptions = {},
): ClassificationEvalResult {
  const labelScore = options.labelScore ?? 'sum';
  const labelEos = options.labelEos ?? true;
  if (labels.length < 2) throw new RangeError(`classification: expected at least 2 candidate labels but received ${labels.length} (${JSON.stringify(labels)})`);
  if (new Set(labels).size !== labels.length) throw new RangeError(`classification: the candidate labels contain duplicates: ${JSON.stringify(labels)}`);
  if (examples.length === 0) throw new RangeError('classification: no examples to evaluate');
  const items: CompletionItem[] = [];
  examples.forEach((example, i) => {
    if (example.candidates.length !== labels.length) {
      throw new RangeError(`classification: example ${i} has ${example.candidates.length} candidate completions but there are ${labels.length} labels`);
    }
    if (!labels.includes(example.label)) {
      throw new RangeError(`classification: example ${i}'s label ${JSON.stringify(example.label)} is not among the candidate labels ${JSON.stringify(labels)}`);
    }
    const prompt = encodeSequence(tokenizer, example.prompt);
    for (const candidate of example.candidates) {
      const completion = tokenizer.encode(candidate);
      if (labelEos) completion.push(tokenizer.eosTokenId);
      items.push({ prompt, completion });
    }
  });
  const scores = scoreCompletions(model, items, { batchSize: options.batchSize, contextTokenId: tokenizer.eosTokenId, onProgress: options.onProgress });
  const predictions: ClassificationPrediction[] = [];
  let truncated = 0;
  examples.forEach((example, i) => {
    const own = scores.slice(i * labels.length, (i + 1) * labels.length);
    const values = own.map((s) => (labelScore === 'sum' ? s.logProb : s.logProb / s.tokens));
    if (own.some((s) => s.truncatedPromptTokens > 0)) truncated++;
    predictions.push({ label: example.label, predicted: labels[argmax(values)], scores: values });
  });
  const report = classificationReport(predictions.map((p) => p.label), predictions.map((p) => p.predicted), labels);
  return { ...report, labels: labels.slice(), label_score: labelScore, label_eos: labelEos, truncated_examples: truncated, predictions };
}
