/**
 * The data plane: a VPC, an EKS cluster (aws-eks-v2) with a small system
 * nodegroup and one GPU nodegroup per configured GPU type, the namespaces of
 * the platform, and the add-ons it relies on (NVIDIA device plugin, KEDA).
 */
import { KubectlV35Layer } from '@aws-cdk/lambda-layer-kubectl-v35';
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as eks from 'aws-cdk-lib/aws-eks-v2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { K8S } from '../core/names';
import type { ResolvedConfig, ResolvedGpu } from './config';
import { acknowledge, acknowledgeWildcard, queueArnPattern, queueStatement } from './iam';
import { acknowledgeKubectlProvider } from './nag';
import { PodIdentityRole } from './pod-identity';

/** Label of the system nodegroup's nodes; platform pods select it, GPU nodes never carry it. */
export const SYSTEM_NODE_LABEL = { key: K8S.systemNodeLabel, value: K8S.systemNodeRole } as const;

/** Where KEDA runs; its operator's ServiceAccount is the chart's default name. */
export const KEDA = { namespace: 'keda', release: 'keda', operatorServiceAccount: 'keda-operator' } as const;

export interface GpuClusterProps {
  readonly config: ResolvedConfig;
}

export class GpuCluster extends Construct {
  readonly vpc: ec2.Vpc;
  readonly cluster: eks.Cluster;
  readonly systemNodegroup: eks.Nodegroup;
  /** One nodegroup per GPU type, in the order of the configuration. */
  readonly gpuNodegroups: { gpu: ResolvedGpu; nodegroup: eks.Nodegroup }[];
  /** The `nvcf-system` and `nvcf-functions` namespaces; platform objects depend on it. */
  readonly namespaces: eks.KubernetesManifest;
  /** Role of the KEDA operator (EKS Pod Identity), allowed to read queue depths. */
  readonly kedaRole: iam.Role;
  /** ARN pattern of every nodegroup of this cluster. */
  readonly nodegroupArnPattern: string;

