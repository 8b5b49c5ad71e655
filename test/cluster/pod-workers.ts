/**
 * What kubelet would run in the controller's pods, for pods kwok marks Ready:
 * kwok runs no containers, so each Ready pod of nvcf-functions gets a real
 * gpu-agent worker process started with the environment its `worker`
 * container has in the pod spec (what the controller built), plus what a
 * node would supply instead: the emulators' endpoints and credentials (Pod
 * Identity on EKS), the inference container's address (an echo server on
 * loopback standing in for the `inference` container) and directories of its
 * own. A worker is stopped with SIGTERM once its pod is deleted, as kubelet does.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { K8S } from '../../core/names';
import { MANAGED_SELECTOR, WORKER_CONTAINER } from '../../gpu-agent/controller/k8s/objects';
import { startWorker, type TestProcess } from '../support/processes';

export class PodWorkers {
  private readonly workers = new Map<string, TestProcess>();
  private timer?: NodeJS.Timeout;
  private pass: Promise<void> = Promise.resolve();

  constructor(
    private readonly admin: k8s.KubeConfig,
    private readonly stackEnv: Record<string, string>,
    private readonly containerUrl: string,
    private readonly dir: string,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.pass = this.pass.then(() => this.sync()).catch(() => undefined);
    }, 250);
  }

  /** Names of the pods whose worker runs now. */
  running(): string[] {
    return [...this.workers.keys()];
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.pass;
    await Promise.all([...this.workers.values()].map((worker) => worker.stop('SIGKILL')));
    this.workers.clear();
  }

  private async sync(): Promise<void> {
    const core = this.admin.makeApiClient(k8s.CoreV1Api);
    const pods = (await core.listNamespacedPod({ namespace: K8S.functionsNamespace, labelSelector: MANAGED_SELECTOR })).items;
    const live = new Map(pods.filter((pod) => !pod.metadata?.deletionTimestamp).map((pod) => [pod.metadata!.name!, pod]));
    for (const [name, worker] of this.workers) {
      if (live.has(name)) continue;
      this.workers.delete(name);
      void worker.stop('SIGTERM');
    }
    for (const [name, pod] of live) {
      const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      if (!ready || this.workers.has(name)) continue;
      this.workers.set(name, startWorker(this.environment(pod)));
    }
  }

  private environment(pod: k8s.V1Pod): Record<string, string> {
    const container = pod.spec!.containers.find((c) => c.name === WORKER_CONTAINER)!;
    // Literal values as the controller wrote them; fieldRef values (the node's address) have no meaning here.
    const fromSpec = Object.fromEntries((container.env ?? []).flatMap((variable) => (variable.value !== undefined ? [[variable.name, variable.value]] : [])));
    const dir = join(this.dir, pod.metadata!.name!);
    mkdirSync(dir, { recursive: true });
    return {
      ...this.stackEnv,
      ...fromSpec,
      NVCF_INSTANCE_ID: pod.metadata!.name!,
      NVCF_WORKER_INFERENCE_URL: this.containerUrl,
      NVCF_WORKER_ASSET_DIR: join(dir, 'assets'),
      NVCF_WORKER_OUTPUT_DIR: join(dir, 'outputs'),
      NVCF_WORKER_DRAIN_PORT: '0',
      NVCF_WORKER_HEARTBEAT_SECONDS: '1',
      NVCF_WORKER_RECEIVE_WAIT_SECONDS: '1',
      NVCF_WORKER_GRACE_SECONDS: '5',
      POWERTOOLS_LOG_LEVEL: 'WARN',
    };
  }
}
