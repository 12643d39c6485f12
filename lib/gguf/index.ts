/** GGUF files (llama.cpp's format): the container, tensor encodings, model and adapter export, reading models back. */
export { ALIGNMENT, GGML_TYPE, ggufChunks, ggufFileBytes, writeGGUF, type GGUFTensor, type GGUFValue } from './format';
export { fitsBlockRows, GGML_BLOCK_TYPE_LIST, GGML_BLOCK_TYPES, ggmlBlockBytes, ggmlBlockType, type GGMLBlockType, type GGMLBlockTypeName } from './ggml_types';
export { dequantizeRows, floatToHalfBits, quantizeRows } from './quant';
export { EXPORT_DTYPES, planAdapterGGUF, planModelGGUF, type ExportDtype, type ExportedTensor, type GGUFPlan } from './export';
export { readGGUFHeader, readTensor, readTensorBytes, READABLE_TYPES, type GGUFHeader, type GGUFTensorInfo, type GGUFReadValue } from './read';
export { ggufModelConfig, isGGUFPath, loadGGUFModel } from './load';
