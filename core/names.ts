/**
 * Names shared by the infrastructure (lib/), the Lambdas, the agent and the
 * local stack: environment variables, queue names, S3 key layout, labels.
 * A reader finds every resource name here, in one hop.
 */

/** Environment variables through which CDK (or local/) tells runtime code where things are. */
export const ENV = {
  functionsTable: 'NVCF_FUNCTIONS_TABLE',
  instancesTable: 'NVCF_INSTANCES_TABLE',
  invocationsTable: 'NVCF_INVOCATIONS_TABLE',
  assetsTable: 'NVCF_ASSETS_TABLE',
  apiKeysTable: 'NVCF_API_KEYS_TABLE',
  registryCredentialsTable: 'NVCF_REGISTRY_CREDENTIALS_TABLE',
  authorizationsTable: 'NVCF_AUTHORIZATIONS_TABLE',
  countersTable: 'NVCF_COUNTERS_TABLE',
  quotasTable: 'NVCF_QUOTAS_TABLE',
  /** The installation's quotas per account, JSON `{"functions": 100, ...}` over the defaults of core/quotas.ts (CDK context `nvcf:quotas`). */
  quotas: 'NVCF_QUOTAS',
  bucket: 'NVCF_BUCKET',
  queuePrefix: 'NVCF_QUEUE_PREFIX',
  /** KMS key for per-version queues; empty means SQS-managed SSE. */
  queueKmsKeyId: 'NVCF_QUEUE_KMS_KEY_ID',
  maxReceiveCount: 'NVCF_MAX_RECEIVE_COUNT',
  /** EKS cluster whose GPU nodegroups back deployments; unset off EKS. */
  clusterName: 'NVCF_CLUSTER_NAME',
  /** JSON list of GPU offers used when there is no EKS cluster (local stack, tests). */
  gpus: 'NVCF_GPUS',
  /**
   * JSON map from CPU architecture (Kubernetes `kubernetes.io/arch`: `amd64`, `arm64`) to the
   * gpu-agent image URI; the controller runs the worker sidecar from the image matching the node.
   */
  agentImages: 'NVCF_AGENT_IMAGES',
  /** Image the controller runs for model-only functions (no containerImage): NVIDIA Triton serving /config/models. */
  tritonImage: 'NVCF_TRITON_IMAGE',
  /** Port of the invocation service's caller-facing HTTP server (HTTP/1.1 and cleartext HTTP/2). */
  invocationPort: 'NVCF_INVOCATION_PORT',
  /** Port of the invocation service's attach server (cleartext HTTP/2), which workers call back on. */
  attachPort: 'NVCF_ATTACH_PORT',
  /** Address workers reach this service instance at (the pod IP on EKS); it goes into each message's reply address. */
  attachHost: 'NVCF_ATTACH_HOST',
  /** Domain of host-based direct invocation: `{functionId}.invocation.<domain>`; unset: only `function-id` headers address a function. */
  invocationDomain: 'NVCF_INVOCATION_DOMAIN',
  /** Requests one invocation service instance holds at once; beyond it callers get 429. */
  maxInFlight: 'NVCF_MAX_IN_FLIGHT',
  /** Seconds a gRPC session (a caller connection served by one worker) may stay without an open call before it ends. */
  grpcIdleSeconds: 'NVCF_GRPC_IDLE_SECONDS',
  /** Largest request body the invocation service accepts; beyond it 413 pointing to assets. */
  maxRequestBytes: 'NVCF_MAX_REQUEST_BYTES',
  /** Bytes of request bodies one invocation service instance holds at once; beyond it callers get 429. */
  maxHeldRequestBytes: 'NVCF_MAX_HELD_REQUEST_BYTES',
  /** KMS key (ARN) that wraps the data keys of functions' secrets (core/secrets.ts); set by the CDK app. */
  secretsKeyId: 'NVCF_SECRETS_KEY_ID',
  /** Off AWS: file holding the local key that stands in for the KMS key (local/ creates it). */
  secretsLocalKeyFile: 'NVCF_SECRETS_LOCAL_KEY_FILE',
  /** CloudWatch log group the log agent ships the function pods' lines to (core/function-logs.ts); set by the CDK app on EKS. */
  functionLogGroup: 'NVCF_FUNCTION_LOG_GROUP',
  /** Off AWS: directory of the instances' log files, `<functionId>/<versionId>/<instanceId>/{container,worker}.log` (local/ sets it). */
  localLogsDir: 'NVCF_LOCAL_LOGS_DIR',
  /** Base URL of NGC's API, whence models and resources (`v2/org/...` URIs) are fetched; default NGC_API_URL (tests point it at a stand-in). */
  ngcApiUrl: 'NVCF_NGC_API_URL',
} as const;

