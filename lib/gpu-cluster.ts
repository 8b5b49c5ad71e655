/**
 * The data plane: a VPC, an EKS cluster (aws-eks-v2) with a small system
 * nodegroup and one GPU nodegroup per configured GPU type and instance type,
 * the namespaces of the platform, and the add-ons it relies on (NVIDIA device
 * plugin, KEDA, Cluster Autoscaler).
 */
import { KubectlV35Layer } from '@aws-cdk/lambda-layer-kubectl-v35';
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as eks from 'aws-cdk-lib/aws-eks-v2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { K8S, NODEGROUP_MIN_NODES_TAG } from '../core/names';
import type { ResolvedConfig, ResolvedGpu } from './config';
import { acknowledge, acknowledgeWildcard, queueArnPattern, queueStatement } from './iam';
import { acknowledgeKubectlProvider } from './nag';
import { PodIdentityRole } from './pod-identity';

/** Label of the system nodegroup's nodes; platform pods select it, GPU nodes never carry it. */
export const SYSTEM_NODE_LABEL = { key: K8S.systemNodeLabel, value: K8S.systemNodeRole } as const;

/** Where KEDA runs; its operator's ServiceAccount is the chart's default name. */
export const KEDA = { namespace: 'keda', release: 'keda', operatorServiceAccount: 'keda-operator' } as const;

/**
 * Where the Cluster Autoscaler runs; its Deployment and ServiceAccount names are set, since the
 * chart's default (`<release>-aws-cluster-autoscaler`) would tie the Pod Identity to the release name.
 */
export const CLUSTER_AUTOSCALER = { namespace: 'kube-system', release: 'cluster-autoscaler', serviceAccount: 'cluster-autoscaler' } as const;

/**
 * Node label the Cluster Autoscaler's AWS provider reads as "has a GPU": with it, a new node
 * whose device plugin has not yet announced `nvidia.com/gpu` counts as coming up, not as a
 * node without GPUs, so one pending pod does not add a second node.
 */
export const AUTOSCALER_GPU_LABEL = 'k8s.amazonaws.com/accelerator';

/** What Cluster Autoscaler reads to build nodes and find this cluster's groups; none of it has resource-level permissions. */
const AUTOSCALER_READS = [
  'autoscaling:DescribeAutoScalingGroups',
  'autoscaling:DescribeAutoScalingInstances',
  'autoscaling:DescribeLaunchConfigurations',
  'autoscaling:DescribeScalingActivities',
  'autoscaling:DescribeTags',
  'ec2:DescribeImages',
  'ec2:DescribeInstanceTypes',
  'ec2:DescribeLaunchTemplateVersions',
  'ec2:GetInstanceTypesFromInstanceRequirements',
];

/** Root device of the AL2023 EKS AMIs, where the launch templates put the node's disk. */
const ROOT_DEVICE = '/dev/xvda';

export interface GpuClusterProps {
  readonly config: ResolvedConfig;
}

