/** Models from the Hugging Face Hub, in huggingface_hub's cache layout. */
export { formatModelId, hubCacheDir, isHubModelSpec, parseHubModelId, snapshotModelId } from './cache';
export type { HubModelId } from './cache';
export type { DownloadProgress } from './download';
export { localAdapterFolder, localModelFolder, pinnedModelId, resolveHubAdapter, resolveHubModel } from './resolve';
export type { HubOptions, HubSnapshot } from './resolve';
