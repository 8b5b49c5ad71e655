/**
 * Helm functions: the chart is rendered first and its kinds checked against
 * the list NVCF allows, then installed into the version's own namespace with
 * the helm binary of the agent image. The binary sits behind `Helm` so that
 * tests can fake it (and run the real one on charts kept in examples/).
 *
 * A failure is either the chart's (it cannot be fetched or rendered, the
 * cluster refuses what it makes), reported at once, or transient (network,
 * API server), retried with backoff and reported only once it persists.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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
  /** The manifests `upgrade` would install: hooks and CRDs included, chart tests (run only by `helm test`) not. */
  template(release: HelmRelease): Promise<string>;
  /** Installs or upgrades the release. */
  upgrade(release: HelmRelease): Promise<void>;
  /** The release's status (`deployed`, `failed`, `pending-upgrade`, …), or undefined when there is no such release. */
  status(release: Pick<HelmRelease, 'release' | 'namespace'>): Promise<string | undefined>;
  /** Uninstalls the release; a missing release is not an error. */
  uninstall(release: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void>;
  /** Rolls the release back to its previous revision, which also ends a `pending-upgrade` or `pending-rollback` left by a helm that died. */
  rollback(release: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void>;
}

/** helm exited with an error; `message` carries what helm said, for the version's healthInfo. */
export class HelmError extends Error {
  /** @param transient true when trying again later may succeed (network, API server), false when the chart is at fault. */
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
  }
}

/** A chart repository login (user name and password or key), from the owner's registry credential. */
export interface ChartLogin {
  username: string;
  password: string;
}

/**
 * Downloads an https:// chart with the owner's login, as chart repositories
 * (NGC's among them) take it: HTTP Basic. helm then installs the file, so the
 * login never reaches its command line. A refusal (401/403) or a missing
 * chart is the chart's failure, naming the registry and the status; other
 * statuses and network errors are transient.
 */
export async function downloadChart(url: string, login: ChartLogin, file: string): Promise<void> {
  const host = new URL(url).host;
  const authorization = `Basic ${Buffer.from(`${login.username}:${login.password}`, 'utf8').toString('base64')}`;
  const response = await fetch(url, { headers: { authorization } }).catch((error: Error) => {
    throw new HelmError(`cannot reach the chart registry ${host}: ${error.message}`, true);
  });
  if (!response.ok || !response.body) {
    const refused = [401, 403, 404].includes(response.status);
    await response.body?.cancel();
    const hint = response.status === 404 ? 'no such chart' : "the key of the function's registry credential for it was refused or has no access; replace it with PATCH /v2/nvcf/registry-credentials/{id}";
    throw new HelmError(`the chart registry ${host} answered HTTP ${response.status}${refused ? ` (${hint})` : ''}`, !refused);
  }
  mkdirSync(dirname(file), { recursive: true });
  await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), createWriteStream(file));
}

/** Retries of a transient Helm failure: backoff doubling from `firstDelayMs` up to `maxDelayMs`, reported after `reportAfter` failures in a row. */
export const HELM_RETRY = { firstDelayMs: 15_000, maxDelayMs: 300_000, reportAfter: 5 } as const;

/** Network and API server trouble: trying again later may work. */
const TRANSIENT_PATTERN =
  /timeout|timed out|deadline exceeded|connection refused|connection reset|broken pipe|unexpected EOF|no such host|temporary failure|TLS handshake|Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout|Too Many Requests|cluster unreachable|unable to handle the request|etcdserver|another operation \(install\/upgrade\/rollback\) is in progress|try again/i;
/** The cluster refuses what the chart makes: the same chart fails the same way. */
const REFUSED_PATTERN = /denied the request|is forbidden|is invalid|field is immutable|already exists|unable to build kubernetes objects|unable to recognize|no matches for kind/i;

/**
 * Whether a helm failure may go away by itself. Fetching or rendering a chart
 * fails for the chart's sake unless the network is to blame; installing a
 * rendered chart fails for the cluster's sake unless the cluster refuses it.
 */
function isTransient(command: string, stderr: string): boolean {
  if (TRANSIENT_PATTERN.test(stderr)) return true;
  return command === 'template' ? false : !REFUSED_PATTERN.test(stderr);
}

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
    // The controller's root filesystem is read-only: helm keeps its cache and config, and the Kubernetes
    // client its discovery cache ($HOME/.kube), below the temp dir.
    const home = join(tmpdir(), 'helm');
    for (const dir of ['cache', 'config', 'data']) mkdirSync(join(home, dir), { recursive: true });
    this.env = { ...process.env, HOME: home, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  }

  template({ release, chart, namespace, values }: HelmRelease): Promise<string> {
    return this.run(['template', release, chart, '--namespace', namespace, '--include-crds', '--skip-tests', '--values', '-'], values);
  }

  async upgrade({ release, chart, namespace, values }: HelmRelease): Promise<void> {
    await this.run(['upgrade', '--install', release, chart, '--namespace', namespace, '--history-max', '3', '--values', '-'], values);
  }

  async status({ release, namespace }: Pick<HelmRelease, 'release' | 'namespace'>): Promise<string | undefined> {
    try {
      const status = JSON.parse(await this.run(['status', release, '--namespace', namespace, '--output', 'json'])) as { info?: { status?: string } };
      return status.info?.status ?? 'unknown';
    } catch (error) {
      if (error instanceof HelmError && /release: not found/.test(error.message)) return undefined;
      throw error;
    }
  }

  async uninstall({ release, namespace }: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void> {
    await this.run(['uninstall', release, '--namespace', namespace, '--ignore-not-found']);
  }

  async rollback({ release, namespace }: Pick<HelmRelease, 'release' | 'namespace'>): Promise<void> {
    await this.run(['rollback', release, '--namespace', namespace]);
  }

  private run(args: string[], values?: Record<string, unknown>): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, args, { env: this.env, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      // A missing binary is the platform's fault, not the chart's: transient, so it is retried and reported late.
      child.once('error', (error) => reject(new HelmError(`cannot run ${this.binary}: ${error.message}`, true)));
      child.once('close', (code) => {
        if (code === 0) return resolve(Buffer.concat(out).toString('utf8'));
        const said = Buffer.concat(err).toString('utf8').trim();
        reject(new HelmError(`helm ${args[0]} failed: ${said || `exit code ${code}`}`, isTransient(args[0]!, said)));
      });
      // JSON is YAML: helm reads the values file from stdin.
      child.stdin.end(values ? JSON.stringify(values) : '');
    });
  }
}
