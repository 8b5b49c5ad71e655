/**
 * The Kubernetes objects of a workload, as plain data for server-side apply.
 *
 * Container function, in nvcf-functions:
 * - Deployment `nvcf-<key>`: pods of the user's container (every GPU of the
 *   instance type, node selector, taint toleration, readiness from `health`,
 *   /config read-only) and the gpu-agent worker beside it (shared emptyDir at
 *   /var/inf for the asset and large-output dirs), after the `fetch-artifacts`
 *   init container when the version has models or resources, after the
 *   `write-secrets` init container always: it writes /var/secrets/secrets.json
 *   into a memory-backed volume the function container mounts read-only and
 *   the worker keeps current (a PUT of the secrets reaches running pods without
 *   a restart, so the secrets are no part of the fingerprint). A model-only
 *   version (models, no containerImage) runs NVIDIA Triton on /config/models.
 *   No `replicas`: KEDA owns them. When the version's owner holds a registry
 *   credential for the image's registry, the pods pull with it: the
 *   dockerconfigjson Secret `nvcf-pull-<key>` made from that credential alone
 *   is their only imagePullSecret (images in the stack's own ECR need none:
 *   the nodes' role pulls them).
 * - ScaledObject + TriggerAuthentication `nvcf-<key>`: KEDA scales the
 *   Deployment on the version's SQS queue with the KEDA operator's identity.
 * Helm function: the chart goes into namespace `nvcf-fn-<key>` (helm.ts);
 * here the worker-only Deployment that forwards to the chart's service, and
 * the same KEDA objects.
 *
 * Pods use the `nvcf-worker` ServiceAccount made by the CDK app: EKS Pod
 * Identity associations name a ServiceAccount, so that one account carries
 * the worker's AWS role for every version. The Pod Identity webhook gives
 * those credentials to every container of a pod unless told otherwise, so the
 * user's container is named in `eks.amazonaws.com/skip-containers`: only the
 * worker and the fetcher get the role. No pod gets a Kubernetes API token.
 */
import { durationSeconds } from '../../../core/function-schemas';
import type { HealthCheck } from '../../../core/model';
import { gpusPerInstance } from '../../../core/gpu-instance-types';
import { ENV, instanceArch, K8S, type CpuArch } from '../../../core/names';
import { FETCH_ARTIFACTS_ENV, FETCH_ARTIFACTS_ROLE } from '../../fetch-artifacts';
import { SECRETS_DIR, SECRETS_FILE, SECRETS_FILE_NAME, WRITE_SECRETS_ENV, WRITE_SECRETS_ROLE } from '../../secrets-file';
import { DEFAULT_DRAIN_PORT, DRAIN_PATH, WORKER_DRAIN_PORT_ENV, WORKER_ENV } from '../../worker/config';
import { containerEnvironment, workerEnvironment, type PlatformContext } from '../environment';
import { isHalted, workloadFingerprint, type Workload } from '../plan';
import type { KubernetesObject } from './api';

/** What every workload's objects share: the platform and the agent images. */
export interface ObjectContext {
  platform: PlatformContext;
  /** gpu-agent image per CPU architecture (NVCF_AGENT_IMAGES). */
  agentImages: Partial<Record<CpuArch, string>>;
  /** Architecture of the system nodes, where the controller and Helm functions' workers run. */
  systemArch: CpuArch;
  /** Variables of the agent processes copied from the controller's own environment: tables, bucket, region, logging. */
  agentEnv: Record<string, string>;
  /** Image of model-only functions (NVCF_TRITON_IMAGE, default DEFAULT_TRITON_IMAGE). */
  tritonImage: string;
}

/** The owner's login for the registry of the function's image, opened by the controller from their registry credential. */
export interface ImagePullLogin {
  host: string;
  username: string;
  password: string;
}

/** A workload whose objects cannot be made as the version stands; the message says why, for its healthInfo. */
export class UnbuildableWorkload extends Error {}

