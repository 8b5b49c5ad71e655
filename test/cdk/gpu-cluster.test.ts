/**
 * The data plane: VPC, EKS cluster (aws-eks-v2), nodegroups, add-ons, the
 * gpu-agent's Kubernetes objects and AWS identities, and the Lambda grants
 * that reach into the cluster. The default configuration is synthesized once;
 * a second synth covers a private, multi-GPU, Graviton and KMS variant.
 */
import type { Template } from 'aws-cdk-lib/assertions';
import { ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV as ENV_NAMES, K8S, NODEGROUP_MIN_NODES_TAG } from '../../core/names';
import { LAMBDA_NAMES, PROJECT_ROOT, type LambdaName } from '../../lib/api-functions';
import { AGENT_BUILD_CONTEXT_EXCLUDES, CONTROLLER_ADMISSION_POLICY, HELM_FUNCTION_ROLE } from '../../lib/gpu-agent';
import { actionsOf, find, grantsOf, kubernetesObjects, logicalId, roleStatements, synthesize, withStack, type Statement, type Synthesized } from './support';

let synth: Synthesized;
let variant: Synthesized;
beforeAll(() => {
  synth = synthesize();
  variant = synthesize({
    endpointAccess: 'private',
    clusterAdminRoleArns: ['arn:aws:iam::123456789012:role/PlatformAdmin'],
    queueEncryption: 'kms',
    gpus: [
      { name: 'T4G', instanceTypes: ['g5g.xlarge'], capacityType: 'SPOT', maxNodes: 1 },
      { name: 'L40S', instanceTypes: ['g6e.xlarge', 'g6e.2xlarge'], minNodes: 1, maxNodes: 4, diskSizeGiB: 500 },
    ],
  });
});
afterAll(() => {
  synth?.dispose();
  variant?.dispose();
});

const resources = (template: Template, type: string) => Object.values(template.findResources(type));

describe('network', () => {
  it('spreads a VPC over two availability zones with private node subnets behind NAT', () => {
    const subnets = resources(synth.template, 'AWS::EC2::Subnet');
    expect(new Set(subnets.map((s) => s.Properties.AvailabilityZone)).size).toBe(2);
    expect(subnets.filter((s) => s.Properties.MapPublicIpOnLaunch === false)).toHaveLength(2);
    synth.template.resourceCountIs('AWS::EC2::NatGateway', 1);
    synth.template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT', LogDestinationType: 'cloud-watch-logs' });
  });
});

