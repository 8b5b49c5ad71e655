/**
 * Helm functions: the chart is rendered first and its kinds checked against
 * the list NVCF allows, then installed into the version's own namespace with
 * the helm binary of the agent image. The binary sits behind `Helm` so that
 * tests can fake it (and run the real one on charts kept in examples/).
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAllYaml } from '@kubernetes/client-node';

/** The kinds a Helm function's chart may create (NVCF's list); anything else rejects the deployment. */
export const ALLOWED_HELM_KINDS = ['Deployment', 'Service', 'ServiceAccount', 'Role', 'RoleBinding', 'ConfigMap', 'Secret'] as const;

export interface HelmRelease {
  release: string;
  /** Chart reference as helm takes it: an https:// or oci:// URL, or a path. */
  chart: string;
  namespace: string;
  /** Values overriding the chart's defaults (the deployment specification's `configuration`). */
  values: Record<string, unknown>;
}

export interface Helm {
  /** The manifests the release would install, hooks, tests and CRDs included. */
  template(release: HelmRelease): Promise<string>;
  /** Installs or upgrades the release. */
  upgrade(release: HelmRelease): Promise<void>;
  /** Uninstalls the release; a missing release is not an error. */
  uninstall(release: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void>;
}

/** helm exited with an error; `message` carries what helm said, for the version's healthInfo. */
export class HelmError extends Error {}

/**
 * Why a rendered chart may not be installed into `namespace`, or undefined
 * when it may: every object must be of an allowed kind and stay in the
 * release's namespace.
 */
export function rejectRenderedChart(manifests: string, namespace: string): string | undefined {
  let objects: unknown[];
  try {
    objects = loadAllYaml(manifests);
  } catch (error) {
    return `the chart renders invalid YAML: ${(error as Error).message}`;
  }
  const problems = new Set<string>();
  for (const object of objects) {
    if (!object || typeof object !== 'object') continue;
    const { kind, metadata } = object as { kind?: string; metadata?: { name?: string; namespace?: string } };
    const name = `${kind ?? 'object without kind'} "${metadata?.name ?? ''}"`;
    if (!kind || !(ALLOWED_HELM_KINDS as readonly string[]).includes(kind)) problems.add(`${name} (kind not allowed)`);
    else if (metadata?.namespace && metadata.namespace !== namespace) problems.add(`${name} (in namespace "${metadata.namespace}", not the release's)`);
  }
  if (problems.size === 0) return undefined;
  return `the Helm chart creates objects a Helm function may not: ${[...problems].join(', ')}; allowed kinds are ${ALLOWED_HELM_KINDS.join(', ')}, in the release's namespace`;
}

/** The helm binary, run as a child process; values are passed on stdin. */
export class HelmCli implements Helm {
  private readonly env: NodeJS.ProcessEnv;

  /** @param binary path of helm; `helm` from PATH by default. */
  constructor(private readonly binary = 'helm') {
    // The controller's root filesystem is read-only: helm keeps its cache and config below the temp dir.
    const home = join(tmpdir(), 'helm');
    for (const dir of ['cache', 'config', 'data']) mkdirSync(join(home, dir), { recursive: true });
    this.env = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  }

  template({ release, chart, namespace, values }: HelmRelease): Promise<string> {
    return this.run(['template', release, chart, '--namespace', namespace, '--include-crds', '--values', '-'], values);
  }

  async upgrade({ release, chart, namespace, values }: HelmRelease): Promise<void> {
    await this.run(['upgrade', '--install', release, chart, '--namespace', namespace, '--history-max', '3', '--values', '-'], values);
  }

  async uninstall({ release, namespace }: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void> {
    await this.run(['uninstall', release, '--namespace', namespace, '--ignore-not-found']);
  }

  private run(args: string[], values?: Record<string, unknown>): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, args, { env: this.env, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.once('error', (error) => reject(new HelmError(`cannot run ${this.binary}: ${error.message}`)));
      child.once('close', (code) => {
        if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
        else reject(new HelmError(`helm ${args[0]} failed: ${Buffer.concat(err).toString('utf8').trim() || `exit code ${code}`}`));
      });
      // JSON is YAML: helm reads the values file from stdin.
      child.stdin.end(values ? JSON.stringify(values) : '');
    });
  }
}
