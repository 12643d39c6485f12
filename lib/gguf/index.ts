/** GGUF files (llama.cpp's format): the container, tensor encodings, model and adapter export, reading models back. */
export { ALIGNMENT, GGML_TYPE, ggufChunks, ggufFileBytes, writeGGUF, type GGUFTensor, type GGUFValue } from './format';
export { fitsBlockRows, GGML_BLOCK_TYPE_LIST, GGML_BLOCK_TYPES, ggmlBlockBytes, ggmlBlockType, type GGMLBlockType, type GGMLBlockTypeName } from './ggml_types';
export { dequantizeQ8_0, floatToHalfBits, quantizeQ8_0, Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from './quant';
export { EXPORT_DTYPES, planAdapterGGUF, planModelGGUF, type ExportDtype, type ExportedTensor, type GGUFPlan } from './export';
export { readGGUFHeader, readTensor, READABLE_TYPES, type GGUFHeader, type GGUFTensorInfo, type GGUFReadValue } from './read';
export { ggufModelConfig, isGGUFPath, loadGGUFModel } from './load';
