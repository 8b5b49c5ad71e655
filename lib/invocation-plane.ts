/**
 * The invocation plane on AWS (DESIGN.md "The picture"): the invocation
 * service as a Deployment on the system nodegroup, and the fronts callers
 * reach it through.
 *
 * - One internal ALB; the AWS Load Balancer Controller registers the
 *   service's pods in its target group (TargetGroupBinding, IP targets).
 * - API Gateway's pexec routes reach that ALB through a VPC link (see
 *   http-api.ts), so one base URL serves the whole API; they wait ≤ 25 s.
 * - CloudFront with a VPC origin on the same ALB is the public invocation
 *   URL: HTTPS, HTTP/2 and 3, no caching, streaming, waits ≤ 55 s. With
 *   `invocationDomain` (and its certificate) it also answers
 *   `*.invocation.<domain>` for host-addressed direct invocation.
 * - gRPC (with `invocationOriginCertificateArn`): CloudFront proxies gRPC to
 *   HTTPS origins only, and an ALB has gRPC target groups only behind an
 *   HTTPS listener; so the ALB also listens on HTTPS, CloudFront's origin is
 *   that listener, and `content-type: application/grpc*` goes to a second
 *   target group of the same pods (protocol version gRPC, health checked with
 *   grpc.health.v1, which the service answers for itself). Without it the
 *   invocation URL carries HTTP calls only.
 * - Workers reach a service pod's attach port over the VPC; a NetworkPolicy
 *   (VPC CNI network policy, enabled here) admits only pods of the functions
 *   namespace to it, and the ALB's address range to the callers' port.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpAlbIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as eks from 'aws-cdk-lib/aws-eks-v2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import {
  DEFAULT_ATTACH_PORT,
  DEFAULT_INVOCATION_PORT,
  DEFAULT_MAX_HELD_REQUEST_BYTES,
  DEFAULT_MAX_IN_FLIGHT,
  INVOCATION_DRAIN_SECONDS,
  INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS,
  MAX_REQUEST_BYTES,
  POLL_SECONDS_STREAM_DEFAULT,
} from '../core/limits';
import { ENV, FRONT_HEADER, FRONTS, INVOCATION_SERVICE_PATHS, K8S, METRICS_NAMESPACE, S3_PREFIX, SERVICE_NAME } from '../core/names';
import { GRPC_STATUS, HEALTH_CHECK_METHOD } from '../core/grpc';
import type { ResolvedConfig } from './config';
import type { DataStore } from './data-store';
import type { GpuAgent } from './gpu-agent';
import { SYSTEM_NODE_LABEL, type GpuCluster } from './gpu-cluster';
import { acknowledge, acknowledgeWildcard, listBucketStatement, objectStatement, queueArnPattern, queueStatement } from './iam';
import { PodIdentityRole } from './pod-identity';

/** Where the AWS Load Balancer Controller runs; its ServiceAccount is the chart's, named here. */
export const LOAD_BALANCER_CONTROLLER = { namespace: 'kube-system', release: 'aws-load-balancer-controller', serviceAccount: 'aws-load-balancer-controller' } as const;

/** Where the Metrics Server runs (the resource metrics API behind the service's CPU autoscaler). */
export const METRICS_SERVER = { namespace: 'kube-system', release: 'metrics-server' } as const;

/** The ALB's listener port (HTTP inside the VPC; callers meet TLS at CloudFront and API Gateway). */
export const ALB_LISTENER_PORT = 80;

/** The ALB's HTTPS listener port (with invocationOriginCertificateArn): CloudFront's origin, gRPC included. */
export const ALB_HTTPS_LISTENER_PORT = 443;

/**
 * ALB idle timeout: longer than an SSE call may wait for its first byte, so
 * that the ALB never cuts a call the service still holds.
 */
export const ALB_IDLE_TIMEOUT_SECONDS = POLL_SECONDS_STREAM_DEFAULT + 100;

const APP_LABELS = { 'app.kubernetes.io/name': K8S.invocationServiceName, 'app.kubernetes.io/part-of': 'nvcf' };

export interface InvocationPlaneProps {
  readonly config: ResolvedConfig;
  readonly data: DataStore;
  readonly gpuCluster: GpuCluster;
  readonly agent: GpuAgent;
}