/** The controller's variables its agent processes need too; the cluster and image settings are the controller's own. */
const CONTROLLER_ONLY = new Set<string>([ENV.clusterName, ENV.agentImages, ENV.gpus, ENV.tritonImage]);
const SHARED_PLATFORM_ENV = ['AWS_REGION', 'POWERTOOLS_SERVICE_NAME', 'POWERTOOLS_LOG_LEVEL', 'POWERTOOLS_METRICS_NAMESPACE'];

/** `agentEnv` from the controller's environment: table, bucket and queue settings, region, logging. */
export function agentEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  const names = [...Object.values(ENV).filter((name) => !CONTROLLER_ONLY.has(name)), ...SHARED_PLATFORM_ENV];
  return Object.fromEntries(names.flatMap((name) => (env[name] !== undefined ? [[name, env[name]!]] : [])));
}

/** How long the worker may finish in-flight jobs after SIGTERM before releasing them to the queue. */
export const WORKER_GRACE_SECONDS = 120;
/** Time the function container has to stop once the worker is done. */
const CONTAINER_STOP_SECONDS = 30;
/**
 * Shared memory of the function container: the runtime's default /dev/shm
 * is 64 MiB, too little for Triton's Python backend, PyTorch data loaders
 * and NCCL between the GPUs of one instance. It counts as the pod's memory.
 */
const SHM_SIZE = '8Gi';
/**
 * Longer than Kubernetes' default 10 min: a rollout may pull a multi-GB
 * inference image and download models first. A rollout stuck beyond it
 * becomes the version's failure (failures.ts).
 */
const GPU_PROGRESS_DEADLINE_SECONDS = 1800;
/** Mounted in both containers at the same path, so that NVCF-ASSET-DIR and NVCF-LARGE-OUTPUT-DIR mean the same there. */
export const WORK_DIR = '/var/inf';
/** Models and resources, read-only for the function container (nvcf-api.md §4.1). */
export const CONFIG_DIR = '/config';
export const FETCH_ARTIFACTS_CONTAINER = 'fetch-artifacts';
export const WRITE_SECRETS_CONTAINER = 'write-secrets';
/**
 * The secrets volume lives in memory only (never on the node's disk); room for the
 * largest secrets file (MAX_SECRETS_FILE_BYTES) and its replacement during a rewrite.
 */
const SECRETS_VOLUME_SIZE = '1Mi';
export const INFERENCE_CONTAINER = 'inference';
export const WORKER_CONTAINER = 'worker';

/** Everything the controller makes carries this label; observe() lists by it. */
export const MANAGED_SELECTOR = `app.kubernetes.io/managed-by=${K8S.controllerManager}`;

/** Name of a workload's Deployment, ScaledObject, TriggerAuthentication and Helm release. */
export function workloadName(key: string): string {
  return `nvcf-${key.toLowerCase()}`;
}

/** Namespace a Helm function's chart is installed into. */
export function helmNamespace(key: string): string {
  return `${K8S.helmNamespacePrefix}${key.toLowerCase()}`;
}

/** Label telling a Helm function's objects from a container function's: the former also need their namespace. */
export const HELM_FUNCTION_LABEL = 'nvcf.io/helm-function';

function labels({ key, version }: Workload): Record<string, string> {
  return {
    'app.kubernetes.io/managed-by': K8S.controllerManager,
    'app.kubernetes.io/part-of': 'nvcf',
    [K8S.workloadLabel]: key,
    [HELM_FUNCTION_LABEL]: String(Boolean(version.helmChart)),
    'nvcf.io/function-id': version.functionId,
    'nvcf.io/version-id': version.versionId,
  };
}

function metadata(workload: Workload, name: string, namespace?: string): KubernetesObject['metadata'] {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    labels: labels(workload),
    annotations: { [K8S.fingerprintAnnotation]: workloadFingerprint(workload) },
  };
}

const toEnv = (variables: Record<string, string>) => Object.entries(variables).map(([name, value]) => ({ name, value }));

/** The EKS Pod Identity webhook's annotation listing containers that get no AWS credentials. */
const POD_IDENTITY_SKIP_ANNOTATION = 'eks.amazonaws.com/skip-containers';