export class GpuCluster extends Construct {
  readonly vpc: ec2.Vpc;
  readonly cluster: eks.Cluster;
  readonly systemNodegroup: eks.Nodegroup;
  /** One nodegroup per GPU type and instance type, in the order of the configuration. */
  readonly gpuNodegroups: { gpu: ResolvedGpu; instanceType: string; nodegroup: eks.Nodegroup }[];
  /** The `nvcf-system` and `nvcf-functions` namespaces; platform objects depend on it. */
  readonly namespaces: eks.KubernetesManifest;
  /** Role of the KEDA operator (EKS Pod Identity), allowed to read queue depths. */
  readonly kedaRole: iam.Role;
  /** Role of the Cluster Autoscaler (EKS Pod Identity), allowed to resize this cluster's nodegroups. */
  readonly autoscalerRole: iam.Role;
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
      launchTemplateSpec: this.nodeLaunchTemplate('SystemNodesLaunchTemplate', 50),
      subnets: nodeSubnets,
      nodeRole,
      labels: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value },
    });

    // Nodegroup names are left to CloudFormation so that a change of instance types can replace
    // a nodegroup; the runtime finds GPU nodegroups by their `nvcf.io/gpu` label instead.
    this.gpuNodegroups = config.gpus.flatMap((gpu) => {
      const launchTemplateSpec = this.nodeLaunchTemplate(`Gpu${gpu.name}LaunchTemplate`, gpu.diskSizeGiB);
      return gpu.instanceTypes.map((instanceType, i) => {
        // The warm nodes are of the default instance type; the others start at zero.
        const minNodes = i === 0 ? gpu.minNodes : 0;
        const nodegroup = this.cluster.addNodegroupCapacity(`Gpu${gpu.name}-${instanceType}`, {
          instanceTypes: [new ec2.InstanceType(instanceType)],
          amiType: gpu.arch === 'arm64' ? eks.NodegroupAmiType.AL2023_ARM_64_NVIDIA : eks.NodegroupAmiType.AL2023_X86_64_NVIDIA,
          capacityType: gpu.capacityType === 'SPOT' ? eks.CapacityType.SPOT : eks.CapacityType.ON_DEMAND,
          minSize: minNodes,
          desiredSize: minNodes,
          maxSize: gpu.maxNodes,
          launchTemplateSpec,
          subnets: nodeSubnets,
          nodeRole,
          // The Cluster Autoscaler learns these labels and the taint from DescribeNodegroup while the group has no node.
          labels: { [K8S.gpuLabel]: gpu.name, [AUTOSCALER_GPU_LABEL]: gpu.name },
          taints: [{ key: K8S.gpuTaintKey, value: 'true', effect: eks.TaintEffect.NO_SCHEDULE }],
          // The deployments Lambda and the sweeper never size a nodegroup below the minimum configured here.
          tags: { [K8S.gpuLabel]: gpu.name, [NODEGROUP_MIN_NODES_TAG]: String(minNodes) },
        });
        return { gpu, instanceType, nodegroup };
      });
    });

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
    this.autoscalerRole = this.installClusterAutoscaler(config);
    this.acknowledgeManagedPieces(nodeRole);
  }

  /**
   * The launch template of a nodegroup: IMDSv2 only, with a hop limit of 1 so that pods (one
   * network hop further) cannot reach the node's instance role; every platform pod gets its AWS
   * identity from EKS Pod Identity, and host-network daemons (VPC CNI, Pod Identity agent) are
   * not a hop away. The root disk lives here because EKS refuses a nodegroup diskSize beside a
   * launch template.
   */
  private nodeLaunchTemplate(id: string, diskSizeGiB: number): eks.LaunchTemplateSpec {
    const template = new ec2.LaunchTemplate(this, id, {
      httpEndpoint: true,
      httpTokens: ec2.LaunchTemplateHttpTokens.REQUIRED,
      httpPutResponseHopLimit: 1,
      blockDevices: [
        { deviceName: ROOT_DEVICE, volume: ec2.BlockDeviceVolume.ebs(diskSizeGiB, { volumeType: ec2.EbsDeviceVolumeType.GP3, encrypted: true }) },
      ],
    });
    return { id: template.launchTemplateId!, version: template.latestVersionNumber };
  }

  /**
   * The Kubernetes Cluster Autoscaler: adds GPU nodes for pods KEDA created and no node can take
   * (from zero too), and removes nodes left idle. It discovers this cluster's managed nodegroups
   * by the tags EKS puts on their Auto Scaling groups, only moves their desired capacity between
   * the minimum and maximum the nodegroup sets (the deployments Lambda raises the minimum to what
   * deployed versions need), and learns an empty GPU nodegroup's labels and taint from
   * DescribeNodegroup and its GPU count from the instance type.
   */
  private installClusterAutoscaler(config: ResolvedConfig): iam.Role {
    const stack = Stack.of(this);
    const identity = new PodIdentityRole(this, 'ClusterAutoscalerIdentity', {
      cluster: this.cluster,
      namespace: CLUSTER_AUTOSCALER.namespace,
      serviceAccount: CLUSTER_AUTOSCALER.serviceAccount,
      description: 'Cluster Autoscaler: resizes the Auto Scaling groups of the managed nodegroups of this cluster',
      createServiceAccount: false,
    });
    const { role } = identity;
    role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'DescribeCapacity', actions: AUTOSCALER_READS, resources: ['*'] }));
    role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'DescribeNodegroups', actions: ['eks:DescribeNodegroup'], resources: [this.nodegroupArnPattern] }));
    const autoScalingGroups = stack.formatArn({
      service: 'autoscaling',
      resource: 'autoScalingGroup',
      resourceName: '*:autoScalingGroupName/*',
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ResizeThisClustersGroups',
        actions: ['autoscaling:SetDesiredCapacity', 'autoscaling:TerminateInstanceInAutoScalingGroup'],
        resources: [autoScalingGroups],
        // EKS tags the Auto Scaling group of every managed nodegroup with its cluster's name.
        conditions: { StringEquals: { 'aws:ResourceTag/eks:cluster-name': this.cluster.clusterName } },
      }),
    );
    acknowledge(
      identity.policy,
      'AwsSolutions-IAM5[Resource::*]',
      'The Auto Scaling and EC2 Describe* calls and GetInstanceTypesFromInstanceRequirements the Cluster Autoscaler needs support no resource-level permissions.',
    );
    acknowledgeWildcard(
      identity.policy,
      autoScalingGroups,
      'EKS names the Auto Scaling groups of managed nodegroups at run time; resizing is limited by condition to groups tagged eks:cluster-name with this cluster.',
    );
    acknowledgeWildcard(
      identity.policy,
      this.nodegroupArnPattern,
      'Nodegroups of this cluster only; DescribeNodegroup needs nodegroup ARNs, whose name and id suffix EKS generates.',
    );

    const chart = this.cluster.addHelmChart('ClusterAutoscaler', {
      chart: 'cluster-autoscaler',
      repository: 'https://kubernetes.github.io/autoscaler',
      version: config.chartVersions.clusterAutoscaler,
      release: CLUSTER_AUTOSCALER.release,
      namespace: CLUSTER_AUTOSCALER.namespace,
      values: {
        fullnameOverride: CLUSTER_AUTOSCALER.release,
        cloudProvider: 'aws',
        awsRegion: stack.region,
        autoDiscovery: { clusterName: this.cluster.clusterName },
        rbac: { serviceAccount: { name: CLUSTER_AUTOSCALER.serviceAccount } },
        nodeSelector: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value },
        resources: { requests: { cpu: '100m', memory: '300Mi' }, limits: { memory: '600Mi' } },
        extraArgs: {
          // Each GPU type and instance type has a nodegroup of its own, so a pending pod fits one
          // group and the expander rarely chooses; when it does, the group wasting least wins.
          expander: 'least-waste',
          // No two groups are alike (each has its own GPU label or instance type): nothing to balance.
          'balance-similar-node-groups': false,
          // Platform and function pods keep only scratch data in emptyDir volumes (the worker hands
          // its jobs back on SIGTERM); that must not keep an underused node from being removed.
          'skip-nodes-with-local-storage': false,
        },
      },
      wait: true,
    });
    // Like KEDA: its AWS calls fail until restarted if it starts before its Pod Identity.
    chart.node.addDependency(identity.association, this.systemNodegroup);
    return role;
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
