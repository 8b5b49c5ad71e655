import { randomUUID } from 'node:crypto';
import { ListQueuesCommand, ReceiveMessageCommand, DeleteMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dynamo, sqs } from '../../core/aws';
import { tableName } from '../../core/config';
import { changeStatus, getVersion } from '../../core/functions';
import type { FunctionVersionRecord, InvocationStatus } from '../../core/model';
import { ENV, NODEGROUP_MIN_NODES_TAG, queueNameOf } from '../../core/names';
import { ensureDeploymentQueues, newDeploymentQueueNames } from '../../core/queues';
import { SWEEPER, sweepQueues } from '../../core/sweeper';
import { startFakeEks, type FakeEks } from '../support/fake-eks';
import { putVersion } from '../support/function-versions';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

const GPUS = [
  { gpu: 'L40S', instanceTypes: ['g6e.xlarge', 'g6e.2xlarge'] },
  { gpu: 'L4', instanceTypes: ['g6.xlarge'] },
];
const SPEC = { gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 2 };
const ISO_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

function deploymentPath(version: Pick<FunctionVersionRecord, 'functionId' | 'versionId'>): string {
  return `/v2/nvcf/deployments/functions/${version.functionId}/versions/${version.versionId}`;
}

async function versionQueueNames(versionId: string): Promise<string[]> {
  const { QueueUrls = [] } = await sqs().send(new ListQueuesCommand({ QueueNamePrefix: `nvcf-${versionId}` }));
  return QueueUrls.map((url) => url.split('/').pop()!).sort();
}

async function queueUrlOf(version: Pick<FunctionVersionRecord, 'functionId' | 'versionId'>): Promise<string> {
  return (await getVersion(version.functionId, version.versionId))!.deployment!.queueUrl;
}

/** A sweeper pass as it runs once the undeploy's quiet period is over. */
async function sweepAfterQuietPeriod(): Promise<void> {
  await sweepQueues({ now: Date.now() + SWEEPER.quietMs });
}

async function putInvocation(version: FunctionVersionRecord, status: InvocationStatus): Promise<string> {
  const requestId = randomUUID();
  const now = new Date().toISOString();
  await dynamo().send(
    new PutCommand({
      TableName: tableName('invocations'),
      Item: {
        requestId,
        accountId: version.accountId,
        functionId: version.functionId,
        versionId: version.versionId,
        status,
        createdAt: now,
        updatedAt: now,
        expiresAt: Math.floor(Date.now() / 1000) + 3600,
      },
    }),
  );
  return requestId;
}

async function invocation(requestId: string): Promise<Record<string, any>> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('invocations'), Key: { requestId } }));
  return Item!;
}

