/**
 * The configuration of the platform's infrastructure: typed props with their
 * defaults in one place (DEFAULTS), and the validation that turns user input
 * into a ResolvedConfig or fails synth with a message saying what to fix.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { isKnownGpuInstanceType } from '../core/gpu-instance-types';
import { DEFAULT_MAX_RECEIVE_COUNT } from '../core/limits';
import { DEFAULT_TRITON_IMAGE, instanceArch, type CpuArch } from '../core/names';
import { DEFAULT_QUOTAS, QUOTA_NAMES, parseQuotaValues, type QuotaValues, type Quotas } from '../core/quota-settings';

/**
 * One GPU type offered by the platform, backed by one EKS managed nodegroup
 * per instance type: a pod asks for one instance type, and the Cluster
 * Autoscaler (like the Auto Scaling group) knows a nodegroup by one instance
 * type only, so a group of several could never grow for the others.
 */
export interface GpuNodegroupProps {
  /**
   * GPU type as the API reports it in `supportedGpus` and `clusterGroups` and
   * as deployments request it (`gpu`), e.g. `L4`, `A10G`, `L40S`, `H100`.
   * Letters, digits, `_` and `-`, at most 32 characters, unique (case-insensitive).
   */
  readonly name: string;
  /**
   * EC2 instance types offered for this GPU, all GPU types (`g*`/`p*` families)
   * of one CPU architecture, e.g. `["g6.xlarge"]`; each gets a nodegroup. The
   * first one is the default instance type reported for this GPU. Types
   * missing from core/gpu-instance-types.ts synthesize with a warning: the
   * platform then assumes one GPU per instance.
   */
  readonly instanceTypes: string[];
  /**
   * Nodes of the default (first) instance type kept running when nothing is deployed.
   * @default 0
   */
  readonly minNodes?: number;
  /**
   * Upper bound of each of the GPU's nodegroups; the Cluster Autoscaler and deployments scale within it.
   * @default 2
   */
  readonly maxNodes?: number;
  /**
   * Root volume of each node in GiB; inference images and models are large.
   * @default 200
   */
  readonly diskSizeGiB?: number;
  /**
   * EC2 purchasing option of the nodes.
   * @default 'ON_DEMAND'
   */
  readonly capacityType?: 'ON_DEMAND' | 'SPOT';
}

/** Versions of the Helm charts installed on the cluster; pinned so that deploys are repeatable. */
export interface ChartVersions {
  /**
   * AWS for Fluent Bit (https://aws.github.io/eks-charts), ships the function pods' logs to CloudWatch Logs.
   * @default '0.2.1'
   */
  readonly awsForFluentBit?: string;
  /**
   * KEDA (https://kedacore.github.io/charts), scales instances on queue depth.
   * @default '2.21.1'
   */
  readonly keda?: string;
  /**
   * NVIDIA device plugin (https://nvidia.github.io/k8s-device-plugin), exposes `nvidia.com/gpu`.
   * @default '0.18.2'
   */
  readonly nvidiaDevicePlugin?: string;
  /**
   * Kubernetes Cluster Autoscaler (https://kubernetes.github.io/autoscaler), adds and removes
   * nodes; its minor version should match the cluster's.
   * @default - the chart of the cluster's Kubernetes minor: '9.56.0' (1.35.0) for 1.35, '9.53.0' (1.34.2) for 1.34
   */
  readonly clusterAutoscaler?: string;
  /**
   * AWS Load Balancer Controller (https://aws.github.io/eks-charts), registers the invocation
   * service's pods in its ALB target group (TargetGroupBinding only).
   * @default '1.14.0'
   */
  readonly awsLoadBalancerController?: string;
  /**
   * Kubernetes Metrics Server (https://kubernetes-sigs.github.io/metrics-server), the resource
   * metrics API the invocation service's CPU HorizontalPodAutoscaler reads.
   * @default '3.13.0'
   */
  readonly metricsServer?: string;
}

