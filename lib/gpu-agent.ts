/**
 * The gpu-agent on the cluster: its image (built from gpu-agent/Dockerfile at
 * deploy time), the controller Deployment in nvcf-system with its RBAC and the
 * admission policy that fences its writes, and the two AWS identities bound
 * through EKS Pod Identity: the controller's and the one the worker sidecar of
 * every function pod uses.
 */
import { Stack } from 'aws-cdk-lib';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as eks from 'aws-cdk-lib/aws-eks-v2';
import { Construct } from 'constructs';
import { ENV, K8S, METRICS_NAMESPACE, S3_PREFIX, SERVICE_NAME } from '../core/names';
import { PROJECT_ROOT } from './api-functions';
import type { CpuArch, ResolvedConfig } from './config';
import type { DataStore } from './data-store';
import { SYSTEM_NODE_LABEL, type GpuCluster } from './gpu-cluster';
import { acknowledge, acknowledgeWildcard, listBucketStatement, objectStatement, putMetricDataStatement, queueArnPattern, queueStatement, registryCredentialsKeyStatement, secretsKeyStatement, type BucketPrefix } from './iam';
import { PodIdentityRole } from './pod-identity';

/**
 * Only what the image build reads: the lockfile, the TypeScript config and
 * the sources the agent bundles. Everything else (node_modules, cdk.out, .git)
 * would slow the asset fingerprint at every synth and bloat the build context.
 */
export const AGENT_BUILD_CONTEXT_EXCLUDES = ['*', '!package.json', '!package-lock.json', '!tsconfig.json', '!core', '!gpu-agent', '!invocation'];

const PLATFORMS: Record<CpuArch, Platform> = { amd64: Platform.LINUX_AMD64, arm64: Platform.LINUX_ARM64 };

export interface GpuAgentProps {
  readonly config: ResolvedConfig;
  readonly data: DataStore;
  readonly gpuCluster: GpuCluster;
}

export class GpuAgent extends Construct {
  /** Image per CPU architecture present on the cluster's nodes. */
  readonly images: Partial<Record<CpuArch, DockerImageAsset>>;
  /** The controller's AWS identity (ServiceAccount nvcf-system/nvcf-gpu-agent). */
  readonly controllerIdentity: PodIdentityRole;
  /** The worker sidecar's AWS identity (ServiceAccount nvcf-functions/nvcf-worker). */
  readonly workerIdentity: PodIdentityRole;
  readonly controller: eks.KubernetesManifest;

