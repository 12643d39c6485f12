/** gptune's programmatic API. */
export { addon, kernels } from './native';
export type { Addon, ArenaHandle, DeviceName, Kernels, TensorRef } from './native';
export { Tensor, TensorArena, floatSlots, readElements, writeElements } from './tensor';
export type { ElementArray } from './tensor';
export { Decoder, IGNORE_INDEX, parameterSpecs, planMemory } from './model/decoder';
/** The model class's name before the Llama family joined; the same class. */
export { Decoder as GPT2 } from './model/decoder';
export type { DecoderOptions, ForwardOptions, ForwardResult, MemoryPlan, MemoryReport, ModelUse } from './model/decoder';
export { CheckpointError, MemoryBudgetError, NonFiniteError, UsageError } from './errors';
export { loadModel, saveModel, checkpointTensors } from './model/checkpoint';
export type { SaveOptions, SaveDtype } from './model/checkpoint';
export {
  parseGPT2Config, loadGPT2Config, configToJSON, parseModelSpec, presetConfig, countParameters,
  parseModelConfig, loadModelConfig, parseDecoderSpec, decoderConfigFromGPT2,
} from './model/config';
export type { GPT2Config, DecoderConfig, ModelType, RopeScaling } from './model/config';
export { trainingDropout } from './model/dropout';
export type { DropoutRates } from './model/dropout';
export { generate, planGenerationMemory, sampleToken } from './model/generate';
export type { GenerateOptions, GenerateResult } from './model/generate';
export { beamSearch } from './model/beam';
export type { BeamSearchOptions, BeamHypothesis, BeamStop } from './model/beam';
export { loadTokenizer, BPETokenizer, HFTokenizer, DecodeStream, encodeSequence } from './tokenizer';
export type { Tokenizer } from './tokenizer';
export { AdamW, clipScale, ADAMW_DEFAULTS } from './train/adamw';
export { learningRate, SCHEDULES } from './train/schedule';
export { trainLM, evalLM, evaluate, evaluateSums, evalResult, windowCount } from './train/lm';
export {
  PreferenceObjective, PreferenceSums, FrozenReference, AdapterOffReference, PrecomputedReference, dpoPairTerms, orpoPairTerms, stepScope, ONE_PROCESS, DPO_LOSS_TYPES,
} from './train/preference';
export type { PreferenceSettings, PreferenceMetrics, PreferenceResult, ReferenceModel, DpoLossType, PreferenceMethod, RankGroup, StepScope } from './train/preference';
export type { EvalResult, EvalSums } from './train/lm';
export { readSafetensors, writeSafetensors, toFloat32 } from './io/safetensors';
export { resolveDevice } from './device';
export * as metrics from './metrics';
export { Rng } from './util/rng';
export { VERSION } from './version';
export * as data from './data';
export * as evaluation from './eval';
export { Trainer } from './train/trainer';
export type { FitResult, StepLog, EvalLog, SampleLog, TrainerOptions, TrainerEvents, TrainingWarning, StopReason } from './train/trainer';
export { RunHistory, HISTORY_FILE } from './train/history';
export { dashboardPage, REPORT_FILE } from './dashboard/page';
export { startDashboardServer } from './dashboard/server';
export type { DashboardServer, DashboardSource } from './dashboard/server';
export * as config from './config';
export type { TrainConfig } from './config';
export { loadAdapter, mergeAdapters, parseAdapterSpec } from './lora/apply';
export { LoraAdapter } from './lora/adapter';
export { adapterFiles, readAdapterFolder, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from './lora/files';
export { LORA_DEFAULTS, loraScaling, matchTargets, linearModules } from './lora/modules';
export type { LoraSettings, LinearModule } from './lora/modules';
export { EXPORT_DTYPES, planAdapterGGUF, planModelGGUF, writeGGUF } from './gguf';
export type { ExportDtype, ExportedTensor, GGUFPlan } from './gguf';
export { BASE_DTYPES } from './model/frozen_base';
export type { BaseDtype } from './model/frozen_base';
export { hubCacheDir, isHubModelSpec, parseHubModelId, pinnedModelId, resolveHubAdapter, resolveHubModel } from './hub';
export type { DownloadProgress, HubModelId, HubOptions, HubSnapshot } from './hub';
export { HubAccessError, HubError } from './errors';
export { OpenAIServer } from './serve/server';
export type { ServerOptions } from './serve/server';
export { Scheduler } from './serve/scheduler';
export type { SchedulerOptions, SequenceSpec, SequenceHandlers, SequenceHandle, GeneratedToken, FinishReason } from './serve/scheduler';
export { BatchDecoder, planBatchDecodeMemory, APPLIED_ADAPTERS } from './model/batch_decode';
export type { BatchDecoderOptions, DecodeAdapter } from './model/batch_decode';