export type EndpointAccessMode = 'public-and-private' | 'private';
export type QueueEncryption = 'sqs-managed' | 'kms';
export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

/** Everything an operator can configure; every field is optional. */
export interface NvcfConfigProps {
  /**
   * GPU types offered, one managed nodegroup each. Without a cluster the
   * Lambdas still report these offers (as NVCF_GPUS).
   * @default [{ name: 'L4', instanceTypes: ['g6.xlarge'], minNodes: 0, maxNodes: 2 }]
   */
  readonly gpus?: GpuNodegroupProps[];
  /**
   * Create the EKS cluster (the data plane). `false` synthesizes only the
   * serverless control plane, e.g. for an API-only install or fast tests.
   * @default true
   */
  readonly gpuCluster?: boolean;
  /**
   * Who can reach the Kubernetes API endpoint. `private` keeps it inside the VPC
   * (kubectl then needs a VPN or bastion; CDK's kubectl Lambda runs in the VPC).
   * @default 'public-and-private'
   */
  readonly endpointAccess?: EndpointAccessMode;
  /**
   * CIDR blocks allowed to reach the public endpoint (with `public-and-private`).
   * @default ['0.0.0.0/0']
   */
  readonly publicEndpointCidrs?: string[];
  /**
   * Kubernetes minor version; must be within one minor of the bundled kubectl (1.35).
   * @default '1.35'
   */
  readonly kubernetesVersion?: string;
  /**
   * Instance type of the system nodegroup (controller, KEDA, CoreDNS).
   * @default 't3.large'
   */
  readonly systemInstanceType?: string;
  /**
   * Minimum (and initial) size of the system nodegroup.
   * @default 2
   */
  readonly systemMinNodes?: number;
  /**
   * Maximum size of the system nodegroup.
   * @default 3
   */
  readonly systemMaxNodes?: number;
  /**
   * NAT gateways of the VPC: 1 is cheaper, 2 survives the loss of an availability zone.
   * @default 1
   */
  readonly natGateways?: number;
  /**
   * IAM role ARNs given cluster-admin access to Kubernetes (e.g. your console or CI role).
   * The identity that deploys the stack is always an admin.
   * @default []
   */
  readonly clusterAdminRoleArns?: string[];
  /** @default - see ChartVersions */
  readonly chartVersions?: ChartVersions;
  /**
   * Domain of host-based direct invocation: CloudFront then answers `invocation.<domain>` and
   * `*.invocation.<domain>` (point both at the distribution), so that
   * `{functionId}.invocation.<domain>` addresses a function. Needs invocationCertificateArn.
   * @default - none: the invocation URL is the distribution's own domain; direct invocation uses the `function-id` header
   */
  readonly invocationDomain?: string;
  /**
   * ACM certificate (in us-east-1, as CloudFront requires) covering `invocation.<domain>` and `*.invocation.<domain>`.
   * @default - none
   */
  readonly invocationCertificateArn?: string;
  /**
   * ACM certificate in the stack's region covering `invocation.<domain>` and `*.invocation.<domain>`
   * (CloudFront forwards the caller's Host and checks the origin's certificate against it): the
   * internal ALB then also listens on HTTPS with it, CloudFront reaches it over HTTPS and proxies
   * gRPC, which needs HTTPS end to end (CloudFront proxies gRPC to HTTPS origins only, and an ALB
   * has gRPC target groups only behind an HTTPS listener). Needs invocationDomain. gRPC callers
   * then use `invocation.<domain>:443`.
   * @default - none: the invocation URL carries HTTP calls only; gRPC is refused by CloudFront
   */
  readonly invocationOriginCertificateArn?: string;
  /**
   * Instances of the invocation service at least (the HPA adds more on CPU, up to four times this).
   * @default 2
   */
  readonly invocationReplicas?: number;
  /**
   * Image the controller runs for model-only functions (no container image):
   * NVIDIA Triton serving the function's models. Pin it with a tag or digest.
   * @default 'nvcr.io/nvidia/tritonserver:25.01-py3'
   */
  readonly tritonImage?: string;
  /**
   * What happens to the DynamoDB tables and the bucket when the stack is deleted.
   * @default RemovalPolicy.RETAIN
   */
  readonly dataRemovalPolicy?: RemovalPolicy;
  /**
   * Days after which objects under `assets/`, `inputs/` and `outputs/` expire.
   * @default 1
   */
  readonly objectExpirationDays?: number;
  /**
   * Origins allowed to upload assets from a browser with presigned POST/PUT.
   * @default ['*']
   */
  readonly corsAllowedOrigins?: string[];
  /**
   * Encryption of the per-version queues the deployments Lambda creates:
   * SQS-managed SSE, or a customer managed KMS key created by this stack.
   * @default 'sqs-managed'
   */
  readonly queueEncryption?: QueueEncryption;
  /**
   * Deliveries of one invocation before its message moves to the dead-letter queue.
   * @default DEFAULT_MAX_RECEIVE_COUNT (3)
   */
  readonly maxReceiveCount?: number;
  /**
   * Seconds API Gateway caches the authorizer's answer per Authorization header
   * (0 disables caching). A revoked key keeps working for at most this long.
   * @default 300
   */
  readonly authorizerCacheSeconds?: number;
  /**
   * Steady-state requests per second of the API stage.
   * @default 100
   */
  readonly throttlingRateLimit?: number;
  /**
   * Burst of requests the API stage accepts above the rate.
   * @default 200
   */
  readonly throttlingBurstLimit?: number;
  /**
   * Log level of the Lambdas and the gpu-agent (POWERTOOLS_LOG_LEVEL).
   * @default 'INFO'
   */
  readonly logLevel?: LogLevel;
  /**
   * Retention of Lambda, API access, VPC flow and S3 access logs, in days
   * (one of CloudWatch's retention values).
   * @default 30
   */
  readonly logRetentionDays?: number;
  /**
   * Retention of the function logs (the instances' stdout/stderr the log agent ships from the
   * GPU cluster into one log group), in days (one of CloudWatch's retention values).
   * @default 14
   */
  readonly functionLogRetentionDays?: number;
  /**
   * Memory of the API Lambdas in MB.
   * @default 512
   */
  readonly lambdaMemoryMb?: number;
  /**
   * Bundle the AWS SDK into the Lambdas instead of using the one in the runtime.
   * Pins the SDK version at the cost of ~500 KB per function and slower cold starts.
   * @default false
   */
  readonly bundleAwsSdk?: boolean;
  /**
   * E-mail address subscribed to the alarms (confirm the subscription mail).
   * @default - alarms have no actions
   */
  readonly alarmEmail?: string;
  /**
   * Alarm when a message has waited this long in a version queue.
   * @default 900
   */
  readonly oldestMessageAgeAlarmSeconds?: number;
  /**
   * Quotas per account (core/quota-settings.ts), over the defaults: any of `functions`,
   * `versionsPerFunction`, `deployedInstances`, `gpus`, `concurrentInvocations`, `assetBytes`,
   * each a whole number or null for unlimited, e.g. `{"functions": 20, "gpus": 16}`. The admin
   * command overrides them per account (`npm run keys -- quota set`).
   * @default DEFAULT_QUOTAS: 100 functions, 50 versions per function, 100 instances, 100 GPUs, unlimited concurrent invocations, 100 GiB of assets
   */
  readonly quotas?: QuotaValues;
}

