/**
 * The Instances table: the heartbeat of each worker beside a function
 * container. An item expires INSTANCE_HEARTBEAT_TTL_SECONDS after its latest
 * heartbeat; readers treat an expired item as gone (core/functions
 * listLiveInstances) since DynamoDB's TTL deletes only eventually.
 */
import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { dynamo } from './aws';
import { tableName } from './config';
import { listLiveInstances, type InstanceRecord } from './functions';
import { INSTANCE_HEARTBEAT_TTL_SECONDS } from './limits';

/** What a worker reports about its instance. */
export type InstanceState = 'STARTING' | 'READY' | 'DRAINING' | 'ERROR';

/** An Instances item as the worker writes it. */
export interface WorkerInstanceRecord extends InstanceRecord {
  state: InstanceState;
  /** Jobs the worker is running right now. */
  inFlight: number;
  functionId: string;
}

/** Writes the instance's heartbeat: its state and in-flight count, fresh for INSTANCE_HEARTBEAT_TTL_SECONDS. */
export async function putHeartbeat(instance: Omit<WorkerInstanceRecord, 'lastSeen' | 'expiresAt'>, ttlSeconds = INSTANCE_HEARTBEAT_TTL_SECONDS): Promise<void> {
  const now = Date.now();
  const item: WorkerInstanceRecord = {
    ...instance,
    lastSeen: new Date(now).toISOString(),
    expiresAt: Math.floor(now / 1000) + ttlSeconds,
  };
  await dynamo().send(new PutCommand({ TableName: tableName('instances'), Item: item }));
}

/** Removes an instance's record (the worker is shutting down). */
export async function removeInstance(versionId: string, instanceId: string): Promise<void> {
  await dynamo().send(new DeleteCommand({ TableName: tableName('instances'), Key: { versionId, instanceId } }));
}

/** Instances of a version that take work: READY with a fresh heartbeat. */
export async function countReadyInstances(versionId: string): Promise<number> {
  const instances = await listLiveInstances(versionId);
  return instances.filter((instance) => instance.state.toUpperCase() === 'READY').length;
}
