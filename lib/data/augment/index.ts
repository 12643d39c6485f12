/**
 * Data augmentation for training data: textual noise (noise.ts), EDA with WordNet synonyms (eda.ts,
 * wordnet.ts), back-translation through a Paraphraser the caller makes (lib/eval/backtranslate.ts),
 * minority oversampling; the file-level pipeline in augment.ts, the training-split rule in split.ts.
 */
export { AUGMENT_METHODS, DEFAULT_RATES, augmentFile, augmentRecords } from './augment';
export type { AugmentMethod, AugmentOptions, AugmentRates, AugmentReport, AugmentResult, MethodCounts, Paraphraser } from './augment';
export { EDA_OPERATIONS, applyEda, englishStopWords, insertSynonyms, replaceSynonyms, swapWords } from './eda';
export type { EdaOperation, EdaRates } from './eda';
export { QWERTY_NEIGHBOURS, addNoise, deleteCharacters, keyboardTypos, swapCharacters } from './noise';
export type { NoiseRates } from './noise';
export { SPLITS, SPLIT_WORDS, NotTrainingDataError, checkTrainingSplit } from './split';
export type { Split, SplitCheck } from './split';
export { WORDNET_POS, WordNet, sharedWordNet } from './wordnet';
export type { Synset, WordNetPos } from './wordnet';
export { dropWords, joinWords, splitWords } from './words';
export type { WordSequence } from './words';
