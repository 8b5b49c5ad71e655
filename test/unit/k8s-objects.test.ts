/**
 * The Kubernetes objects the controller applies for a workload, validated
 * against the Kubernetes schemas (kubernetes-models); KEDA's objects have no
 * model there, so their shape is asserted.
 */
import { Deployment } from 'kubernetes-models/apps/v1';
import { Namespace, Secret } from 'kubernetes-models/v1';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { describe, expect, it } from 'vitest';
import type { FunctionVersionRecord } from '../../core/model';
import { ENV, K8S } from '../../core/names';
import { agentEnvironment, helmAccessBinding, helmNamespaceObject, UnbuildableWorkload, workloadObjects } from '../../gpu-agent/controller/k8s/objects';
import { workloadFingerprint } from '../../gpu-agent/controller/plan';
import { CONTEXT, testVersion, workloadOf } from '../support/k8s-fixtures';

const envOf = (container: { env?: { name: string; value?: string }[] }) => Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));

function objectsOf(version: FunctionVersionRecord) {
  const [auth, deployment, scaled] = workloadObjects(workloadOf(version), CONTEXT) as any[];
  return { auth, deployment, scaled };
}

describe('container function objects', () => {
  it('produce a Deployment that validates against the Kubernetes schema', () => {
    const { deployment } = objectsOf(testVersion({ models: [{ name: 'weights', version: '1', uri: 's3://platform-bucket/models/w.tar.gz' }] }));
    expect(() => new Deployment(deployment).validate()).not.toThrow();
    expect(deployment.metadata).toMatchObject({ name: 'nvcf-v0v0v0v0-0000-4000-8000-000000000002-0', namespace: K8S.functionsNamespace });
  });

  it('leave the replica count to KEDA and label everything with the workload key and fingerprint', () => {
    const version = testVersion();
    const { auth, deployment, scaled } = objectsOf(version);
    expect(deployment.spec.replicas).toBeUndefined();
    for (const object of [auth, deployment, scaled]) {
      expect(object.metadata.labels).toMatchObject({ [K8S.workloadLabel]: `${version.versionId}-0`, 'app.kubernetes.io/managed-by': 'nvcf-controller' });
      expect(object.metadata.annotations[K8S.fingerprintAnnotation]).toBe(workloadFingerprint(workloadOf(version)));
    }
  });

  it('run the user container on one GPU of the requested type, tolerating the GPU taint, with readiness from health', () => {
    const pod = objectsOf(testVersion()).deployment.spec.template.spec;
    expect(pod.nodeSelector).toEqual({ 'nvcf.io/gpu': 'L40S', 'node.kubernetes.io/instance-type': 'g6e.xlarge', 'kubernetes.io/arch': 'amd64' });
    expect(pod.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    const inference = pod.containers.find((c: { name: string }) => c.name === 'inference');
    expect(inference).toMatchObject({
      image: 'nvcr.io/example/echo:1.0',
      args: ['--workers', '2'],
      ports: [{ name: 'inference', containerPort: 8000 }],
      resources: { limits: { 'nvidia.com/gpu': '1' } },
      readinessProbe: { httpGet: { path: '/health', port: 8000 }, timeoutSeconds: 10 },
      securityContext: { allowPrivilegeEscalation: false },
    });
    expect(inference.volumeMounts).toContainEqual({ name: 'config', mountPath: '/config', readOnly: true });
    expect(envOf(inference)).toMatchObject({ MODEL: 'small', NVCF_FUNCTION_ID: 'f0f0f0f0-0000-4000-8000-000000000001', NVCF_BACKEND: 'AWS', NVCF_REGION: 'us-east-1' });
    // The user container gets no table or bucket names: those are the worker's.
    expect(envOf(inference)[ENV.functionsTable]).toBeUndefined();
  });

  it('put the worker beside it: agent image, non-root, loopback URL, shared work dir, queue and tables', () => {
    const pod = objectsOf(testVersion()).deployment.spec.template.spec;
    const worker = pod.containers.find((c: { name: string }) => c.name === 'worker');
    expect(worker).toMatchObject({ image: CONTEXT.agentImages.amd64, args: ['worker'], securityContext: { runAsNonRoot: true, readOnlyRootFilesystem: true } });
    expect(envOf(worker)).toMatchObject({
      NVCF_WORKER_INFERENCE_URL: 'http://127.0.0.1:8000',
      NVCF_WORKER_ASSET_DIR: '/var/inf/inputAssets',
      NVCF_WORKER_OUTPUT_DIR: '/var/inf/response',
      NVCF_WORKER_QUEUE_URL: testVersion().deployment!.queueUrl,
      NVCF_WORKER_MAX_CONCURRENCY: '4',
      [ENV.functionsTable]: 'Functions',
      [ENV.bucket]: 'platform-bucket',
    });
    const inference = pod.containers.find((c: { name: string }) => c.name === 'inference');
    // Same path in both containers, so NVCF-ASSET-DIR means the same file to each.
    expect(worker.volumeMounts).toContainEqual({ name: 'work', mountPath: '/var/inf' });
    expect(inference.volumeMounts).toContainEqual({ name: 'work', mountPath: '/var/inf' });
    expect(pod.serviceAccountName).toBe(K8S.workerServiceAccount);
  });

  it('keep the container serving until the worker has drained, and no longer: preStop asks the worker’s drain endpoint', () => {
    const pod = objectsOf(testVersion()).deployment.spec.template.spec;
    const worker = pod.containers.find((c: { name: string }) => c.name === 'worker');
    const inference = pod.containers.find((c: { name: string }) => c.name === 'inference');
    expect(inference.lifecycle.preStop).toEqual({ httpGet: { path: '/drain', port: 8010 } });
    expect(envOf(worker).NVCF_WORKER_DRAIN_PORT).toBe('8010');
    // Only the node (kubelet) may drain it over the network, not other pods.
    expect(worker.env).toContainEqual({ name: 'NVCF_WORKER_DRAIN_FROM', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } });
    // kubelet waits for an HTTP hook up to the grace period: longer than the worker's own, so its jobs finish first.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(Number(envOf(worker).NVCF_WORKER_GRACE_SECONDS));
  });

  it('replace instances one at a time without a surge pod, which would wait for the GPU its predecessor holds', () => {
    const { deployment } = objectsOf(testVersion());
    expect(deployment.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } });
    expect(deployment.spec.progressDeadlineSeconds).toBeGreaterThanOrEqual(1800);
  });

  it('keep the worker’s AWS role and any Kubernetes token from the user’s container, but not from the worker and the fetcher', () => {
    const { deployment } = objectsOf(testVersion({ models: [{ name: 'weights', version: '1', uri: 's3://platform-bucket/models/w.tar.gz' }] }));
    const template = deployment.spec.template;
    expect(template.metadata.annotations).toEqual({ 'eks.amazonaws.com/skip-containers': 'inference' });
    expect(template.spec.automountServiceAccountToken).toBe(false);
    expect(template.spec.serviceAccountName).toBe(K8S.workerServiceAccount);
    const names = [...template.spec.initContainers, ...template.spec.containers].map((c: { name: string }) => c.name);
    expect(names.filter((name: string) => name !== 'inference')).toEqual(['write-secrets', 'fetch-artifacts', 'worker']);
  });

  it('give the user’s container a memory-backed /dev/shm with a size limit', () => {
    const pod = objectsOf(testVersion()).deployment.spec.template.spec;
    const inference = pod.containers.find((c: { name: string }) => c.name === 'inference');
    const mount = inference.volumeMounts.find((m: { mountPath: string }) => m.mountPath === '/dev/shm');
    expect(pod.volumes.find((v: { name: string }) => v.name === mount.name).emptyDir).toEqual({ medium: 'Memory', sizeLimit: expect.stringMatching(/^\d+Gi$/) });
  });

  it.each([
    { instanceType: 'g6e.xlarge', gpus: '1' },
    { instanceType: 'g6e.12xlarge', gpus: '4' },
    { instanceType: 'p5.48xlarge', gpus: '8' },
    { instanceType: 'g5g.16xlarge', gpus: '2' },
    { instanceType: 'g9x.xlarge', gpus: '1' },
  ])('give an instance on $instanceType all of its $gpus GPU(s)', ({ instanceType, gpus }) => {
    const pod = objectsOf(testVersion({}, { instanceType })).deployment.spec.template.spec;
    expect(pod.containers.find((c: { name: string }) => c.name === 'inference').resources.limits).toEqual({ 'nvidia.com/gpu': gpus });
  });

  it('fetch models and resources in an init container only when the version has some', () => {
    expect(objectsOf(testVersion()).deployment.spec.template.spec.initContainers.map((c: { name: string }) => c.name)).toEqual(['write-secrets']);
    const version = testVersion({
      models: [{ name: 'weights', version: '1', uri: 's3://platform-bucket/models/w.tar.gz' }],
      resources: [{ name: 'vocab', version: '1', uri: 's3://platform-bucket/models/vocab.txt' }],
    });
    const [, init] = objectsOf(version).deployment.spec.template.spec.initContainers;
    expect(init).toMatchObject({ name: 'fetch-artifacts', image: CONTEXT.agentImages.amd64, args: ['fetch-artifacts'], terminationMessagePolicy: 'FallbackToLogsOnError' });
    expect(init.volumeMounts).toContainEqual({ name: 'config', mountPath: '/config' });
    expect(envOf(init)).toMatchObject({ NVCF_FUNCTION_ID: version.functionId, NVCF_FUNCTION_VERSION_ID: version.versionId, NVCF_ARTIFACTS_DIR: '/config', [ENV.bucket]: 'platform-bucket' });
  });

  it('use the arm64 agent image and node selector for a Graviton GPU type', () => {
    const pod = objectsOf(testVersion({}, { gpu: 'T4G', instanceType: 'g5g.xlarge' })).deployment.spec.template.spec;
    expect(pod.nodeSelector['kubernetes.io/arch']).toBe('arm64');
    expect(pod.containers.find((c: { name: string }) => c.name === 'worker').image).toBe(CONTEXT.agentImages.arm64);
  });

  it('probe gRPC functions with the gRPC health protocol', () => {
    const { deployment } = objectsOf(testVersion({ health: { protocol: 'gRPC', uri: '/', port: 8001, timeout: 'PT5S', expectedStatusCode: 0 }, inferencePort: 8001 }));
    expect(() => new Deployment(deployment).validate()).not.toThrow();
    expect(deployment.spec.template.spec.containers[0].readinessProbe).toMatchObject({ grpc: { port: 8001 }, timeoutSeconds: 5 });
  });

  it('scale with KEDA on the version queue: queueLength = maxRequestConcurrency, in-flight counted, min/max from the spec', () => {
    const { auth, scaled, deployment } = objectsOf(testVersion({}, { minInstances: 0, maxInstances: 5, maxRequestConcurrency: 4 }));
    expect(scaled).toMatchObject({
      apiVersion: 'keda.sh/v1alpha1',
      kind: 'ScaledObject',
      metadata: { name: deployment.metadata.name, namespace: K8S.functionsNamespace },
      spec: {
        scaleTargetRef: { name: deployment.metadata.name },
        minReplicaCount: 0,
        maxReplicaCount: 5,
        triggers: [
          {
            type: 'aws-sqs-queue',
            authenticationRef: { name: auth.metadata.name },
            metadata: { queueURL: testVersion().deployment!.queueUrl, queueLength: '4', awsRegion: 'us-east-1', scaleOnInFlight: 'true' },
          },
        ],
      },
    });
    // KEDA reads trigger metadata as strings only.
    for (const value of Object.values(scaled.spec.triggers[0].metadata)) expect(typeof value).toBe('string');
    expect(auth).toMatchObject({ apiVersion: 'keda.sh/v1alpha1', kind: 'TriggerAuthentication', spec: { podIdentity: { provider: 'aws', identityOwner: 'keda' } } });
  });

  it('pause KEDA at zero replicas for a version in ERROR, and only then', () => {
    expect(objectsOf(testVersion({ status: 'ERROR' })).scaled.metadata.annotations).toMatchObject({ [K8S.kedaPausedReplicasAnnotation]: '0' });
    expect(objectsOf(testVersion({ status: 'ACTIVE' })).scaled.metadata.annotations).not.toHaveProperty([K8S.kedaPausedReplicasAnnotation]);
  });

  it('fail with an actionable message when no agent image exists for the nodes’ architecture', () => {
    const workload = workloadOf(testVersion({}, { gpu: 'T4G', instanceType: 'g5g.xlarge' }));
    expect(() => workloadObjects(workload, { ...CONTEXT, agentImages: { amd64: 'x' } })).toThrow(UnbuildableWorkload);
    expect(() => workloadObjects(workload, { ...CONTEXT, agentImages: { amd64: 'x' } })).toThrow(/no gpu-agent image for arm64/);
  });

  it('fail with an actionable message for a version with nothing to run', () => {
    expect(() => objectsOf(testVersion({ containerImage: undefined }))).toThrow(UnbuildableWorkload);
  });
});

