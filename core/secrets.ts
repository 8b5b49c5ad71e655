/**
 * Functions' secrets at rest: envelope encryption. Each write seals the whole
 * set of a version with AES-256-GCM under a fresh data key; the data key is
 * kept only wrapped, by KMS on AWS (a customer-managed key the CDK app makes)
 * or by a local key off AWS. Both wrap under the encryption context
 * {account, functionId, versionId}, which is also the GCM additional data, so
 * a sealed set opens only for the version it was written for.
 *
 * Who can do what follows from the key's two calls (SECRETS_KMS_ACTIONS in
 * names.ts, which the CDK app grants): whoever writes secrets
 * (the functions Lambda) only needs GenerateDataKey and cannot open what it
 * wrote; only the worker's identity may Decrypt. Values never appear in an
 * error message of this module: parse failures name no text of the plaintext.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DecryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { ENV, SECRETS_ENCRYPTION_CONTEXT_KEYS } from './names';

/** One secret as the API takes it: NVCF allows a string or a JSON object as the value. */
export interface SecretEntry {
  name: string;
  value: string | Record<string, unknown>;
}

/** The version a set of secrets belongs to: the encryption context. */
export interface SecretsOwner {
  accountId: string;
  functionId: string;
  versionId: string;
}

/** A version's secrets as stored on its Functions item; only `names` is ever shown. */
export interface SealedSecrets {
  /** In the order given; what F5 lists. */
  names: string[];
  /** New at every write: the worker rewrites the file when it changes. */
  revision: string;
  /** Which key wrapped the data key. */
  keyProvider: DataKeyProviderKind;
  /** The data key as the provider wrapped it (for KMS, its CiphertextBlob), base64. */
  wrappedKey: string;
  /** AES-256-GCM of the JSON object name → value: nonce, ciphertext and tag, base64. */
  iv: string;
  ciphertext: string;
  tag: string;
}

export type DataKeyProviderKind = 'kms' | 'local';

/** Makes and unwraps 256-bit data keys bound to an encryption context. */
export interface DataKeyProvider {
  readonly kind: DataKeyProviderKind;
  generateDataKey(context: Record<string, string>): Promise<{ plaintext: Buffer; wrapped: Buffer }>;
  unwrapDataKey(wrapped: Buffer, context: Record<string, string>): Promise<Buffer>;
}

/** Where a secret set cannot be opened: wrong context, another key, a damaged item. The message names no value. */
export class SecretsUnavailable extends Error {}

/** The encryption context of a version's secrets, as KMS records it in CloudTrail. */
export function encryptionContext(owner: SecretsOwner): Record<(typeof SECRETS_ENCRYPTION_CONTEXT_KEYS)[number], string> {
  return { account: owner.accountId, functionId: owner.functionId, versionId: owner.versionId };
}

/** The context as GCM additional data: fixed key order, so both sides compute the same bytes. */
function additionalData(context: Record<string, string>): Buffer {
  return Buffer.from(JSON.stringify(Object.keys(context).sort().map((key) => [key, context[key]])), 'utf8');
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): { iv: Buffer; ciphertext: Buffer; tag: Buffer } {
  const iv = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, ciphertext, tag: cipher.getAuthTag() };
}

function open(key: Buffer, sealed: { iv: Buffer; ciphertext: Buffer; tag: Buffer }, aad: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv).setAAD(aad).setAuthTag(sealed.tag);
  return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
}

/** KMS: GenerateDataKey (AES_256) and Decrypt under the encryption context, with the installation's key. */
export class KmsDataKeys implements DataKeyProvider {
  readonly kind = 'kms';

  constructor(
    private readonly keyId: string,
    private readonly client: KMSClient = new KMSClient({}),
  ) {}

  async generateDataKey(context: Record<string, string>): Promise<{ plaintext: Buffer; wrapped: Buffer }> {
    const { Plaintext, CiphertextBlob } = await this.client.send(new GenerateDataKeyCommand({ KeyId: this.keyId, KeySpec: 'AES_256', EncryptionContext: context }));
    if (!Plaintext || !CiphertextBlob) throw new Error('KMS GenerateDataKey returned no key');
    return { plaintext: Buffer.from(Plaintext), wrapped: Buffer.from(CiphertextBlob) };
  }

  async unwrapDataKey(wrapped: Buffer, context: Record<string, string>): Promise<Buffer> {
    // KeyId pins the key: a blob wrapped by any other key is refused rather than opened with it.
    const { Plaintext } = await this.client.send(new DecryptCommand({ KeyId: this.keyId, CiphertextBlob: wrapped, EncryptionContext: context }));
    if (!Plaintext) throw new Error('KMS Decrypt returned no key');
    return Buffer.from(Plaintext);
  }
}

/**
 * Off AWS: a 256-bit local key stands in for the KMS key. Data keys are wrapped
 * with AES-256-GCM under it, with the context as additional data, so the same
 * rule holds: a wrapped key opens only for its own version.
 */