describe('deployments', () => {
  let stack: TestStack;
  let owner: { accountId: string; key: string };
  let stranger: { accountId: string; key: string };

  beforeAll(async () => {
    stack = await startTestStack({ [ENV.gpus]: JSON.stringify(GPUS) });
    owner = await newAccount();
    stranger = await newAccount();
  });
  afterAll(async () => stack.stop());

  const deploy = (version: FunctionVersionRecord, specs: unknown[] = [SPEC], key = owner.key) =>
    stack.call('POST', deploymentPath(version), { key, body: { deploymentSpecifications: specs } });
  const update = (version: FunctionVersionRecord, specs: unknown[], key = owner.key) =>
    stack.call('PUT', deploymentPath(version), { key, body: { deploymentSpecifications: specs } });

  describe('deploy (D1)', () => {
    it('answers the Deployment, moves the version to DEPLOYING and creates its queue and dead-letter queue', async () => {
      const version = await putVersion(owner.accountId, { name: 'deploy-fn' });
      const response = await deploy(version, [{ ...SPEC, maxRequestConcurrency: 4 }]);

      expect(response.statusCode).toBe(200);
      expect(response.json).toEqual({
        deployment: {
          functionId: version.functionId,
          functionVersionId: version.versionId,
          functionName: 'deploy-fn',
          ncaId: owner.accountId,
          functionStatus: 'DEPLOYING',
          deploymentSpecifications: [{ gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 1, maxInstances: 2, maxRequestConcurrency: 4 }],
          createdAt: expect.stringMatching(ISO_DATE),
        },
      });
      expect((await getVersion(version.functionId, version.versionId))?.status).toBe('DEPLOYING');
      const [queueName, deadLetterQueueName] = await versionQueueNames(version.versionId);
      expect(queueName).toMatch(new RegExp(`^nvcf-${version.versionId}-[0-9a-f]{8}$`));
      expect(deadLetterQueueName).toBe(`${queueName}-dlq`);
      expect((await getVersion(version.functionId, version.versionId))?.deployment).toMatchObject({ queueUrl: expect.stringMatching(new RegExp(`/${queueName}$`)) });
    });

    it('makes a version whose specifications all have minInstances 0 ACTIVE at once', async () => {
      const version = await putVersion(owner.accountId);
      const response = await deploy(version, [{ ...SPEC, minInstances: 0 }, { gpu: 'L4', instanceType: 'g6.xlarge', minInstances: 0, maxInstances: 1 }]);
      expect(response.json.deployment.functionStatus).toBe('ACTIVE');
      expect((await getVersion(version.functionId, version.versionId))?.status).toBe('ACTIVE');
    });

    it('keeps the optional fields of a specification and defaults maxRequestConcurrency to 1', async () => {
      const version = await putVersion(owner.accountId);
      const spec = { ...SPEC, backend: 'AWS', availabilityZones: ['us-east-1a'], clusters: ['local'], regions: ['us-east-1'], attributes: ['fast'], preferredOrder: 2 };
      const response = await deploy(version, [spec]);
      expect(response.json.deployment.deploymentSpecifications).toEqual([{ ...spec, maxRequestConcurrency: 1 }]);
      const fetched = await stack.call('GET', deploymentPath(version), { key: owner.key });
      expect(fetched.json).toEqual(response.json);
    });

    it('deploys a specification without instanceType on the GPU’s default (first) instance type, as NVCF’s examples do', async () => {
      const version = await putVersion(owner.accountId);
      const response = await deploy(version, [{ gpu: 'L40S', minInstances: 0, maxInstances: 1 }]);
      expect(response.statusCode).toBe(200);
      expect(response.json.deployment.deploymentSpecifications).toEqual([{ gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 0, maxInstances: 1, maxRequestConcurrency: 1 }]);
    });

    it('refuses a Helm function with 400 at deploy when no cluster runs it (the local stack), creating nothing', async () => {
      const version = await putVersion(owner.accountId, { containerImage: undefined, helmChart: 'https://helm.example/chart-1.0.tgz', helmChartServiceName: 'svc' });
      const response = await deploy(version);
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toBe('application/problem+json');
      expect(response.json.detail).toContain('a Helm function needs the EKS deployment');
      expect((await getVersion(version.functionId, version.versionId))?.status).toBe('INACTIVE');
      expect(await versionQueueNames(version.versionId)).toEqual([]);
    });

    it('answers a repeated deploy with 400 "use PUT", creating nothing twice', async () => {
      const version = await putVersion(owner.accountId);
      const first = await deploy(version);
      const again = await deploy(version, [{ ...SPEC, minInstances: 2, maxInstances: 2 }]);
      expect(again.statusCode).toBe(400);
      expect(again.json.detail).toBe(`Function id '${version.functionId}', version '${version.versionId}': Status DEPLOYING, use PUT to update current deployment`);
      expect(await versionQueueNames(version.versionId)).toHaveLength(2);
      const fetched = await stack.call('GET', deploymentPath(version), { key: owner.key });
      expect(fetched.json).toEqual(first.json);
    });

    it('names the status ACTIVE when refusing to deploy an active version', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version, [{ ...SPEC, minInstances: 0 }]);
      const again = await deploy(version);
      expect(again.json.detail).toContain('Status ACTIVE, use PUT to update current deployment');
    });

    it('refuses a version whose models or resources the function pods could not fetch, naming each, and creates nothing', async () => {
      const bucket = stack.env[ENV.bucket];
      const version = await putVersion(owner.accountId, {
        models: [{ name: 'ngc-model', version: '1', uri: 'v2/org/cf/org/models/m/versions/1/zip' }],
        resources: [
          { name: 'ok', version: '1', uri: `s3://${bucket}/models/vocab.tar.gz` },
          { name: 'elsewhere', version: '1', uri: 's3://another-bucket/models/x' },
        ],
      });
      const response = await deploy(version);
      expect(response.statusCode).toBe(400);
      // An NGC URI is fetched with the owner's NGC credential, which this account does not have.
      expect(response.json.detail).toContain('models[0]: "ngc-model" comes from NGC, and this account has no registry credential for NGC (api.ngc.nvidia.com) listing MODEL; add one with POST /v2/nvcf/registry-credentials');
      expect(response.json.detail).toContain('resources[1]: "elsewhere" is at s3://another-bucket/models/x, outside');
      expect(response.json.detail).not.toContain('resources[0]');
      expect((await getVersion(version.functionId, version.versionId))?.status).toBe('INACTIVE');
      expect(await versionQueueNames(version.versionId)).toEqual([]);
    });

    it('deploys on a retry after an attempt that died between making its queues and recording them; the sweeper removes those queues', async () => {
      const version = await putVersion(owner.accountId);
      const orphans = await ensureDeploymentQueues(newDeploymentQueueNames(version.versionId, 'deadbeef'));

      const retried = await deploy(version);
      expect(retried.statusCode).toBe(200);
      const { deployment } = (await getVersion(version.functionId, version.versionId))!;
      expect(deployment!.queueUrl).not.toBe(orphans.queueUrl);

      await sweepQueues({ now: Date.now() + SWEEPER.deployGraceMs });
      await sweepQueues({ now: Date.now() + SWEEPER.deployGraceMs + SWEEPER.quietMs });
      expect(await versionQueueNames(version.versionId)).toEqual([queueNameOf(deployment!.queueUrl), queueNameOf(deployment!.deadLetterQueueUrl)].sort());
    });

    it('refuses to deploy over a deployment with errors, as NVCF does', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      await changeStatus({ functionId: version.functionId, versionId: version.versionId, from: ['DEPLOYING'], to: 'ERROR' });
      const again = await deploy(version);
      expect(again.statusCode).toBe(400);
      expect(again.json.detail).toContain('Function already has a deployment with errors');
    });

    it('deploys a version again after it was undeployed', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      expect((await stack.call('DELETE', deploymentPath(version), { key: owner.key })).statusCode).toBe(200);
      const again = await deploy(version, [{ ...SPEC, minInstances: 0 }]);
      expect(again.statusCode).toBe(200);
      expect(again.json.deployment.functionStatus).toBe('ACTIVE');
      // Queues of its own: the first deployment's are retired, whatever their state.
      const { deployment } = (await getVersion(version.functionId, version.versionId))!;
      await sweepAfterQuietPeriod();
      expect(await versionQueueNames(version.versionId)).toEqual([queueNameOf(deployment!.queueUrl), queueNameOf(deployment!.deadLetterQueueUrl)].sort());
    });
  });

  describe('validation of deployment specifications', () => {
    const cases: [string, unknown, RegExp | string][] = [
      ['an empty list', { deploymentSpecifications: [] }, 'deploymentSpecifications: must list at least one GPU specification'],
      ['a missing list', {}, /deploymentSpecifications: /],
      ['a GPU that is not offered', { deploymentSpecifications: [{ ...SPEC, gpu: 'H100' }] }, 'deploymentSpecifications[0].gpu: GPU "H100" is not offered; offered GPUs: L40S, L4'],
      [
        'an instance type not offered with the GPU',
        { deploymentSpecifications: [{ ...SPEC, instanceType: 'g6.xlarge' }] },
        'deploymentSpecifications[0].instanceType: instance type "g6.xlarge" is not offered with GPU L40S; offered: g6e.xlarge, g6e.2xlarge',
      ],
      ['a backend that is not offered', { deploymentSpecifications: [{ ...SPEC, backend: 'GFN' }] }, 'deploymentSpecifications[0].backend: backend "GFN" is not offered'],
      [
        'minInstances above maxInstances',
        { deploymentSpecifications: [{ ...SPEC, minInstances: 3, maxInstances: 2 }] },
        "deploymentSpecifications[0].minInstances: Invalid request: 'minInstances' must be lesser than or equal to 'maxInstances'",
      ],
      ['maxInstances 0', { deploymentSpecifications: [{ ...SPEC, minInstances: 0, maxInstances: 0 }] }, 'deploymentSpecifications[0].maxInstances: must be at least 1'],
      ['negative minInstances', { deploymentSpecifications: [{ ...SPEC, minInstances: -1 }] }, 'deploymentSpecifications[0].minInstances: must be at least 0'],
      ['fractional maxInstances', { deploymentSpecifications: [{ ...SPEC, maxInstances: 1.5 }] }, 'deploymentSpecifications[0].maxInstances: must be an integer, got the number 1.5'],
      ['maxRequestConcurrency 0', { deploymentSpecifications: [{ ...SPEC, maxRequestConcurrency: 0 }] }, 'deploymentSpecifications[0].maxRequestConcurrency'],
      ['maxRequestConcurrency 1025', { deploymentSpecifications: [{ ...SPEC, maxRequestConcurrency: 1025 }] }, 'deploymentSpecifications[0].maxRequestConcurrency'],
      ['a string for minInstances', { deploymentSpecifications: [{ ...SPEC, minInstances: '1' }] }, 'deploymentSpecifications[0].minInstances: must be a number, got the string "1"'],
      ['a missing gpu', { deploymentSpecifications: [{ minInstances: 1, maxInstances: 1 }] }, 'deploymentSpecifications[0].gpu: is required'],
      [
        'a configuration for a container function',
        { deploymentSpecifications: [{ ...SPEC, configuration: { replicaCount: 2 } }] },
        'The configuration field in Gpu specification should be empty for container based functions',
      ],
      [
        'the same GPU and instance type twice',
        { deploymentSpecifications: [SPEC, { ...SPEC, minInstances: 0 }] },
        'deploymentSpecifications[1]: gpu L40S with instanceType g6e.xlarge is already given in deploymentSpecifications[0]',
      ],
    ];

    it.each(cases)('refuses %s with 400 naming the field, writing nothing', async (_name, body, detail) => {
      const version = await putVersion(owner.accountId);
      const response = await stack.call('POST', deploymentPath(version), { key: owner.key, body });
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toBe('application/problem+json');
      if (typeof detail === 'string') expect(response.json.detail).toContain(detail);
      else expect(response.json.detail).toMatch(detail);
      expect(response.json.detail).not.toMatch(/Invalid input|received|Too (small|big)/);
      expect((await getVersion(version.functionId, version.versionId))?.status).toBe('INACTIVE');
      expect(await versionQueueNames(version.versionId)).toEqual([]);
    });

    it('refuses a body that is not JSON', async () => {
      const version = await putVersion(owner.accountId);
      const response = await stack.call('POST', deploymentPath(version), { key: owner.key, body: '{"deploymentSpecifications": [', headers: { 'content-type': 'application/json' } });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('not valid JSON');
    });

    it('validates an update with the same rules', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      const response = await update(version, [{ ...SPEC, minInstances: 5, maxInstances: 4 }]);
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain("Invalid request: 'minInstances' must be lesser than or equal to 'maxInstances'");
    });
  });

  describe('get (D2)', () => {
    it('includes healthInfo only when instances failed', async () => {
      const version = await putVersion(owner.accountId);
      const deployed = await deploy(version);
      expect(deployed.json.deployment).not.toHaveProperty('healthInfo');
      const record = (await getVersion(version.functionId, version.versionId))!;
      const healthInfo = [{ gpu: 'L40S', backend: 'AWS', instanceType: 'g6e.xlarge', error: 'health check failed: GET /health answered 500' }];
      await changeStatus({ functionId: version.functionId, versionId: version.versionId, from: ['DEPLOYING'], to: 'ERROR', set: { deployment: { ...record.deployment, healthInfo } } });
      const response = await stack.call('GET', deploymentPath(version), { key: owner.key });
      expect(response.statusCode).toBe(200);
      expect(response.json.deployment.functionStatus).toBe('ERROR');
      expect(response.json.deployment.healthInfo).toEqual(healthInfo);
    });

    it('answers 404 for a version that is not deployed', async () => {
      const version = await putVersion(owner.accountId);
      const response = await stack.call('GET', deploymentPath(version), { key: owner.key });
      expect(response.statusCode).toBe(404);
      expect(response.json.detail).toContain('Status INACTIVE, the function version is not deployed');
    });
  });

  describe('update (D3)', () => {
    it('changes min, max and concurrency, keeping createdAt and the other fields', async () => {
      const version = await putVersion(owner.accountId);
      const deployed = await deploy(version, [{ ...SPEC, backend: 'AWS', regions: ['us-east-1'], maxRequestConcurrency: 4 }]);
      const response = await update(version, [{ gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances: 2, maxInstances: 6, maxRequestConcurrency: 8 }]);
      expect(response.statusCode).toBe(200);
      expect(response.json.deployment).toEqual({
        ...deployed.json.deployment,
        deploymentSpecifications: [{ gpu: 'L40S', backend: 'AWS', instanceType: 'g6e.xlarge', minInstances: 2, maxInstances: 6, maxRequestConcurrency: 8, regions: ['us-east-1'] }],
      });
      expect((await stack.call('GET', deploymentPath(version), { key: owner.key })).json).toEqual(response.json);
    });

    it('updates the deployed instance type of a GPU when the update leaves instanceType out', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version, [{ ...SPEC, instanceType: 'g6e.2xlarge' }]);
      const response = await update(version, [{ gpu: 'L40S', minInstances: 1, maxInstances: 3 }]);
      expect(response.statusCode).toBe(200);
      expect(response.json.deployment.deploymentSpecifications[0]).toMatchObject({ instanceType: 'g6e.2xlarge', maxInstances: 3 });
    });

    it('keeps the deployed maxRequestConcurrency when the update leaves it out', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version, [{ ...SPEC, maxRequestConcurrency: 4 }]);
      const response = await update(version, [{ ...SPEC, maxInstances: 3 }]);
      expect(response.json.deployment.deploymentSpecifications[0]).toMatchObject({ maxInstances: 3, maxRequestConcurrency: 4 });
    });

    it('makes a DEPLOYING version ACTIVE when no specification needs an instance any more', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      const response = await update(version, [{ ...SPEC, minInstances: 0 }]);
      expect(response.json.deployment.functionStatus).toBe('ACTIVE');
    });

    it('leaves an ACTIVE version ACTIVE when minInstances grows', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version, [{ ...SPEC, minInstances: 0 }]);
      const response = await update(version, [{ ...SPEC, minInstances: 2 }]);
      expect(response.json.deployment.functionStatus).toBe('ACTIVE');
    });

    it('refuses to change the GPU, the instance type or the backend, or to drop a specification', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version, [SPEC, { gpu: 'L4', instanceType: 'g6.xlarge', minInstances: 0, maxInstances: 1 }]);
      const l4 = { gpu: 'L4', instanceType: 'g6.xlarge', minInstances: 0, maxInstances: 1 };
      const attempts: [unknown[], string][] = [
        [[{ ...SPEC, instanceType: 'g6e.2xlarge' }, l4], 'deploymentSpecifications[0]: gpu L40S with instanceType g6e.2xlarge is not deployed'],
        [[SPEC, { ...l4, backend: 'local' }], 'deploymentSpecifications[1].backend: cannot be changed by an update'],
        [[SPEC], 'must list every deployed GPU and instance type; missing L4/g6.xlarge'],
      ];
      for (const [specs, detail] of attempts) {
        const response = await update(version, specs);
        expect(response.statusCode).toBe(400);
        expect(response.json.detail).toContain(detail);
      }
      const unchanged = await stack.call('GET', deploymentPath(version), { key: owner.key });
      expect(unchanged.json.deployment.deploymentSpecifications).toHaveLength(2);
    });

    it('refuses to update a version that is not deployed or has errors', async () => {
      const idle = await putVersion(owner.accountId);
      const notDeployed = await update(idle, [SPEC]);
      expect(notDeployed.statusCode).toBe(400);
      expect(notDeployed.json.detail).toContain('Status INACTIVE, the function version is not deployed; use POST to deploy it');

      const failed = await putVersion(owner.accountId);
      await deploy(failed);
      await changeStatus({ functionId: failed.functionId, versionId: failed.versionId, from: ['DEPLOYING'], to: 'ERROR' });
      const response = await update(failed, [SPEC]);
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('Status ERROR');
    });
  });

  describe('undeploy (D4)', () => {
    it('answers the INACTIVE function; the sweeper removes the queue and dead-letter queue once the quiet period is over', async () => {
      const version = await putVersion(owner.accountId, { name: 'undeploy-fn' });
      await deploy(version);
      const response = await stack.call('DELETE', deploymentPath(version), { key: owner.key });
      expect(response.statusCode).toBe(200);
      expect(response.json.function).toMatchObject({
        id: version.functionId,
        versionId: version.versionId,
        ncaId: owner.accountId,
        name: 'undeploy-fn',
        status: 'INACTIVE',
        containerImage: version.containerImage,
        health: version.health,
      });
      expect(await versionQueueNames(version.versionId)).toHaveLength(2);
      await sweepQueues();
      expect(await versionQueueNames(version.versionId)).toHaveLength(2);
      await sweepAfterQuietPeriod();
      expect(await versionQueueNames(version.versionId)).toEqual([]);
      expect((await stack.call('GET', deploymentPath(version), { key: owner.key })).statusCode).toBe(404);
      expect((await getVersion(version.functionId, version.versionId))?.deployment).toBeUndefined();
    });

    it('answers a repeated undeploy with 400, changing nothing', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      await stack.call('DELETE', deploymentPath(version), { key: owner.key });
      const again = await stack.call('DELETE', deploymentPath(version), { key: owner.key });
      expect(again.statusCode).toBe(400);
      expect(again.json.detail).toBe(`Function id '${version.functionId}', version '${version.versionId}': Status INACTIVE, the function version is not deployed`);
      expect((await getVersion(version.functionId, version.versionId))?.status).toBe('INACTIVE');
    });

    it('undeploys a version with errors', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      await changeStatus({ functionId: version.functionId, versionId: version.versionId, from: ['DEPLOYING'], to: 'ERROR' });
      const response = await stack.call('DELETE', deploymentPath(version), { key: owner.key, query: 'graceful=false' });
      expect(response.statusCode).toBe(200);
      expect(response.json.function.status).toBe('INACTIVE');
    });

    it('marks queued invocations errored and leaves finished ones alone', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      const queueUrl = await queueUrlOf(version);
      const queued = [await putInvocation(version, 'QUEUED'), await putInvocation(version, 'QUEUED')];
      const finished = await putInvocation(version, 'FULFILLED');
      for (const requestId of [...queued, finished]) {
        await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ requestId, headers: {} }) }));
      }

      expect((await stack.call('DELETE', deploymentPath(version), { key: owner.key })).statusCode).toBe(200);
      for (const requestId of queued) {
        expect(await invocation(requestId)).toMatchObject({
          status: 'ERRORED',
          error: { status: 503, detail: 'the function version was undeployed before the request was processed' },
        });
      }
      expect((await invocation(finished)).status).toBe('FULFILLED');
    });

    it('leaves in-flight work alone and keeps the queues until it is done', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      const queueUrl = await queueUrlOf(version);
      const running = await putInvocation(version, 'IN_PROGRESS');
      const waiting = await putInvocation(version, 'QUEUED');
      await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ requestId: running }) }));
      const { Messages = [] } = await sqs().send(new ReceiveMessageCommand({ QueueUrl: queueUrl, VisibilityTimeout: 120 }));
      expect(Messages).toHaveLength(1);
      await sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ requestId: waiting }) }));

      const response = await stack.call('DELETE', deploymentPath(version), { key: owner.key, query: 'graceful=true' });
      expect(response.statusCode).toBe(200);
      expect(response.json.function.status).toBe('INACTIVE');
      expect((await invocation(waiting)).status).toBe('ERRORED');
      expect((await invocation(running)).status).toBe('IN_PROGRESS');
      await sweepAfterQuietPeriod();
      expect(await versionQueueNames(version.versionId)).toHaveLength(2);

      // The worker finishes its job; the next pass removes the drained queues.
      await sqs().send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: Messages[0]!.ReceiptHandle }));
      await sweepAfterQuietPeriod();
      expect(await versionQueueNames(version.versionId)).toEqual([]);
    });

    it('refuses a graceful value that is not a boolean', async () => {
      const version = await putVersion(owner.accountId);
      await deploy(version);
      const response = await stack.call('DELETE', deploymentPath(version), { key: owner.key, query: 'graceful=soon' });
      expect(response.statusCode).toBe(400);
      expect(response.json.detail).toContain('graceful: must be true or false');
      expect((await getVersion(version.functionId, version.versionId))?.status).toBe('DEPLOYING');
    });
  });

  describe('access', () => {
    const methods = ['POST', 'GET', 'PUT', 'DELETE'] as const;
    const body = { deploymentSpecifications: [SPEC] };

    it('answers 401 without a key and 403 without the deploy_function scope', async () => {
      const limited = await newAccount(['list_functions', 'register_function']);
      const version = await putVersion(limited.accountId);
      for (const method of methods) {
        expect((await stack.call(method, deploymentPath(version), { body })).statusCode).toBe(401);
        const forbidden = await stack.call(method, deploymentPath(version), { key: limited.key, body });
        expect(forbidden.statusCode).toBe(403);
        expect(forbidden.json.detail).toContain('deploy_function');
      }
    });

    it("answers 404 for another account's version, deployed or not, and changes nothing", async () => {
      const idle = await putVersion(owner.accountId);
      const deployed = await putVersion(owner.accountId);
      await deploy(deployed);
      for (const version of [idle, deployed]) {
        for (const method of methods) {
          const response = await stack.call(method, deploymentPath(version), { key: stranger.key, body });
          expect(response.statusCode).toBe(404);
          expect(response.json.detail).toBe(`Function id '${version.functionId}': Version '${version.versionId}' not found`);
        }
      }
      expect((await getVersion(idle.functionId, idle.versionId))?.status).toBe('INACTIVE');
      expect((await getVersion(deployed.functionId, deployed.versionId))?.status).toBe('DEPLOYING');
      expect(await versionQueueNames(idle.versionId)).toEqual([]);
    });

    it('answers 404 for an unknown version and 400 for ids that are not UUIDs', async () => {
      const unknown = { functionId: randomUUID(), versionId: randomUUID() } as FunctionVersionRecord;
      for (const method of methods) {
        expect((await stack.call(method, deploymentPath(unknown), { key: owner.key, body })).statusCode).toBe(404);
        const invalid = await stack.call(method, `/v2/nvcf/deployments/functions/${unknown.functionId}/versions/latest`, { key: owner.key, body });
        expect(invalid.statusCode).toBe(400);
        expect(invalid.json.detail).toContain('functionVersionId');
      }
    });
  });
});

