/** Evaluation metrics in pure TypeScript, each reproducing a reference implementation's numbers. */
export * from './classification';
export * from './bleu';
export * from './rouge';
export * from './lm';
export { porterStem } from './porter_stemmer';
export * from './chrf';
export * from './squad';
export * from './seqeval';
