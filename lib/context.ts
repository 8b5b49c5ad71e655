/**
 * Reads the `nvcf:*` CDK context (cdk.json or `-c key=value`) into
 * NvcfConfigProps. Values given on the command line arrive as strings, so
 * lists, numbers and booleans are parsed here; the values themselves are
 * validated by resolveConfig.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import type { Node } from 'constructs';
import { ConfigError, type NvcfConfigProps } from './config';

export const CONTEXT_PREFIX = 'nvcf:';

type Kind = 'json' | 'list' | 'number' | 'boolean' | 'string' | 'removal';

/** Every context key the app understands, with the shape of its value. */
export const CONTEXT_KEYS = {
  gpus: 'json',
  gpuCluster: 'boolean',
  endpointAccess: 'string',
  publicEndpointCidrs: 'list',
  kubernetesVersion: 'string',
  systemInstanceType: 'string',
  systemMinNodes: 'number',
  systemMaxNodes: 'number',
  natGateways: 'number',
  clusterAdminRoleArns: 'list',
  chartVersions: 'json',
  invocationDomain: 'string',
  invocationCertificateArn: 'string',
  invocationOriginCertificateArn: 'string',
  invocationReplicas: 'number',
  tritonImage: 'string',
  dataRemovalPolicy: 'removal',
  objectExpirationDays: 'number',
  corsAllowedOrigins: 'list',
  queueEncryption: 'string',
  maxReceiveCount: 'number',
  authorizerCacheSeconds: 'number',
  throttlingRateLimit: 'number',
  throttlingBurstLimit: 'number',
  logLevel: 'string',
  logRetentionDays: 'number',
  functionLogRetentionDays: 'number',
  lambdaMemoryMb: 'number',
  bundleAwsSdk: 'boolean',
  alarmEmail: 'string',
  oldestMessageAgeAlarmSeconds: 'number',
  quotas: 'json',
} as const satisfies Record<keyof NvcfConfigProps, Kind>;

/** Context key of the stack name; not part of NvcfConfigProps. */
export const STACK_NAME_KEY = `${CONTEXT_PREFIX}stackName`;
export const DEFAULT_STACK_NAME = 'Nvcf';

function parse(key: string, kind: Kind, raw: unknown): unknown {
  const text = typeof raw === 'string' ? raw.trim() : undefined;
  switch (kind) {
    case 'json':
      if (text === undefined) return raw;
      try {
        return JSON.parse(text);
      } catch (error) {
        throw new ConfigError(`context ${key} is not valid JSON (${(error as Error).message}): ${text}`);
      }
    case 'list':
      if (text === undefined) return raw;
      if (text.startsWith('[')) return parse(key, 'json', text);
      return text.split(',').map((item) => item.trim()).filter(Boolean);
    case 'number': {
      if (text === undefined) return raw;
      const value = Number(text);
      if (text === '' || Number.isNaN(value)) throw new ConfigError(`context ${key} must be a number, got "${text}"`);
      return value;
    }
    case 'boolean':
      if (text === undefined) return raw;
      if (text === 'true' || text === 'false') return text === 'true';
      throw new ConfigError(`context ${key} must be true or false, got "${text}"`);
    case 'removal': {
      const value = String(raw).toLowerCase();
      if (value === 'retain') return RemovalPolicy.RETAIN;
      if (value === 'destroy') return RemovalPolicy.DESTROY;
      throw new ConfigError(`context ${key} must be "retain" or "destroy", got ${JSON.stringify(raw)}`);
    }
    case 'string':
      return raw;
  }
}

/**
 * The stack name and configuration found in the app's context. Unknown
 * `nvcf:` keys are refused so that a typo does not silently fall back to a default.
 */
export function configFromContext(node: Node): { stackName: string; config: NvcfConfigProps } {
  const config: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(CONTEXT_KEYS)) {
    const key = `${CONTEXT_PREFIX}${name}`;
    const raw = node.tryGetContext(key);
    if (raw !== undefined) config[name] = parse(key, kind, raw);
  }

  const known = new Set([STACK_NAME_KEY, ...Object.keys(CONTEXT_KEYS).map((name) => `${CONTEXT_PREFIX}${name}`)]);
  const unknown = Object.keys(node.getAllContext()).filter((key) => key.startsWith(CONTEXT_PREFIX) && !known.has(key));
  if (unknown.length > 0) {
    throw new ConfigError(`unknown context key(s) ${unknown.join(', ')}; known keys are ${[...known].sort().join(', ')}`);
  }

  const stackName = node.tryGetContext(STACK_NAME_KEY) ?? DEFAULT_STACK_NAME;
  if (typeof stackName !== 'string' || !/^[A-Za-z][A-Za-z0-9-]{0,63}$/.test(stackName)) {
    throw new ConfigError(`context ${STACK_NAME_KEY} must be a CloudFormation stack name (letters, digits, "-"), got ${JSON.stringify(stackName)}`);
  }
  return { stackName, config: config as NvcfConfigProps };
}