/** NGC's API: `<base>/v2/org/<org>/models/<name>/versions/<v>/zip` answers a model's files as one zip. */
export const NGC_API_URL = 'https://api.ngc.nvidia.com';

/**
 * Header each AWS front sets on what it forwards to the invocation service (the
 * client's value is overwritten), so that the service caps its wait below the
 * front's own timeout. Absent: a direct caller (local stack, in-VPC client).
 */
export const FRONT_HEADER = 'x-nvcf-front';
export const FRONTS = { apiGateway: 'api-gateway', cloudFront: 'cloudfront' } as const;

/** Path of the invocation service's attach endpoint (on the attach port), and its liveness and readiness paths (on the invocation port). */
export const INVOCATION_SERVICE_PATHS = { attach: '/attach', health: '/health', ready: '/ready' } as const;

/** NVIDIA Triton Inference Server, which serves the models of a version that has no container image (as NVCF does). */
export const DEFAULT_TRITON_IMAGE = 'nvcr.io/nvidia/tritonserver:25.01-py3';

/** Default prefix of per-version queue names; IAM grants are scoped to `<prefix>*`. */
export const DEFAULT_QUEUE_PREFIX = 'nvcf-';

/** Suffix of dead-letter queue names. */
export const DEAD_LETTER_SUFFIX = '-dlq';

export interface DeploymentQueueNames {
  queueName: string;
  deadLetterQueueName: string;
}

/**
 * Names of the queue that carries a deployment's invocations and of the
 * dead-letter queue beside it: `<prefix><versionId>-<generation>[-dlq]`. Each
 * deployment of a version gets queues of its own, so the cleanup of an earlier
 * deployment can never touch a later one's (and SQS's 60 s wait before a name
 * can be reused never delays a redeploy).
 */
export function deploymentQueueNames(versionId: string, generation: string, prefix = DEFAULT_QUEUE_PREFIX): DeploymentQueueNames {
  const queueName = `${prefix}${versionId}-${generation}`;
  return { queueName, deadLetterQueueName: `${queueName}${DEAD_LETTER_SUFFIX}` };
}

/** The queue name at the end of a queue URL. */
export function queueNameOf(queueUrl: string): string {
  return decodeURIComponent(queueUrl.slice(queueUrl.lastIndexOf('/') + 1));
}

/**
 * The KMS calls behind functions' secrets (core/secrets.ts), which the CDK app grants
 * and nothing more: sealing needs only a data key (the writer cannot open what it
 * wrote), opening only Decrypt. Both always carry an encryption context of these keys.
 */
export const SECRETS_KMS_ACTIONS = { seal: ['kms:GenerateDataKey'], open: ['kms:Decrypt'] } as const;
export const SECRETS_ENCRYPTION_CONTEXT_KEYS = ['account', 'functionId', 'versionId'] as const;
/** Registry credentials (core/registry-credentials.ts) are sealed with the same key under their own context: one never opens as the other. */
export const REGISTRY_CREDENTIAL_ENCRYPTION_CONTEXT_KEYS = ['account', 'registryCredentialId'] as const;

/** S3 key prefixes; lifecycle rules in lib/ expire the first three. */
export const S3_PREFIX = {
  assets: 'assets/',
  inputs: 'inputs/',
  outputs: 'outputs/',
  models: 'models/',
} as const;

export function assetObjectKey(accountId: string, assetId: string): string {
  return `${S3_PREFIX.assets}${accountId}/${assetId}`;
}

export function inputObjectKey(requestId: string): string {
  return `${S3_PREFIX.inputs}${requestId}`;
}

export function outputObjectPrefix(requestId: string): string {
  return `${S3_PREFIX.outputs}${requestId}/`;
}