describe('deployments on EKS', () => {
  let stack: TestStack;
  let eks: FakeEks;
  let owner: { accountId: string; key: string };

  beforeAll(async () => {
    eks = await startFakeEks('nvcf-gpus', [
      { name: 'system', labels: { 'nvcf.io/node-role': 'system' }, instanceTypes: ['m7g.large'], scaling: { minSize: 2, maxSize: 3, desiredSize: 2 } },
      { name: 'gpu-l40s', labels: { 'nvcf.io/gpu': 'L40S' }, instanceTypes: ['g6e.xlarge'], scaling: { minSize: 0, maxSize: 2, desiredSize: 0 } },
      { name: 'gpu-l4', labels: { 'nvcf.io/gpu': 'L4' }, instanceTypes: ['g6.xlarge'], scaling: { minSize: 0, maxSize: 2, desiredSize: 0 } },
    ]);
    stack = await startTestStack({ [ENV.clusterName]: 'nvcf-gpus', AWS_ENDPOINT_URL_EKS: eks.url });
    delete process.env[ENV.gpus];
    owner = await newAccount();
  });
  afterAll(async () => {
    delete process.env[ENV.clusterName];
    delete process.env.AWS_ENDPOINT_URL_EKS;
    await stack.stop();
    await eks.close();
  });

  const l40s = (minInstances: number, maxInstances = 4) => ({ gpu: 'L40S', instanceType: 'g6e.xlarge', minInstances, maxInstances });
  const deploy = (version: FunctionVersionRecord, specs: unknown[]) =>
    stack.call('POST', deploymentPath(version), { key: owner.key, body: { deploymentSpecifications: specs } });
  const updatesOf = (name: string, since: number) =>
    eks.scalingUpdates().slice(since).filter((update) => update.nodegroup === name).map((update) => update.scalingConfig);

  it('sizes the GPU nodegroup for the minimum instances of every deployment on it', async () => {
    const first = await putVersion(owner.accountId);
    const second = await putVersion(owner.accountId);
    const start = eks.scalingUpdates().length;

    expect((await deploy(first, [l40s(3)])).statusCode).toBe(200);
    expect((await deploy(second, [l40s(1)])).statusCode).toBe(200);
    const lowered = await stack.call('PUT', deploymentPath(first), { key: owner.key, body: { deploymentSpecifications: [l40s(1)] } });
    expect(lowered.statusCode).toBe(200);
    expect((await stack.call('DELETE', deploymentPath(second), { key: owner.key })).statusCode).toBe(200);

    expect(updatesOf('gpu-l40s', start)).toEqual([
      { minSize: 3, maxSize: 3, desiredSize: 3 },
      { minSize: 4, maxSize: 4, desiredSize: 4 },
      { minSize: 2, maxSize: 4, desiredSize: 4 },
      { minSize: 1, maxSize: 4, desiredSize: 4 },
    ]);
    expect(updatesOf('gpu-l4', start)).toEqual([]);
    expect(updatesOf('system', start)).toEqual([]);

    expect((await stack.call('DELETE', deploymentPath(first), { key: owner.key })).statusCode).toBe(200);
    expect(eks.nodegroups.get('gpu-l40s')!.scaling).toEqual({ minSize: 0, maxSize: 4, desiredSize: 4 });
  });

  it('sends no update when a deployment needs no instance', async () => {
    const version = await putVersion(owner.accountId);
    const start = eks.scalingUpdates().length;
    const response = await deploy(version, [{ gpu: 'L4', instanceType: 'g6.xlarge', minInstances: 0, maxInstances: 2 }]);
    expect(response.statusCode).toBe(200);
    expect(eks.scalingUpdates().length).toBe(start);
  });

  it('takes a configuration for a Helm function', async () => {
    const version = await putVersion(owner.accountId, { containerImage: undefined, helmChart: 'https://helm.example/chart-1.0.tgz', helmChartServiceName: 'svc' });
    const response = await deploy(version, [{ ...l40s(0), configuration: { replicaCount: 1, image: { tag: 'v2' } } }]);
    expect(response.statusCode).toBe(200);
    expect(response.json.deployment.deploymentSpecifications[0].configuration).toEqual({ replicaCount: 1, image: { tag: 'v2' } });
  });

  it('checks specifications against the nodegroups', async () => {
    const version = await putVersion(owner.accountId);
    const response = await deploy(version, [{ gpu: 'L40S', instanceType: 'g6e.2xlarge', minInstances: 1, maxInstances: 1 }]);
    expect(response.statusCode).toBe(400);
    expect(response.json.detail).toContain('instance type "g6e.2xlarge" is not offered with GPU L40S; offered: g6e.xlarge');
  });

  it('keeps a deployment whose nodegroup is still applying an earlier change; the sweeper sizes it afterwards', async () => {
    const version = await putVersion(owner.accountId);
    const before = eks.nodegroups.get('gpu-l40s')!.scaling.minSize;
    eks.busy.add('gpu-l40s');
    const deployed = await deploy(version, [l40s(1)]);
    expect(deployed.statusCode).toBe(200);
    expect((await getVersion(version.functionId, version.versionId))?.status).toBe('DEPLOYING');
    expect(eks.nodegroups.get('gpu-l40s')!.scaling.minSize).toBe(before);

    eks.busy.delete('gpu-l40s');
    expect((await sweepQueues()).nodegroupError).toBeUndefined();
    expect(eks.nodegroups.get('gpu-l40s')!.scaling.minSize).toBe(before + 1);
    expect((await stack.call('DELETE', deploymentPath(version), { key: owner.key })).statusCode).toBe(200);
    expect(eks.nodegroups.get('gpu-l40s')!.scaling.minSize).toBe(before);
  });

  it("never sizes a nodegroup below its configured minNodes (tag nvcf:min-nodes)", async () => {
    eks.nodegroups.get('gpu-l4')!.tags = { [NODEGROUP_MIN_NODES_TAG]: '1' };
    eks.nodegroups.get('gpu-l4')!.scaling = { minSize: 1, maxSize: 2, desiredSize: 1 };
    const version = await putVersion(owner.accountId);
    const l4 = (minInstances: number) => ({ gpu: 'L4', instanceType: 'g6.xlarge', minInstances, maxInstances: 4 });

    expect((await deploy(version, [l4(2)])).statusCode).toBe(200);
    expect(eks.nodegroups.get('gpu-l4')!.scaling).toEqual({ minSize: 2, maxSize: 2, desiredSize: 2 });
    expect((await stack.call('DELETE', deploymentPath(version), { key: owner.key })).statusCode).toBe(200);
    expect(eks.nodegroups.get('gpu-l4')!.scaling).toEqual({ minSize: 1, maxSize: 2, desiredSize: 2 });
    await sweepQueues();
    expect(eks.nodegroups.get('gpu-l4')!.scaling).toEqual({ minSize: 1, maxSize: 2, desiredSize: 2 });
  });
});
