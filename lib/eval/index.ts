/**
 * Task evaluation: language-model loss, classification by label likelihood, generation scored
 * with BLEU/ROUGE, two models side by side, prediction files scored against references, and
 * review files for people, the counterfactual bias probe. Nothing here prints; the CLI (lib/cli/commands/eval|score|sample.ts)
 * formats the results.
 */
export { scoreCompletions } from './likelihood';
export type { CompletionItem, CompletionScore, ScoreCompletionsOptions } from './likelihood';
export { classifyExamples, argmax } from './classification';
export type { ClassificationExample, ClassificationOptions, ClassificationPrediction, ClassificationEvalResult, LabelScoring } from './classification';
export { generateOutputs, evaluateGenerationExamples, scoreGenerations, defaultMaxNewTokens, isMultiLine, stoppingLineBreak } from './generation';
export type { DecodeOptions, GeneratedOutput, GenerationEvalResult, GenerationExample, GenerationRun, StopReason } from './generation';
export {
  evaluateLM, evaluateClassification, evaluateGeneration, candidateLabels, classificationExamples, generationExamples, reviewEntries,
} from './tasks';
export type { LMEvalReport, GenerationTaskOptions, ReviewOptions } from './tasks';
export { compareModels, numericDelta, numericFields, formatComparison } from './compare';
export type { Comparison } from './compare';
export { scoreLines, scoreFiles, readLines, SCORE_METRICS } from './score';
export type { ScoreFileLabels, ScoreMetric, ScoreOptions, ScoreResult } from './score';
export { classificationReport, bleuReport, rougeReport, formatClassificationReport, formatBleuReport, formatRougeReport, formatTable } from './report';
export type { ClassificationReport, ClassFigures, BleuReport, RougeReport, PRF } from './report';
export { chooseExamples, writeReview, formatReviewMarkdown, formatReviewJsonl, reviewFormat, isReviewFile } from './review';
export type { ReviewEntry, ReviewFormat } from './review';
export { probeCounterfactual, counterfactualSwapper, nameMapping, parseProbeGroups, formatProbeReport, PROBE_GROUPS, GENDER_PAIRS, GENDER_ONE_WAY } from './probe';
export type { ProbeGroup, ProbeReport, ProbeGroupReport, ProbeFlip, ProbeOptions, Swapper, SwapResult } from './probe';