/**
 * Tag of each GPU nodegroup, set by the CDK app: the configured minimum node
 * count (`minNodes`), below which deployments never size the nodegroup.
 */
export const NODEGROUP_MIN_NODES_TAG = 'nvcf:min-nodes';

/** Kubernetes names used by the CDK app and the controller. */
export const K8S = {
  functionsNamespace: 'nvcf-functions',
  systemNamespace: 'nvcf-system',
  controllerName: 'nvcf-gpu-agent-controller',
  controllerServiceAccount: 'nvcf-gpu-agent',
  /**
   * ClusterRole holding what helm needs in a Helm function's namespace (the chart's kinds, its
   * release Secrets); the controller binds it in each such namespace and holds it nowhere else.
   */
  helmFunctionRole: 'nvcf-gpu-agent-controller-helm-function',
  /** ServiceAccount of function pods in the functions namespace; the worker sidecar's AWS identity. */
  workerServiceAccount: 'nvcf-worker',
  /** The invocation service: its Deployment, Service and ServiceAccount (in the system namespace). */
  invocationServiceName: 'nvcf-invocation',
  /** Node label carrying the GPU type of a nodegroup, e.g. `nvcf.io/gpu=L40S`. */
  gpuLabel: 'nvcf.io/gpu',
  gpuTaintKey: 'nvidia.com/gpu',
  gpuResource: 'nvidia.com/gpu',
  /** Label of every object the controller makes for a workload; its value is the workload key (`<versionId>-<specIndex>`). */
  workloadLabel: 'nvcf.io/workload',
  /** `app.kubernetes.io/managed-by` value of the controller's objects, and its server-side apply field manager. */
  controllerManager: 'nvcf-controller',
  /** Annotation holding the workload fingerprint (gpu-agent/controller/plan.ts) an object was applied with. */
  fingerprintAnnotation: 'nvcf.io/fingerprint',
  /** KEDA's annotation that holds a ScaledObject's target at a fixed replica count (a halted workload: 0). */
  kedaPausedReplicasAnnotation: 'autoscaling.keda.sh/paused-replicas',
  /** Helm functions are installed into namespaces `<prefix><workload key>`. */
  helmNamespacePrefix: 'nvcf-fn-',
  /** Label of the system nodegroup's nodes (value `system`); platform pods select it, GPU nodes never carry it. */
  systemNodeLabel: 'nvcf.io/node-role',
  systemNodeRole: 'system',
  /** Kubernetes' own node label for the CPU architecture. */
  archLabel: 'kubernetes.io/arch',
  /** Secret a Helm function's chart mounts for the version's secrets (key `secrets.json`), in the chart's namespace. */
  helmSecretsSecret: 'nvcf-secrets',
  /** Secret in a Helm function's namespace with the owner's NGC pull login; its name is the chart value `ngcImagePullSecretName`, as NVCF passes it. */
  helmNgcPullSecret: 'nvcf-ngc-pull',
} as const;

/** A CPU architecture as Kubernetes' `kubernetes.io/arch` node label names it. */
export type CpuArch = 'amd64' | 'arm64';

/**
 * CPU architecture of an instance type: Graviton families carry a `g` after
 * the generation digit (g5g, t4g, m7gd); everything else here is x86.
 */
export function instanceArch(instanceType: string): CpuArch {
  const family = instanceType.split('.')[0] ?? '';
  return /^[a-z]+\d+g[a-z]*$/.test(family) ? 'arm64' : 'amd64';
}

/** Powertools service name of every Lambda and agent process. */
export const SERVICE_NAME = 'nvcf';

/** CloudWatch namespace of the metrics the runtime publishes. */
export const METRICS_NAMESPACE = 'NVCF';

/**
 * Metrics the gpu-agent publishes in METRICS_NAMESPACE without dimensions, each the
 * maximum over all version queues, so that one CloudWatch alarm covers every queue.
 */
export const AGENT_METRICS = {
  /** Messages waiting in the dead-letter queues. */
  deadLetterMessages: 'DeadLetterMessages',
  /** Age in seconds of the oldest message waiting in a version queue. */
  oldestMessageAgeSeconds: 'OldestMessageAgeSeconds',
} as const;
