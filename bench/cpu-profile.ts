/**
 * Summarises V8 CPU profiles (.cpuprofile, from `node --cpu-prof` or the
 * inspector): self time by module — dynalite, fauxqs, s3rver, the AWS SDK,
 * our code, Node's internals, the garbage collector — and the top functions.
 *
 * Usage: npx tsx bench/cpu-profile.ts <file.cpuprofile>...   Prints one JSON object.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const ROOT = new URL('../', import.meta.url).pathname;

/** The module a stack frame belongs to, in the words of the question. */
export function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:internal/deps/undici')) return 'undici (fetch)';
  if (/^node:(internal\/)?(_?http|https)/.test(url)) return 'node http';
  if (url.startsWith('node:')) return 'node internals';
  const path = url.replace(/^file:\/\//, '');
  const packaged = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (packaged) {
    const name = packaged[1]!;
    if (name.startsWith('@aws-sdk/') || name.startsWith('@smithy/') || name.startsWith('@aws-crypto/')) return 'AWS SDK';
    if (name.startsWith('@aws-lambda-powertools/')) return 'powertools';
    return name;
  }
  if (path.startsWith(ROOT)) return `ours (${path.slice(ROOT.length).split('/')[0]})`;
  return path;
}

/** Self milliseconds by module and the heaviest functions of one profile. */
export function summarise(profile: Profile, top = 12) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const total = [...selfMs.values()].reduce((a, b) => a + b, 0);
  const modules = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, ms] of selfMs) {
    const { callFrame } = byId.get(id)!;
    const module = moduleOf(callFrame.url, callFrame.functionName);
    modules.set(module, (modules.get(module) ?? 0) + ms);
    const where = callFrame.url ? `${basename(callFrame.url)}:${callFrame.lineNumber + 1}` : '';
    const name = `${callFrame.functionName || '(anonymous)'} ${where} [${module}]`;
    functions.set(name, (functions.get(name) ?? 0) + ms);
  }
  const share = (entries: Map<string, number>) =>
    [...entries]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms: Math.round(ms), percent: Math.round((1000 * ms) / total) / 10 }));
  const idle = modules.get('(idle)') ?? 0;
  return { sampledMs: Math.round(total), busyMs: Math.round(total - idle), byModule: share(modules), topFunctions: share(functions) };
}

if (process.argv[1] && import.meta.url.endsWith(basename(process.argv[1]))) {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write('usage: tsx bench/cpu-profile.ts <file.cpuprofile>...\n');
    process.exit(2);
  }
  const summaries = Object.fromEntries(files.map((file) => [basename(file), summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile)]));
  process.stdout.write(`${JSON.stringify(summaries, null, 2)}\n`);
}