  constructor(scope: Construct, id: string, { config, data, gpuCluster }: GpuAgentProps) {
    super(scope, id);
    const { cluster, namespaces } = gpuCluster;

    const archs = new Set<CpuArch>([config.systemArch, ...config.gpus.map((gpu) => gpu.arch)]);
    this.images = Object.fromEntries(
      [...archs].map((arch) => [
        arch,
        new DockerImageAsset(this, `Image-${arch}`, {
          directory: PROJECT_ROOT,
          file: 'gpu-agent/Dockerfile',
          exclude: [...AGENT_BUILD_CONTEXT_EXCLUDES],
          platform: PLATFORMS[arch],
          displayName: `nvcf-gpu-agent-${arch}`,
        }),
      ]),
    );
    const imageUris = Object.fromEntries(Object.entries(this.images).map(([arch, image]) => [arch, image.imageUri]));

    this.controllerIdentity = new PodIdentityRole(this, 'ControllerIdentity', {
      cluster,
      namespace: K8S.systemNamespace,
      serviceAccount: K8S.controllerServiceAccount,
      description: 'gpu-agent controller: reconciles NVCF deployments on the cluster',
      dependsOn: [namespaces],
    });
    this.workerIdentity = new PodIdentityRole(this, 'WorkerIdentity', {
      cluster,
      namespace: K8S.functionsNamespace,
      serviceAccount: K8S.workerServiceAccount,
      description: 'gpu-agent worker: serves invocations beside each function container',
      dependsOn: [namespaces],
    });

    this.grantWorker(this.workerIdentity, data);
    // The controller reads the deployed versions and turns failing ones to ERROR; it never touches
    // queues or objects (KEDA reads queue depths with its own identity).
    data.tables.functions.grantReadData(this.controllerIdentity.role);
    data.tables.functions.grant(this.controllerIdentity.role, 'dynamodb:UpdateItem');
    // For Helm functions it writes the version's secrets into the chart's Secret (nvcf-secrets): it opens them.
    this.controllerIdentity.role.addToPrincipalPolicy(secretsKeyStatement(data.secretsKey, 'open'));
    // For container functions it makes the pods' image pull Secret from the owner's registry credential: it lists the owner's and opens one.
    data.tables.registryCredentials.grant(this.controllerIdentity.role, 'dynamodb:Query');
    this.controllerIdentity.role.addToPrincipalPolicy(registryCredentialsKeyStatement(data.secretsKey, 'open'));
    acknowledgeFunctionsIndex(this.controllerIdentity, data);

    const rbac = cluster.addManifest('ControllerRbac', ...controllerRbac());
    rbac.node.addDependency(namespaces);
    // The policy comes before the controller, so that there is no moment it runs unfenced.
    const admission = cluster.addManifest('ControllerAdmissionPolicy', ...controllerAdmissionPolicy());

    const environment: Record<string, string> = {
      ...data.environment(),
      [ENV.clusterName]: cluster.clusterName,
      [ENV.agentImages]: Stack.of(this).toJsonString(imageUris),
      [ENV.tritonImage]: config.tritonImage,
      AWS_REGION: Stack.of(this).region,
      // helm and client-go keep caches and config under HOME; the root filesystem is read-only.
      HOME: '/tmp',
      POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
      POWERTOOLS_LOG_LEVEL: config.logLevel,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    };
    this.controller = cluster.addManifest('Controller', controllerDeployment(imageUris[config.systemArch]!, config.systemArch, environment));
    this.controller.node.addDependency(this.controllerIdentity.serviceAccount!, this.controllerIdentity.association, rbac, admission);
  }

  /**
   * The function pods' identity, used by the worker sidecar and the fetch-artifacts and
   * write-secrets init containers (never by the function's own container): open its secrets,
   * serve the version queue (and hand a job back with a fresh copy of its message on its last
   * allowed delivery), record instances and invocations, flip its version ACTIVE (or ERROR when the
   * container never becomes healthy), read assets, inputs and models, delete the spilled inputs it
   * has served, write outputs and delete those it could not record.
   */
  private grantWorker(identity: PodIdentityRole, data: DataStore): void {
    const { role } = identity;
    const { tables, bucket, queueKey } = data;
    tables.functions.grantReadData(role);
    tables.functions.grant(role, 'dynamodb:UpdateItem');
    tables.instances.grantReadWriteData(role);
    tables.invocations.grantReadWriteData(role);
    role.addToPrincipalPolicy(
      queueStatement(['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes', 'sqs:SendMessage'], this),
    );
    const readable: BucketPrefix[] = ['assets', 'inputs', 'models'];
    role.addToPrincipalPolicy(objectStatement(bucket, ['s3:GetObject'], readable));
    // A referenced asset that is gone must read as 404, not 403.
    role.addToPrincipalPolicy(listBucketStatement(bucket, ['assets']));
    role.addToPrincipalPolicy(objectStatement(bucket, ['s3:DeleteObject'], ['inputs', 'outputs']));
    role.addToPrincipalPolicy(objectStatement(bucket, ['s3:PutObject'], ['outputs']));
    role.addToPrincipalPolicy(putMetricDataStatement());
    queueKey?.grant(role, 'kms:GenerateDataKey', 'kms:Decrypt');
    // The write-secrets init container and the worker open the version's secrets for its file.
    role.addToPrincipalPolicy(secretsKeyStatement(data.secretsKey, 'open'));
    // fetch-artifacts downloads NGC models and resources with the owner's credential: it lists the owner's and opens one.
    tables.registryCredentials.grant(role, 'dynamodb:Query');
    role.addToPrincipalPolicy(registryCredentialsKeyStatement(data.secretsKey, 'open'));

    const { policy } = identity;
    acknowledgeFunctionsIndex(identity, data);
    acknowledgeWildcard(
      policy,
      `${tables.invocations.tableArn}/index/*`,
      'The Invocations table grant includes its byQueue global secondary index (queue positions), which can only be named with the /index/* suffix; the worker reads and writes the table itself.',
    );
    acknowledgeWildcard(
      policy,
      queueArnPattern(this),
      'The agent serves the version queues, which are created at run time; the grant is limited to the platform queue prefix in this account and region.',
    );
    for (const prefix of [...readable, 'outputs'] as BucketPrefix[]) {
      acknowledgeWildcard(
        policy,
        bucket.arnForObjects(`${S3_PREFIX[prefix]}*`),
        'Object keys embed request, asset and model names known only at run time; the grant is limited to one key prefix of the platform bucket.',
      );
    }
    acknowledge(
      policy,
      'AwsSolutions-IAM5[Resource::*]',
      `cloudwatch:PutMetricData supports no resource-level permissions; the statement is limited to the ${METRICS_NAMESPACE} namespace by condition.`,
    );
  }
}