describe('model-only function objects', () => {
  const modelOnly = (containerArgs?: string) =>
    testVersion({ containerImage: undefined, containerArgs, inferencePort: 8000, models: [{ name: 'resnet', version: '1', uri: 's3://platform-bucket/models/resnet.tar.gz' }] });

  it('run NVIDIA Triton on the fetched models, forwarding the NVCF-* headers, in a valid Deployment', () => {
    const { deployment } = objectsOf(modelOnly());
    expect(() => new Deployment(deployment).validate()).not.toThrow();
    const pod = deployment.spec.template.spec;
    expect(pod.initContainers.map((c: { name: string }) => c.name)).toEqual(['write-secrets', 'fetch-artifacts']);
    expect(pod.containers.find((c: { name: string }) => c.name === 'inference')).toMatchObject({
      image: CONTEXT.tritonImage,
      args: ['tritonserver', '--model-repository=/config/models', '--http-port=8000', '--http-header-forward-pattern=NVCF-.*'],
    });
  });

  it('take Triton’s arguments from containerArgs when the version has some', () => {
    const inference = objectsOf(modelOnly('tritonserver --model-repository=/config/models --http-port=8000 --log-verbose=1')).deployment.spec.template.spec.containers[0];
    expect(inference.args).toEqual(['tritonserver', '--model-repository=/config/models', '--http-port=8000', '--log-verbose=1']);
  });
});

