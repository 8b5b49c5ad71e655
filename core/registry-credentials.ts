/**
 * Registry credentials per account, as open-source NVCF's registry-credentials
 * API has them: a registry hostname, a secret (`name` is the user name, NGC's
 * is `$oauthtoken`; `value` the password or API key) and the artifact types it
 * serves (CONTAINER, HELM, MODEL, RESOURCE). The secret is sealed like
 * functions' secrets (core/secrets.ts: a data key wrapped by the installation's
 * key) under the context {account, registryCredentialId}, so a sealed secret
 * opens only as its own credential and never as a function's secrets; no
 * answer carries it.
 *
 * Who uses them: the artifact fetcher (NGC models and resources), the
 * controller (image pull secrets, Helm charts), each only with the credential
 * of the version's owner for the registry an artifact comes from.
 */
import { randomUUID } from 'node:crypto';
import { DeleteCommand, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod';
import { conditionalWrite, dynamo } from './aws';
import { tableName } from './config';
import { MAX_DESCRIPTION_LENGTH, MAX_SECRET_VALUE_LENGTH, MAX_TAG_LENGTH, MAX_TAGS } from './limits';
import { openBox, sealBox, type SealedBox } from './secrets';

export const ARTIFACT_TYPES = ['CONTAINER', 'HELM', 'MODEL', 'RESOURCE'] as const;
export type ArtifactType = (typeof ARTIFACT_TYPES)[number];

/** A registry the platform knows how to use, and the host serving each artifact type there. */
export interface RecognizedRegistry {
  registryName: string;
  hosts: Partial<Record<ArtifactType, string[]>>;
}

/**
 * Registries a credential may be stored for. NGC serves images, charts and
 * models from three hosts with one API key: a credential for any of them
 * serves the others for the artifact types it lists.
 */
export const RECOGNIZED_REGISTRIES: readonly RecognizedRegistry[] = [
  { registryName: 'NGC', hosts: { CONTAINER: ['nvcr.io'], HELM: ['helm.ngc.nvidia.com'], MODEL: ['api.ngc.nvidia.com'], RESOURCE: ['api.ngc.nvidia.com'] } },
  { registryName: 'Docker Hub', hosts: { CONTAINER: ['docker.io', 'registry-1.docker.io', 'index.docker.io'] } },
  { registryName: 'GitHub Container Registry', hosts: { CONTAINER: ['ghcr.io'], HELM: ['ghcr.io'] } },
  { registryName: 'Quay', hosts: { CONTAINER: ['quay.io'] } },
];

/** The host NGC models and resources (`v2/org/...` URIs) are looked up under. */
export const NGC_MODELS_HOST = 'api.ngc.nvidia.com';

/** The recognized registry a host belongs to, for any artifact type. */
export function registryOfHost(hostname: string): RecognizedRegistry | undefined {
  const host = hostname.toLowerCase();
  return RECOGNIZED_REGISTRIES.find((registry) => Object.values(registry.hosts).some((hosts) => hosts.includes(host)));
}

/** GET /v2/nvcf/recognized-registries: per artifact type, the registries and their hosts. */
export function recognizedRegistriesJson(): { recognizedRegistries: Record<ArtifactType, { registryName: string; registryHostname: string }[]> } {
  const byType = Object.fromEntries(ARTIFACT_TYPES.map((type) => [type, [] as { registryName: string; registryHostname: string }[]])) as Record<
    ArtifactType,
    { registryName: string; registryHostname: string }[]
  >;
  for (const { registryName, hosts } of RECOGNIZED_REGISTRIES) {
    for (const type of ARTIFACT_TYPES) for (const registryHostname of hosts[type] ?? []) byType[type].push({ registryName, registryHostname });
  }
  return { recognizedRegistries: byType };
}

/** The registry host of an image reference, as the container runtime resolves it (no host: Docker Hub). */
export function imageRegistryHost(image: string): string {
  const first = image.split('/')[0]!;
  const isHost = image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return isHost ? first.toLowerCase() : 'docker.io';
}

const hostnameSchema = z
  .string()
  .min(1)
  .max(253)
  .transform((host) => host.toLowerCase())
  .refine((host) => registryOfHost(host) !== undefined, {
    message: `must be a recognized registry host (${[...new Set(RECOGNIZED_REGISTRIES.flatMap((r) => Object.values(r.hosts).flat()))].join(', ')}); see GET /v2/nvcf/recognized-registries`,
  });

const secretSchema = z.object(
  {
    name: z.string().min(1).max(256),
    value: z.string().min(1).max(MAX_SECRET_VALUE_LENGTH),
  },
  { error: (issue) => (issue.input === undefined ? 'is required' : 'must be a JSON object {"name": <user name, $oauthtoken for NGC>, "value": <password or API key>}') },
);

const artifactTypesSchema = z.array(z.enum(ARTIFACT_TYPES)).min(1).max(ARTIFACT_TYPES.length);

export const addRegistryCredentialSchema = z.object(
  {
    registryHostname: hostnameSchema,
    secret: secretSchema,
    artifactTypes: artifactTypesSchema,
    tags: z.array(z.string().min(1).max(MAX_TAG_LENGTH)).max(MAX_TAGS).nullish(),
    description: z.string().max(MAX_DESCRIPTION_LENGTH).nullish(),
  },
  { error: 'must be a JSON object' },
);

/** PATCH: a new secret and/or artifact types added to those the credential has (NVCF's PATCH adds, never removes). */
export const updateRegistryCredentialSchema = z
  .object({ secret: secretSchema.optional(), artifactTypeEnums: artifactTypesSchema.optional() }, { error: 'must be a JSON object' })
  .refine((body) => body.secret !== undefined || body.artifactTypeEnums !== undefined, { message: 'must give secret, artifactTypeEnums or both' });

export type AddRegistryCredential = z.infer<typeof addRegistryCredentialSchema>;
export type UpdateRegistryCredential = z.infer<typeof updateRegistryCredentialSchema>;

/** A credential as stored; `sealedSecret` opens to the JSON {name, value} and is never shown. */
export interface RegistryCredentialRecord {
  accountId: string;
  registryCredentialId: string;
  registryCredentialName: string;
  registryName: string;
  registryHostname: string;
  artifactTypes: ArtifactType[];
  tags?: string[];
  description?: string;
  sealedSecret: SealedBox;
  createdAt: string;
  lastUpdatedAt: string;
}

/** The user name and password of a credential, opened. */
export interface RegistryLogin {
  username: string;
  password: string;
}

function credentialContext(accountId: string, registryCredentialId: string): Record<string, string> {
  return { account: accountId, registryCredentialId };
}

function sealLogin(accountId: string, registryCredentialId: string, secret: { name: string; value: string }): Promise<SealedBox> {
  return sealBox(JSON.stringify({ name: secret.name, value: secret.value }), credentialContext(accountId, registryCredentialId));
}

/** Opens a credential's secret; throws SecretsUnavailable (naming the credential, never its value) when it does not open. */
export async function openRegistryLogin(record: RegistryCredentialRecord): Promise<RegistryLogin> {
  const text = await openBox(record.sealedSecret, credentialContext(record.accountId, record.registryCredentialId), {
    what: `the secret of registry credential ${record.registryCredentialId} (${record.registryHostname})`,
    owner: 'credential',
  });
  const { name, value } = JSON.parse(text) as { name: string; value: string };
  return { username: name, password: value };
}

/** The credential as NVCF's RegistryCredentialDetails shows it: everything but the secret. */
export function toRegistryCredentialJson(record: RegistryCredentialRecord) {
  return {
    registryCredentialId: record.registryCredentialId,
    ncaId: record.accountId,
    registryCredentialName: record.registryCredentialName,
    registryName: record.registryName,
    registryHostname: record.registryHostname,
    artifactTypes: record.artifactTypes,
    ...(record.tags ? { tags: record.tags } : {}),
    ...(record.description ? { description: record.description } : {}),
    provisionedBy: 'USER',
    createdAt: record.createdAt,
    lastUpdatedAt: record.lastUpdatedAt,
  };
}

/** Every credential of an account, oldest first. */
export async function listRegistryCredentials(accountId: string): Promise<RegistryCredentialRecord[]> {
  const items: RegistryCredentialRecord[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const page = await dynamo().send(
      new QueryCommand({
        TableName: tableName('registryCredentials'),
        KeyConditionExpression: 'accountId = :accountId',
        ExpressionAttributeValues: { ':accountId': accountId },
        ExclusiveStartKey,
      }),
    );
    items.push(...((page.Items ?? []) as RegistryCredentialRecord[]));
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return items.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** One credential of the account; undefined for an unknown id or another account's. */
export async function getRegistryCredential(accountId: string, registryCredentialId: string): Promise<RegistryCredentialRecord | undefined> {
  const { Item } = await dynamo().send(new GetCommand({ TableName: tableName('registryCredentials'), Key: { accountId, registryCredentialId }, ConsistentRead: true }));
  return Item as RegistryCredentialRecord | undefined;
}

/** Stores a new credential; the caller has checked the account holds none for the same host. */
export async function createRegistryCredential(accountId: string, request: AddRegistryCredential): Promise<RegistryCredentialRecord> {
  const registryCredentialId = randomUUID();
  const now = new Date().toISOString();
  const record: RegistryCredentialRecord = {
    accountId,
    registryCredentialId,
    registryCredentialName: `${request.registryHostname}-${registryCredentialId.slice(0, 8)}`,
    registryName: registryOfHost(request.registryHostname)!.registryName,
    registryHostname: request.registryHostname,
    artifactTypes: [...new Set(request.artifactTypes)],
    ...(request.tags?.length ? { tags: request.tags } : {}),
    ...(request.description ? { description: request.description } : {}),
    sealedSecret: await sealLogin(accountId, registryCredentialId, request.secret),
    createdAt: now,
    lastUpdatedAt: now,
  };
  await dynamo().send(new PutCommand({ TableName: tableName('registryCredentials'), Item: record, ConditionExpression: 'attribute_not_exists(registryCredentialId)' }));
  return record;
}

/** Replaces the secret and/or adds artifact types; undefined when the account has no such credential. */
export async function updateRegistryCredential(accountId: string, registryCredentialId: string, update: UpdateRegistryCredential): Promise<RegistryCredentialRecord | undefined> {
  const current = await getRegistryCredential(accountId, registryCredentialId);
  if (!current) return undefined;
  const next: RegistryCredentialRecord = {
    ...current,
    artifactTypes: [...new Set([...current.artifactTypes, ...(update.artifactTypeEnums ?? [])])],
    ...(update.secret ? { sealedSecret: await sealLogin(accountId, registryCredentialId, update.secret) } : {}),
    lastUpdatedAt: new Date().toISOString(),
  };
  const written = await conditionalWrite(() =>
    dynamo().send(
      new UpdateCommand({
        TableName: tableName('registryCredentials'),
        Key: { accountId, registryCredentialId },
        UpdateExpression: 'SET artifactTypes = :types, sealedSecret = :secret, lastUpdatedAt = :now',
        ConditionExpression: 'attribute_exists(registryCredentialId)',
        ExpressionAttributeValues: { ':types': next.artifactTypes, ':secret': next.sealedSecret, ':now': next.lastUpdatedAt },
      }),
    ),
  );
  return written ? next : undefined;
}

/** Deletes a credential; false when the account has no such credential. */
export async function deleteRegistryCredential(accountId: string, registryCredentialId: string): Promise<boolean> {
  return conditionalWrite(() =>
    dynamo().send(
      new DeleteCommand({ TableName: tableName('registryCredentials'), Key: { accountId, registryCredentialId }, ConditionExpression: 'attribute_exists(registryCredentialId)' }),
    ),
  );
}

/**
 * The owner's credential for `hostname` serving `artifactType`: one stored for
 * that host, else one for another host of the same registry (an NGC
 * credential for nvcr.io that lists MODEL serves api.ngc.nvidia.com).
 */
export async function registryCredentialFor(accountId: string, hostname: string, artifactType: ArtifactType): Promise<RegistryCredentialRecord | undefined> {
  const registry = registryOfHost(hostname);
  if (!registry) return undefined;
  const serving = (await listRegistryCredentials(accountId)).filter(
    (credential) => credential.artifactTypes.includes(artifactType) && registryOfHost(credential.registryHostname) === registry,
  );
  return serving.find((credential) => credential.registryHostname === hostname.toLowerCase()) ?? serving[0];
}
