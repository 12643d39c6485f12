/**
 * The data pipeline: data files -> validated records -> templated, tokenised, masked examples ->
 * packed or padded (B,T) batches. See records.ts (formats and validation), templates.ts (default
 * templates), examples.ts (masking, truncation, packing), tokens.ts (streaming plain text),
 * sources.ts (batch order and resumption), dataset.ts (buildDatasets), preference.ts (DPO/ORPO pairs)
 * and inspect.ts.
 */
export type { Batch, BatchSource, DataState } from './types';
export {
  DATA_KINDS, TASK_KINDS, CHAT_ROLES, detectKind, isTaskKind, loadRecords, parseJSONLine, parseDataKind, sortedLabels, textFilesOf,
} from './records';
export type {
  DataKind, DataRecord, ChatMessage, ChatRole, TextRecord, PromptCompletionRecord, ChatRecord, ClassificationRecord,
  LoadOptions, LoadedRecords, SkippedLine, RecordOrigin, RecordWarning, TaskKind, TaskRecord, QARecord, NERRecord,
  TranslationRecord, SummarizationRecord,
} from './records';
export { findTagProblem, entitySpans, formatEntities, decodeEntities, NO_ENTITIES } from './ner';
export type { TagProblem, EntitySpan, DecodedEntities } from './ner';
export { DataError, CSVParser, forEachLine, forEachTextChunk } from './read';
export {
  DEFAULT_TEMPLATES, TASK_CHAT_PROMPTS, CHAT_MESSAGE_SEPARATOR, MODEL_CHAT_TEMPLATE, chatTemplateFor, compileTemplate, renderRecord, renderSegments, taskMessages,
} from './templates';
export type { CompiledTemplate, Segment, TemplateVariables } from './templates';
export { tokenizeSegments, tokenizeRecord, truncateExample, scoredTargets, ExampleStore, layoutRows, buildRowBatch } from './examples';
export type { TokenizedExample } from './examples';
export { TokenStore, TokenRange, StreamingEncoder, safeCutIndex, tokenizeTextFiles } from './tokens';
export type { TextTokenizeStats, TokenSequence } from './tokens';
export { ItemSampler, TextWindowSource, RowSource, textValidationBatches, rowValidationBatches } from './sources';
export type { SamplerState } from './sources';
export { assistantTurnSpans, tokenizeChat } from './chat';
export { buildDatasets, exampleKey } from './dataset';
export type { BuildOptions, Datasets, DataReport, SplitReport } from './dataset';
export { inspectData, lengthHistogram } from './inspect';
export { buildPreferenceDatasets, isPreferenceFile, loadPreferencePairs, parsePreferenceLine, tokenizePair, PairSource, PairStore, pairValidationBatches } from './preference';
export type { PreferencePair, PreferenceBuildOptions, PreferenceDatasets, LoadedPairs, PairRendering } from './preference';
export type { InspectOptions, InspectReport, HistogramBin, LengthStats } from './inspect';
export * from './augment';
export { auditSplits, loadAuditSplit, auditSummaryLines, auditReportLines, findPII, redactPII, redactFile, nearDuplicatePairs, DEFAULT_NEAR_THRESHOLD } from './audit';
export type { AuditReport, AuditOptions, AuditSplit, AuditRecord, PreferenceRecord, AuditLocation, PIIKind, PIISpan, RedactionSummary } from './audit';