export class LocalDataKeys implements DataKeyProvider {
  readonly kind = 'local';

  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error(`the local secrets key must be 32 bytes, got ${key.length}`);
  }

  /** The key in a file (base64 of 32 bytes), as local/ writes it. */
  static fromFile(path: string): LocalDataKeys {
    return new LocalDataKeys(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64'));
  }

  /** A new key in the file format fromFile reads. */
  static newKeyFileContent(): string {
    return `${randomBytes(32).toString('base64')}\n`;
  }

  async generateDataKey(context: Record<string, string>): Promise<{ plaintext: Buffer; wrapped: Buffer }> {
    const plaintext = randomBytes(32);
    const { iv, ciphertext, tag } = seal(this.key, plaintext, additionalData(context));
    return { plaintext, wrapped: Buffer.concat([iv, tag, ciphertext]) };
  }

  async unwrapDataKey(wrapped: Buffer, context: Record<string, string>): Promise<Buffer> {
    const iv = wrapped.subarray(0, NONCE_BYTES);
    const tag = wrapped.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES);
    return open(this.key, { iv, tag, ciphertext: wrapped.subarray(NONCE_BYTES + TAG_BYTES) }, additionalData(context));
  }
}

let configured: DataKeyProvider | undefined;

/** The installation's provider: KMS when NVCF_SECRETS_KEY_ID is set (AWS), else the local key file (local/). */
export function dataKeyProvider(env: NodeJS.ProcessEnv = process.env): DataKeyProvider {
  if (configured) return configured;
  const keyId = env[ENV.secretsKeyId];
  const keyFile = env[ENV.secretsLocalKeyFile];
  if (keyId) configured = new KmsDataKeys(keyId);
  else if (keyFile) configured = LocalDataKeys.fromFile(keyFile);
  else throw new Error(`secrets cannot be sealed or opened here: neither ${ENV.secretsKeyId} (AWS) nor ${ENV.secretsLocalKeyFile} (local) is set`);
  return configured;
}

/** Forgets the provider, for tests that change the environment. */
export function resetDataKeyProvider(): void {
  configured = undefined;
}

/** The secrets file's content: a JSON object name → value, as NVIDIA's helpers read /var/secrets/secrets.json. */
export function secretsDocument(secrets: readonly SecretEntry[]): string {
  return JSON.stringify(Object.fromEntries(secrets.map(({ name, value }) => [name, value])));
}

/** A text sealed under a fresh data key bound to an encryption context: what a secret set and a registry credential keep. */
export type SealedBox = Pick<SealedSecrets, 'keyProvider' | 'wrappedKey' | 'iv' | 'ciphertext' | 'tag'>;

/** Seals `plaintext` under a new data key wrapped for `context` (also the GCM additional data). */
export async function sealBox(plaintext: string, context: Record<string, string>, provider: DataKeyProvider = dataKeyProvider()): Promise<SealedBox> {
  const { plaintext: dataKey, wrapped } = await provider.generateDataKey(context);
  try {
    const { iv, ciphertext, tag } = seal(dataKey, Buffer.from(plaintext, 'utf8'), additionalData(context));
    return {
      keyProvider: provider.kind,
      wrappedKey: wrapped.toString('base64'),
      iv: iv.toString('base64'),
      ciphertext: ciphertext.toString('base64'),
      tag: tag.toString('base64'),
    };
  } finally {
    dataKey.fill(0);
  }
}

/**
 * The text of a sealed box; throws SecretsUnavailable, naming `what` and no value, when it does not open for
 * `context` (the context of `owner`: a version, a credential).
 */
export async function openBox(box: SealedBox, context: Record<string, string>, { what, owner }: { what: string; owner: string }, provider: DataKeyProvider = dataKeyProvider()): Promise<string> {
  if (box.keyProvider !== provider.kind) {
    throw new SecretsUnavailable(`${what} were sealed with the ${box.keyProvider} key, but this installation uses the ${provider.kind} key`);
  }
  let dataKey: Buffer;
  try {
    dataKey = await provider.unwrapDataKey(Buffer.from(box.wrappedKey, 'base64'), context);
  } catch (error) {
    throw new SecretsUnavailable(`${what} cannot be opened: their data key does not unwrap for this ${owner} (${(error as Error).name})`);
  }
  try {
    return open(dataKey, { iv: Buffer.from(box.iv, 'base64'), ciphertext: Buffer.from(box.ciphertext, 'base64'), tag: Buffer.from(box.tag, 'base64') }, additionalData(context)).toString('utf8');
  } catch {
    throw new SecretsUnavailable(`${what} cannot be opened: the sealed text does not authenticate for this ${owner}`);
  } finally {
    dataKey.fill(0);
  }
}

/** Seals a version's whole set of secrets under a new data key. */
export async function sealSecrets(secrets: readonly SecretEntry[], owner: SecretsOwner, provider: DataKeyProvider = dataKeyProvider()): Promise<SealedSecrets> {
  const box = await sealBox(secretsDocument(secrets), encryptionContext(owner), provider);
  return { names: secrets.map((secret) => secret.name), revision: randomUUID(), ...box };
}

/**
 * The secrets file's content (JSON object name → value) of a sealed set;
 * throws SecretsUnavailable when it does not open for `owner`.
 */
export async function openSecrets(sealed: SealedSecrets, owner: SecretsOwner, provider: DataKeyProvider = dataKeyProvider()): Promise<string> {
  const what = `the secrets of function ${owner.functionId} version ${owner.versionId}`;
  // Items written before secrets were sealed held them as a list: never opened as plain text, replaced by a PUT.
  if (Array.isArray(sealed) || !sealed.keyProvider) {
    throw new SecretsUnavailable(`${what} were stored before secrets were sealed at rest; replace them with PUT /v2/nvcf/secrets/functions/${owner.functionId}/versions/${owner.versionId}`);
  }
  return openBox(sealed, encryptionContext(owner), { what, owner: 'version' }, provider);
}