/** The agent processes run as the image's non-root user with nothing they do not need. */
const AGENT_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: 1000,
  runAsGroup: 1000,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};
const AGENT_RESOURCES = { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } };

function agentImage(context: ObjectContext, arch: CpuArch): string {
  const image = context.agentImages[arch];
  if (!image) throw new UnbuildableWorkload(`no gpu-agent image for ${arch} nodes in NVCF_AGENT_IMAGES; add a GPU type of that architecture to the CDK app's nvcf:gpus and deploy it`);
  return image;
}

function readinessProbe(health: HealthCheck): Record<string, unknown> {
  const timeoutSeconds = Math.max(1, Math.ceil(durationSeconds(health.timeout) || 10));
  const check = health.protocol === 'gRPC' ? { grpc: { port: health.port } } : { httpGet: { path: health.uri.startsWith('/') ? health.uri : `/${health.uri}`, port: health.port } };
  return { ...check, periodSeconds: 10, timeoutSeconds, failureThreshold: 3 };
}

function workerContainer(workload: Workload, context: ObjectContext, image: string, inferenceBaseUrl: string, { secrets = false } = {}): Record<string, unknown> {
  return {
    name: WORKER_CONTAINER,
    image,
    args: ['worker'],
    env: [
      ...toEnv({
        ...context.agentEnv,
        ...workerEnvironment(workload, context.platform),
        [WORKER_ENV.inferenceBaseUrl]: inferenceBaseUrl,
        [WORKER_ENV.assetDir]: `${WORK_DIR}/inputAssets`,
        [WORKER_ENV.outputDir]: `${WORK_DIR}/response`,
        [WORKER_ENV.graceSeconds]: String(WORKER_GRACE_SECONDS),
        [WORKER_DRAIN_PORT_ENV]: String(DEFAULT_DRAIN_PORT),
        ...(secrets ? { [WORKER_ENV.secretsFile]: SECRETS_FILE } : {}),
      }),
      // kubelet calls the preStop hook from the node's address; nothing else but loopback may drain the worker.
      { name: WORKER_ENV.drainFrom, valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
    ],
    resources: AGENT_RESOURCES,
    securityContext: AGENT_SECURITY_CONTEXT,
    volumeMounts: [
      { name: 'work', mountPath: WORK_DIR },
      { name: 'tmp', mountPath: '/tmp' },
      // Writable here: the worker rewrites the file when the version's secrets change.
      ...(secrets ? [{ name: 'secrets', mountPath: SECRETS_DIR }] : []),
    ],
  };
}

/**
 * An init container of the agent image, with the worker's identity, that
 * runs `role` for the workload's version and writes into `volume`. Its
 * one-line reason for a failure (never a secret value) reaches the pod
 * status and so the version's healthInfo.
 */
function agentInitContainer(
  { name, role, env, volume, mountPath }: { name: string; role: string; env: Record<string, string>; volume: string; mountPath: string },
  context: ObjectContext,
  image: string,
): Record<string, unknown> {
  return {
    name,
    image,
    args: [role],
    env: toEnv({ ...context.agentEnv, ...env }),
    terminationMessagePolicy: 'FallbackToLogsOnError',
    resources: AGENT_RESOURCES,
    securityContext: AGENT_SECURITY_CONTEXT,
    volumeMounts: [
      { name: volume, mountPath },
      { name: 'tmp', mountPath: '/tmp' },
    ],
  };
}

/** Writes the secrets file before the function container starts, with the worker's identity (the only one that may decrypt). */
function writeSecretsContainer(workload: Workload, context: ObjectContext, image: string): Record<string, unknown> {
  const { functionId, versionId } = workload.version;
  return agentInitContainer(
    {
      name: WRITE_SECRETS_CONTAINER,
      role: WRITE_SECRETS_ROLE,
      env: { [WRITE_SECRETS_ENV.functionId]: functionId, [WRITE_SECRETS_ENV.versionId]: versionId, [WRITE_SECRETS_ENV.file]: SECRETS_FILE },
      volume: 'secrets',
      mountPath: SECRETS_DIR,
    },
    context,
    image,
  );
}

function fetchArtifactsContainer(workload: Workload, context: ObjectContext, image: string): Record<string, unknown> {
  const { functionId, versionId } = workload.version;
  return agentInitContainer(
    {
      name: FETCH_ARTIFACTS_CONTAINER,
      role: FETCH_ARTIFACTS_ROLE,
      env: { [FETCH_ARTIFACTS_ENV.functionId]: functionId, [FETCH_ARTIFACTS_ENV.versionId]: versionId, [FETCH_ARTIFACTS_ENV.directory]: CONFIG_DIR },
      volume: 'config',
      mountPath: CONFIG_DIR,
    },
    context,
    image,
  );
}

/** What the function container runs: the version's image, or Triton serving its models. */
function inferenceCommand(workload: Workload, context: ObjectContext): { image: string; args: string[] } {
  const { version } = workload;
  const args = (version.containerArgs ?? '').split(/\s+/).filter(Boolean);
  if (version.containerImage) return { image: version.containerImage, args };
  if (!version.models?.length) throw new UnbuildableWorkload(`version ${version.versionId} has no container image, Helm chart or models to serve`);
  const triton = ['tritonserver', `--model-repository=${CONFIG_DIR}/models`, `--http-port=${version.inferencePort}`, '--http-header-forward-pattern=NVCF-.*'];
  return { image: context.tritonImage, args: args.length ? args : triton };
}

/** Name of the Secret a container function's pods pull their image with. */
export function pullSecretName(key: string): string {
  return `nvcf-pull-${key.toLowerCase()}`;
}

/** Docker Hub's logins are keyed by its v1 index URL, every other registry's by its host. */
function dockerConfigKey(host: string): string {
  return ['docker.io', 'registry-1.docker.io', 'index.docker.io'].includes(host) ? 'https://index.docker.io/v1/' : host;
}

/**
 * An image pull Secret of the workload: one registry, the owner's login for it. By default the one of a container
 * function's pods in nvcf-functions; for a Helm function, the chart's `ngcImagePullSecretName` in its namespace.
 */
export function imagePullSecretObject(
  workload: Workload,
  login: ImagePullLogin,
  { name, namespace }: { name: string; namespace: string } = { name: pullSecretName(workload.key), namespace: K8S.functionsNamespace },
): KubernetesObject {
  const { annotations: _, ...base } = metadata(workload, name, namespace);
  const auth = Buffer.from(`${login.username}:${login.password}`, 'utf8').toString('base64');
  const config = { auths: { [dockerConfigKey(login.host)]: { username: login.username, password: login.password, auth } } };
  return { apiVersion: 'v1', kind: 'Secret', metadata: base, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(JSON.stringify(config), 'utf8').toString('base64') } };
}

