/**
 * The secrets file as the init container and the worker write it
 * (gpu-agent/secrets-file.ts), against the emulated Functions table with the
 * local key: the JSON object NVIDIA's helpers read, replaced atomically when
 * the version's secrets change, and a sealed set that does not belong to the
 * version refused without naming a value.
 */
import { mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { dynamo } from '../../core/aws';
import { tableName } from '../../core/config';
import { createFunctionRequestSchema } from '../../core/function-schemas';
import { createVersion, getVersion, replaceSecrets } from '../../core/functions';
import { main as writeSecrets, SecretsRefresher } from '../../gpu-agent/secrets-file';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

const MARKER = 'file-marker-3e7a55';
const DEFINITION = { name: 'file-fn', inferenceUrl: '/echo', containerImage: 'nvcr.io/org/echo:1.0' };

describe('secrets file', () => {
  let stack: TestStack;
  let accountId: string;
  let dir: string;
  beforeAll(async () => {
    stack = await startTestStack();
    ({ accountId } = await newAccount());
  });
  afterAll(async () => stack?.stop());
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nvcf-secrets-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  const version = (secrets?: unknown) => createVersion(accountId, createFunctionRequestSchema.parse({ ...DEFINITION, secrets }));
  const env = (v: { functionId: string; versionId: string }) => ({
    NVCF_FUNCTION_ID: v.functionId,
    NVCF_FUNCTION_VERSION_ID: v.versionId,
    NVCF_SECRETS_FILE: join(dir, 'secrets.json'),
    NVCF_TERMINATION_LOG: join(dir, 'termination-log'),
  });

  it('is written by write-secrets as a JSON object name → value, readable by any user of the pod', async () => {
    const v = await version([{ name: 'TOKEN', value: MARKER }, { name: 'cfg', value: { a: 1 } }]);
    expect(await writeSecrets(env(v))).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'secrets.json'), 'utf8'))).toEqual({ TOKEN: MARKER, cfg: { a: 1 } });
    const mode = (await stat(join(dir, 'secrets.json'))).mode & 0o777;
    expect(mode & 0o044).toBe(0o044);
    expect(await readdir(dir)).toEqual(['secrets.json']);
  });

  it('is {} for a version without secrets', async () => {
    const v = await version();
    expect(await writeSecrets(env(v))).toBe(0);
    expect(await readFile(join(dir, 'secrets.json'), 'utf8')).toBe('{}');
  });

  it('is refused for a sealed set moved from another version, with a reason that names no value', async () => {
    const mine = await version([{ name: 'TOKEN', value: 'mine' }]);
    const theirs = await version([{ name: 'TOKEN', value: MARKER }]);
    const moved = (await getVersion(theirs.functionId, theirs.versionId))!.secrets;
    await dynamo().send(
      new UpdateCommand({ TableName: tableName('functions'), Key: { functionId: mine.functionId, versionId: mine.versionId }, UpdateExpression: 'SET secrets = :s', ExpressionAttributeValues: { ':s': moved } }),
    );
    expect(await writeSecrets(env(mine))).toBe(1);
    const reason = await readFile(join(dir, 'termination-log'), 'utf8');
    expect(reason).toMatch(/cannot be opened: their data key does not unwrap for this version/);
    expect(reason).not.toContain(MARKER);
    expect(await readdir(dir)).toEqual(['termination-log']);
  });

  it('is rewritten by the worker after a PUT, atomically: a reader of the old file keeps the old content', async () => {
    const v = await version([{ name: 'TOKEN', value: 'first' }]);
    const file = join(dir, 'secrets.json');
    const refresher = new SecretsRefresher(v.functionId, v.versionId, file, 30);
    await refresher.start();
    try {
      expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ TOKEN: 'first' });
      const before = await open(file);
      await refresher.refresh();
      expect((await before.stat()).ino).toBe((await stat(file)).ino);

      await replaceSecrets(accountId, v.functionId, v.versionId, [{ name: 'TOKEN', value: MARKER }]);
      await refresher.refresh();
      expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ TOKEN: MARKER });
      // A rename, not an overwrite: the file the reader opened is whole and unchanged.
      expect(JSON.parse((await before.readFile()).toString('utf8'))).toEqual({ TOKEN: 'first' });
      await before.close();

      await replaceSecrets(accountId, v.functionId, v.versionId, []);
      await refresher.refresh();
      expect(await readFile(file, 'utf8')).toBe('{}');
      expect(await readdir(dir)).toEqual(['secrets.json']);
    } finally {
      await refresher.stop();
    }
  });
});
