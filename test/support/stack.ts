/**
 * The control plane on the emulators, for integration tests: dynalite, fauxqs
 * and s3rver on loopback, the tables and bucket created from core/tables.ts,
 * and the real handlers behind an in-process API Gateway.
 */
import { randomUUID } from 'node:crypto';
import { createApiKey } from '../../core/api-keys';
import { resetAwsClients } from '../../core/aws';
import type { Scope } from '../../core/routes';
import { startEmulators, type Emulators } from '../../local/emulators';
import { LocalGateway, type GatewayResponse } from '../../local/gateway';
import { createLocalResources, localResourceEnv } from '../../local/resources';

export interface ApiCall {
  /** Bearer key; omit to send no Authorization header. */
  key?: string;
  /** JSON-encoded unless a Buffer or string is given. */
  body?: unknown;
  headers?: Record<string, string>;
  query?: string;
}

export interface TestResponse extends GatewayResponse {
  /** The body parsed as JSON (undefined when empty or not JSON). */
  json: any;
}

export interface TestStack {
  env: Record<string, string>;
  gateway: LocalGateway;
  call(method: string, path: string, call?: ApiCall): Promise<TestResponse>;
  stop(): Promise<void>;
}

/** Starts emulators, points this process's SDK clients at them and creates the resources. */
export async function startTestStack(extraEnv: Record<string, string> = {}): Promise<TestStack> {
  const emulators: Emulators = await startEmulators();
  const env = { ...emulators.env, ...localResourceEnv(`t-${randomUUID().slice(0, 8)}`), ...extraEnv };
  Object.assign(process.env, env);
  resetAwsClients();
  await createLocalResources(env);
  const gateway = new LocalGateway();

  return {
    env,
    gateway,
    async call(method, path, call = {}) {
      const headers: Record<string, string> = { ...call.headers };
      if (call.key) headers.authorization = `Bearer ${call.key}`;
      let body: Buffer | undefined;
      if (Buffer.isBuffer(call.body)) body = call.body;
      else if (typeof call.body === 'string') body = Buffer.from(call.body);
      else if (call.body !== undefined) {
        body = Buffer.from(JSON.stringify(call.body));
        headers['content-type'] ??= 'application/json';
      }
      const response = await gateway.handle({ method, path, query: call.query, headers, body });
      let json: unknown;
      try {
        json = response.body.length > 0 ? JSON.parse(response.body.toString('utf8')) : undefined;
      } catch {
        json = undefined;
      }
      return { ...response, json };
    },
    async stop() {
      resetAwsClients();
      await emulators.stop();
    },
  };
}

/** A fresh account with a key holding the given scopes (all by default). */
export async function newAccount(scopes?: readonly Scope[]): Promise<{ accountId: string; key: string }> {
  const accountId = `acct-${randomUUID().slice(0, 8)}`;
  const { key } = await createApiKey({ accountId, scopes });
  return { accountId, key };
}
