/**
 * The quotas per account an installation sets (core/quotas.ts applies them):
 * their names, defaults and the parsing of NVCF_QUOTAS / CDK context
 * `nvcf:quotas`. No AWS here: lib/ validates its context with it.
 */
import * as z from 'zod';
import { GiB } from './limits';
import { ENV } from './names';

export const QUOTA_NAMES = ['functions', 'versionsPerFunction', 'deployedInstances', 'gpus', 'concurrentInvocations', 'assetBytes'] as const;
export type QuotaName = (typeof QUOTA_NAMES)[number];
/** A quota's value; null: unlimited. */
export type Quotas = Record<QuotaName, number | null>;

/**
 * The installation's defaults. Concurrent invocations are unlimited by
 * default: each invocation service instance already bounds what it holds
 * (NVCF_MAX_IN_FLIGHT), and the quota costs two or three DynamoDB writes per call
 * while it is set.
 */
export const DEFAULT_QUOTAS: Quotas = {
  functions: 100,
  versionsPerFunction: 50,
  deployedInstances: 100,
  gpus: 100,
  concurrentInvocations: null,
  assetBytes: 100 * GiB,
};

/** What each quota counts, for messages and the usage endpoint. */
export const QUOTA_DESCRIPTIONS: Record<QuotaName, string> = {
  functions: 'functions the account owns',
  versionsPerFunction: 'versions of one function',
  deployedInstances: 'instances the account may run at once: the sum of maxInstances over its deployed versions',
  gpus: 'GPUs the account may hold at once: the sum of maxInstances x GPUs per instance over its deployed versions',
  concurrentInvocations: 'invocations of (or by) the account the invocation service holds at once',
  assetBytes: 'bytes of the account\'s uploaded assets',
};

const quotaValue = z.union([z.number().int('must be a whole number').min(0, 'must be 0 or more').max(Number.MAX_SAFE_INTEGER), z.null()], {
  error: 'must be a whole number of 0 or more, or null for unlimited',
});

/** Quota values as the installation's settings and the admin CLI give them: any subset, unknown names refused. */
export const quotaValuesSchema = z.object(Object.fromEntries(QUOTA_NAMES.map((name) => [name, quotaValue.optional()])) as Record<QuotaName, z.ZodOptional<typeof quotaValue>>).strict();
export type QuotaValues = Partial<Quotas>;

function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || '(value)'}: ${issue.message}`).join('; ');
}

/** Parses quota values; a message naming each mistake otherwise. */
export function parseQuotaValues(value: unknown): QuotaValues | string {
  const parsed = quotaValuesSchema.safeParse(value);
  return parsed.success ? (parsed.data as QuotaValues) : describeIssues(parsed.error);
}

/** The installation's quotas: NVCF_QUOTAS (JSON) over DEFAULT_QUOTAS. A malformed setting stops the process that reads it. */
export function installationQuotas(env: NodeJS.ProcessEnv = process.env): Quotas {
  const raw = env[ENV.quotas];
  if (!raw) return { ...DEFAULT_QUOTAS };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new Error(`${ENV.quotas} must be a JSON object such as {"functions": 10}, got ${raw}`);
  }
  const values = parseQuotaValues(json);
  if (typeof values === 'string') throw new Error(`${ENV.quotas}: ${values}; known quotas: ${QUOTA_NAMES.join(', ')}`);
  return { ...DEFAULT_QUOTAS, ...values };
}
