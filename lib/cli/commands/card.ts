/** gptune card: (re)writes an output folder's model card from its recorded facts and eval / probe reports. */
import * as fs from 'fs';
import * as path from 'path';
import { CardEval } from '../../card/card';
import { CARD_FACTS_FILE, evalFromReport, probeFromReport, rewriteModelCard } from '../../card/folder';
import { FileFormatError } from '../../errors';
import { recordOutputEntries } from '../../io/output';
import { ADAPTER_CONFIG_FILE } from '../../lora/files';
import { UsageError } from '../args';
import { COMMON, Command, out, readTextFile } from '../common';

/** A `gptune eval --json` report: the file's last line that parses as JSON (progress lines may precede it). */
function readReport(file: string, flag: string): unknown {
  const lines = readTextFile(file, flag).split('\n').map((l) => l.trim()).filter((l) => l !== '');
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      return JSON.parse(lines[i]);
    } catch {
      // not the JSON line
    }
  }
  throw new FileFormatError(`${flag} ${file}: no JSON line in it; expected the output of gptune eval --json`);
}

export const cardCommand: Command = {
  usage: 'gptune card --model DIR [--eval REPORT.json ...] [--probe REPORT.json] [--json]',
  description:
    'Writes a model folder\'s model card again (README.md in Hugging Face\'s format: YAML front matter with library_name, license, base_model, datasets, metrics, tags and model-index, then training data, hyperparameters, results, data audit, bias probe, intended use, limitations and human review), ' +
    `from the facts gptune recorded when it wrote the model (${CARD_FACTS_FILE}) with the results of gptune eval --json reports (--eval) and of the bias probe (--probe) added. ` +
    'A README.md that gptune did not write is never replaced: the card then goes to MODEL_CARD.md.',
  flags: {
    model: { type: 'string', required: true, help: 'a model or LoRA adapter folder (gptune train/merge/demo output, or any Hugging Face model folder)' },
    eval: { type: 'strings', help: 'a gptune eval --json report (task lm, classify or generate) to add to the results and model-index; repeat for several' },
    probe: { type: 'string', help: 'a gptune eval --task classify --probe counterfactual --json report for the bias probe section' },
    json: { type: 'bool', help: 'print where the card went as JSON' },
    ...COMMON,
  },
  run(v) {
    const dir = v.model as string;
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`--model ${dir}: folder not found`);
    if (!['config.json', ADAPTER_CONFIG_FILE, CARD_FACTS_FILE].some((n) => fs.existsSync(path.join(dir, n)))) {
      throw new UsageError(`--model ${dir}: not a model folder (no config.json, ${ADAPTER_CONFIG_FILE} or ${CARD_FACTS_FILE} in it)`);
    }
    // Every report is read and checked before anything is written.
    const evals: CardEval[] = ((v.eval as string[] | undefined) ?? []).map((file) => evalFromReport(readReport(file, '--eval'), file));
    const probe = v.probe === undefined ? null : probeFromReport(readReport(v.probe as string, '--probe'), v.probe as string);
    const { file, facts } = rewriteModelCard(dir, evals, probe);
    recordOutputEntries(dir, '--model', [path.basename(file), CARD_FACTS_FILE]);
    const summary = { card: file, facts: path.join(dir, CARD_FACTS_FILE), evals: facts.evals.length, probe: facts.probe !== null };
    out(v.json ? JSON.stringify(summary) : `model card written to ${file} (${facts.evals.length} evaluation result(s)${facts.probe ? ', bias probe' : ''})`);
  },
};