/** The configuration after defaults and validation. */
export interface ResolvedConfig {
  readonly gpus: ResolvedGpu[];
  readonly gpuCluster: boolean;
  readonly endpointAccess: EndpointAccessMode;
  readonly publicEndpointCidrs: string[];
  readonly kubernetesVersion: string;
  readonly systemInstanceType: string;
  readonly systemArch: CpuArch;
  readonly systemMinNodes: number;
  readonly systemMaxNodes: number;
  readonly natGateways: number;
  readonly clusterAdminRoleArns: string[];
  readonly chartVersions: Required<ChartVersions>;
  readonly invocationDomain?: string;
  readonly invocationCertificateArn?: string;
  readonly invocationOriginCertificateArn?: string;
  readonly invocationReplicas: number;
  readonly tritonImage: string;
  readonly dataRemovalPolicy: RemovalPolicy;
  readonly objectExpirationDays: number;
  readonly corsAllowedOrigins: string[];
  readonly queueEncryption: QueueEncryption;
  readonly maxReceiveCount: number;
  readonly authorizerCacheSeconds: number;
  readonly throttlingRateLimit: number;
  readonly throttlingBurstLimit: number;
  readonly logLevel: LogLevel;
  readonly logRetentionDays: number;
  readonly functionLogRetentionDays: number;
  readonly lambdaMemoryMb: number;
  readonly bundleAwsSdk: boolean;
  readonly alarmEmail?: string;
  readonly oldestMessageAgeAlarmSeconds: number;
  readonly quotas: Quotas;
  /** What synthesizes but deserves a look (unknown GPU instance types); the stack reports them as CDK warnings. */
  readonly warnings: string[];
}