describe('cluster', () => {
  const cluster = (template: Template) => resources(template, 'AWS::EKS::Cluster')[0]!.Properties;

  // cdk-nag's EKS1/EKS2 rules do not inspect aws-eks-v2 clusters; these assertions stand in for them.
  it('logs every control-plane log type', () => {
    expect(cluster(synth.template).Logging.ClusterLogging.EnabledTypes.map((t: { Type: string }) => t.Type).sort()).toEqual(
      ['api', 'audit', 'authenticator', 'controllerManager', 'scheduler'].sort(),
    );
  });

  it('serves the Kubernetes API publicly and privately by default', () => {
    expect(cluster(synth.template).ResourcesVpcConfig).toMatchObject({ EndpointPublicAccess: true, EndpointPrivateAccess: true, PublicAccessCidrs: ['0.0.0.0/0'] });
  });

  it('keeps the Kubernetes API inside the VPC when endpointAccess is private, with kubectl running in the VPC', () => {
    expect(cluster(variant.template).ResourcesVpcConfig).toMatchObject({ EndpointPublicAccess: false, EndpointPrivateAccess: true });
    const kubectlHandler = resources(variant.template, 'AWS::Lambda::Function').find((f) => f.Properties.Description === 'onEvent handler for EKS kubectl resource provider')!;
    expect(kubectlHandler.Properties.VpcConfig.SubnetIds).toHaveLength(2);
  });

  it('runs Kubernetes 1.35 with access entries (API authentication) and without Auto Mode', () => {
    expect(cluster(synth.template)).toMatchObject({ Version: '1.35', AccessConfig: { AuthenticationMode: 'API' }, ComputeConfig: { Enabled: false } });
  });

  it('installs kubectl from the v35 layer for manifests and charts', () => {
    const kubectlHandler = resources(synth.template, 'AWS::Lambda::Function').find((f) => f.Properties.Description === 'onEvent handler for EKS kubectl resource provider')!;
    const layers = resources(synth.template, 'AWS::Lambda::LayerVersion').map((l) => l.Properties.Description ?? '');
    expect(layers.some((d) => /kubectl/i.test(d))).toBe(true);
    expect(kubectlHandler.Properties.Layers).toHaveLength(2);
  });

  it('grants cluster-admin to the configured roles', () => {
    variant.template.hasResourceProperties('AWS::EKS::AccessEntry', {
      PrincipalArn: 'arn:aws:iam::123456789012:role/PlatformAdmin',
      AccessPolicies: [
        { AccessScope: { Type: 'cluster' }, PolicyArn: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy']] } },
      ],
    });
  });
});

describe('nodegroups', () => {
  const nodegroups = (template: Template) => resources(template, 'AWS::EKS::Nodegroup').map((n) => n.Properties);
  const gpuNodegroup = (template: Template, gpu: string, instanceType?: string) =>
    nodegroups(template).find((n) => n.Labels?.[K8S.gpuLabel] === gpu && (!instanceType || n.InstanceTypes[0] === instanceType))!;
  const launchTemplateOf = (template: Template, nodegroup: Record<string, any>) => template.toJSON().Resources[nodegroup.LaunchTemplate.Id.Ref].Properties.LaunchTemplateData;

  it('creates a small system nodegroup and one nodegroup per GPU type and instance type', () => {
    expect(nodegroups(synth.template)).toHaveLength(2);
    expect(nodegroups(variant.template)).toHaveLength(4);
    expect(nodegroups(variant.template).map((n) => n.InstanceTypes)).toEqual(expect.arrayContaining([['g5g.xlarge'], ['g6e.xlarge'], ['g6e.2xlarge']]));
    expect(nodegroups(synth.template).find((n) => n.Labels['nvcf.io/node-role'] === 'system')).toMatchObject({
      AmiType: 'AL2023_x86_64_STANDARD',
      InstanceTypes: ['t3.large'],
      ScalingConfig: { MinSize: 2, DesiredSize: 2, MaxSize: 3 },
    });
  });

  it('labels, taints and sizes a GPU nodegroup from its nvcf:gpus entry, on the NVIDIA AMI', () => {
    expect(gpuNodegroup(synth.template, 'L4')).toMatchObject({
      AmiType: 'AL2023_x86_64_NVIDIA',
      InstanceTypes: ['g6.xlarge'],
      CapacityType: 'ON_DEMAND',
      ScalingConfig: { MinSize: 0, DesiredSize: 0, MaxSize: 2 },
      Labels: { 'nvcf.io/gpu': 'L4', 'k8s.amazonaws.com/accelerator': 'L4' },
      Taints: [{ Key: 'nvidia.com/gpu', Value: 'true', Effect: 'NO_SCHEDULE' }],
    });
  });

  it('keeps the warm nodes (minNodes) on the default instance type and bounds every instance type by maxNodes', () => {
    expect(gpuNodegroup(variant.template, 'L40S', 'g6e.xlarge').ScalingConfig).toEqual({ MinSize: 1, DesiredSize: 1, MaxSize: 4 });
    expect(gpuNodegroup(variant.template, 'L40S', 'g6e.2xlarge').ScalingConfig).toEqual({ MinSize: 0, DesiredSize: 0, MaxSize: 4 });
  });

  it('tags each GPU nodegroup with its configured minimum, below which the runtime never sizes it', () => {
    expect(gpuNodegroup(variant.template, 'L40S', 'g6e.xlarge').Tags).toEqual({ 'nvcf.io/gpu': 'L40S', [NODEGROUP_MIN_NODES_TAG]: '1' });
    expect(gpuNodegroup(variant.template, 'L40S', 'g6e.2xlarge').Tags).toEqual({ 'nvcf.io/gpu': 'L40S', [NODEGROUP_MIN_NODES_TAG]: '0' });
  });

  it('uses the ARM NVIDIA AMI for Graviton GPU instances and honours SPOT', () => {
    expect(gpuNodegroup(variant.template, 'T4G')).toMatchObject({ AmiType: 'AL2023_ARM_64_NVIDIA', CapacityType: 'SPOT' });
  });

  it('keeps nodes in the private subnets', () => {
    const privateSubnets = resources(synth.template, 'AWS::EC2::Subnet').filter((s) => s.Properties.MapPublicIpOnLaunch === false);
    const privateIds = Object.entries(synth.template.findResources('AWS::EC2::Subnet'))
      .filter(([, s]) => privateSubnets.includes(s))
      .map(([id]) => ({ Ref: id }));
    for (const nodegroup of nodegroups(synth.template)) expect(nodegroup.Subnets).toEqual(privateIds);
  });

  it('launches every node with IMDSv2 only and a hop limit of 1, so that pods cannot reach the node role', () => {
    for (const template of [synth.template, variant.template]) {
      for (const nodegroup of nodegroups(template)) {
        expect(launchTemplateOf(template, nodegroup).MetadataOptions).toEqual({ HttpEndpoint: 'enabled', HttpTokens: 'required', HttpPutResponseHopLimit: 1 });
        expect(nodegroup.LaunchTemplate.Version).toEqual({ 'Fn::GetAtt': [nodegroup.LaunchTemplate.Id.Ref, 'LatestVersionNumber'] });
      }
    }
  });

  it('sizes the encrypted gp3 root disk (/dev/xvda) in the launch template: diskSizeGiB for GPU nodes, 50 GiB for system nodes', () => {
    const rootDisk = (template: Template, nodegroup: Record<string, any>) => launchTemplateOf(template, nodegroup).BlockDeviceMappings;
    const disk = (size: number) => [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: size, VolumeType: 'gp3', Encrypted: true } }];
    expect(rootDisk(synth.template, gpuNodegroup(synth.template, 'L4'))).toEqual(disk(200));
    expect(rootDisk(variant.template, gpuNodegroup(variant.template, 'L40S', 'g6e.2xlarge'))).toEqual(disk(500));
    expect(rootDisk(synth.template, nodegroups(synth.template).find((n) => n.Labels['nvcf.io/node-role'] === 'system')!)).toEqual(disk(50));
    for (const nodegroup of [...nodegroups(synth.template), ...nodegroups(variant.template)]) expect(nodegroup.DiskSize).toBeUndefined();
  });
});

