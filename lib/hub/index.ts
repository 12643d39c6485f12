/** Models from the Hugging Face Hub, in huggingface_hub's cache layout. */
export { formatModelId, hubCacheDir, isHubModelSpec, parseHubModelId } from './cache';
export type { HubModelId } from './cache';
export type { DownloadProgress } from './download';
export { localModelFolder, pinnedModelId, resolveHubModel } from './resolve';
export type { HubOptions, HubSnapshot } from './resolve';