// Shared with the controller, which picks the agent image for a GPU type's nodes.
export { instanceArch, type CpuArch };

export interface ResolvedGpu extends Required<GpuNodegroupProps> {
  readonly arch: CpuArch;
}

/** Every default of the infrastructure, in one place. */
export const DEFAULTS = {
  gpus: [{ name: 'L4', instanceTypes: ['g6.xlarge'], minNodes: 0, maxNodes: 2 }],
  gpuCluster: true,
  endpointAccess: 'public-and-private',
  publicEndpointCidrs: ['0.0.0.0/0'],
  kubernetesVersion: '1.35',
  systemInstanceType: 't3.large',
  systemMinNodes: 2,
  systemMaxNodes: 3,
  natGateways: 1,
  clusterAdminRoleArns: [],
  chartVersions: { awsForFluentBit: '0.2.1', keda: '2.21.1', nvidiaDevicePlugin: '0.18.2', awsLoadBalancerController: '1.14.0', metricsServer: '3.13.0' },
  invocationReplicas: 2,
  tritonImage: DEFAULT_TRITON_IMAGE,
  dataRemovalPolicy: RemovalPolicy.RETAIN,
  objectExpirationDays: 1,
  corsAllowedOrigins: ['*'],
  queueEncryption: 'sqs-managed',
  maxReceiveCount: DEFAULT_MAX_RECEIVE_COUNT,
  authorizerCacheSeconds: 300,
  throttlingRateLimit: 100,
  throttlingBurstLimit: 200,
  logLevel: 'INFO',
  logRetentionDays: 30,
  functionLogRetentionDays: 14,
  lambdaMemoryMb: 512,
  bundleAwsSdk: false,
  oldestMessageAgeAlarmSeconds: 900,
  quotas: DEFAULT_QUOTAS,
  gpu: { minNodes: 0, maxNodes: 2, diskSizeGiB: 200, capacityType: 'ON_DEMAND' },
  // The Cluster Autoscaler simulates the scheduler of its own minor version (its appVersion in the comments).
  clusterAutoscalerCharts: { '1.34': '9.53.0' /* 1.34.2 */, '1.35': '9.56.0' /* 1.35.0 */ } as Record<string, string>,
} as const satisfies Omit<Required<NvcfConfigProps>, 'alarmEmail' | 'gpus' | 'invocationDomain' | 'invocationCertificateArn' | 'invocationOriginCertificateArn'> & {
  gpus: readonly GpuNodegroupProps[];
  gpu: Omit<Required<GpuNodegroupProps>, 'name' | 'instanceTypes'>;
  clusterAutoscalerCharts: Record<string, string>;
};

