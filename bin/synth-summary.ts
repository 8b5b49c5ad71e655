/**
 * The last line of `npm run synth`: where each stack's template went and how
 * many resources it holds (`cdk synth --quiet` prints neither).
 */
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const outdir = process.argv[2] ?? 'cdk.out';
const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8')) as {
  artifacts?: Record<string, { type: string; properties?: { templateFile?: string } }>;
};
for (const [name, artifact] of Object.entries(manifest.artifacts ?? {})) {
  const templateFile = artifact.type === 'aws:cloudformation:stack' ? artifact.properties?.templateFile : undefined;
  if (!templateFile) continue;
  const path = join(outdir, templateFile);
  const template = JSON.parse(readFileSync(path, 'utf8')) as { Resources?: object };
  console.log(`synthesized ${name}: ${relative(process.cwd(), path)} (${Object.keys(template.Resources ?? {}).length} resources)`);
}