export class InvocationPlane extends Construct {
  /** The service's AWS identity (ServiceAccount nvcf-system/nvcf-invocation). */
  readonly identity: PodIdentityRole;
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly listener: elbv2.ApplicationListener;
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  /** The same pods for gRPC calls (HTTP/2 to the targets), behind the HTTPS listener; with invocationOriginCertificateArn only. */
  readonly grpcTargetGroup?: elbv2.ApplicationTargetGroup;
  readonly distribution: cloudfront.Distribution;
  /** What API Gateway's invocation routes are integrated with: the ALB through a VPC link. */
  readonly apiIntegration: HttpAlbIntegration;
  /** Base URL of the invocation URL (CloudFront). */
  readonly url: string;

  constructor(scope: Construct, id: string, { config, data, gpuCluster, agent }: InvocationPlaneProps) {
    super(scope, id);
    const { cluster, vpc, namespaces } = gpuCluster;
    const privateSubnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };

    this.identity = new PodIdentityRole(this, 'ServiceIdentity', {
      cluster,
      namespace: K8S.systemNamespace,
      serviceAccount: K8S.invocationServiceName,
      description: 'invocation service: holds callers, queues their calls, stores those that become durable',
      dependsOn: [namespaces],
    });
    this.grantService(data);

    // The ALB is reached from inside the VPC only: API Gateway's VPC link and CloudFront's VPC origin put their ENIs there.
    const albSecurityGroup = new ec2.SecurityGroup(this, 'AlbSecurityGroup', { vpc, description: 'NVCF invocation ALB: callers through the VPC link and CloudFront', allowAllOutbound: false });
    albSecurityGroup.addIngressRule(ec2.Peer.ipv4(vpc.vpcCidrBlock), ec2.Port.tcp(ALB_LISTENER_PORT), 'VPC link and CloudFront VPC origin ENIs');
    albSecurityGroup.addEgressRule(ec2.Peer.ipv4(vpc.vpcCidrBlock), ec2.Port.tcp(DEFAULT_INVOCATION_PORT), 'invocation service pods');
    acknowledge(albSecurityGroup, 'AwsSolutions-EC23', 'Ingress is limited to the VPC\'s own CIDR block (a token at synth time, which the rule cannot evaluate): the VPC link and CloudFront VPC origin ENIs.');

    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
      vpc,
      vpcSubnets: privateSubnets,
      internetFacing: false,
      securityGroup: albSecurityGroup,
      idleTimeout: Duration.seconds(ALB_IDLE_TIMEOUT_SECONDS),
      dropInvalidHeaderFields: true,
      http2Enabled: true,
    });
    this.loadBalancer.logAccessLogs(data.accessLogsBucket, 'invocation-alb');

    this.targetGroup = new elbv2.ApplicationTargetGroup(this, 'Targets', {
      vpc,
      targetType: elbv2.TargetType.IP,
      port: DEFAULT_INVOCATION_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      // The pods are registered by the AWS Load Balancer Controller (TargetGroupBinding below).
      healthCheck: { path: INVOCATION_SERVICE_PATHS.ready, interval: Duration.seconds(10), healthyThresholdCount: 2, unhealthyThresholdCount: 2 },
      // A draining pod keeps answering what it holds; the ALB stops sending new calls meanwhile.
      deregistrationDelay: Duration.seconds(INVOCATION_DRAIN_SECONDS),
    });
    this.listener = this.loadBalancer.addListener('Http', { port: ALB_LISTENER_PORT, protocol: elbv2.ApplicationProtocol.HTTP, open: false, defaultTargetGroups: [this.targetGroup] });

    if (config.invocationOriginCertificateArn) {
      albSecurityGroup.addIngressRule(ec2.Peer.ipv4(vpc.vpcCidrBlock), ec2.Port.tcp(ALB_HTTPS_LISTENER_PORT), 'CloudFront VPC origin ENIs over HTTPS (gRPC)');
      this.grpcTargetGroup = new elbv2.ApplicationTargetGroup(this, 'GrpcTargets', {
        vpc,
        targetType: elbv2.TargetType.IP,
        port: DEFAULT_INVOCATION_PORT,
        protocol: elbv2.ApplicationProtocol.HTTP,
        protocolVersion: elbv2.ApplicationProtocolVersion.GRPC,
        // The service answers grpc.health.v1 Check without a function-id for itself: OK while ready, UNAVAILABLE while draining.
        healthCheck: { path: HEALTH_CHECK_METHOD, healthyGrpcCodes: String(GRPC_STATUS.ok), interval: Duration.seconds(10), healthyThresholdCount: 2, unhealthyThresholdCount: 2 },
        deregistrationDelay: Duration.seconds(INVOCATION_DRAIN_SECONDS),
      });
      const https = this.loadBalancer.addListener('Https', {
        port: ALB_HTTPS_LISTENER_PORT,
        protocol: elbv2.ApplicationProtocol.HTTPS,
        certificates: [elbv2.ListenerCertificate.fromArn(config.invocationOriginCertificateArn)],
        sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        open: false,
        defaultTargetGroups: [this.targetGroup],
      });
      https.addTargetGroups('Grpc', { priority: 10, conditions: [elbv2.ListenerCondition.httpHeader('content-type', ['application/grpc*'])], targetGroups: [this.grpcTargetGroup] });
    }

    // Pods are registered by their IPs: the nodes (cluster security group) must admit the ALB on the service port.
    cluster.clusterSecurityGroup.addIngressRule(albSecurityGroup, ec2.Port.tcp(DEFAULT_INVOCATION_PORT), 'invocation ALB to the invocation service pods');
    const controller = this.loadBalancerController(config, gpuCluster);
    const metricsServer = this.metricsServer(config, gpuCluster);
    this.service(config, data, gpuCluster, agent, controller, metricsServer);

    const vpcLinkSecurityGroup = new ec2.SecurityGroup(this, 'VpcLinkSecurityGroup', { vpc, description: 'API Gateway VPC link to the invocation ALB', allowAllOutbound: false });
    vpcLinkSecurityGroup.addEgressRule(albSecurityGroup, ec2.Port.tcp(ALB_LISTENER_PORT), 'invocation ALB');
    const vpcLink = new apigw.VpcLink(this, 'VpcLink', { vpc, subnets: privateSubnets, securityGroups: [vpcLinkSecurityGroup] });
    this.apiIntegration = new HttpAlbIntegration('InvocationService', this.listener, {
      vpcLink,
      parameterMapping: new apigw.ParameterMapping().overwriteHeader(FRONT_HEADER, apigw.MappingValue.custom(FRONTS.apiGateway)),
    });

    const domainNames = config.invocationDomain ? [`invocation.${config.invocationDomain}`, `*.invocation.${config.invocationDomain}`] : undefined;
    this.distribution = new cloudfront.Distribution(this, 'InvocationUrl', {
      comment: 'NVCF invocation URL: pexec, streaming, direct invocation',
      defaultBehavior: {
        origin: origins.VpcOrigin.withApplicationLoadBalancer(this.loadBalancer, {
          ...(this.grpcTargetGroup
            ? { httpsPort: ALB_HTTPS_LISTENER_PORT, protocolPolicy: cloudfront.OriginProtocolPolicy.HTTPS_ONLY, originSslProtocols: [cloudfront.OriginSslPolicy.TLS_V1_2] }
            : { httpPort: ALB_LISTENER_PORT, protocolPolicy: cloudfront.OriginProtocolPolicy.HTTP_ONLY }),
          readTimeout: Duration.seconds(INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS),
          keepaliveTimeout: Duration.seconds(INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS),
          customHeaders: { [FRONT_HEADER]: FRONTS.cloudFront },
        }),
        allowedMethods: cloudfront.AllowedMethods.ALLOW_ALL,
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
        cachePolicy: cloudfront.CachePolicy.CACHING_DISABLED,
        // Host-addressed direct invocation needs the caller's Host; on the distribution's own domain it would not resolve at the ALB.
        originRequestPolicy: domainNames ? cloudfront.OriginRequestPolicy.ALL_VIEWER : cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
        compress: false,
        // content-type application/grpc: proxied as gRPC (HTTP/2 end to end), never cached.
        ...(this.grpcTargetGroup ? { enableGrpc: true } : {}),
      },
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      priceClass: cloudfront.PriceClass.PRICE_CLASS_ALL,
      enableLogging: true,
      logBucket: data.accessLogsBucket,
      logFilePrefix: 'invocation-url/',
      ...(domainNames && config.invocationCertificateArn
        ? {
            domainNames,
            certificate: acm.Certificate.fromCertificateArn(this, 'InvocationCertificate', config.invocationCertificateArn),
            minimumProtocolVersion: cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
          }
        : {}),
    });
    this.url = domainNames ? `https://invocation.${config.invocationDomain}` : `https://${this.distribution.distributionDomainName}`;
    acknowledge(this.distribution, 'AwsSolutions-CFR1', 'An API for programmatic callers worldwide; callers are authenticated by API key, and a geo restriction is a policy choice left to the operator.');
    acknowledge(this.distribution, 'AwsSolutions-CFR2', 'Requests are authenticated by API key and bounded per instance (429 beyond NVCF_MAX_IN_FLIGHT); attach a WAF web ACL with rate rules to the distribution if the installation needs one.');
    if (!domainNames) {
      acknowledge(this.distribution, 'AwsSolutions-CFR4', 'Without invocationDomain the distribution uses the default *.cloudfront.net certificate, whose minimum protocol CloudFront fixes; set invocationDomain and invocationCertificateArn for TLS 1.2 minimum.');
    }
  }

  /**
   * What the service calls (invocation/): rate-limit and concurrency counters (UpdateItem, GetItem), quota overrides (GetItem), keys (GetItem), a function's
   * versions and, for another account's function, its authorizations (Query), assets (GetItem, HeadObject), stored calls (PutItem,
   * GetItem, UpdateItem for cancel), one SendMessage per call, spilled bodies
   * (PutObject inputs/), stored results (GetObject outputs/, also what its
   * presigned GETs need).
   */
  private grantService(data: DataStore): void {
    const { role } = this.identity;
    const { tables, bucket, queueKey } = data;
    tables.apiKeys.grant(role, 'dynamodb:GetItem');
    tables.functions.grant(role, 'dynamodb:Query');
    // A caller's access to another account's function: the function's authorization sets (core/access.ts).
    tables.authorizations.grant(role, 'dynamodb:Query');
    tables.assets.grant(role, 'dynamodb:GetItem');
    tables.invocations.grant(role, 'dynamodb:PutItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem');
    // Rate limits and concurrent invocations (invocation/rate-limits.ts): conditional ADDs on the shared counters, the count
    // quoted in a refusal, and each account's quota overrides.
    tables.counters.grant(role, 'dynamodb:UpdateItem', 'dynamodb:GetItem');
    tables.quotas.grant(role, 'dynamodb:GetItem');
    role.addToPrincipalPolicy(queueStatement(['sqs:SendMessage'], this));
    queueKey?.grant(role, 'kms:GenerateDataKey', 'kms:Decrypt');
    role.addToPrincipalPolicy(objectStatement(bucket, ['s3:PutObject'], ['inputs']));
    role.addToPrincipalPolicy(objectStatement(bucket, ['s3:GetObject'], ['outputs', 'assets']));
    // A referenced asset whose object is gone must read as 404 (HeadObject), not 403.
    role.addToPrincipalPolicy(listBucketStatement(bucket, ['assets']));

    const { policy } = this.identity;
    for (const table of [tables.functions, tables.assets, tables.invocations]) {
      acknowledgeWildcard(policy, `${table.tableArn}/index/*`, 'Table grants include the table\'s global secondary index ARNs, which can only be named with the /index/* suffix; the service queries the table itself.');
    }
    acknowledgeWildcard(policy, queueArnPattern(this), 'Calls are sent to the deployment queues, which are created at run time; the grant is limited to the platform queue prefix in this account and region.');
    for (const prefix of ['inputs', 'outputs', 'assets'] as const) {
      acknowledgeWildcard(policy, bucket.arnForObjects(`${S3_PREFIX[prefix]}*`), 'Object keys embed request and asset ids generated at run time; the grant is limited to one key prefix of the platform bucket.');
    }
  }

  /**
   * The AWS Load Balancer Controller, for TargetGroupBinding only: no
   * Ingress class, no Service webhook, no security group management. Its
   * role may describe (no resource-level permissions exist for those) and
   * register targets in this one target group.
   */
  private loadBalancerController(config: ResolvedConfig, gpuCluster: GpuCluster): eks.HelmChart {
    const { cluster, vpc } = gpuCluster;
    const identity = new PodIdentityRole(this, 'LoadBalancerControllerIdentity', {
      cluster,
      namespace: LOAD_BALANCER_CONTROLLER.namespace,
      serviceAccount: LOAD_BALANCER_CONTROLLER.serviceAccount,
      description: 'AWS Load Balancer Controller: registers the invocation service pods in their ALB target group',
      createServiceAccount: false,
    });
    identity.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'DescribeTargets',
        actions: [
          'elasticloadbalancing:DescribeTargetGroups',
          'elasticloadbalancing:DescribeTargetHealth',
          'elasticloadbalancing:DescribeLoadBalancers',
          'elasticloadbalancing:DescribeListeners',
          'elasticloadbalancing:DescribeTags',
          'ec2:DescribeVpcs',
          'ec2:DescribeSubnets',
          'ec2:DescribeInstances',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSecurityGroups',
          'ec2:DescribeAvailabilityZones',
        ],
        resources: ['*'],
      }),
    );
    identity.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'RegisterInvocationTargets', actions: ['elasticloadbalancing:RegisterTargets', 'elasticloadbalancing:DeregisterTargets'], resources: [this.targetGroup, this.grpcTargetGroup].flatMap((group) => (group ? [group.targetGroupArn] : [])) }),
    );
    acknowledge(identity.policy, 'AwsSolutions-IAM5[Resource::*]', 'The Describe actions of Elastic Load Balancing and EC2 support no resource-level permissions; registering targets is limited to the invocation target group.');

    const chart = cluster.addHelmChart('AwsLoadBalancerController', {
      chart: 'aws-load-balancer-controller',
      repository: 'https://aws.github.io/eks-charts',
      version: config.chartVersions.awsLoadBalancerController,
      release: LOAD_BALANCER_CONTROLLER.release,
      namespace: LOAD_BALANCER_CONTROLLER.namespace,
      values: {
        clusterName: cluster.clusterName,
        region: Stack.of(this).region,
        vpcId: vpc.vpcId,
        serviceAccount: { create: true, name: LOAD_BALANCER_CONTROLLER.serviceAccount },
        replicaCount: 2,
        nodeSelector: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value },
        createIngressClassResource: false,
        enableServiceMutatorWebhook: false,
        enableBackendSecurityGroup: false,
        // Ingress add-ons it would otherwise call Shield and WAF for; no Ingress is served here.
        enableShield: false,
        enableWaf: false,
        enableWafv2: false,
      },
      // The TargetGroupBinding below is admitted by the controller's own webhook, which answers only once its pods run.
      wait: true,
      timeout: Duration.minutes(10),
    });
    // Like KEDA: its AWS calls fail until restarted if it starts before its Pod Identity.
    chart.node.addDependency(identity.association, gpuCluster.systemNodegroup);
    return chart;
  }

  /**
   * The Metrics Server: EKS does not run one, and without the resource
   * metrics API it serves, the service's CPU autoscaler never scales. It
   * needs no AWS identity (it reads the kubelets).
   */
  private metricsServer(config: ResolvedConfig, gpuCluster: GpuCluster): eks.HelmChart {
    const chart = gpuCluster.cluster.addHelmChart('MetricsServer', {
      chart: 'metrics-server',
      repository: 'https://kubernetes-sigs.github.io/metrics-server/',
      version: config.chartVersions.metricsServer,
      release: METRICS_SERVER.release,
      namespace: METRICS_SERVER.namespace,
      values: { nodeSelector: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value } },
    });
    chart.node.addDependency(gpuCluster.systemNodegroup);
    return chart;
  }

  /** The service's Kubernetes objects in nvcf-system, and the VPC CNI's network policy support they need. */
  private service(config: ResolvedConfig, data: DataStore, gpuCluster: GpuCluster, agent: GpuAgent, controller: eks.HelmChart, metricsServer: eks.HelmChart): void {
    const { cluster, vpc, namespaces } = gpuCluster;
    const image = agent.images[config.systemArch]!.imageUri;
    const name = K8S.invocationServiceName;
    const namespace = K8S.systemNamespace;
    const environment: Record<string, string> = {
      ...data.environment(),
      [ENV.invocationPort]: String(DEFAULT_INVOCATION_PORT),
      [ENV.attachPort]: String(DEFAULT_ATTACH_PORT),
      [ENV.maxInFlight]: String(DEFAULT_MAX_IN_FLIGHT),
      [ENV.maxRequestBytes]: String(MAX_REQUEST_BYTES),
      [ENV.maxHeldRequestBytes]: String(DEFAULT_MAX_HELD_REQUEST_BYTES),
      ...(config.invocationDomain ? { [ENV.invocationDomain]: config.invocationDomain } : {}),
      AWS_REGION: Stack.of(this).region,
      POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
      POWERTOOLS_LOG_LEVEL: config.logLevel,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    };

    // NetworkPolicy is enforced by the VPC CNI only with its network policy agent on.
    const vpcCni = new eks.CfnAddon(this, 'VpcCni', {
      clusterName: cluster.clusterName,
      addonName: 'vpc-cni',
      resolveConflicts: 'OVERWRITE',
      configurationValues: JSON.stringify({ enableNetworkPolicy: 'true' }),
    });

    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace, labels: APP_LABELS },
      spec: {
        replicas: config.invocationReplicas,
        selector: { matchLabels: APP_LABELS },
        template: {
          metadata: { labels: APP_LABELS },
          spec: {
            serviceAccountName: name,
            nodeSelector: { [SYSTEM_NODE_LABEL.key]: SYSTEM_NODE_LABEL.value, [K8S.archLabel]: config.systemArch },
            // Held calls are drained on SIGTERM (waiting ones turn durable, streams finish) before the pod goes.
            terminationGracePeriodSeconds: INVOCATION_DRAIN_SECONDS + 15,
            securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
            topologySpreadConstraints: [
              { maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: APP_LABELS } },
              { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: APP_LABELS } },
            ],
            volumes: [{ name: 'tmp', emptyDir: {} }],
            containers: [
              {
                name: 'invocation',
                image,
                command: ['node', '/app/invocation.mjs'],
                env: [
                  ...Object.entries(environment).map(([key, value]) => ({ name: key, value })),
                  // Workers attach back to this pod's own address.
                  { name: ENV.attachHost, valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
                ],
                ports: [
                  { name: 'http', containerPort: DEFAULT_INVOCATION_PORT },
                  { name: 'attach', containerPort: DEFAULT_ATTACH_PORT },
                ],
                readinessProbe: { httpGet: { path: INVOCATION_SERVICE_PATHS.ready, port: 'http' }, periodSeconds: 5 },
                livenessProbe: { httpGet: { path: INVOCATION_SERVICE_PATHS.health, port: 'http' }, periodSeconds: 10, failureThreshold: 3 },
                // One event loop plus libuv and GC threads: 2 CPUs bound a runaway pod without throttling a busy one; the HPA scales on the request.
                resources: { requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '2', memory: '2Gi' } },
                volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              },
            ],
          },
        },
      },
    };
    const objects = [
      deployment,
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace, labels: APP_LABELS },
        spec: { selector: APP_LABELS, ports: [{ name: 'http', port: DEFAULT_INVOCATION_PORT, targetPort: 'http' }] },
      },
      { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name, namespace }, spec: { minAvailable: 1, selector: { matchLabels: APP_LABELS } } },
      {
        apiVersion: 'autoscaling/v2',
        kind: 'HorizontalPodAutoscaler',
        metadata: { name, namespace },
        spec: {
          scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
          minReplicas: config.invocationReplicas,
          maxReplicas: config.invocationReplicas * 4,
          metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }],
        },
      },
      {
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name, namespace },
        spec: {
          podSelector: { matchLabels: APP_LABELS },
          policyTypes: ['Ingress'],
          ingress: [
            // The attach port: workers, which run in the functions namespace only.
            { from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': K8S.functionsNamespace } } }], ports: [{ protocol: 'TCP', port: DEFAULT_ATTACH_PORT }] },
            // The callers' port: the ALB (and kubelet probes) from the VPC's addresses.
            { from: [{ ipBlock: { cidr: vpc.vpcCidrBlock } }], ports: [{ protocol: 'TCP', port: DEFAULT_INVOCATION_PORT }] },
          ],
        },
      },
    ];
    const manifest = cluster.addManifest('InvocationService', ...objects);
    manifest.node.addDependency(namespaces, this.identity.serviceAccount!, this.identity.association, vpcCni, metricsServer);

    const binding = cluster.addManifest('InvocationTargetGroupBinding', {
      apiVersion: 'elbv2.k8s.aws/v1beta1',
      kind: 'TargetGroupBinding',
      metadata: { name, namespace },
      spec: { serviceRef: { name, port: DEFAULT_INVOCATION_PORT }, targetGroupARN: this.targetGroup.targetGroupArn, targetType: 'ip' },
    });
    // The CRD comes with the controller's chart.
    binding.node.addDependency(controller, manifest);
    if (this.grpcTargetGroup) {
      const grpcBinding = cluster.addManifest('InvocationGrpcTargetGroupBinding', {
        apiVersion: 'elbv2.k8s.aws/v1beta1',
        kind: 'TargetGroupBinding',
        metadata: { name: `${name}-grpc`, namespace },
        spec: { serviceRef: { name, port: DEFAULT_INVOCATION_PORT }, targetGroupARN: this.grpcTargetGroup.targetGroupArn, targetType: 'ip' },
      });
      grpcBinding.node.addDependency(controller, manifest);
    }
  }
}
