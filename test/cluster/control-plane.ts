/**
 * A real Kubernetes control plane on loopback for the cluster suite: etcd,
 * kube-apiserver, kube-controller-manager and kube-scheduler built by
 * test/cluster/build.sh, with a CA, serving and client certificates and the
 * service-account signing key generated at each start.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/** Versions build.sh builds; the cache directories are named after them. */
export const KUBERNETES_VERSION = 'v1.35.4';
export const ETCD_VERSION = 'v3.6.16';
export const KWOK_VERSION = 'v0.7.0';

const CACHE = process.env.NVCF_CLUSTER_CACHE ?? join(homedir(), '.cache', 'nvcf-cluster');

/** A started control plane: where it listens and how to reach it as cluster-admin. */
export interface ControlPlane {
  readonly server: string;
  readonly kubeconfigPath: string;
  readonly dir: string;
  /** Starts kwok, which keeps the nodes annotated kwok.x-k8s.io/node=fake Ready and runs the pods bound to them. */
  startFakeNodes(): void;
  /** Stops kube-apiserver alone (SIGTERM, then SIGKILL), as a control-plane upgrade or crash does; etcd keeps the state. */
  stopApiServer(): Promise<void>;
  /** Starts kube-apiserver again on the same port and credentials; resolves once /readyz is ok. */
  startApiServer(): Promise<void>;
  stop(): Promise<void>;
}

/** The path of a built binary, or an error that says how to build it. */
export function binary(component: 'kubernetes' | 'etcd' | 'kwok', name: string): string {
  const version = { kubernetes: KUBERNETES_VERSION, etcd: ETCD_VERSION, kwok: KWOK_VERSION }[component];
  const path = join(CACHE, `${component}-${version}`, name);
  if (!existsSync(path)) {
    throw new Error(`cluster: ${name} ${version} is not built (looked for ${path}); run test/cluster/build.sh (cold: tens of minutes on 2 cores)`);
  }
  return path;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** CA, API server serving certificate (127.0.0.1), cluster-admin client certificate, service-account key. */
function generateCredentials(dir: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=nvcf-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n');
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=kube-apiserver', '-keyout', 'server.key', '-out', 'server.csr');
  openssl(dir, 'x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.crt');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/O=system:masters/CN=nvcf-test-admin', '-keyout', 'admin.key', '-out', 'admin.csr');
  openssl(dir, 'x509', '-req', '-in', 'admin.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'client.ext', '-out', 'admin.crt');
  openssl(dir, 'genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'sa.key');
  openssl(dir, 'pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
}

function kubeconfig(dir: string, server: string): string {
  const path = join(dir, 'admin.kubeconfig');
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server, 'certificate-authority': join(dir, 'ca.crt') } }],
      users: [{ name: 'admin', user: { 'client-certificate': join(dir, 'admin.crt'), 'client-key': join(dir, 'admin.key') } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'admin' } }],
      'current-context': 'test',
    }),
  );
  return path;
}

/** Components stopped on purpose: their exit is not reported as a failure. */
const stopping = new WeakSet<ChildProcess>();

function start(dir: string, name: string, command: string, args: string[]): ChildProcess {
  const log = openSync(join(dir, `${name}.log`), 'a');
  const child = spawn(command, args, { cwd: dir, stdio: ['ignore', log, log] });
  child.on('exit', (code) => {
    if (!stopping.has(child)) process.stderr.write(`cluster: ${name} exited unexpectedly with ${code} (log: ${join(dir, `${name}.log`)})\n`);
  });
  return child;
}

/**
 * Starts a component that follows the API server (controller-manager, scheduler, kwok) and, as
 * kubelet does for a control plane's static pods, starts it again a second after it exits
 * unexpectedly: the controller-manager exits when the API server goes away while it starts up.
 */
function supervise(children: ChildProcess[], dir: string, name: string, command: string, args: string[]): void {
  const child = start(dir, name, command, args);
  children.push(child);
  child.on('exit', () => {
    if (stopping.has(child)) return;
    setTimeout(() => {
      children.splice(children.indexOf(child), 1);
      if (!stopped.has(children)) supervise(children, dir, name, command, args);
    }, 1_000);
  });
}