  constructor(scope: Construct, id: string, { config }: GpuClusterProps) {
    super(scope, id);

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: config.natGateways,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        // The VPC CNI gives every pod a VPC address: leave room for many instances per node.
        { name: 'nodes', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 18 },
      ],
    });
    this.vpc.addFlowLog('FlowLog', {
      // Rejected traffic is what an investigation needs; accepted flows would dominate the log bill.
      trafficType: ec2.FlowLogTrafficType.REJECT,
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        new logs.LogGroup(this, 'FlowLogs', { retention: config.logRetentionDays as logs.RetentionDays, removalPolicy: RemovalPolicy.DESTROY }),
      ),
    });
    const nodeSubnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };

    this.cluster = new eks.Cluster(this, 'Cluster', {
      version: eks.KubernetesVersion.of(config.kubernetesVersion),
      vpc: this.vpc,
      vpcSubnets: [nodeSubnets],
      endpointAccess:
        config.endpointAccess === 'private' ? eks.EndpointAccess.PRIVATE : eks.EndpointAccess.PUBLIC_AND_PRIVATE.onlyFrom(...config.publicEndpointCidrs),
      clusterLogging: [
        eks.ClusterLoggingTypes.API,
        eks.ClusterLoggingTypes.AUDIT,
        eks.ClusterLoggingTypes.AUTHENTICATOR,
        eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
        eks.ClusterLoggingTypes.SCHEDULER,
      ],
      // Managed nodegroups, not Auto Mode: GPU types, AMIs, labels and taints are ours to choose.
      defaultCapacityType: eks.DefaultCapacityType.NODEGROUP,
      defaultCapacity: 0,
      kubectlProviderOptions: { kubectlLayer: new KubectlV35Layer(this, 'KubectlLayer') },
    });
    acknowledgeKubectlProvider(this.cluster.node.findChild('KubectlProvider'));
    config.clusterAdminRoleArns.forEach((arn, i) => this.cluster.grantClusterAdmin(`ClusterAdmin${i}`, arn));

    const nodeRole = new iam.Role(this, 'NodeRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'EKS worker nodes of the NVCF cluster',
      managedPolicies: ['AmazonEKSWorkerNodePolicy', 'AmazonEKS_CNI_Policy', 'AmazonEC2ContainerRegistryReadOnly'].map((name) =>
        iam.ManagedPolicy.fromAwsManagedPolicyName(name),
      ),
    });

    this.systemNodegroup = this.cluster.addNodegroupCapacity('SystemNodes', {
      instanceTypes: [new ec2.InstanceType(config.systemInstanceType)],
      amiType: config.systemArch === 'arm64' ? eks.NodegroupAmiType.AL2023_ARM_64_STANDARD : eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
      minSize: config.systemMinNodes,
      desiredSize: config.systemMinNodes,
      maxSize: config.systemMaxNodes,
      diskSize: 50,
      subnets: nodeSubnets,
      nodeRole,
      labels: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value },
    });

    // Nodegroup names are left to CloudFormation so that a change of instance types can replace
    // a nodegroup; the runtime finds GPU nodegroups by their `nvcf.io/gpu` label instead.
    this.gpuNodegroups = config.gpus.map((gpu) => ({
      gpu,
      nodegroup: this.cluster.addNodegroupCapacity(`Gpu${gpu.name}`, {
        instanceTypes: gpu.instanceTypes.map((type) => new ec2.InstanceType(type)),
        amiType: gpu.arch === 'arm64' ? eks.NodegroupAmiType.AL2023_ARM_64_NVIDIA : eks.NodegroupAmiType.AL2023_X86_64_NVIDIA,
        capacityType: gpu.capacityType === 'SPOT' ? eks.CapacityType.SPOT : eks.CapacityType.ON_DEMAND,
        minSize: gpu.minNodes,
        desiredSize: gpu.minNodes,
        maxSize: gpu.maxNodes,
        diskSize: gpu.diskSizeGiB,
        subnets: nodeSubnets,
        nodeRole,
        labels: { [K8S.gpuLabel]: gpu.name },
        taints: [{ key: K8S.gpuTaintKey, value: 'true', effect: eks.TaintEffect.NO_SCHEDULE }],
        tags: { [K8S.gpuLabel]: gpu.name },
      }),
    }));

    this.namespaces = this.cluster.addManifest(
      'Namespaces',
      namespace(K8S.systemNamespace, 'restricted'),
      // Inference containers are arbitrary user images; "baseline" still forbids privileged pods and host access.
      namespace(K8S.functionsNamespace, 'baseline'),
    );

    const devicePlugin = this.cluster.addHelmChart('NvidiaDevicePlugin', {
      chart: 'nvidia-device-plugin',
      repository: 'https://nvidia.github.io/k8s-device-plugin',
      version: config.chartVersions.nvidiaDevicePlugin,
      release: 'nvidia-device-plugin',
      namespace: 'kube-system',
      values: {
        // The chart's default affinity waits for Node Feature Discovery labels, which this
        // cluster does not run; our GPU nodes are known by their nvcf.io/gpu label.
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [{ matchExpressions: [{ key: K8S.gpuLabel, operator: 'Exists' }] }],
            },
          },
        },
        tolerations: [{ key: K8S.gpuTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
      },
      wait: false,
    });
    devicePlugin.node.addDependency(this.systemNodegroup);

    const kedaIdentity = new PodIdentityRole(this, 'KedaOperatorIdentity', {
      cluster: this.cluster,
      namespace: KEDA.namespace,
      serviceAccount: KEDA.operatorServiceAccount,
      description: 'KEDA operator: reads the depth of the NVCF version queues to scale instances',
      createServiceAccount: false,
    });
    this.kedaRole = kedaIdentity.role;
    this.kedaRole.addToPrincipalPolicy(queueStatement(['sqs:GetQueueAttributes'], this));
    acknowledgeWildcard(
      kedaIdentity.policy,
      queueArnPattern(this),
      'KEDA reads the depth of every version queue; queues are created at run time, so the grant is limited to the platform queue prefix.',
    );

    const keda = this.cluster.addHelmChart('Keda', {
      chart: 'keda',
      repository: 'https://kedacore.github.io/charts',
      version: config.chartVersions.keda,
      release: KEDA.release,
      namespace: KEDA.namespace,
      createNamespace: true,
      values: { nodeSelector: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value } },
      wait: true,
      timeout: Duration.minutes(10),
    });
    // The operator must start with its Pod Identity in place, or its AWS calls fail until restarted.
    keda.node.addDependency(kedaIdentity.association, this.systemNodegroup);

    this.nodegroupArnPattern = Stack.of(this).formatArn({
      service: 'eks',
      resource: 'nodegroup',
      resourceName: `${this.cluster.clusterName}/*`,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
    this.acknowledgeManagedPieces(nodeRole);
  }

  /** eks:ListNodegroups on this cluster. */
  listNodegroupsStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({ actions: ['eks:ListNodegroups'], resources: [this.cluster.clusterArn] });
  }

  /** eks:DescribeCluster on this cluster: clusterGroups reports its Kubernetes version. */
  describeClusterStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({ actions: ['eks:DescribeCluster'], resources: [this.cluster.clusterArn] });
  }

  /** eks:DescribeNodegroup on this cluster's nodegroups. */
  describeNodegroupsStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({ actions: ['eks:DescribeNodegroup'], resources: [this.nodegroupArnPattern] });
  }

  /** eks:UpdateNodegroupConfig on the GPU nodegroups only: deployments never resize the system nodes. */
  updateGpuNodegroupsStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({
      actions: ['eks:UpdateNodegroupConfig'],
      resources: this.gpuNodegroups.map(({ nodegroup }) => nodegroup.nodegroupArn),
    });
  }

  /** Findings on pieces whose shape AWS or aws-cdk-lib dictates. */
  private acknowledgeManagedPieces(nodeRole: iam.Role): void {
    for (const policy of ['AmazonEKSWorkerNodePolicy', 'AmazonEKS_CNI_Policy', 'AmazonEC2ContainerRegistryReadOnly']) {
      acknowledge(
        nodeRole,
        `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${policy}]`,
        `EKS managed nodes require the AWS managed ${policy}; AWS maintains it as the EKS node API evolves.`,
      );
    }
    acknowledge(
      this.cluster.role,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonEKSClusterPolicy]',
      'The EKS control plane role requires the AWS managed AmazonEKSClusterPolicy.',
    );
  }
}

function namespace(name: string, podSecurity: 'restricted' | 'baseline'): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name,
      labels: {
        'app.kubernetes.io/part-of': 'nvcf',
        'pod-security.kubernetes.io/enforce': podSecurity,
        'pod-security.kubernetes.io/warn': 'restricted',
      },
    },
  };
}