function containerDeployment(workload: Workload, context: ObjectContext, pullLogin?: ImagePullLogin): KubernetesObject {
  const { version, spec, key } = workload;
  const { image: inferenceImage, args } = inferenceCommand(workload, context);
  const arch = instanceArch(spec.instanceType);
  const image = agentImage(context, arch);
  const hasArtifacts = (version.models?.length ?? 0) + (version.resources?.length ?? 0) > 0;
  const ports = [{ name: 'inference', containerPort: version.inferencePort }];
  if (version.health.port !== version.inferencePort) ports.push({ name: 'health', containerPort: version.health.port });

  const inference = {
    name: INFERENCE_CONTAINER,
    image: inferenceImage,
    ...(args.length ? { args } : {}),
    env: toEnv(containerEnvironment(workload, context.platform)),
    ports,
    // An instance is one node: it gets all of the node's GPUs.
    resources: { limits: { [K8S.gpuResource]: String(gpusPerInstance(spec.instanceType)) } },
    readinessProbe: readinessProbe(version.health),
    // The worker gets SIGTERM and drains at once; this hook holds the container's SIGTERM until it has, and
    // no longer. kubelet waits for an HTTP hook up to the grace period (its request has no timeout of its
    // own) and calls it at the pod IP: the worker listens on 0.0.0.0.
    lifecycle: { preStop: { httpGet: { path: DRAIN_PATH, port: DEFAULT_DRAIN_PORT } } },
    // Users' images may need root (many inference servers do); they get no privilege escalation.
    securityContext: { allowPrivilegeEscalation: false },
    volumeMounts: [
      { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
      { name: 'work', mountPath: WORK_DIR },
      { name: 'dshm', mountPath: '/dev/shm' },
      { name: 'secrets', mountPath: SECRETS_DIR, readOnly: true },
    ],
  };

  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(workload, workloadName(key), K8S.functionsNamespace),
    spec: {
      selector: { matchLabels: { [K8S.workloadLabel]: key } },
      // A GPU node holds exactly its instances: a surge pod would wait forever for the GPU its predecessor holds.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } },
      progressDeadlineSeconds: GPU_PROGRESS_DEADLINE_SECONDS,
      template: {
        metadata: { labels: labels(workload), annotations: { [POD_IDENTITY_SKIP_ANNOTATION]: INFERENCE_CONTAINER } },
        spec: {
          serviceAccountName: K8S.workerServiceAccount,
          // Neither the worker nor the user's container talks to the Kubernetes API; Pod Identity mounts its own token.
          automountServiceAccountToken: false,
          ...(pullLogin ? { imagePullSecrets: [{ name: pullSecretName(key) }] } : {}),
          terminationGracePeriodSeconds: WORKER_GRACE_SECONDS + CONTAINER_STOP_SECONDS,
          nodeSelector: { [K8S.gpuLabel]: spec.gpu, 'node.kubernetes.io/instance-type': spec.instanceType, [K8S.archLabel]: arch },
          tolerations: [{ key: K8S.gpuTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
          securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
          volumes: [
            { name: 'config', emptyDir: {} },
            { name: 'work', emptyDir: {} },
            { name: 'tmp', emptyDir: {} },
            { name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: SHM_SIZE } },
            { name: 'secrets', emptyDir: { medium: 'Memory', sizeLimit: SECRETS_VOLUME_SIZE } },
          ],
          initContainers: [writeSecretsContainer(workload, context, image), ...(hasArtifacts ? [fetchArtifactsContainer(workload, context, image)] : [])],
          containers: [inference, workerContainer(workload, context, image, `http://127.0.0.1:${version.inferencePort}`, { secrets: true })],
        },
      },
    },
  };
}

/** The worker of a Helm function: no GPU of its own, on the system nodes, calling the chart's service. */
function helmWorkerDeployment(workload: Workload, context: ObjectContext): KubernetesObject {
  const { version, key } = workload;
  if (!version.helmChartServiceName) throw new UnbuildableWorkload(`Helm chart ${version.helmChart}: the function has no helmChartServiceName, so the worker cannot reach the chart`);
  const serviceUrl = `http://${version.helmChartServiceName}.${helmNamespace(key)}.svc:${version.inferencePort}`;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(workload, workloadName(key), K8S.functionsNamespace),
    spec: {
      selector: { matchLabels: { [K8S.workloadLabel]: key } },
      // No GPU here: the system nodes have room for one more worker, which starts before an old one drains.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: labels(workload) },
        spec: {
          serviceAccountName: K8S.workerServiceAccount,
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: WORKER_GRACE_SECONDS + CONTAINER_STOP_SECONDS,
          nodeSelector: { [K8S.systemNodeLabel]: K8S.systemNodeRole, [K8S.archLabel]: context.systemArch },
          securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
          volumes: [
            { name: 'work', emptyDir: {} },
            { name: 'tmp', emptyDir: {} },
          ],
          containers: [workerContainer(workload, context, agentImage(context, context.systemArch), serviceUrl)],
        },
      },
    },
  };
}