/** The component lists of control planes that were stopped: nothing is restarted into them. */
const stopped = new WeakSet<ChildProcess[]>();

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`cluster: ${what} not ready within ${timeoutMs} ms`);
}

/** Starts etcd and the three control-plane components on free loopback ports; resolves once /readyz is ok. */
export async function startControlPlane(): Promise<ControlPlane> {
  const binaries = {
    etcd: binary('etcd', 'etcd'),
    apiserver: binary('kubernetes', 'kube-apiserver'),
    controllerManager: binary('kubernetes', 'kube-controller-manager'),
    scheduler: binary('kubernetes', 'kube-scheduler'),
  };
  const dir = mkdtempSync(join(tmpdir(), 'nvcf-cluster-'));
  generateCredentials(dir);
  const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfigPath = kubeconfig(dir, server);
  const children: ChildProcess[] = [];
  children.push(
    start(dir, 'etcd', binaries.etcd, [
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      '--log-level=warn',
    ]),
  );
  const apiServerArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdClient}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--cert-dir=${dir}`,
    `--tls-cert-file=${join(dir, 'server.crt')}`,
    `--tls-private-key-file=${join(dir, 'server.key')}`,
    `--client-ca-file=${join(dir, 'ca.crt')}`,
    `--service-account-issuer=https://kubernetes.default.svc`,
    `--service-account-key-file=${join(dir, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
    '--service-cluster-ip-range=10.96.0.0/16',
    '--authorization-mode=RBAC',
    '--enable-priority-and-fairness=false',
  ];
  let apiServer = start(dir, 'kube-apiserver', binaries.apiserver, apiServerArgs);
  children.push(apiServer);
  const apiServerReady = () =>
    waitFor('kube-apiserver /readyz', 90_000, async () => {
      const out = execFileSync('curl', ['-sf', '--cacert', join(dir, 'ca.crt'), '--cert', join(dir, 'admin.crt'), '--key', join(dir, 'admin.key'), `${server}/readyz`], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      return out.trim() === 'ok';
    });
  const stop = async (): Promise<void> => {
    stopped.add(children);
    for (const child of [...children].reverse()) {
      stopping.add(child);
      child.kill('SIGTERM');
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    if (!process.env.NVCF_CLUSTER_KEEP) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await apiServerReady();
    supervise(children, dir, 'kube-controller-manager', binaries.controllerManager, [
      `--kubeconfig=${kubeconfigPath}`,
      '--bind-address=127.0.0.1',
      '--secure-port=0',
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${join(dir, 'sa.key')}`,
      `--root-ca-file=${join(dir, 'ca.crt')}`,
      `--cluster-signing-cert-file=${join(dir, 'ca.crt')}`,
      `--cluster-signing-key-file=${join(dir, 'ca.key')}`,
    ]);
    supervise(children, dir, 'kube-scheduler', binaries.scheduler, [`--kubeconfig=${kubeconfigPath}`, '--bind-address=127.0.0.1', '--secure-port=0', '--leader-elect=false']);
  } catch (error) {
    await stop();
    throw error;
  }
  const startFakeNodes = (): void => {
    supervise(children, dir, 'kwok', binary('kwok', 'kwok'), [
      `--kubeconfig=${kubeconfigPath}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--node-ip=127.0.0.1',
      '--cidr=10.244.0.0/16',
      '--server-address=127.0.0.1:0',
    ]);
  };
  const stopApiServer = async (): Promise<void> => {
    stopping.add(apiServer);
    const exited = new Promise((resolve) => apiServer.once('exit', resolve));
    apiServer.kill('SIGTERM');
    const timer = setTimeout(() => apiServer.kill('SIGKILL'), 5_000);
    if (apiServer.exitCode === null && apiServer.signalCode === null) await exited;
    clearTimeout(timer);
  };
  const startApiServer = async (): Promise<void> => {
    const previous = apiServer;
    apiServer = start(dir, 'kube-apiserver', binaries.apiserver, apiServerArgs);
    children[children.indexOf(previous)] = apiServer;
    await apiServerReady();
  };
  return { server, kubeconfigPath, dir, startFakeNodes, stopApiServer, startApiServer, stop };
}
