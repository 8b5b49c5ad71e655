/**
 * Settings of the invocation service, read from the environment in one place
 * (CDK sets them on the Deployment; local/ passes them in).
 */
import { DEFAULT_ATTACH_PORT, DEFAULT_GRPC_SESSION_IDLE_SECONDS, DEFAULT_INVOCATION_PORT, DEFAULT_MAX_HELD_REQUEST_BYTES, DEFAULT_MAX_IN_FLIGHT, MAX_REQUEST_BYTES } from '../core/limits';
import { ENV } from '../core/names';

export interface InvocationSettings {
  /** Callers' port (0: any free port). */
  port: number;
  /** Address the callers' server binds to. */
  listenHost: string;
  /** Workers' attach port (0: any free port). */
  attachPort: number;
  /** Address workers reach this instance at; goes into every reply address. */
  attachHost: string;
  /** Domain of host-based direct invocation (`{functionId}.invocation.<domain>`), if any. */
  invocationDomain?: string;
  /** Requests held at once; beyond it 429. */
  maxInFlight: number;
  /** Largest request body accepted; beyond it 413. */
  maxRequestBytes: number;
  /** Bytes of request bodies held at once (read, or waiting for their worker); beyond it 429. */
  maxHeldRequestBytes: number;
  /** Seconds a gRPC session stays without an open call before it ends and its worker's slot is free. */
  grpcIdleSeconds: number;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return value;
}

/** The settings from the environment, over `overrides`. */
export function readSettings(env: NodeJS.ProcessEnv = process.env, overrides: Partial<InvocationSettings> = {}): InvocationSettings {
  return {
    port: integer(env, ENV.invocationPort, DEFAULT_INVOCATION_PORT, 0, 65535),
    listenHost: '0.0.0.0',
    attachPort: integer(env, ENV.attachPort, DEFAULT_ATTACH_PORT, 0, 65535),
    attachHost: env[ENV.attachHost] || '127.0.0.1',
    invocationDomain: env[ENV.invocationDomain] || undefined,
    maxInFlight: integer(env, ENV.maxInFlight, DEFAULT_MAX_IN_FLIGHT, 1, 1_000_000),
    maxRequestBytes: integer(env, ENV.maxRequestBytes, MAX_REQUEST_BYTES, 1, 5 * 1024 ** 3),
    maxHeldRequestBytes: integer(env, ENV.maxHeldRequestBytes, DEFAULT_MAX_HELD_REQUEST_BYTES, 1, 64 * 1024 ** 3),
    grpcIdleSeconds: integer(env, ENV.grpcIdleSeconds, DEFAULT_GRPC_SESSION_IDLE_SECONDS, 1, 3600),
    ...overrides,
  };
}
