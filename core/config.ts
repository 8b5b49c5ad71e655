/**
 * Runtime configuration, read from the environment in one place. CDK sets
 * these variables on every Lambda and agent pod; local/ sets them for the
 * embedded stack.
 */
import { DEFAULT_MAX_RECEIVE_COUNT } from './limits';
import { DEFAULT_QUEUE_PREFIX, ENV } from './names';
import { TABLES, type TableName } from './tables';

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

/** Physical name of one of the tables of core/tables.ts. */
export function tableName(table: TableName, env: NodeJS.ProcessEnv = process.env): string {
  return required(env, TABLES[table].envVar);
}

export function bucketName(env: NodeJS.ProcessEnv = process.env): string {
  return required(env, ENV.bucket);
}

export function queuePrefix(env: NodeJS.ProcessEnv = process.env): string {
  return env[ENV.queuePrefix] || DEFAULT_QUEUE_PREFIX;
}

/** KMS key id for per-version queues, or undefined for SQS-managed encryption. */
export function queueKmsKeyId(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[ENV.queueKmsKeyId] || undefined;
}

export function maxReceiveCount(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[ENV.maxReceiveCount];
  if (!raw) return DEFAULT_MAX_RECEIVE_COUNT;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 1000) {
    throw new Error(`${ENV.maxReceiveCount} must be an integer from 1 to 1000, got "${raw}"`);
  }
  return value;
}

/** The EKS cluster that hosts GPU nodegroups, or undefined when not running on EKS. */
export function clusterName(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[ENV.clusterName] || undefined;
}

/** The GPU offers as configured JSON (NVCF_GPUS), or undefined; core/gpus.ts validates it. */
export function gpusConfiguration(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[ENV.gpus] || undefined;
}