function triggerAuthentication(workload: Workload): KubernetesObject {
  return {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'TriggerAuthentication',
    metadata: metadata(workload, workloadName(workload.key), K8S.functionsNamespace),
    // The KEDA operator's own Pod Identity role, which may read the version queues' depth (lib/gpu-cluster.ts).
    spec: { podIdentity: { provider: 'aws', identityOwner: 'keda' } },
  };
}

/** KEDA's rule is the process runtime's desiredInstances (plan.ts): queued + in flight over maxRequestConcurrency. */
function scaledObject(workload: Workload, context: ObjectContext): KubernetesObject {
  const { spec, version, key } = workload;
  const name = workloadName(key);
  const objectMetadata = metadata(workload, name, K8S.functionsNamespace);
  // KEDA scales the target of a paused ScaledObject to this count and keeps it there.
  if (isHalted(workload)) objectMetadata.annotations = { ...objectMetadata.annotations, [K8S.kedaPausedReplicasAnnotation]: '0' };
  return {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: objectMetadata,
    spec: {
      scaleTargetRef: { name },
      minReplicaCount: spec.minInstances,
      maxReplicaCount: spec.maxInstances,
      pollingInterval: 15,
      cooldownPeriod: 60,
      triggers: [
        {
          type: 'aws-sqs-queue',
          authenticationRef: { name },
          metadata: {
            queueURL: version.deployment!.queueUrl,
            queueLength: String(spec.maxRequestConcurrency),
            awsRegion: context.platform.region,
            scaleOnInFlight: 'true',
          },
        },
      ],
    },
  };
}

