/**
 * Envelope encryption of functions' secrets (core/secrets.ts): round trips
 * with the local key and with the real KMS client against a KMS stand-in that
 * checks the encryption context; a sealed set opens for its own version only;
 * the limits of the request schema.
 */
import { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretsSchema, updateSecretsRequestSchema } from '../../core/function-schemas';
import { MAX_SECRETS, MAX_SECRETS_FILE_BYTES } from '../../core/limits';
import { SECRETS_ENCRYPTION_CONTEXT_KEYS, SECRETS_KMS_ACTIONS } from '../../core/names';
import { KmsDataKeys, LocalDataKeys, openSecrets, sealSecrets, SecretsUnavailable, type SealedSecrets, type SecretsOwner } from '../../core/secrets';
import { startKmsStandIn, type KmsStandIn } from '../support/kms-stand-in';

const OWNER: SecretsOwner = { accountId: 'acct-1', functionId: 'f0f0f0f0-0000-4000-8000-000000000001', versionId: 'a0a0a0a0-0000-4000-8000-000000000002' };
const SECRETS = [
  { name: 'API_TOKEN', value: 'marker-7d1e4b' },
  { name: 'db.config', value: { user: 'u', password: 'pw-52aa' } },
];

const local = () => new LocalDataKeys(Buffer.alloc(32, 7));