describe('add-ons', () => {
  const chart = (template: Template, name: string) => resources(template, 'Custom::AWSCDK-EKS-HelmChart').find((c) => c.Properties.Chart === name)!.Properties;

  it('installs the NVIDIA device plugin at a pinned version, on GPU nodes despite their taint', () => {
    const plugin = chart(synth.template, 'nvidia-device-plugin');
    expect(plugin).toMatchObject({ Version: '0.18.2', Repository: 'https://nvidia.github.io/k8s-device-plugin', Namespace: 'kube-system' });
    const values = JSON.parse(plugin.Values);
    expect(values.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    expect(values.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms).toEqual([
      { matchExpressions: [{ key: 'nvcf.io/gpu', operator: 'Exists' }] },
    ]);
  });

  it('installs KEDA at a pinned version on the system nodes, after its Pod Identity exists', () => {
    expect(chart(synth.template, 'keda')).toMatchObject({ Version: '2.21.1', Repository: 'https://kedacore.github.io/charts', Namespace: 'keda', CreateNamespace: true });
    const kedaChart = Object.values(synth.template.findResources('Custom::AWSCDK-EKS-HelmChart')).find((c) => c.Properties.Chart === 'keda')!;
    const association = Object.entries(synth.template.findResources('AWS::EKS::PodIdentityAssociation')).find(([, a]) => a.Properties.Namespace === 'keda')![0];
    expect(kedaChart.DependsOn).toContain(association);
    expect(JSON.parse(kedaChart.Properties.Values)).toEqual({ nodeSelector: { 'nvcf.io/node-role': 'system' } });
  });

  it('installs the Cluster Autoscaler at a pinned version for Kubernetes 1.35, on the system nodes, after its Pod Identity exists', () => {
    expect(chart(synth.template, 'cluster-autoscaler')).toMatchObject({
      Version: '9.56.0',
      Repository: 'https://kubernetes.github.io/autoscaler',
      Namespace: 'kube-system',
      Release: 'cluster-autoscaler',
      Wait: true,
    });
    const autoscalerChart = Object.values(synth.template.findResources('Custom::AWSCDK-EKS-HelmChart')).find((c) => c.Properties.Chart === 'cluster-autoscaler')!;
    const association = Object.entries(synth.template.findResources('AWS::EKS::PodIdentityAssociation')).find(([, a]) => a.Properties.ServiceAccount === 'cluster-autoscaler')!;
    expect(association[1].Properties.Namespace).toBe('kube-system');
    expect(autoscalerChart.DependsOn).toContain(association[0]);
  });

  it('runs the Cluster Autoscaler in auto-discovery mode for this cluster, in its region, under the ServiceAccount its Pod Identity names', () => {
    const values = chart(synth.template, 'cluster-autoscaler').Values as { 'Fn::Join': [string, unknown[]] };
    const text = values['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : JSON.stringify(part))).join('');
    expect(text).toContain(`"autoDiscovery":{"clusterName":"${JSON.stringify({ Ref: logicalId(synth.stack.gpuCluster!.cluster) })}"}`);
    expect(text).toContain('"awsRegion":"us-east-1"');
    expect(text).toContain('"cloudProvider":"aws"');
    expect(text).toContain('"rbac":{"serviceAccount":{"name":"cluster-autoscaler"}}');
    expect(text).toContain('"fullnameOverride":"cluster-autoscaler"');
    expect(text).toContain('"nodeSelector":{"nvcf.io/node-role":"system"}');
  });

  it('lets the Cluster Autoscaler pick the least wasteful group, never balance unlike groups, and remove idle nodes despite emptyDir scratch', () => {
    const values = chart(synth.template, 'cluster-autoscaler').Values as { 'Fn::Join': [string, unknown[]] };
    const text = values['Fn::Join'][1].filter((part) => typeof part === 'string').join('');
    expect(text).toContain('"extraArgs":{"expander":"least-waste","balance-similar-node-groups":false,"skip-nodes-with-local-storage":false}');
  });

  it('picks the Cluster Autoscaler chart of the cluster’s Kubernetes minor', () => {
    withStack({ kubernetesVersion: '1.34' }, ({ template }) => expect(chart(template, 'cluster-autoscaler').Version).toBe('9.53.0'));
  });

  it('lets the Cluster Autoscaler describe capacity, read this cluster’s nodegroups, and resize only Auto Scaling groups tagged with this cluster', () => {
    const st = roleStatements(synth.template, logicalId(synth.stack.gpuCluster!.autoscalerRole));
    const clusterRef = { Ref: logicalId(synth.stack.gpuCluster!.cluster) };
    expect(st).toEqual([
      {
        Sid: 'DescribeCapacity',
        Effect: 'Allow',
        Action: [
          'autoscaling:DescribeAutoScalingGroups',
          'autoscaling:DescribeAutoScalingInstances',
          'autoscaling:DescribeLaunchConfigurations',
          'autoscaling:DescribeScalingActivities',
          'autoscaling:DescribeTags',
          'ec2:DescribeImages',
          'ec2:DescribeInstanceTypes',
          'ec2:DescribeLaunchTemplateVersions',
          'ec2:GetInstanceTypesFromInstanceRequirements',
        ],
        Resource: '*',
      },
      {
        Sid: 'DescribeNodegroups',
        Effect: 'Allow',
        Action: 'eks:DescribeNodegroup',
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':eks:us-east-1:123456789012:nodegroup/', clusterRef, '/*']] },
      },
      {
        Sid: 'ResizeThisClustersGroups',
        Effect: 'Allow',
        Action: ['autoscaling:SetDesiredCapacity', 'autoscaling:TerminateInstanceInAutoScalingGroup'],
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/*']] },
        Condition: { StringEquals: { 'aws:ResourceTag/eks:cluster-name': clusterRef } },
      },
    ]);
  });

  it('lets the KEDA operator read queue depths and nothing else', () => {
    const kedaRole = logicalId(synth.stack.gpuCluster!.kedaRole);
    expect(roleStatements(synth.template, kedaRole)).toEqual([
      { Sid: 'VersionQueues', Effect: 'Allow', Action: 'sqs:GetQueueAttributes', Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':sqs:us-east-1:123456789012:nvcf-*']] } },
    ]);
  });
});

describe('Kubernetes objects', () => {
  const validate = (object: Record<string, any>) => {
    const models: Record<string, new (data: any) => { validate(): void }> = {
      Namespace,
      ServiceAccount,
      Deployment,
      Role,
      RoleBinding,
      ClusterRole,
      ClusterRoleBinding,
      ValidatingAdmissionPolicy,
      ValidatingAdmissionPolicyBinding,
      Service,
      PodDisruptionBudget,
      HorizontalPodAutoscaler,
      NetworkPolicy,
    };
    const Model = models[object.kind];
    expect(Model, `no model for ${object.kind}`).toBeDefined();
    new Model!(object).validate();
  };

  it('produces only objects that validate against the Kubernetes schemas', () => {
    const objects = kubernetesObjects(synth.template);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        'Namespace/nvcf-system',
        'Namespace/nvcf-functions',
        'ServiceAccount/nvcf-gpu-agent',
        'ServiceAccount/nvcf-worker',
        'Role/nvcf-gpu-agent-controller',
        'RoleBinding/nvcf-gpu-agent-controller',
        'ClusterRole/nvcf-gpu-agent-controller',
        'ClusterRoleBinding/nvcf-gpu-agent-controller',
        `ClusterRole/${HELM_FUNCTION_ROLE}`,
        `ValidatingAdmissionPolicy/${CONTROLLER_ADMISSION_POLICY}`,
        `ValidatingAdmissionPolicyBinding/${CONTROLLER_ADMISSION_POLICY}`,
        'Deployment/nvcf-gpu-agent-controller',
        'ServiceAccount/nvcf-invocation',
        'Deployment/nvcf-invocation',
        'Service/nvcf-invocation',
        'PodDisruptionBudget/nvcf-invocation',
        'HorizontalPodAutoscaler/nvcf-invocation',
        'NetworkPolicy/nvcf-invocation',
        'TargetGroupBinding/nvcf-invocation',
      ].sort(),
    );
    // TargetGroupBinding is the AWS Load Balancer Controller's CRD, which kubernetes-models does not know.
    for (const object of objects.filter((o) => o.kind !== 'TargetGroupBinding')) validate(object);
  });

  it('creates the nvcf-system and nvcf-functions namespaces with pod security levels', () => {
    expect(find(synth.template, 'Namespace', K8S.systemNamespace).metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    expect(find(synth.template, 'Namespace', K8S.functionsNamespace).metadata.labels['pod-security.kubernetes.io/enforce']).toBe('baseline');
  });

  it('binds ServiceAccounts through Pod Identity only, without the IRSA annotation the SDK would prefer', () => {
    for (const [name, namespace] of [
      [K8S.controllerServiceAccount, K8S.systemNamespace],
      [K8S.workerServiceAccount, K8S.functionsNamespace],
      [K8S.invocationServiceName, K8S.systemNamespace],
    ]) {
      const account = find(synth.template, 'ServiceAccount', name!);
      expect(account.metadata.namespace).toBe(namespace);
      expect(account.metadata.annotations?.['eks.amazonaws.com/role-arn']).toBeUndefined();
    }
    const associations = resources(synth.template, 'AWS::EKS::PodIdentityAssociation').map((a) => `${a.Properties.Namespace}/${a.Properties.ServiceAccount}`);
    expect(associations.sort()).toEqual([
      'keda/keda-operator',
      'kube-system/aws-load-balancer-controller',
      'kube-system/cluster-autoscaler',
      'kube-system/nvcf-log-agent',
      'nvcf-functions/nvcf-worker',
      'nvcf-system/nvcf-gpu-agent',
      'nvcf-system/nvcf-invocation',
    ]);
    synth.template.hasResourceProperties('AWS::EKS::Addon', { AddonName: 'eks-pod-identity-agent' });
  });

  it('trusts only EKS Pod Identity in the agent, worker, KEDA and Cluster Autoscaler roles', () => {
    const roles = [synth.stack.agent!.controllerIdentity.role, synth.stack.agent!.workerIdentity.role, synth.stack.gpuCluster!.kedaRole, synth.stack.gpuCluster!.autoscalerRole];
    for (const role of roles) {
      expect(synth.template.toJSON().Resources[logicalId(role)].Properties.AssumeRolePolicyDocument.Statement).toEqual([
        { Effect: 'Allow', Principal: { Service: 'pods.eks.amazonaws.com' }, Action: ['sts:AssumeRole', 'sts:TagSession'] },
      ]);
    }
  });

  it('runs one non-root, read-only controller on the system nodes with the platform environment', () => {
    const deployment = find(synth.template, 'Deployment', K8S.controllerName);
    expect(deployment.metadata.namespace).toBe(K8S.systemNamespace);
    expect(deployment.spec).toMatchObject({ replicas: 1, strategy: { type: 'Recreate' } });
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe(K8S.controllerServiceAccount);
    expect(pod.nodeSelector).toEqual({ 'nvcf.io/node-role': 'system', 'kubernetes.io/arch': 'amd64' });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
    const [container] = pod.containers;
    expect(container.args).toEqual(['controller']);
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));
    for (const name of [ENV_NAMES.functionsTable, ENV_NAMES.instancesTable, ENV_NAMES.invocationsTable, ENV_NAMES.assetsTable, ENV_NAMES.apiKeysTable, ENV_NAMES.bucket, ENV_NAMES.clusterName, ENV_NAMES.agentImages]) {
      expect(env[name], name).toBeDefined();
    }
    expect(env).toMatchObject({ [ENV_NAMES.queuePrefix]: 'nvcf-', [ENV_NAMES.queueKmsKeyId]: '', AWS_REGION: 'us-east-1', POWERTOOLS_SERVICE_NAME: 'nvcf' });
  });

  it('points the controller’s HOME at its writable /tmp, where helm and client-go keep their caches', () => {
    const [container] = find(synth.template, 'Deployment', K8S.controllerName).spec.template.spec.containers;
    expect(container.env).toContainEqual({ name: 'HOME', value: '/tmp' });
    expect(container.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
  });

  it('tells the controller the Triton image model-only functions run on: nvcf:tritonImage, by default tritonserver 25.01', () => {
    const tritonImage = (template: Template) => find(template, 'Deployment', K8S.controllerName).spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === ENV_NAMES.tritonImage)?.value;
    expect(tritonImage(synth.template)).toBe('nvcr.io/nvidia/tritonserver:25.01-py3');
    withStack({ tritonImage: 'registry.example.com/triton@sha256:' + 'a'.repeat(64) }, ({ template }) => expect(tritonImage(template)).toBe(`registry.example.com/triton@sha256:${'a'.repeat(64)}`));
  });

  it('applies the admission policy before the controller starts', () => {
    const manifests = synth.template.findResources('Custom::AWSCDK-EKS-KubernetesResource');
    const idOf = (kind: string) => Object.entries(manifests).find(([, r]) => JSON.stringify(r.Properties.Manifest).includes(`"kind\\":\\"${kind}`))![0];
    expect(manifests[idOf('Deployment')]!.DependsOn).toContain(idOf('ValidatingAdmissionPolicy'));
  });

  it('runs the controller from the gpu-agent image asset, built from gpu-agent/Dockerfile at deploy time', () => {
    const manifest = resources(synth.template, 'Custom::AWSCDK-EKS-KubernetesResource').find((r) => JSON.stringify(r.Properties.Manifest).includes('"kind\\":\\"Deployment'))!;
    expect(JSON.stringify(manifest.Properties.Manifest)).toContain('cdk-hnb659fds-container-assets-123456789012-us-east-1');
    const assets = JSON.parse(readFileSync(join(synth.outdir, 'Nvcf.assets.json'), 'utf8'));
    const images = Object.values<{ source: { directory: string; dockerFile: string; platform: string } }>(assets.dockerImages);
    expect(images.map((i) => i.source)).toEqual([expect.objectContaining({ dockerFile: 'gpu-agent/Dockerfile', platform: 'linux/amd64' })]);
  });

  it('sends the image build every file the Dockerfile copies, and nothing else', () => {
    const dockerfile = readFileSync(join(PROJECT_ROOT, 'gpu-agent', 'Dockerfile'), 'utf8');
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    expect(copied.sort()).toEqual(['core', 'gpu-agent', 'invocation', 'package-lock.json', 'package.json', 'tsconfig.json']);
    expect([...AGENT_BUILD_CONTEXT_EXCLUDES].sort()).toEqual(['*', ...copied.map((path) => `!${path}`)].sort());
  });

  it('builds an arm64 image too when a GPU type runs on Graviton, and tells the controller both', () => {
    const assets = JSON.parse(readFileSync(join(variant.outdir, 'Nvcf.assets.json'), 'utf8'));
    expect(Object.values<{ source: { platform: string } }>(assets.dockerImages).map((i) => i.source.platform).sort()).toEqual(['linux/amd64', 'linux/arm64']);
    const env = find(variant.template, 'Deployment', K8S.controllerName).spec.template.spec.containers[0].env;
    expect(Object.keys(JSON.parse(env.find((e: { name: string }) => e.name === ENV_NAMES.agentImages).value)).sort()).toEqual(['amd64', 'arm64']);
  });
});

describe('agent and worker permissions', () => {
  const statements = (which: 'controllerIdentity' | 'workerIdentity', s: Synthesized = synth): Statement[] =>
    roleStatements(s.template, logicalId(s.stack.agent![which].role));
  const tableArn = (table: 'functions' | 'instances' | 'invocations' | 'assets' | 'apiKeys' | 'registryCredentials') => JSON.stringify({ 'Fn::GetAtt': [logicalId(synth.stack.data.tables[table]), 'Arn'] });
  const objectPrefixes = (st: Statement[], action: string) =>
    grantsOf(st, action)
      .flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]))
      .map((r) => (r as { 'Fn::Join': [string, [unknown, string]] })['Fn::Join'][1][1])
      .sort();

  it('lets the controller read Functions and change version statuses, and nothing else', () => {
    // Besides opening functions' secrets for Helm charts and registry credentials for pull Secrets (test/cdk/secrets.test.ts).
    const st = statements('controllerIdentity').filter((s) => s.Sid !== 'OpenFunctionSecrets' && s.Sid !== 'OpenRegistryCredentials' && !JSON.stringify(s.Resource).includes(tableArn('registryCredentials')));
    expect(actionsOf(st)).toEqual(
      ['dynamodb:BatchGetItem', 'dynamodb:ConditionCheckItem', 'dynamodb:DescribeTable', 'dynamodb:GetItem', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:UpdateItem'].sort(),
    );
    for (const statement of st) expect(JSON.stringify(statement.Resource)).toContain(tableArn('functions'));
    // The one key it may decrypt with is the secrets key (test/cdk/secrets.test.ts), never the queues'.
    const decrypts = grantsOf(roleStatements(variant.template, logicalId(variant.stack.agent!.controllerIdentity.role)), 'kms:Decrypt');
    expect(decrypts.map((s) => s.Sid)).toEqual(['OpenFunctionSecrets', 'OpenRegistryCredentials']);
  });

  it('lets the worker flip its version ACTIVE or ERROR, but never create or delete versions', () => {
    const st = statements('workerIdentity');
    const on = (table: Parameters<typeof tableArn>[0]) => actionsOf(st.filter((s) => JSON.stringify(s.Resource).includes(tableArn(table))));
    expect(on('functions')).toEqual(expect.arrayContaining(['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem']));
    expect(on('functions').filter((a) => ['dynamodb:PutItem', 'dynamodb:DeleteItem'].includes(a))).toEqual([]);
  });

  it('gives the worker read/write on Instances and Invocations, and nothing on Assets or ApiKeys', () => {
    const st = statements('workerIdentity');
    const on = (table: Parameters<typeof tableArn>[0]) => actionsOf(st.filter((s) => JSON.stringify(s.Resource).includes(tableArn(table))));
    for (const table of ['instances', 'invocations'] as const) expect(on(table)).toEqual(expect.arrayContaining(['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:GetItem']));
    expect(on('assets')).toEqual([]);
    expect(on('apiKeys')).toEqual([]);
  });

  it('lets the worker consume the version queues and re-send a job it hands back, but never create or delete them', () => {
    expect(actionsOf(statements('workerIdentity')).filter((a) => a.startsWith('sqs:'))).toEqual(
      ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage', 'sqs:SendMessage'],
    );
  });

  it('lets the worker (and fetch-artifacts) read assets/, inputs/ and models/, write outputs/, and delete only inputs/ and outputs/', () => {
    expect(objectPrefixes(statements('workerIdentity'), 's3:GetObject')).toEqual(['/assets/*', '/inputs/*', '/models/*']);
    expect(objectPrefixes(statements('workerIdentity'), 's3:DeleteObject')).toEqual(['/inputs/*', '/outputs/*']);
    expect(objectPrefixes(statements('workerIdentity'), 's3:PutObject')).toEqual(['/outputs/*']);
  });

  it('lets the worker list only assets/ keys, so that a missing asset reads as 404 rather than 403', () => {
    expect(grantsOf(statements('workerIdentity'), 's3:ListBucket')).toEqual([
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: { 'Fn::GetAtt': [logicalId(synth.stack.data.bucket), 'Arn'] },
        Condition: { StringLike: { 's3:prefix': ['assets/*'] } },
      },
    ]);
  });

  it('lets the worker publish metrics to the NVCF namespace only', () => {
    expect(grantsOf(statements('workerIdentity'), 'cloudwatch:PutMetricData')).toEqual([
      expect.objectContaining({ Resource: '*', Condition: { StringEquals: { 'cloudwatch:namespace': 'NVCF' } } }),
    ]);
  });

  it('lets the worker read and re-send messages of KMS-encrypted queues', () => {
    const keyArn = JSON.stringify({ 'Fn::GetAtt': [logicalId(variant.stack.data.queueKey!), 'Arn'] });
    for (const action of ['kms:Decrypt', 'kms:GenerateDataKey']) {
      const queueGrants = grantsOf(statements('workerIdentity', variant), action).filter((s) => s.Sid !== 'OpenFunctionSecrets' && s.Sid !== 'OpenRegistryCredentials');
      expect(queueGrants.map((s) => JSON.stringify(s.Resource))).toEqual([keyArn]);
    }
  });
});

describe('controller RBAC', () => {
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
  const grants = (rules: Rule[]) =>
    rules.flatMap((rule) => rule.apiGroups.flatMap((group) => rule.resources.map((resource) => `${group || 'core'}/${resource}:${[...rule.verbs].sort().join(',')}`))).sort();
  const WRITE = 'create,delete,get,list,patch,update,watch';
  const READ = 'get,list,watch';

  it('lets the controller manage container functions’ objects in nvcf-functions (their image pull Secrets too) and read their pods', () => {
    const role = find(synth.template, 'Role', K8S.controllerName);
    expect(role.metadata.namespace).toBe(K8S.functionsNamespace);
    expect(grants(role.rules)).toEqual([`apps/deployments:${WRITE}`, `core/pods:${READ}`, `core/secrets:${WRITE}`, `keda.sh/scaledobjects:${WRITE}`, `keda.sh/triggerauthentications:${WRITE}`].sort());
  });

  it('lets the controller manage namespaces, bind itself to the Helm function role, and read pods anywhere, and nothing else cluster-wide', () => {
    const clusterRole = find(synth.template, 'ClusterRole', K8S.controllerName);
    expect(grants(clusterRole.rules)).toEqual(
      [`core/namespaces:${WRITE}`, 'rbac.authorization.k8s.io/rolebindings:create,patch', 'rbac.authorization.k8s.io/clusterroles:bind', `core/pods:${READ}`].sort(),
    );
    expect(clusterRole.rules.find((rule: Rule) => rule.resources.includes('clusterroles')).resourceNames).toEqual([HELM_FUNCTION_ROLE]);
    expect(JSON.stringify(clusterRole.rules)).not.toMatch(/secrets|escalate|impersonate|\*/);
  });

  it('keeps the kinds a Helm chart may hold, Secrets included, in a role the controller binds only inside the chart’s namespace', () => {
    const helmRole = find(synth.template, 'ClusterRole', HELM_FUNCTION_ROLE);
    expect(grants(helmRole.rules)).toEqual(
      [
        `apps/deployments:${WRITE}`,
        `core/services:${WRITE}`,
        `core/serviceaccounts:${WRITE}`,
        `core/configmaps:${WRITE}`,
        `core/secrets:${WRITE}`,
        `rbac.authorization.k8s.io/roles:${WRITE}`,
        `rbac.authorization.k8s.io/rolebindings:${WRITE}`,
      ].sort(),
    );
    expect(JSON.stringify(helmRole.rules)).not.toMatch(/escalate|bind"|impersonate|\*/);
    const bindings = kubernetesObjects(synth.template).filter((o) => /Binding$/.test(o.kind) && o.roleRef?.name === HELM_FUNCTION_ROLE);
    expect(bindings).toEqual([]);
  });

  it('binds both to the controller’s ServiceAccount only', () => {
    for (const kind of ['RoleBinding', 'ClusterRoleBinding']) {
      expect(find(synth.template, kind, K8S.controllerName).subjects).toEqual([{ kind: 'ServiceAccount', name: K8S.controllerServiceAccount, namespace: K8S.systemNamespace }]);
    }
  });

  describe('admission policy', () => {
    const policy = () => find(synth.template, 'ValidatingAdmissionPolicy', CONTROLLER_ADMISSION_POLICY).spec;

    it('applies to every write of the controller’s ServiceAccount, helm’s included, and to nobody else', () => {
      expect(policy().matchConstraints.resourceRules).toEqual([{ apiGroups: ['*'], apiVersions: ['*'], operations: ['*'], resources: ['*/*'] }]);
      expect(policy().matchConditions).toEqual([
        { name: 'is-controller', expression: `request.userInfo.username == 'system:serviceaccount:${K8S.systemNamespace}:${K8S.controllerServiceAccount}'` },
      ]);
    });

    it('fails closed and denies what it does not validate', () => {
      expect(policy().failurePolicy).toBe('Fail');
      expect(find(synth.template, 'ValidatingAdmissionPolicyBinding', CONTROLLER_ADMISSION_POLICY).spec).toEqual({
        policyName: CONTROLLER_ADMISSION_POLICY,
        validationActions: ['Deny'],
      });
    });

    it('limits namespaces to nvcf-fn-* names, created with a baseline or restricted Pod Security level', () => {
      const expressions = policy().validations.map((v: { expression: string }) => v.expression);
      expect(expressions).toContain(`!variables.isNamespace || request.name.startsWith('${K8S.helmNamespacePrefix}')`);
      expect(expressions.find((e: string) => e.includes('pod-security.kubernetes.io/enforce'))).toContain("in ['baseline', 'restricted']");
    });

    it('limits RBAC objects to nvcf-fn-* namespaces and other objects to those and nvcf-functions', () => {
      const variables = Object.fromEntries(policy().variables.map((v: { name: string; expression: string }) => [v.name, v.expression]));
      expect(variables).toEqual({
        isNamespace: "request.resource.group == '' && request.resource.resource == 'namespaces'",
        isRbac: "request.resource.group == 'rbac.authorization.k8s.io'",
        inHelmNamespace: `request.namespace.startsWith('${K8S.helmNamespacePrefix}')`,
      });
      expect(policy().validations.map((v: { expression: string }) => v.expression)).toContain(
        `variables.isNamespace || (variables.isRbac ? variables.inHelmNamespace : (variables.inHelmNamespace || request.namespace == '${K8S.functionsNamespace}'))`,
      );
    });
  });

  it('gives the controller a writable /tmp for helm beside its read-only root filesystem', () => {
    const pod = find(synth.template, 'Deployment', K8S.controllerName).spec.template.spec;
    expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: {} }]);
    expect(pod.containers[0].volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
  });
});