/**
 * The Helm function's namespace; pod security "baseline" like nvcf-functions.
 * It carries the fingerprint only once the chart is installed for it
 * (`chartInstalled`), which is how the controller knows a release is current
 * without upgrading it again.
 */
export function helmNamespaceObject(workload: Workload, { chartInstalled }: { chartInstalled: boolean }): KubernetesObject {
  const { annotations, ...base } = metadata(workload, helmNamespace(workload.key));
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      ...base,
      ...(chartInstalled ? { annotations } : {}),
      labels: { ...base.labels, 'pod-security.kubernetes.io/enforce': 'baseline', 'pod-security.kubernetes.io/warn': 'restricted' },
    },
  };
}

/**
 * The Secret a Helm function's chart mounts for the version's secrets
 * (K8S.helmSecretsSecret in the chart's namespace, key `secrets.json`: the
 * same JSON object as a container function's /var/secrets/secrets.json).
 * The controller writes it before helm installs the chart, and again when
 * the secrets change; kubelet refreshes a mounted Secret in place.
 */
export function helmSecretsObject(workload: Workload, secretsFile: string): KubernetesObject {
  const { annotations: _, ...base } = metadata(workload, K8S.helmSecretsSecret, helmNamespace(workload.key));
  return { apiVersion: 'v1', kind: 'Secret', metadata: base, type: 'Opaque', data: { [SECRETS_FILE_NAME]: Buffer.from(secretsFile, 'utf8').toString('base64') } };
}

/**
 * Gives the controller, in the Helm function's namespace only, what helm
 * needs there (K8S.helmFunctionRole): it holds none of it cluster-wide.
 */
export function helmAccessBinding(workload: Workload): KubernetesObject {
  const { annotations: _, ...base } = metadata(workload, K8S.controllerName, helmNamespace(workload.key));
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: base,
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: K8S.helmFunctionRole },
    subjects: [{ kind: 'ServiceAccount', name: K8S.controllerServiceAccount, namespace: K8S.systemNamespace }],
  };
}

/**
 * The objects in nvcf-functions of a workload, in apply order (the pull Secret before the pods that use it, the
 * ScaledObject after its target); throws UnbuildableWorkload. `pullLogin`: the owner's login for the registry of a
 * container function's image, when they hold one.
 */
export function workloadObjects(workload: Workload, context: ObjectContext, { pullLogin }: { pullLogin?: ImagePullLogin } = {}): KubernetesObject[] {
  if (workload.version.helmChart) return [triggerAuthentication(workload), helmWorkerDeployment(workload, context), scaledObject(workload, context)];
  const pullSecret = pullLogin ? [imagePullSecretObject(workload, pullLogin)] : [];
  return [...pullSecret, triggerAuthentication(workload), containerDeployment(workload, context, pullLogin), scaledObject(workload, context)];
}