function acknowledgeFunctionsIndex(identity: PodIdentityRole, data: DataStore): void {
  acknowledgeWildcard(
    identity.policy,
    `${data.tables.functions.tableArn}/index/*`,
    'Grants the byAccount global secondary index of the Functions table only; index ARNs can only be granted with the /index/* suffix.',
  );
}

const WRITE = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
const READ = ['get', 'list', 'watch'];

/**
 * The ClusterRole the controller binds to itself, with a RoleBinding of this
 * name, in each Helm function's namespace it creates: there, and only there,
 * helm may keep its release records (Secrets) and create the kinds a Helm
 * function's chart may hold.
 */
export const HELM_FUNCTION_ROLE = K8S.helmFunctionRole;

/**
 * What the controller may do in the cluster, and nothing more:
 * - in nvcf-functions (Role): the objects of container functions (Deployments,
 *   KEDA ScaledObjects and TriggerAuthentications, image pull Secrets) and
 *   reading their pods;
 * - anywhere (ClusterRole): namespaces, and RoleBindings to HELM_FUNCTION_ROLE
 *   (`bind` on that role alone), for Helm functions' namespaces, which are
 *   created at run time; reading pods. RBAC cannot scope by namespace name,
 *   so controllerAdmissionPolicy() fences these writes to `nvcf-fn-*`;
 * - in a Helm function's namespace (HELM_FUNCTION_ROLE, bound there by the
 *   controller): the kinds its chart may hold, and the Secrets of its release.
 * No Secret outside those namespaces is readable. Without `escalate`, a chart's
 * Role can grant only what the controller holds in that namespace.
 */
export function controllerRbac(): Record<string, unknown>[] {
  const subject = { kind: 'ServiceAccount', name: K8S.controllerServiceAccount, namespace: K8S.systemNamespace };
  const name = K8S.controllerName;
  const rbacGroup = 'rbac.authorization.k8s.io';
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name, namespace: K8S.functionsNamespace },
      rules: [
        { apiGroups: ['apps'], resources: ['deployments'], verbs: WRITE },
        { apiGroups: ['keda.sh'], resources: ['scaledobjects', 'triggerauthentications'], verbs: WRITE },
        // The image pull Secrets of container functions (nvcf-pull-<key>); no other Secret lives in this namespace.
        { apiGroups: [''], resources: ['secrets'], verbs: WRITE },
        { apiGroups: [''], resources: ['pods'], verbs: READ },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name, namespace: K8S.functionsNamespace },
      roleRef: { apiGroup: rbacGroup, kind: 'Role', name },
      subjects: [subject],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      rules: [
        { apiGroups: [''], resources: ['namespaces'], verbs: WRITE },
        // Server-side apply of the per-namespace RoleBinding (patch; create when it is new).
        { apiGroups: [rbacGroup], resources: ['rolebindings'], verbs: ['create', 'patch'] },
        { apiGroups: [rbacGroup], resources: ['clusterroles'], verbs: ['bind'], resourceNames: [HELM_FUNCTION_ROLE] },
        { apiGroups: [''], resources: ['pods'], verbs: READ },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: rbacGroup, kind: 'ClusterRole', name },
      subjects: [subject],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: HELM_FUNCTION_ROLE },
      rules: [
        { apiGroups: ['apps'], resources: ['deployments'], verbs: WRITE },
        { apiGroups: [''], resources: ['services', 'serviceaccounts', 'configmaps', 'secrets'], verbs: WRITE },
        { apiGroups: [rbacGroup], resources: ['roles', 'rolebindings'], verbs: WRITE },
      ],
    },
  ];
}

