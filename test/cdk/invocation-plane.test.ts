/**
 * The invocation plane on AWS (lib/invocation-plane.ts): the service's
 * Kubernetes objects and AWS identity, the internal ALB with its
 * TargetGroupBinding, API Gateway's VPC link for the invocation routes, and
 * the CloudFront invocation URL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  API_GATEWAY_POLL_CAP_SECONDS,
  DEFAULT_ATTACH_PORT,
  DEFAULT_INVOCATION_PORT,
  DEFAULT_MAX_HELD_REQUEST_BYTES,
  DEFAULT_MAX_IN_FLIGHT,
  INVOCATION_DRAIN_SECONDS,
  INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS,
  INVOCATION_URL_POLL_CAP_SECONDS,
  MAX_REQUEST_BYTES,
} from '../../core/limits';
import { ENV as ENV_NAMES, FRONT_HEADER, FRONTS, INVOCATION_SERVICE_PATHS, K8S, S3_PREFIX } from '../../core/names';
import { INVOCATION_SERVICE, ROUTES, routeKey } from '../../core/routes';
import type { TableName } from '../../core/tables';
import { CachePolicy, OriginRequestPolicy } from 'aws-cdk-lib/aws-cloudfront';
import { ALB_HTTPS_LISTENER_PORT, ALB_IDLE_TIMEOUT_SECONDS, ALB_LISTENER_PORT } from '../../lib/invocation-plane';
import { OUTPUTS } from '../../lib/nvcf-stack';
import { actionsOf, find, kubernetesObjects, logicalId, roleStatements, synthesize, withStack, type Synthesized } from './support';

let synth: Synthesized;
beforeAll(() => {
  synth = synthesize();
});
afterAll(() => synth?.dispose());

const resources = (type: string) => Object.values(synth.template.findResources(type));
const plane = () => synth.stack.invocation!;
const serviceStatements = () => roleStatements(synth.template, logicalId(plane().identity.role));
const tableArn = (table: TableName) => JSON.stringify({ 'Fn::GetAtt': [logicalId(synth.stack.data.tables[table]), 'Arn'] });

describe('the invocation service on the cluster', () => {
  it('runs at least two non-root, read-only replicas on the system nodes, spread over zones, with a grace period above its drain', () => {
    const deployment = find(synth.template, 'Deployment', K8S.invocationServiceName);
    expect(deployment.metadata.namespace).toBe(K8S.systemNamespace);
    expect(deployment.spec.replicas).toBe(2);
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe(K8S.invocationServiceName);
    expect(pod.nodeSelector).toMatchObject({ [K8S.systemNodeLabel]: K8S.systemNodeRole });
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(INVOCATION_DRAIN_SECONDS);
    expect(pod.topologySpreadConstraints.map((c: { topologyKey: string }) => c.topologyKey)).toEqual(['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
    const [container] = pod.containers;
    expect(container.command).toEqual(['node', '/app/invocation.mjs']);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(container.ports.map((p: { containerPort: number }) => p.containerPort)).toEqual([DEFAULT_INVOCATION_PORT, DEFAULT_ATTACH_PORT]);
    expect(container.readinessProbe.httpGet.path).toBe(INVOCATION_SERVICE_PATHS.ready);
    expect(container.livenessProbe.httpGet.path).toBe(INVOCATION_SERVICE_PATHS.health);
    expect(container.resources).toEqual({ requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '2', memory: '2Gi' } });
    expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: {} }]);
    expect(container.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
  });

  it('tells each pod its own address for reply addresses, and where tables, bucket and queues are', () => {
    const env: { name: string; value?: string; valueFrom?: unknown }[] = find(synth.template, 'Deployment', K8S.invocationServiceName).spec.template.spec.containers[0].env;
    expect(env.find((e) => e.name === ENV_NAMES.attachHost)).toEqual({ name: ENV_NAMES.attachHost, valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } });
    const names = env.map((e) => e.name);
    for (const name of [ENV_NAMES.invocationPort, ENV_NAMES.attachPort, ENV_NAMES.bucket, ENV_NAMES.apiKeysTable, ENV_NAMES.invocationsTable, ENV_NAMES.queuePrefix, 'AWS_REGION']) expect(names).toContain(name);
    // The service's own defaults, stated so that an operator sees (and can change) its limits on the Deployment.
    expect(env.find((e) => e.name === ENV_NAMES.maxInFlight)?.value).toBe(String(DEFAULT_MAX_IN_FLIGHT));
    expect(env.find((e) => e.name === ENV_NAMES.maxRequestBytes)?.value).toBe(String(MAX_REQUEST_BYTES));
    expect(env.find((e) => e.name === ENV_NAMES.maxHeldRequestBytes)?.value).toBe(String(DEFAULT_MAX_HELD_REQUEST_BYTES));
    // Without a custom domain, direct invocation is addressed by the function-id header only.
    expect(names).not.toContain(ENV_NAMES.invocationDomain);
  });

  it('keeps one replica through disruptions and scales on CPU up to four times the minimum', () => {
    expect(find(synth.template, 'PodDisruptionBudget', K8S.invocationServiceName).spec.minAvailable).toBe(1);
    const hpa = find(synth.template, 'HorizontalPodAutoscaler', K8S.invocationServiceName).spec;
    expect(hpa).toMatchObject({ minReplicas: 2, maxReplicas: 8, scaleTargetRef: { kind: 'Deployment', name: K8S.invocationServiceName } });
    expect(hpa.metrics[0].resource.name).toBe('cpu');
    // CPU utilisation comes from the resource metrics API, which EKS serves only with a Metrics Server.
    const metricsServer = resources('Custom::AWSCDK-EKS-HelmChart').find((c) => c.Properties.Chart === 'metrics-server')!;
    expect(metricsServer.Properties).toMatchObject({ Version: '3.13.0', Namespace: 'kube-system', Repository: 'https://kubernetes-sigs.github.io/metrics-server/' });
  });

  it('admits only pods of the functions namespace to the attach port, and the VPC to the callers’ port, with the VPC CNI enforcing it', () => {
    const policy = find(synth.template, 'NetworkPolicy', K8S.invocationServiceName).spec;
    expect(policy.policyTypes).toEqual(['Ingress']);
    expect(policy.ingress).toEqual([
      { from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': K8S.functionsNamespace } } }], ports: [{ protocol: 'TCP', port: DEFAULT_ATTACH_PORT }] },
      { from: [{ ipBlock: { cidr: 'TOKEN' } }], ports: [{ protocol: 'TCP', port: DEFAULT_INVOCATION_PORT }] },
    ]);
    synth.template.hasResourceProperties('AWS::EKS::Addon', { AddonName: 'vpc-cni', ConfigurationValues: JSON.stringify({ enableNetworkPolicy: 'true' }) });
  });

  it('binds the service’s pods to the ALB target group with the AWS Load Balancer Controller, pinned', () => {
    const binding = find(synth.template, 'TargetGroupBinding', K8S.invocationServiceName);
    expect(binding.spec).toMatchObject({ serviceRef: { name: K8S.invocationServiceName, port: DEFAULT_INVOCATION_PORT }, targetType: 'ip' });
    const chart = resources('Custom::AWSCDK-EKS-HelmChart').find((c) => c.Properties.Chart === 'aws-load-balancer-controller')!;
    expect(chart.Properties).toMatchObject({ Version: '1.14.0', Namespace: 'kube-system', Repository: 'https://aws.github.io/eks-charts', Wait: true });
    // TargetGroupBinding only: nothing that would need more than its register/describe policy.
    const parts: unknown[] = chart.Properties.Values['Fn::Join'][1];
    const values = JSON.parse(parts.map((part) => (typeof part === 'string' ? part : 'TOKEN')).join(''));
    expect(values).toMatchObject({
      clusterName: 'TOKEN',
      vpcId: 'TOKEN',
      serviceAccount: { create: true, name: 'aws-load-balancer-controller' },
      nodeSelector: { [K8S.systemNodeLabel]: K8S.systemNodeRole },
      createIngressClassResource: false,
      enableServiceMutatorWebhook: false,
      enableBackendSecurityGroup: false,
      enableShield: false,
      enableWaf: false,
      enableWafv2: false,
    });
  });
});

describe('least privilege', () => {
  it('lets the service read keys, versions, assets and quotas, write only invocations and counters, send to the platform queues only', () => {
    const statements = serviceStatements();
    const on = (table: TableName) => actionsOf(statements.filter((s) => JSON.stringify(s.Resource).includes(tableArn(table)))).sort();
    expect(on('apiKeys')).toEqual(['dynamodb:GetItem']);
    expect(on('functions')).toEqual(['dynamodb:Query']);
    // Another account's function: its authorization sets, read with the versions into one cache entry (core/access.ts).
    expect(on('authorizations')).toEqual(['dynamodb:Query']);
    expect(on('assets')).toEqual(['dynamodb:GetItem']);
    expect(on('invocations')).toEqual(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem']);
    expect(on('instances')).toEqual([]);
    // Rate limits and concurrent invocations: conditional ADDs on the shared counters (core/rate-limits.ts, core/quotas.ts).
    expect(on('counters')).toEqual(['dynamodb:GetItem', 'dynamodb:UpdateItem']);
    expect(on('quotas')).toEqual(['dynamodb:GetItem']);
    expect(actionsOf(statements).filter((a) => a.startsWith('sqs:'))).toEqual(['sqs:SendMessage']);
  });

  it('lets the service put spilled inputs and read outputs and assets, nothing else in the bucket', () => {
    const prefixArn = (prefix: keyof typeof S3_PREFIX) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [logicalId(synth.stack.data.bucket), 'Arn'] }, `/${S3_PREFIX[prefix]}*`]] });
    const s3 = serviceStatements().filter((s) => actionsOf([s]).some((a) => a.startsWith('s3:')));
    expect(s3).toEqual([
      { Effect: 'Allow', Action: 's3:PutObject', Resource: prefixArn('inputs') },
      { Effect: 'Allow', Action: 's3:GetObject', Resource: [prefixArn('outputs'), prefixArn('assets')] },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: { 'Fn::GetAtt': [logicalId(synth.stack.data.bucket), 'Arn'] }, Condition: { StringLike: { 's3:prefix': ['assets/*'] } } },
    ]);
  });

  it('lets the load balancer controller register targets in the invocation target group only', () => {
    const association = resources('AWS::EKS::PodIdentityAssociation').find((a) => a.Properties.ServiceAccount === 'aws-load-balancer-controller')!;
    const roleId = association.Properties.RoleArn['Fn::GetAtt'][0];
    const statements = roleStatements(synth.template, roleId);
    const register = statements.find((s) => actionsOf([s]).includes('elasticloadbalancing:RegisterTargets'))!;
    expect(register.Resource).toEqual({ Ref: logicalId(plane().targetGroup) });
    for (const statement of statements.filter((s) => s.Resource === '*')) {
      expect(actionsOf([statement]).every((a) => /^(elasticloadbalancing|ec2):Describe/.test(a))).toBe(true);
    }
  });
});

describe('monitoring of the invocation service', () => {
  const alarm = (name: string) => resources('AWS::CloudWatch::Alarm').find((a) => a.Properties.AlarmName === name)!.Properties;

  it('alarms on the ALB’s own 5xx, not on target 5xx, which include functions’ own errors', () => {
    expect(alarm('Nvcf-invocation-alb-5xx')).toMatchObject({ Namespace: 'AWS/ApplicationELB', MetricName: 'HTTPCode_ELB_5XX_Count', Statistic: 'Sum', Threshold: 5 });
    expect(resources('AWS::CloudWatch::Alarm').map((a) => a.Properties.MetricName)).not.toContain('HTTPCode_Target_5XX_Count');
  });

  it('alarms when the target group has no healthy pod, also when it reports nothing', () => {
    expect(alarm('Nvcf-invocation-no-healthy-pods')).toMatchObject({
      MetricName: 'HealthyHostCount',
      Statistic: 'Minimum',
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
    });
  });

  it('graphs invocation requests, errors and response time, and no longer any invocations Lambda', () => {
    const body = JSON.stringify(resources('AWS::CloudWatch::Dashboard')[0]!.Properties.DashboardBody);
    for (const title of ['Invocation requests', 'Invocation errors', 'Invocation response time (s)']) expect(body).toContain(title);
    // Lambda graphs are labelled by Lambda name: the sweeper is there, the invocations Lambda is gone.
    expect(body).toContain('\\"label\\":\\"sweeper\\"');
    expect(body).not.toContain('\\"label\\":\\"invocations\\"');
    synth.template.resourcePropertiesCountIs('AWS::Lambda::Function', { Description: 'NVCF API: pexec invocations and their status' }, 0);
  });
});

describe('fronts', () => {
  it('puts an internal ALB with long idle timeout and access logs before the service, with IP targets health-checked on readiness', () => {
    synth.template.resourceCountIs('AWS::ElasticLoadBalancingV2::LoadBalancer', 1);
    const [alb] = resources('AWS::ElasticLoadBalancingV2::LoadBalancer');
    expect(alb!.Properties.Scheme).toBe('internal');
    const attributes = Object.fromEntries(alb!.Properties.LoadBalancerAttributes.map((a: { Key: string; Value: unknown }) => [a.Key, a.Value]));
    expect(attributes).toMatchObject({
      'idle_timeout.timeout_seconds': String(ALB_IDLE_TIMEOUT_SECONDS),
      'access_logs.s3.enabled': 'true',
      'access_logs.s3.bucket': { Ref: logicalId(synth.stack.data.accessLogsBucket) },
      'routing.http.drop_invalid_header_fields.enabled': 'true',
    });
    synth.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      TargetType: 'ip',
      Port: DEFAULT_INVOCATION_PORT,
      HealthCheckPath: INVOCATION_SERVICE_PATHS.ready,
    });
  });

  it('admits only the VPC to the ALB, and only the ALB to the service port of the nodes', () => {
    const albGroup = logicalId(plane().loadBalancer.connections.securityGroups[0]!);
    const ingress: unknown[] = synth.template.toJSON().Resources[albGroup].Properties.SecurityGroupIngress;
    expect(ingress).toEqual([expect.objectContaining({ FromPort: ALB_LISTENER_PORT, ToPort: ALB_LISTENER_PORT, CidrIp: { 'Fn::GetAtt': [expect.any(String), 'CidrBlock'] } })]);
    synth.template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      FromPort: DEFAULT_INVOCATION_PORT,
      ToPort: DEFAULT_INVOCATION_PORT,
      SourceSecurityGroupId: { 'Fn::GetAtt': [albGroup, 'GroupId'] },
    });
  });

  it('routes the invocation routes of core/routes.ts through a VPC link to the ALB, marked as coming through API Gateway', () => {
    const integrations = synth.template.findResources('AWS::ApiGatewayV2::Integration', { Properties: { IntegrationType: 'HTTP_PROXY', ConnectionType: 'VPC_LINK' } });
    const [integrationId] = Object.keys(integrations);
    expect(Object.keys(integrations)).toHaveLength(1);
    expect(integrations[integrationId!]!.Properties.RequestParameters).toEqual({ [`overwrite:header.${FRONT_HEADER}`]: FRONTS.apiGateway });
    const routes = resources('AWS::ApiGatewayV2::Route').filter((r) => JSON.stringify(r.Properties.Target).includes(integrationId!));
    expect(routes.map((r) => r.Properties.RouteKey).sort()).toEqual(ROUTES.filter((r) => r.handler === INVOCATION_SERVICE).map(routeKey).sort());
    // The service's wait cap through API Gateway stays under its 30 s integration timeout.
    expect(API_GATEWAY_POLL_CAP_SECONDS).toBeLessThan(30);
  });

  it('serves the invocation URL from CloudFront over HTTPS and HTTP/2, uncached, every method, to the ALB as a VPC origin', () => {
    const distribution = resources('AWS::CloudFront::Distribution')[0]!.Properties.DistributionConfig;
    expect(distribution.HttpVersion).toBe('http2and3');
    expect(distribution.Logging).toMatchObject({ Bucket: { 'Fn::GetAtt': [logicalId(synth.stack.data.accessLogsBucket), 'RegionalDomainName'] }, Prefix: 'invocation-url/' });
    const behavior = distribution.DefaultCacheBehavior;
    expect(behavior).toMatchObject({ ViewerProtocolPolicy: 'https-only', AllowedMethods: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'PATCH', 'POST', 'DELETE'], Compress: false });
    expect(behavior.CachePolicyId).toBe(CachePolicy.CACHING_DISABLED.cachePolicyId);
    // On the distribution's own domain the ALB must not see CloudFront's Host; everything else the caller sent goes through.
    expect(behavior.OriginRequestPolicyId).toBe(OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER.originRequestPolicyId);
    const [origin] = distribution.Origins;
    expect(origin.VpcOriginConfig).toMatchObject({ OriginReadTimeout: INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS, OriginKeepaliveTimeout: INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS });
    expect(origin.OriginCustomHeaders).toEqual([{ HeaderName: FRONT_HEADER, HeaderValue: FRONTS.cloudFront }]);
    synth.template.resourceCountIs('AWS::CloudFront::VpcOrigin', 1);
    // The service answers 202 before CloudFront's origin timeout.
    expect(INVOCATION_URL_POLL_CAP_SECONDS).toBeLessThan(INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS);
    expect(synth.template.toJSON().Outputs[OUTPUTS.invocationUrl].Value).toEqual({ 'Fn::Join': ['', ['https://', { 'Fn::GetAtt': [logicalId(plane().distribution), 'DomainName'] }]] });
  });

  it('answers *.invocation.<domain> with its certificate and TLS 1.2, forwarding Host, when a domain is configured', () => {
    const certificate = 'arn:aws:acm:us-east-1:123456789012:certificate/abcd-1234';
    withStack({ invocationDomain: 'example.com', invocationCertificateArn: certificate }, ({ template, stack }) => {
      const config = Object.values(template.findResources('AWS::CloudFront::Distribution'))[0]!.Properties.DistributionConfig;
      expect(config.Aliases).toEqual(['invocation.example.com', '*.invocation.example.com']);
      expect(config.ViewerCertificate).toMatchObject({ AcmCertificateArn: certificate, MinimumProtocolVersion: 'TLSv1.2_2021' });
      // The service reads the function id from {functionId}.invocation.<domain>, so the caller's Host must reach it.
      expect(config.DefaultCacheBehavior.OriginRequestPolicyId).toBe(OriginRequestPolicy.ALL_VIEWER.originRequestPolicyId);
      const env = find(template, 'Deployment', K8S.invocationServiceName).spec.template.spec.containers[0].env;
      expect(env).toContainEqual({ name: ENV_NAMES.invocationDomain, value: 'example.com' });
      expect(template.toJSON().Outputs[OUTPUTS.invocationUrl].Value).toBe('https://invocation.example.com');
      expect(stack.invocation!.url).toBe('https://invocation.example.com');
    });
  });

  it('carries gRPC end to end with an origin certificate: HTTPS listener, gRPC target group of the same pods, CloudFront gRPC over an HTTPS origin', () => {
    const certificate = 'arn:aws:acm:us-east-1:123456789012:certificate/abcd-1234';
    const originCertificate = 'arn:aws:acm:us-east-1:123456789012:certificate/origin-5678';
    withStack({ invocationDomain: 'example.com', invocationCertificateArn: certificate, invocationOriginCertificateArn: originCertificate }, ({ template, stack }) => {
      const config = Object.values(template.findResources('AWS::CloudFront::Distribution'))[0]!.Properties.DistributionConfig;
      expect(config.DefaultCacheBehavior.GrpcConfig).toEqual({ Enabled: true });
      expect(config.DefaultCacheBehavior.AllowedMethods).toContain('POST');
      expect(config.HttpVersion).toBe('http2and3');
      const vpcOrigin = Object.values(template.findResources('AWS::CloudFront::VpcOrigin'))[0]!.Properties.VpcOriginEndpointConfig;
      expect(vpcOrigin).toMatchObject({ HTTPSPort: ALB_HTTPS_LISTENER_PORT, OriginProtocolPolicy: 'https-only', OriginSSLProtocols: ['TLSv1.2'] });

      const plane = stack.invocation!;
      const groups = template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup');
      expect(groups[logicalId(plane.grpcTargetGroup!)]!.Properties).toMatchObject({
        Protocol: 'HTTP',
        ProtocolVersion: 'GRPC',
        Port: DEFAULT_INVOCATION_PORT,
        TargetType: 'ip',
        HealthCheckPath: '/grpc.health.v1.Health/Check',
        Matcher: { GrpcCode: '0' },
      });
      const listeners = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::Listener')).map((listener) => listener.Properties);
      const https = listeners.find((listener) => listener.Protocol === 'HTTPS')!;
      expect(https).toMatchObject({ Port: ALB_HTTPS_LISTENER_PORT, Certificates: [{ CertificateArn: originCertificate }] });
      expect(https.DefaultActions[0].TargetGroupArn).toEqual({ Ref: logicalId(plane.targetGroup) });
      // API Gateway's VPC link keeps the plain HTTP listener.
      expect(listeners.find((listener) => listener.Protocol === 'HTTP')).toMatchObject({ Port: ALB_LISTENER_PORT });
      const [rule] = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::ListenerRule')).map((r) => r.Properties);
      expect(rule!.Conditions).toEqual([{ Field: 'http-header', HttpHeaderConfig: { HttpHeaderName: 'content-type', Values: ['application/grpc*'] } }]);
      expect(rule!.Actions[0].TargetGroupArn).toEqual({ Ref: logicalId(plane.grpcTargetGroup!) });

      const binding = kubernetesObjects(template).find((object) => object.kind === 'TargetGroupBinding' && object.metadata.name === `${K8S.invocationServiceName}-grpc`);
      expect(binding?.spec).toMatchObject({ serviceRef: { name: K8S.invocationServiceName, port: DEFAULT_INVOCATION_PORT }, targetType: 'ip' });
    });
  });

  it('has no gRPC target group, HTTPS listener or CloudFront gRPC without an origin certificate', () => {
    const config = resources('AWS::CloudFront::Distribution')[0]!.Properties.DistributionConfig;
    expect(config.DefaultCacheBehavior.GrpcConfig).toBeUndefined();
    expect(plane().grpcTargetGroup).toBeUndefined();
    expect(resources('AWS::ElasticLoadBalancingV2::Listener').map((listener) => listener.Properties.Protocol)).toEqual(['HTTP']);
  });

  it.each([
    [{ invocationOriginCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/x' }, /needs invocationDomain/],
    [{ invocationDomain: 'example.com', invocationCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/x', invocationOriginCertificateArn: 'not-an-arn' }, /invocationOriginCertificateArn must be an ACM certificate ARN/],
    [{ invocationDomain: 'example.com' }, /go together/],
    [{ invocationDomain: 'Not A Domain', invocationCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/x' }, /invocationDomain must be a DNS domain/],
    [{ invocationDomain: 'example.com', invocationCertificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/x' }, /us-east-1/],
    [{ invocationReplicas: 1 }, /invocationReplicas/],
  ])('refuses invalid invocation settings %j', (props, message) => {
    expect(() => withStack(props, () => undefined)).toThrow(message);
  });

  it('creates no invocation plane, and no invocation routes, without a GPU cluster', () => {
    withStack({ gpuCluster: false }, ({ template, stack }) => {
      expect(stack.invocation).toBeUndefined();
      template.resourceCountIs('AWS::CloudFront::Distribution', 0);
      expect(template.toJSON().Outputs[OUTPUTS.invocationUrl]).toBeUndefined();
      expect(kubernetesObjects(template)).toEqual([]);
    });
  });
});