describe('sealing with the local key', () => {
  it('round-trips the set as the secrets file, an object name → value', async () => {
    const sealed = await sealSecrets(SECRETS, OWNER, local());
    expect(JSON.parse(await openSecrets(sealed, OWNER, local()))).toEqual({ API_TOKEN: 'marker-7d1e4b', 'db.config': { user: 'u', password: 'pw-52aa' } });
  });

  it('keeps only names and ciphertext in the sealed set, with a new revision and data key at every write', async () => {
    const [first, second] = [await sealSecrets(SECRETS, OWNER, local()), await sealSecrets(SECRETS, OWNER, local())];
    expect(first.names).toEqual(['API_TOKEN', 'db.config']);
    expect(JSON.stringify(first)).not.toContain('marker-7d1e4b');
    expect(JSON.stringify(first)).not.toContain('pw-52aa');
    expect(first.revision).not.toBe(second.revision);
    expect(first.wrappedKey).not.toBe(second.wrappedKey);
    expect(first.ciphertext).not.toBe(second.ciphertext);
  });

  it.each([
    ['another account', { ...OWNER, accountId: 'acct-2' }],
    ['another function', { ...OWNER, functionId: 'f0f0f0f0-0000-4000-8000-00000000000f' }],
    ['another version', { ...OWNER, versionId: 'a0a0a0a0-0000-4000-8000-00000000000f' }],
  ])('refuses to open a set for %s, naming no value', async (_, other) => {
    const sealed = await sealSecrets(SECRETS, OWNER, local());
    const error = await openSecrets(sealed, other, local()).catch((e: Error) => e);
    expect(error).toBeInstanceOf(SecretsUnavailable);
    expect((error as Error).message).toMatch(/cannot be opened/);
    expect((error as Error).message).not.toContain('marker-7d1e4b');
  });

  it('refuses a set whose ciphertext was moved from another version, even with its own wrapped key', async () => {
    const mine = await sealSecrets(SECRETS, OWNER, local());
    const other = { ...OWNER, versionId: 'a0a0a0a0-0000-4000-8000-00000000000f' };
    const theirs = await sealSecrets([{ name: 'X', value: 'theirs' }], other, local());
    const spliced = { ...mine, iv: theirs.iv, ciphertext: theirs.ciphertext, tag: theirs.tag };
    await expect(openSecrets(spliced, OWNER, local())).rejects.toThrow(/does not authenticate/);
  });

  it('refuses a set sealed under another local key', async () => {
    const sealed = await sealSecrets(SECRETS, OWNER, local());
    await expect(openSecrets(sealed, OWNER, new LocalDataKeys(Buffer.alloc(32, 8)))).rejects.toBeInstanceOf(SecretsUnavailable);
  });

  it('refuses secrets stored in plain text before they were sealed, and says how to replace them', async () => {
    const legacy = [{ name: 'API_TOKEN', value: 'marker-7d1e4b' }] as unknown as SealedSecrets;
    const error = await openSecrets(legacy, OWNER, local()).catch((e: Error) => e);
    expect((error as Error).message).toMatch(/stored before secrets were sealed at rest; replace them with PUT \/v2\/nvcf\/secrets\/functions\//);
    expect((error as Error).message).not.toContain('marker-7d1e4b');
  });

  it('refuses a set sealed by KMS when this installation has the local key, and says so', async () => {
    const sealed = { ...(await sealSecrets(SECRETS, OWNER, local())), keyProvider: 'kms' as const };
    await expect(openSecrets(sealed, OWNER, local())).rejects.toThrow(/sealed with the kms key, but this installation uses the local key/);
  });
});

describe('sealing with KMS (the SDK client against a KMS stand-in)', () => {
  let kms: KmsStandIn;
  let client: KMSClient;
  beforeAll(async () => {
    kms = await startKmsStandIn();
    client = new KMSClient({ endpoint: kms.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  });
  afterAll(async () => {
    client.destroy();
    await kms.close();
  });
  const provider = () => new KmsDataKeys(kms.keyId, client);

  it('asks for an AES-256 data key of the installation key under the version’s encryption context, and opens with Decrypt', async () => {
    kms.calls.length = 0;
    const sealed = await sealSecrets(SECRETS, OWNER, provider());
    expect(sealed.keyProvider).toBe('kms');
    expect(JSON.parse(await openSecrets(sealed, OWNER, provider())).API_TOKEN).toBe('marker-7d1e4b');
    const context = { account: OWNER.accountId, functionId: OWNER.functionId, versionId: OWNER.versionId };
    expect(kms.calls).toEqual([
      { operation: 'GenerateDataKey', body: { KeyId: kms.keyId, KeySpec: 'AES_256', EncryptionContext: context } },
      { operation: 'Decrypt', body: { KeyId: kms.keyId, CiphertextBlob: sealed.wrappedKey, EncryptionContext: context } },
    ]);
    // Exactly the calls the CDK app grants (sealing: the functions Lambda; opening: the worker).
    expect(kms.calls.map((call) => `kms:${call.operation}`)).toEqual([...SECRETS_KMS_ACTIONS.seal, ...SECRETS_KMS_ACTIONS.open]);
    expect(Object.keys(kms.calls[0]!.body.EncryptionContext as object)).toEqual([...SECRETS_ENCRYPTION_CONTEXT_KEYS]);
    // The secret values never travel to KMS: only the data key is wrapped there.
    expect(JSON.stringify(kms.calls)).not.toContain('marker-7d1e4b');
  });

  it('cannot open a set for another version: KMS refuses the context', async () => {
    const sealed = await sealSecrets(SECRETS, OWNER, provider());
    const error = await openSecrets(sealed, { ...OWNER, versionId: 'a0a0a0a0-0000-4000-8000-00000000000f' }, provider()).catch((e: Error) => e);
    expect(error).toBeInstanceOf(SecretsUnavailable);
    expect((error as Error).message).toContain('InvalidCiphertextException');
  });

  it('cannot open a set with another key id', async () => {
    const sealed = await sealSecrets(SECRETS, OWNER, provider());
    const other = new KmsDataKeys('arn:aws:kms:us-east-1:123456789012:key/99999999-2222-4333-8444-555555555555', client);
    await expect(openSecrets(sealed, OWNER, other)).rejects.toThrow(/IncorrectKeyException/);
  });
});

describe('secrets limits', () => {
  const names = (count: number) => Array.from({ length: count }, (_, i) => ({ name: `S${i}`, value: 'v' }));

  it(`accepts ${MAX_SECRETS} secrets and refuses one more`, () => {
    expect(secretsSchema.safeParse(names(MAX_SECRETS)).success).toBe(true);
    expect(secretsSchema.safeParse(names(MAX_SECRETS + 1)).error?.issues[0]?.message).toBe(`at most ${MAX_SECRETS} secrets are allowed per function version`);
  });

  it('refuses a set whose secrets file would pass its size limit, naming the size and not the values', () => {
    const large = Array.from({ length: 5 }, (_, i) => ({ name: `BIG${i}`, value: 'marker-'.padEnd(32_000, 'x') }));
    const result = secretsSchema.safeParse(large);
    const message = result.error?.issues[0]?.message ?? '';
    expect(message).toMatch(new RegExp(`secrets.json; at most ${MAX_SECRETS_FILE_BYTES} bytes`));
    expect(message).not.toContain('marker-');
  });

  it('counts bytes, not characters, against the file limit', () => {
    const wide = Array.from({ length: 2 }, (_, i) => ({ name: `W${i}`, value: '€'.repeat(30_000) }));
    expect(secretsSchema.safeParse(wide).success).toBe(false);
  });

  it('takes an empty list in the update (it clears the set) but requires the list', () => {
    expect(updateSecretsRequestSchema.parse({ secrets: [] })).toEqual({ secrets: [] });
    expect(updateSecretsRequestSchema.safeParse({}).error?.issues[0]).toMatchObject({ path: ['secrets'] });
  });
});
