/**
 * A stand-in for AWS KMS on loopback, speaking its JSON protocol (awsJson1_1,
 * `X-Amz-Target: TrentService.<Operation>`) for GenerateDataKey and Decrypt,
 * so that the real SDK client runs against it. Like KMS, it binds each wrapped
 * data key to its key id and encryption context: Decrypt with another context
 * or another key id answers InvalidCiphertextException / IncorrectKeyException.
 * Every call is recorded (operation and request body) for tests to inspect.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';

export interface KmsCall {
  operation: string;
  body: Record<string, unknown>;
}

export interface KmsStandIn {
  /** Endpoint for `new KMSClient({ endpoint })` or AWS_ENDPOINT_URL_KMS. */
  url: string;
  keyId: string;
  calls: KmsCall[];
  close(): Promise<void>;
}

function canonical(context: unknown): string {
  const entries = Object.entries((context ?? {}) as Record<string, string>).sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify(entries);
}

/** Starts the stand-in with one symmetric key, `keyId` (an ARN, as the CDK app passes it). */
export async function startKmsStandIn(keyId = 'arn:aws:kms:us-east-1:123456789012:key/11111111-2222-4333-8444-555555555555'): Promise<KmsStandIn> {
  const master = randomBytes(32);
  const calls: KmsCall[] = [];

  const wrap = (plaintext: Buffer, context: unknown): Buffer => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', master, iv).setAAD(Buffer.from(`${keyId}|${canonical(context)}`));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  };
  const unwrap = (blob: Buffer, context: unknown): Buffer | undefined => {
    try {
      const decipher = createDecipheriv('aes-256-gcm', master, blob.subarray(0, 12))
        .setAAD(Buffer.from(`${keyId}|${canonical(context)}`))
        .setAuthTag(blob.subarray(12, 28));
      return Buffer.concat([decipher.update(blob.subarray(28)), decipher.final()]);
    } catch {
      return undefined;
    }
  };

  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const operation = String(request.headers['x-amz-target'] ?? '').replace(/^TrentService\./, '');
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, any>;
      calls.push({ operation, body });
      const answer = (status: number, payload: unknown) => {
        response.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        response.end(JSON.stringify(payload));
      };
      const fail = (type: string, message: string) => answer(400, { __type: type, message });
      if (body.KeyId !== undefined && body.KeyId !== keyId) return fail('IncorrectKeyException', 'the key id is not the key that wrapped this ciphertext');
      if (operation === 'GenerateDataKey') {
        if (body.KeySpec !== 'AES_256') return fail('ValidationException', 'KeySpec must be AES_256 here');
        const plaintext = randomBytes(32);
        return answer(200, { KeyId: keyId, Plaintext: plaintext.toString('base64'), CiphertextBlob: wrap(plaintext, body.EncryptionContext).toString('base64') });
      }
      if (operation === 'Decrypt') {
        const plaintext = unwrap(Buffer.from(String(body.CiphertextBlob), 'base64'), body.EncryptionContext);
        if (!plaintext) return fail('InvalidCiphertextException', 'the ciphertext does not decrypt with this key and encryption context');
        return answer(200, { KeyId: keyId, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
      }
      return fail('UnsupportedOperationException', `${operation} is not served by the stand-in`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    keyId,
    calls,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
