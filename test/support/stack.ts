/**
 * The control plane on the emulators, for integration tests: dynalite, fauxqs
 * and s3rver on loopback, the tables and bucket created from core/tables.ts,
 * the real handlers behind an in-process API Gateway, and the invocation
 * service behind the same HTTP front as `npm start` (`url`), which serves the
 * invocation routes.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApiKey } from '../../core/api-keys';
import { resetAwsClients } from '../../core/aws';
import { resetDataKeyProvider } from '../../core/secrets';
import { INVOCATION_SERVICE, matchRoute, type Scope } from '../../core/routes';
import { InvocationService } from '../../invocation/service';
import { readSettings } from '../../invocation/settings';
import { serveGateway } from '../../local/http-server';
import { startEmulators, type Emulators } from '../../local/emulators';
import { LocalGateway, type GatewayResponse } from '../../local/gateway';
import { createLocalResources, localResourceEnv, localSecretsKeyEnv } from '../../local/resources';

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
  service: InvocationService;
  /** Base URL of the HTTP front: the API, the invocation routes, and direct invocation (Host `*.invocation.localhost`). */
  url: string;
  call(method: string, path: string, call?: ApiCall): Promise<TestResponse>;
  stop(): Promise<void>;
}

/** Starts emulators, points this process's SDK clients at them and creates the resources. */
export async function startTestStack(extraEnv: Record<string, string> = {}): Promise<TestStack> {
  const emulators: Emulators = await startEmulators();
  const keyDir = await mkdtemp(join(tmpdir(), 'nvcf-test-key-'));
  const env = { ...emulators.env, ...localResourceEnv(`t-${randomUUID().slice(0, 8)}`), ...(await localSecretsKeyEnv(keyDir)), ...extraEnv };
  Object.assign(process.env, env);
  resetAwsClients();
  resetDataKeyProvider();
  await createLocalResources(env);
  const gateway = new LocalGateway();
  const service = new InvocationService(readSettings(env, { attachHost: '127.0.0.1', attachPort: 0, invocationDomain: 'localhost' }));
  await service.start();
  const front = await serveGateway(gateway, 0, undefined, service);

  return {
    env,
    gateway,
    service,
    url: front.url,
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
      const match = matchRoute(method, path);
      const viaService = match !== undefined && 'route' in match && match.route.handler === INVOCATION_SERVICE;
      const response = viaService ? await overHttp(front.url, method, path, call.query, headers, body) : await gateway.handle({ method, path, query: call.query, headers, body });
      let json: unknown;
      try {
        json = response.body.length > 0 ? JSON.parse(response.body.toString('utf8')) : undefined;
      } catch {
        json = undefined;
      }
      return { ...response, json };
    },
    async stop() {
      await service.close();
      await front.close();
      resetAwsClients();
      resetDataKeyProvider();
      await emulators.stop();
      await rm(keyDir, { recursive: true, force: true });
    },
  };
}

/** A fresh account with a key holding the given scopes (all by default). */
export async function newAccount(scopes?: readonly Scope[]): Promise<{ accountId: string; key: string }> {
  const accountId = `acct-${randomUUID().slice(0, 8)}`;
  const { key } = await createApiKey({ accountId, scopes });
  return { accountId, key };
}

/** One request over HTTP, answered in the gateway's response shape (redirects are not followed). */
async function overHttp(base: string, method: string, path: string, query: string | undefined, headers: Record<string, string>, body: Buffer | undefined): Promise<GatewayResponse> {
  // Header values go out as their UTF-8 bytes, as curl sends them (fetch refuses characters beyond Latin-1).
  const wire = Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, Buffer.from(value, 'utf8').toString('latin1')]));
  const response = await fetch(`${base}${path}${query ? `?${query}` : ''}`, { method, headers: wire, body, redirect: 'manual' });
  return { statusCode: response.status, headers: Object.fromEntries(response.headers), body: Buffer.from(await response.arrayBuffer()) };
}
