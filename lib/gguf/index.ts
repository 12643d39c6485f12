/** GGUF files written by gptune (llama.cpp's format): the container, tensor encodings, model and adapter export. */
export { ALIGNMENT, GGML_TYPE, ggufChunks, ggufFileBytes, writeGGUF, type GGUFTensor, type GGUFValue } from './format';
export { dequantizeQ8_0, floatToHalfBits, quantizeQ8_0, Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from './quant';
export { EXPORT_DTYPES, planAdapterGGUF, planModelGGUF, type ExportDtype, type ExportedTensor, type GGUFPlan } from './export';