/** The minor versions kubectl 1.35 (the bundled kubectl layer) may manage. */
const KUBERNETES_VERSIONS = ['1.34', '1.35', '1.36'];
const LOG_LEVELS: readonly LogLevel[] = ['DEBUG', 'INFO', 'WARN', 'ERROR'];
/** CloudWatch Logs accepts only these retention periods. */
const RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];
const GPU_FIELDS = ['name', 'instanceTypes', 'minNodes', 'maxNodes', 'diskSizeGiB', 'capacityType'];
const INSTANCE_TYPE = /^([a-z][a-z0-9-]*)\.([a-z0-9]+)$/;
const CHART_VERSION = /^\d+\.\d+\.\d+$/;
/** An image reference with a tag or a digest, never a bare name that resolves to whatever is latest. */
const IMAGE = /^[a-z0-9][a-z0-9._:/-]*(:\w[\w.-]{0,127}|@sha256:[a-f0-9]{64})$/;
const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/;

/** A configuration error; the message names the setting and what to change. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(`invalid NVCF configuration: ${message}`);
    this.name = 'ConfigError';
  }
}

function fail(message: string): never {
  throw new ConfigError(message);
}

function integer(name: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function oneOf<T extends string>(name: string, value: T, allowed: readonly T[]): T {
  if (!allowed.includes(value)) fail(`${name} must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, got ${JSON.stringify(value)}`);
  return value;
}

function stringList(name: string, value: unknown, { nonEmpty }: { nonEmpty: boolean }): string[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string' || item.length === 0)) {
    fail(`${name} must be a list of non-empty strings, got ${JSON.stringify(value)}`);
  }
  if (nonEmpty && value.length === 0) fail(`${name} must not be empty`);
  return value as string[];
}

function instanceType(name: string, value: unknown): string {
  if (typeof value !== 'string' || !INSTANCE_TYPE.test(value)) {
    fail(`${name} must be an EC2 instance type such as "g6.xlarge", got ${JSON.stringify(value)}`);
  }
  return value;
}

function resolveGpu(entry: unknown, index: number): ResolvedGpu {
  const at = `gpus[${index}]`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    fail(`${at} must be an object like {"name":"L4","instanceTypes":["g6.xlarge"],"minNodes":0,"maxNodes":2}, got ${JSON.stringify(entry)}`);
  }
  const unknown = Object.keys(entry).filter((key) => !GPU_FIELDS.includes(key));
  if (unknown.length > 0) fail(`${at} has unknown field(s) ${unknown.map((k) => `"${k}"`).join(', ')}; allowed fields are ${GPU_FIELDS.join(', ')}`);
  const gpu = entry as GpuNodegroupProps;

  if (typeof gpu.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(gpu.name)) {
    fail(`${at}.name must be a GPU type name of letters, digits, "_" or "-" (at most 32 characters) such as "L4", got ${JSON.stringify(gpu.name)}`);
  }
  const types = stringList(`${at}.instanceTypes`, gpu.instanceTypes, { nonEmpty: true }).map((type, i) => {
    const checked = instanceType(`${at}.instanceTypes[${i}]`, type);
    if (!/^[gp]/.test(checked)) fail(`${at}.instanceTypes[${i}] "${checked}" is not a GPU instance type; use a g* or p* family such as g6.xlarge, g6e.xlarge or p5.48xlarge`);
    return checked;
  });
  const archs = new Set(types.map(instanceArch));
  if (archs.size > 1) fail(`${at}.instanceTypes mixes Graviton (arm64) and x86 instance types (${types.join(', ')}); use one architecture per GPU entry`);

  const minNodes = integer(`${at}.minNodes`, gpu.minNodes ?? DEFAULTS.gpu.minNodes, 0, 1000);
  const maxNodes = integer(`${at}.maxNodes`, gpu.maxNodes ?? DEFAULTS.gpu.maxNodes, 1, 1000);
  if (minNodes > maxNodes) fail(`${at} (${gpu.name}) has minNodes ${minNodes} greater than maxNodes ${maxNodes}; raise maxNodes or lower minNodes`);
  return {
    name: gpu.name,
    instanceTypes: types,
    minNodes,
    maxNodes,
    diskSizeGiB: integer(`${at}.diskSizeGiB`, gpu.diskSizeGiB ?? DEFAULTS.gpu.diskSizeGiB, 20, 16384),
    capacityType: oneOf(`${at}.capacityType`, gpu.capacityType ?? DEFAULTS.gpu.capacityType, ['ON_DEMAND', 'SPOT']),
    arch: [...archs][0]!,
  };
}

function resolveGpus(value: unknown): ResolvedGpu[] {
  if (!Array.isArray(value)) fail(`gpus must be a list of GPU entries, got ${JSON.stringify(value)}`);
  if (value.length === 0) fail('gpus is empty; configure at least one GPU type, e.g. [{"name":"L4","instanceTypes":["g6.xlarge"],"minNodes":0,"maxNodes":2}]');
  const gpus = value.map(resolveGpu);
  const seen = new Set<string>();
  for (const gpu of gpus) {
    const key = gpu.name.toLowerCase();
    if (seen.has(key)) fail(`gpus lists "${gpu.name}" more than once; GPU names must be unique (case-insensitive)`);
    seen.add(key);
  }
  return gpus;
}

function cidrList(name: string, value: unknown): string[] {
  const cidrs = stringList(name, value, { nonEmpty: true });
  for (const cidr of cidrs) {
    const m = CIDR.exec(cidr);
    if (!m || m.slice(1, 5).some((octet) => Number(octet) > 255) || Number(m[5]) > 32) {
      fail(`${name} contains "${cidr}", which is not an IPv4 CIDR block such as "203.0.113.0/24"`);
    }
  }
  return cidrs;
}

/** Applies DEFAULTS to the props and validates them; throws ConfigError naming what to fix. */
export function resolveConfig(props: NvcfConfigProps = {}): ResolvedConfig {
  const gpuCluster = props.gpuCluster ?? DEFAULTS.gpuCluster;
  if (typeof gpuCluster !== 'boolean') fail(`gpuCluster must be true or false, got ${JSON.stringify(gpuCluster)}`);

  const systemInstanceType = instanceType('systemInstanceType', props.systemInstanceType ?? DEFAULTS.systemInstanceType);
  const systemMinNodes = integer('systemMinNodes', props.systemMinNodes ?? DEFAULTS.systemMinNodes, 1, 100);
  const systemMaxNodes = integer('systemMaxNodes', props.systemMaxNodes ?? DEFAULTS.systemMaxNodes, 1, 100);
  if (systemMinNodes > systemMaxNodes) fail(`systemMinNodes ${systemMinNodes} is greater than systemMaxNodes ${systemMaxNodes}; raise systemMaxNodes or lower systemMinNodes`);

  const kubernetesVersion = oneOf('kubernetesVersion', props.kubernetesVersion ?? DEFAULTS.kubernetesVersion, KUBERNETES_VERSIONS);
  const clusterAutoscaler = props.chartVersions?.clusterAutoscaler ?? DEFAULTS.clusterAutoscalerCharts[kubernetesVersion];
  if (clusterAutoscaler === undefined) {
    fail(`no Cluster Autoscaler chart is known for Kubernetes ${kubernetesVersion}; set chartVersions.clusterAutoscaler to the chart whose appVersion is ${kubernetesVersion}.x (helm search repo autoscaler/cluster-autoscaler --versions)`);
  }
  const chartVersions = { ...DEFAULTS.chartVersions, clusterAutoscaler, ...props.chartVersions };
  for (const [chart, version] of Object.entries(chartVersions)) {
    if (typeof version !== 'string' || !CHART_VERSION.test(version)) {
      fail(`chartVersions.${chart} must be an exact chart version such as "1.2.3" (ranges are not allowed, deploys must be repeatable), got ${JSON.stringify(version)}`);
    }
  }

  const tritonImage = props.tritonImage ?? DEFAULTS.tritonImage;
  if (typeof tritonImage !== 'string' || !IMAGE.test(tritonImage)) {
    fail(`tritonImage must be a container image pinned by tag or digest such as "${DEFAULTS.tritonImage}", got ${JSON.stringify(tritonImage)}`);
  }

  const gpus = resolveGpus(props.gpus ?? DEFAULTS.gpus);
  const warnings = gpus.flatMap((gpu) =>
    gpu.instanceTypes
      .filter((type) => !isKnownGpuInstanceType(type))
      .map((type) => `gpus: ${gpu.name} instance type "${type}" is not in core/gpu-instance-types.ts; the platform assumes it has one NVIDIA GPU (add it there if it has more, or if its GPUs are not NVIDIA's, do not use it)`),
  );

  const authorizerCacheSeconds = integer('authorizerCacheSeconds', props.authorizerCacheSeconds ?? DEFAULTS.authorizerCacheSeconds, 0, 3600);
  const throttlingRateLimit = integer('throttlingRateLimit', props.throttlingRateLimit ?? DEFAULTS.throttlingRateLimit, 1, 1_000_000);
  const throttlingBurstLimit = integer('throttlingBurstLimit', props.throttlingBurstLimit ?? DEFAULTS.throttlingBurstLimit, 1, 1_000_000);

  const logRetentionDays = props.logRetentionDays ?? DEFAULTS.logRetentionDays;
  if (!RETENTION_DAYS.includes(logRetentionDays)) fail(`logRetentionDays must be one of ${RETENTION_DAYS.join(', ')}, got ${JSON.stringify(logRetentionDays)}`);
  const functionLogRetentionDays = props.functionLogRetentionDays ?? DEFAULTS.functionLogRetentionDays;
  if (!RETENTION_DAYS.includes(functionLogRetentionDays)) {
    fail(`functionLogRetentionDays must be one of ${RETENTION_DAYS.join(', ')}, got ${JSON.stringify(functionLogRetentionDays)}`);
  }

  const alarmEmail = props.alarmEmail;
  if (alarmEmail !== undefined && (typeof alarmEmail !== 'string' || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail))) {
    fail(`alarmEmail must be an e-mail address, got ${JSON.stringify(alarmEmail)}`);
  }

  const clusterAdminRoleArns = stringList('clusterAdminRoleArns', props.clusterAdminRoleArns ?? DEFAULTS.clusterAdminRoleArns, { nonEmpty: false });
  for (const arn of clusterAdminRoleArns) {
    if (!ROLE_ARN.test(arn)) fail(`clusterAdminRoleArns contains "${arn}", which is not an IAM role ARN such as "arn:aws:iam::123456789012:role/Admin"`);
  }

  const { invocationDomain, invocationCertificateArn } = props;
  if (invocationDomain !== undefined && (typeof invocationDomain !== 'string' || !/^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$/.test(invocationDomain))) {
    fail(`invocationDomain must be a DNS domain such as "example.com" (functions are then invoked at {functionId}.invocation.example.com), got ${JSON.stringify(invocationDomain)}`);
  }
  if (invocationCertificateArn !== undefined && (typeof invocationCertificateArn !== 'string' || !/^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate\/[\w-]+$/.test(invocationCertificateArn))) {
    fail(`invocationCertificateArn must be an ACM certificate ARN in us-east-1 (CloudFront's region), got ${JSON.stringify(invocationCertificateArn)}`);
  }
  if ((invocationDomain === undefined) !== (invocationCertificateArn === undefined)) {
    fail('invocationDomain and invocationCertificateArn go together: the domain needs a certificate for invocation.<domain> and *.invocation.<domain>');
  }
  const { invocationOriginCertificateArn } = props;
  if (invocationOriginCertificateArn !== undefined) {
    if (typeof invocationOriginCertificateArn !== 'string' || !/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[\w-]+$/.test(invocationOriginCertificateArn)) {
      fail(`invocationOriginCertificateArn must be an ACM certificate ARN in the stack's region, got ${JSON.stringify(invocationOriginCertificateArn)}`);
    }
    if (invocationDomain === undefined) fail('invocationOriginCertificateArn needs invocationDomain: the certificate covers invocation.<domain> and *.invocation.<domain>');
  }

  const quotaValues = parseQuotaValues(props.quotas ?? {});
  if (typeof quotaValues === 'string') fail(`quotas: ${quotaValues}; known quotas: ${QUOTA_NAMES.join(', ')}`);
  const quotas: Quotas = { ...DEFAULTS.quotas, ...quotaValues };

  const dataRemovalPolicy = props.dataRemovalPolicy ?? DEFAULTS.dataRemovalPolicy;
  oneOf('dataRemovalPolicy', dataRemovalPolicy, [RemovalPolicy.RETAIN, RemovalPolicy.DESTROY]);

  return {
    gpus,
    gpuCluster,
    endpointAccess: oneOf('endpointAccess', props.endpointAccess ?? DEFAULTS.endpointAccess, ['public-and-private', 'private']),
    publicEndpointCidrs: cidrList('publicEndpointCidrs', props.publicEndpointCidrs ?? DEFAULTS.publicEndpointCidrs),
    kubernetesVersion,
    systemInstanceType,
    systemArch: instanceArch(systemInstanceType),
    systemMinNodes,
    systemMaxNodes,
    natGateways: integer('natGateways', props.natGateways ?? DEFAULTS.natGateways, 1, 2),
    clusterAdminRoleArns,
    chartVersions,
    invocationDomain,
    invocationCertificateArn,
    invocationOriginCertificateArn,
    invocationReplicas: integer('invocationReplicas', props.invocationReplicas ?? DEFAULTS.invocationReplicas, 2, 100),
    tritonImage,
    dataRemovalPolicy,
    objectExpirationDays: integer('objectExpirationDays', props.objectExpirationDays ?? DEFAULTS.objectExpirationDays, 1, 3650),
    corsAllowedOrigins: stringList('corsAllowedOrigins', props.corsAllowedOrigins ?? DEFAULTS.corsAllowedOrigins, { nonEmpty: true }),
    queueEncryption: oneOf('queueEncryption', props.queueEncryption ?? DEFAULTS.queueEncryption, ['sqs-managed', 'kms']),
    maxReceiveCount: integer('maxReceiveCount', props.maxReceiveCount ?? DEFAULTS.maxReceiveCount, 1, 1000),
    authorizerCacheSeconds,
    throttlingRateLimit,
    throttlingBurstLimit,
    logLevel: oneOf('logLevel', props.logLevel ?? DEFAULTS.logLevel, LOG_LEVELS),
    logRetentionDays,
    functionLogRetentionDays,
    lambdaMemoryMb: integer('lambdaMemoryMb', props.lambdaMemoryMb ?? DEFAULTS.lambdaMemoryMb, 128, 10240),
    bundleAwsSdk: props.bundleAwsSdk ?? DEFAULTS.bundleAwsSdk,
    alarmEmail,
    oldestMessageAgeAlarmSeconds: integer('oldestMessageAgeAlarmSeconds', props.oldestMessageAgeAlarmSeconds ?? DEFAULTS.oldestMessageAgeAlarmSeconds, 60, 14 * 24 * 3600),
    quotas,
    warnings,
  };
}

/** The GPU offers as the Lambdas read them from NVCF_GPUS when there is no cluster. */
export function gpuOffers(gpus: readonly ResolvedGpu[]): { name: string; instanceTypes: string[] }[] {
  return gpus.map(({ name, instanceTypes }) => ({ name, instanceTypes }));
}