/** Name of the ValidatingAdmissionPolicy (and its binding) that fences the controller's writes. */
export const CONTROLLER_ADMISSION_POLICY = `${K8S.controllerName}-scope`;

/**
 * A ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) on every
 * write the controller's ServiceAccount makes, helm's included: namespaces
 * only `nvcf-fn-*` ones, created with a Pod Security level of baseline or
 * restricted (a chart must never get a privileged namespace); RBAC objects
 * only inside `nvcf-fn-*`; any other object only inside `nvcf-fn-*` or
 * nvcf-functions; nothing else cluster-scoped. Reads are RBAC's business.
 */
export function controllerAdmissionPolicy(): Record<string, unknown>[] {
  const prefix = K8S.helmNamespacePrefix;
  const podSecurity = "'pod-security.kubernetes.io/enforce'";
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: CONTROLLER_ADMISSION_POLICY },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [{ apiGroups: ['*'], apiVersions: ['*'], operations: ['*'], resources: ['*/*'] }],
        },
        matchConditions: [
          {
            name: 'is-controller',
            expression: `request.userInfo.username == 'system:serviceaccount:${K8S.systemNamespace}:${K8S.controllerServiceAccount}'`,
          },
        ],
        variables: [
          { name: 'isNamespace', expression: "request.resource.group == '' && request.resource.resource == 'namespaces'" },
          { name: 'isRbac', expression: "request.resource.group == 'rbac.authorization.k8s.io'" },
          { name: 'inHelmNamespace', expression: `request.namespace.startsWith('${prefix}')` },
        ],
        // reason Forbidden: the API server answers 403 like an RBAC denial (without it, 422 Invalid,
        // as if the object were malformed); found by test/cluster/admission-policy.test.ts.
        validations: [
          {
            expression: `!variables.isNamespace || request.name.startsWith('${prefix}')`,
            message: `the gpu-agent controller may only create, change or delete namespaces named ${prefix}*`,
            reason: 'Forbidden',
          },
          {
            expression: `!variables.isNamespace || request.operation == 'DELETE' || (has(object.metadata.labels) && ${podSecurity} in object.metadata.labels && object.metadata.labels[${podSecurity}] in ['baseline', 'restricted'])`,
            message: 'the gpu-agent controller may only write namespaces whose pod-security.kubernetes.io/enforce level is baseline or restricted',
            reason: 'Forbidden',
          },
          {
            expression: `variables.isNamespace || (variables.isRbac ? variables.inHelmNamespace : (variables.inHelmNamespace || request.namespace == '${K8S.functionsNamespace}'))`,
            message: `the gpu-agent controller may only write RBAC objects in ${prefix}* namespaces, and other objects in ${prefix}* namespaces or ${K8S.functionsNamespace}`,
            reason: 'Forbidden',
          },
        ],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: CONTROLLER_ADMISSION_POLICY },
      spec: { policyName: CONTROLLER_ADMISSION_POLICY, validationActions: ['Deny'] },
    },
  ];
}

function controllerDeployment(image: string, arch: CpuArch, environment: Record<string, string>): Record<string, unknown> {
  const labels = { 'app.kubernetes.io/name': K8S.controllerName, 'app.kubernetes.io/part-of': 'nvcf' };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: K8S.controllerName, namespace: K8S.systemNamespace, labels },
    spec: {
      // One reconciler at a time: Recreate never runs the old and new controller side by side.
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: K8S.controllerServiceAccount,
          nodeSelector: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value, 'kubernetes.io/arch': arch },
          securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
          // The only writable place (HOME, helm's cache and config); the root filesystem is read-only.
          volumes: [{ name: 'tmp', emptyDir: {} }],
          containers: [
            {
              name: 'controller',
              image,
              args: ['controller'],
              env: Object.entries(environment).map(([name, value]) => ({ name, value })),
              resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '512Mi' } },
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
        },
      },
    },
  };
}
