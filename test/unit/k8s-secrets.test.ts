/**
 * How the controller's objects deliver a version's secrets on EKS: the
 * write-secrets init container (the worker's identity) fills a memory-backed
 * volume, mounted read-only into the user's container and writable for the
 * worker that keeps it current; the user's container gets no AWS credentials
 * and no object carries a value or the sealed set.
 */
import { Deployment } from 'kubernetes-models/apps/v1';
import { describe, expect, it } from 'vitest';
import { ENV } from '../../core/names';
import { LocalDataKeys, sealSecrets } from '../../core/secrets';
import { workloadObjects } from '../../gpu-agent/controller/k8s/objects';
import { workloadFingerprint } from '../../gpu-agent/controller/plan';
import { SECRETS_FILE } from '../../gpu-agent/secrets-file';
import { CONTEXT, testVersion, workloadOf } from '../support/k8s-fixtures';

const MARKER = 'k8s-marker-90b1c2';
const context = { ...CONTEXT, agentEnv: { ...CONTEXT.agentEnv, [ENV.secretsKeyId]: 'arn:aws:kms:us-east-1:123456789012:key/k' } };
type Container = { name: string; env?: { name: string; value?: string }[]; volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[] };

async function sealedVersion() {
  const version = testVersion();
  const secrets = await sealSecrets([{ name: 'TOKEN', value: MARKER }], version, new LocalDataKeys(Buffer.alloc(32, 1)));
  return { ...version, secrets };
}

function podOf(version: ReturnType<typeof testVersion>) {
  const objects = workloadObjects(workloadOf(version), context) as any[];
  const deployment = objects.find((object) => object.kind === 'Deployment');
  return { objects, deployment, pod: deployment.spec.template.spec, annotations: deployment.spec.template.metadata.annotations };
}
const container = (pod: any, name: string): Container => [...(pod.initContainers ?? []), ...pod.containers].find((c: Container) => c.name === name);
const envOf = (c: Container) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));

describe('secrets delivery objects', () => {
  it('write the file first, with the agent image and the worker identity, into a memory-backed volume', async () => {
    const { pod, deployment } = podOf(await sealedVersion());
    expect(() => new Deployment(deployment).validate()).not.toThrow();
    expect(pod.initContainers[0]).toMatchObject({ name: 'write-secrets', image: context.agentImages.amd64, args: ['write-secrets'], terminationMessagePolicy: 'FallbackToLogsOnError' });
    expect(envOf(pod.initContainers[0])).toMatchObject({ NVCF_FUNCTION_ID: deployment.metadata.labels['nvcf.io/function-id'], NVCF_SECRETS_FILE: SECRETS_FILE, [ENV.secretsKeyId]: context.agentEnv[ENV.secretsKeyId] });
    expect(pod.volumes).toContainEqual({ name: 'secrets', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } });
    expect(pod.initContainers[0].volumeMounts).toContainEqual({ name: 'secrets', mountPath: '/var/secrets' });
  });

  it('mount /var/secrets read-only into the user’s container and writable into the worker, which is told the file', async () => {
    const { pod } = podOf(await sealedVersion());
    expect(container(pod, 'inference').volumeMounts).toContainEqual({ name: 'secrets', mountPath: '/var/secrets', readOnly: true });
    expect(container(pod, 'worker').volumeMounts).toContainEqual({ name: 'secrets', mountPath: '/var/secrets' });
    expect(envOf(container(pod, 'worker')).NVCF_WORKER_SECRETS_FILE).toBe('/var/secrets/secrets.json');
  });

  it('give the user’s container no AWS credentials, no key id and no Kubernetes token', async () => {
    const { pod, annotations } = podOf(await sealedVersion());
    // The Pod Identity webhook skips exactly the user's container: write-secrets and the worker get the role.
    expect(annotations['eks.amazonaws.com/skip-containers']).toBe('inference');
    expect(pod.automountServiceAccountToken).toBe(false);
    const inference = envOf(container(pod, 'inference'));
    expect(Object.keys(inference).filter((name) => name.startsWith('AWS_') || name === ENV.secretsKeyId || name === ENV.secretsLocalKeyFile)).toEqual([]);
  });

  it('carry no secret value and none of the sealed set in any object', async () => {
    const version = await sealedVersion();
    const text = JSON.stringify(podOf(version).objects);
    expect(text).not.toContain(MARKER);
    expect(text).not.toContain(version.secrets.ciphertext);
    expect(text).not.toContain(version.secrets.wrappedKey);
  });

  it('keep the fingerprint when only the secrets change, so that a PUT restarts no pod (the worker rewrites the file)', async () => {
    const version = await sealedVersion();
    const { secrets: _, ...without } = version;
    expect(workloadFingerprint(workloadOf(version))).toBe(workloadFingerprint(workloadOf(without)));
  });

  it('give a version without secrets the same volume and init step, so that a later PUT reaches its pods', () => {
    const { pod } = podOf(testVersion());
    expect(pod.initContainers.map((c: Container) => c.name)).toEqual(['write-secrets']);
    expect(container(pod, 'inference').volumeMounts).toContainEqual({ name: 'secrets', mountPath: '/var/secrets', readOnly: true });
  });
});