describe('Helm function objects', () => {
  const helmVersion = () => testVersion({ containerImage: undefined, helmChart: 'https://charts.example.com/echo-0.1.0.tgz', helmChartServiceName: 'echo' });

  it('run a worker-only Deployment on the system nodes that calls the chart’s service in the version namespace', () => {
    const { deployment } = objectsOf(helmVersion());
    expect(() => new Deployment(deployment).validate()).not.toThrow();
    const pod = deployment.spec.template.spec;
    expect(pod.containers.map((c: { name: string }) => c.name)).toEqual(['worker']);
    expect(pod.nodeSelector).toEqual({ 'nvcf.io/node-role': 'system', 'kubernetes.io/arch': 'amd64' });
    expect(envOf(pod.containers[0]).NVCF_WORKER_INFERENCE_URL).toBe('http://echo.nvcf-fn-v0v0v0v0-0000-4000-8000-000000000002-0.svc:8000');
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('start a new worker before an old one drains: no GPU, so a surge pod fits', () => {
    const { deployment } = objectsOf(helmVersion());
    expect(deployment.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  });

  it('install into a labelled namespace with the baseline pod security level, fingerprinted once the chart is installed', () => {
    const workload = workloadOf(helmVersion());
    const namespace = helmNamespaceObject(workload, { chartInstalled: true }) as any;
    expect(() => new Namespace(namespace).validate()).not.toThrow();
    expect(namespace.metadata.name.length).toBeLessThanOrEqual(63);
    expect(namespace.metadata.labels).toMatchObject({ 'pod-security.kubernetes.io/enforce': 'baseline', [K8S.workloadLabel]: `${helmVersion().versionId}-0` });
    expect(namespace.metadata.annotations).toEqual({ [K8S.fingerprintAnnotation]: workloadFingerprint(workload) });
    expect((helmNamespaceObject(workload, { chartInstalled: false }) as any).metadata.annotations).toBeUndefined();
  });

  it('bind the controller to the Helm function role in that namespace with a valid RoleBinding', () => {
    const binding = helmAccessBinding(workloadOf(helmVersion()));
    expect(() => new RoleBinding(binding as any).validate()).not.toThrow();
    expect(binding.metadata.namespace).toBe(`${K8S.helmNamespacePrefix}${helmVersion().versionId}-0`);
  });

  it('fail with an actionable message when the function has no helmChartServiceName', () => {
    expect(() => objectsOf(testVersion({ containerImage: undefined, helmChart: 'https://charts.example.com/echo-0.1.0.tgz' }))).toThrow(/no helmChartServiceName/);
  });
});

describe('agent environment', () => {
  it('copies the table, bucket and queue settings and the region, not the controller’s cluster settings', () => {
    const env = agentEnvironment({
      [ENV.functionsTable]: 'F',
      [ENV.instancesTable]: 'I',
      [ENV.bucket]: 'B',
      [ENV.queuePrefix]: 'nvcf-',
      [ENV.clusterName]: 'cluster',
      [ENV.agentImages]: '{}',
      [ENV.tritonImage]: 'triton',
      AWS_REGION: 'eu-west-1',
      POWERTOOLS_LOG_LEVEL: 'INFO',
      HOME: '/root',
    });
    expect(env).toEqual({ [ENV.functionsTable]: 'F', [ENV.instancesTable]: 'I', [ENV.bucket]: 'B', [ENV.queuePrefix]: 'nvcf-', AWS_REGION: 'eu-west-1', POWERTOOLS_LOG_LEVEL: 'INFO' });
  });
});

describe('image pull secret', () => {
  const LOGIN = { host: 'nvcr.io', username: '$oauthtoken', password: 'nvapi-pull-key' };

  it('is made from the owner’s login for the image’s registry alone, applied before the Deployment whose pods name it', () => {
    const version = testVersion();
    const [secret, auth, deployment, scaled] = workloadObjects(workloadOf(version), CONTEXT, { pullLogin: LOGIN }) as any[];
    expect([secret.kind, auth.kind, deployment.kind, scaled.kind]).toEqual(['Secret', 'TriggerAuthentication', 'Deployment', 'ScaledObject']);
    expect(() => new Secret(secret).validate()).not.toThrow();
    expect(secret.metadata).toMatchObject({ name: `nvcf-pull-${version.versionId}-0`, namespace: K8S.functionsNamespace });
    expect(secret.metadata.labels).toMatchObject({ [K8S.workloadLabel]: `${version.versionId}-0`, 'nvcf.io/version-id': version.versionId });
    expect(secret.type).toBe('kubernetes.io/dockerconfigjson');
    const config = JSON.parse(Buffer.from(secret.data['.dockerconfigjson'], 'base64').toString('utf8'));
    expect(config).toEqual({ auths: { 'nvcr.io': { username: '$oauthtoken', password: 'nvapi-pull-key', auth: Buffer.from('$oauthtoken:nvapi-pull-key').toString('base64') } } });
    expect(deployment.spec.template.spec.imagePullSecrets).toEqual([{ name: secret.metadata.name }]);
    expect(() => new Deployment(deployment).validate()).not.toThrow();
    // The login is in the Secret only: not in the Deployment, not in the fingerprint.
    expect(JSON.stringify([auth, deployment, scaled])).not.toContain('nvapi-pull-key');
  });

  it('keys a Docker Hub login by its index URL, as kubelet looks it up', () => {
    const [secret] = workloadObjects(workloadOf(testVersion({ containerImage: 'me/private:1' })), CONTEXT, { pullLogin: { ...LOGIN, host: 'docker.io' } }) as any[];
    expect(Object.keys(JSON.parse(Buffer.from(secret.data['.dockerconfigjson'], 'base64').toString('utf8')).auths)).toEqual(['https://index.docker.io/v1/']);
  });

  it('is absent without a login: no Secret, no imagePullSecrets (the stack’s own ECR pulls through the nodes’ role)', () => {
    const objects = workloadObjects(workloadOf(testVersion({ containerImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/echo:1' })), CONTEXT) as any[];
    expect(objects.map((object) => object.kind)).toEqual(['TriggerAuthentication', 'Deployment', 'ScaledObject']);
    expect(objects[1].spec.template.spec).not.toHaveProperty('imagePullSecrets');
  });
});