describe('Lambdas with a cluster', () => {
  const statementsOf = (name: LambdaName) => roleStatements(synth.template, logicalId(synth.stack.functions.functions[name].role as never));
  const clusterRef = () => ({ Ref: logicalId(synth.stack.gpuCluster!.cluster) });

  it('tells every Lambda the cluster name instead of a GPU list', () => {
    for (const name of LAMBDA_NAMES) {
      const env = synth.template.toJSON().Resources[logicalId(synth.stack.functions.functions[name])].Properties.Environment.Variables;
      expect(env[ENV_NAMES.clusterName]).toEqual(clusterRef());
      expect(env[ENV_NAMES.gpus]).toBeUndefined();
    }
  });

  it.each(['deployments', 'sweeper'] as const)('lets %s list and describe this cluster’s nodegroups and resize only the GPU ones', (name) => {
    const st = statementsOf(name);
    expect(grantsOf(st, 'eks:ListNodegroups').map((s) => s.Resource)).toEqual([{ 'Fn::GetAtt': [logicalId(synth.stack.gpuCluster!.cluster), 'Arn'] }]);
    expect(grantsOf(st, 'eks:DescribeNodegroup')[0]!.Resource).toEqual({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':eks:us-east-1:123456789012:nodegroup/', clusterRef(), '/*']],
    });
    const gpuNodegroups = synth.stack.gpuCluster!.gpuNodegroups.map(({ nodegroup }) => ({ 'Fn::GetAtt': [logicalId(nodegroup), 'Arn'] }));
    expect(grantsOf(st, 'eks:UpdateNodegroupConfig').map((s) => s.Resource)).toEqual([gpuNodegroups.length === 1 ? gpuNodegroups[0] : gpuNodegroups]);
    expect(JSON.stringify(grantsOf(st, 'eks:UpdateNodegroupConfig'))).not.toContain(logicalId(synth.stack.gpuCluster!.systemNodegroup));
  });

  it('lets the gpus Lambda only describe the cluster and list and describe nodegroups, and no other Lambda touch EKS', () => {
    expect(actionsOf(statementsOf('gpus'))).toEqual(['eks:DescribeCluster', 'eks:DescribeNodegroup', 'eks:ListNodegroups', 'logs:CreateLogStream', 'logs:PutLogEvents']);
    expect(grantsOf(statementsOf('gpus'), 'eks:DescribeCluster').map((s) => s.Resource)).toEqual([{ 'Fn::GetAtt': [logicalId(synth.stack.gpuCluster!.cluster), 'Arn'] }]);
    for (const name of LAMBDA_NAMES.filter((n) => !['deployments', 'sweeper', 'gpus'].includes(n))) {
      expect(actionsOf(statementsOf(name)).filter((a) => a.startsWith('eks:'))).toEqual([]);
    }
  });
});

describe('outputs', () => {
  it('adds the cluster name and the agent and worker role ARNs', () => {
    const outputs = synth.template.toJSON().Outputs;
    expect(outputs.ClusterName.Value).toEqual({ Ref: logicalId(synth.stack.gpuCluster!.cluster) });
    expect(outputs.AgentRoleArn.Value).toEqual({ 'Fn::GetAtt': [logicalId(synth.stack.agent!.controllerIdentity.role), 'Arn'] });
    expect(outputs.WorkerRoleArn.Value).toEqual({ 'Fn::GetAtt': [logicalId(synth.stack.agent!.workerIdentity.role), 'Arn'] });
  });
});
