import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, hashApiKey } from '../../core/api-keys';
import { ENV } from '../../core/names';
import { startTestStack, type TestStack } from '../support/stack';

const ROOT = join(import.meta.dirname, '..', '..');

interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

describe('npm run keys (bin/keys.ts)', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => stack.stop());

  /** Runs the admin command as `npm run keys` does (tsx), in a child process pointed at the emulators. */
  function keys(args: string[], env: Record<string, string | undefined> = stack.env): Promise<CommandResult> {
    return new Promise((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', 'bin/keys.ts', ...args], { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } }, (error, stdout, stderr) => {
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      });
    });
  }

  const listAssets = (key: string) => stack.call('GET', '/v2/nvcf/assets', { key });

  it('creates a key that the API accepts, printing only the key on stdout', async () => {
    const result = await keys(['create', '--account', 'cli-acct-1', '--description', 'ci robot']);

    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^nvapi-[A-Za-z0-9_-]{43}\n$/);
    expect(result.stderr).toContain('account cli-acct-1');
    const key = result.stdout.trim();
    const response = await listAssets(key);
    expect(response.statusCode).toBe(200);
    expect(response.json).toEqual({ assets: [] });
  });

  it('gives a key only the scopes asked for', async () => {
    const { stdout } = await keys(['create', '--account', 'cli-acct-2', '--scopes', 'invoke_function,queue_details']);
    const key = stdout.trim();

    expect((await listAssets(key)).statusCode).toBe(200);
    const refused = await stack.call('GET', '/v2/nvcf/clusterGroups', { key });
    expect(refused.statusCode).toBe(403);
    expect(refused.json.detail).toContain('list_cluster_groups');
  });

  it('creates a key holding update_secrets alone: it may replace secrets and nothing else', async () => {
    const key = (await keys(['create', '--account', 'cli-acct-secrets', '--scopes', 'update_secrets'])).stdout.trim();
    const path = `/v2/nvcf/secrets/functions/${randomUUID()}/versions/${randomUUID()}`;
    // Past the scope check: the version is unknown.
    expect((await stack.call('PUT', path, { key, body: { secrets: [] } })).statusCode).toBe(404);
    expect((await listAssets(key)).statusCode).toBe(403);
  });

  it('creates a key holding manage_registry_credentials alone: it may manage registry credentials and nothing else', async () => {
    const key = (await keys(['create', '--account', 'cli-acct-registry', '--scopes', 'manage_registry_credentials'])).stdout.trim();
    const listed = await stack.call('GET', '/v2/nvcf/registry-credentials', { key });
    expect(listed.statusCode).toBe(200);
    expect(listed.json).toEqual({ registryCredentials: [] });
    expect((await listAssets(key)).statusCode).toBe(403);
  });

  it('revokes a key given the key itself, after which the API answers 401, and lists it as revoked', async () => {
    const key = (await keys(['create', '--account', 'cli-acct-3'])).stdout.trim();
    expect((await listAssets(key)).statusCode).toBe(200);

    const revoked = await keys(['revoke', key]);

    expect(revoked.code).toBe(0);
    const response = await listAssets(key);
    expect(response.statusCode).toBe(401);
    expect(response.json.detail).toMatch(/revoked/);
    const listed = await keys(['list', '--account', 'cli-acct-3']);
    expect(listed.code).toBe(0);
    expect(listed.stdout.trim().split('\t').slice(0, 2)).toEqual([hashApiKey(key), 'revoked']);
    expect(listed.stdout).not.toContain(key);
  });

  it('revokes a key given its sha256', async () => {
    const key = (await keys(['create', '--account', 'cli-acct-4'])).stdout.trim();

    expect((await keys(['revoke', hashApiKey(key)])).code).toBe(0);

    expect((await listAssets(key)).statusCode).toBe(401);
  });

  it('lists the keys of one account by hash, scopes and description', async () => {
    const first = (await keys(['create', '--account', 'cli-acct-5', '--scopes', 'list_functions', '--description', 'reader'])).stdout.trim();
    await keys(['create', '--account', 'cli-acct-other']);

    const listed = await keys(['list', '--account', 'cli-acct-5']);

    expect(listed.code).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.split('\t')).toEqual([hashApiKey(first), 'active', expect.stringMatching(/^\d{4}-/), 'list_functions', 'reader']);
  });

  it('lists a key made over HTTP whose time has passed as expired', async () => {
    const { record } = await createApiKey({ accountId: 'cli-acct-expired', description: 'old', expiresAt: new Date(Date.now() - 1000).toISOString() });

    const listed = await keys(['list', '--account', 'cli-acct-expired']);

    expect(listed.stdout.trim().split('\t').slice(0, 2)).toEqual([record.keyHash, 'expired']);
  });

  it('exits 1 when revoking a key that does not exist', async () => {
    const result = await keys(['revoke', hashApiKey('nvapi-never-issued')]);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no such API key');
  });

  it('uses the table given with --table when the environment names none', async () => {
    const env = { ...stack.env, [ENV.apiKeysTable]: undefined };

    const result = await keys(['create', '--account', 'cli-acct-6', '--table', stack.env[ENV.apiKeysTable]!], env);

    expect(result.code).toBe(0);
    expect((await listAssets(result.stdout.trim())).statusCode).toBe(200);
  });

  it('exits 2 and says how to name the table when none is given', async () => {
    const result = await keys(['create', '--account', 'cli-acct-7'], { ...stack.env, [ENV.apiKeysTable]: undefined });

    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`set ${ENV.apiKeysTable}`);
    expect(result.stderr).toContain('--table');
  });

  it('exits 1 with the AWS error when the table does not exist', async () => {
    const result = await keys(['create', '--account', 'cli-acct-8', '--table', 'no-such-table']);

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('ResourceNotFoundException');
  });

  const usageErrors: [string, string[], string][] = [
    ['no command', [], 'a command is required'],
    ['an unknown command', ['rotate'], 'unknown command "rotate"'],
    ['create without --account', ['create'], '--account <id> is required'],
    ['an invalid account id', ['create', '--account', 'bad id!'], '--account: account ids are'],
    ['an unknown scope', ['create', '--account', 'a1', '--scopes', 'invoke_function,root'], 'unknown scope(s) root'],
    ['an unknown option', ['create', '--account', 'a1', '--admin'], "Unknown option '--admin'"],
    ['revoke without a key', ['revoke'], 'exactly one argument'],
    ['revoke of something that is neither key nor hash', ['revoke', 'abc'], 'neither an API key'],
    ['list without --account', ['list'], '--account <id> is required'],
  ];
  it('exits 2 with the usage text for every usage error, and writes nothing', async () => {
    const results = await Promise.all(usageErrors.map(([, args]) => keys(args)));

    results.forEach((result, i) => {
      const [what, , message] = usageErrors[i]!;
      expect({ what, code: result.code, stdout: result.stdout }).toEqual({ what, code: 2, stdout: '' });
      expect(result.stderr, what).toContain(message);
      expect(result.stderr, what).toContain('usage:');
    });
    expect((await keys(['list', '--account', 'a1'])).stdout).toBe('');
  });

  it('prints the usage text with --help and exits 0', async () => {
    const result = await keys(['--help']);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('npm run keys -- create --account <id>');
  });
});
