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
export {
  generateOutputs, evaluateGenerationExamples, scoreGenerations, defaultMaxNewTokens, isMultiLine, stoppingLineBreak, generateForTask, fitPrompt,
} from './generation';
export type {
  DecodeOptions, GeneratedOutput, GenerationEvalResult, GenerationExample, GenerationRun, StopReason, TaskGeneration, TaskGenerationOptions, TaskStop,
} from './generation';
export {
  evaluateLM, evaluateClassification, evaluateGeneration, candidateLabels, classificationExamples, generationExamples, reviewEntries,
  evaluateTask, scoreTask, EVAL_TASKS, EVAL_TASK_KIND,
} from './tasks';
export type {
  LMEvalReport, GenerationTaskOptions, ReviewOptions, EvalTask, TaskEvalOptions, TaskEvalResult, TaskExampleResult, TaskExampleScore, TaskScores,
} from './tasks';
export { compareModels, numericDelta, numericFields, formatComparison } from './compare';
export type { Comparison } from './compare';
export { scoreLines, scoreFiles, readLines, SCORE_METRICS, unescapeSentenceBreaks } from './score';
export type { ScoreFileLabels, ScoreMetric, ScoreOptions, ScoreResult } from './score';
export {
  classificationReport, bleuReport, rougeReport, formatClassificationReport, formatBleuReport, formatRougeReport, formatTable, formatChrfScore, formatSquadScores,
  formatSeqevalReport, formatTaskReport,
} from './report';
export type { ClassificationReport, ClassFigures, BleuReport, RougeReport, PRF } from './report';
export {
  chooseExamples, writeReview, formatReviewMarkdown, formatReviewJsonl, reviewFormat, isReviewFile,
  REVIEW_VERDICTS, REVIEW_CSV_COLUMNS, reviewItems, reviewCsvPath, isReviewCsv, formatReviewCsv, writeReviewItems, readReviewFile, recordsFromReview,
} from './review';
export type { ReviewEntry, ReviewFormat, ReviewItem, ReviewSource, ReviewVerdict, ReviewedItem, ReviewRecordFormat, FromReviewResult } from './review';
export { backTranslator, checkTranslationTemplate, DEFAULT_TRANSLATION_TEMPLATE } from './backtranslate';
export type { BackTranslationOptions, TranslationModel } from './backtranslate';
export { probeCounterfactual, counterfactualSwapper, nameMapping, parseProbeGroups, formatProbeReport, PROBE_GROUPS, GENDER_PAIRS, GENDER_ONE_WAY } from './probe';
export type { ProbeGroup, ProbeReport, ProbeGroupReport, ProbeFlip, ProbeOptions, Swapper, SwapResult } from './probe';
