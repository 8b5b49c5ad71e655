/**
 * R1–R6: an account's registry credentials (open-source NVCF's
 * registry-credentials API), served by the functions Lambda, which already
 * seals functions' secrets with the same key. Storage and rules live in
 * core/registry-credentials.ts; no answer here carries a secret.
 */
import * as z from 'zod';
import { MAX_MANAGEMENT_BODY_BYTES } from '../../core/limits';
import { conflict, notFound } from '../../core/problem';
import {
  addRegistryCredentialSchema,
  ARTIFACT_TYPES,
  createRegistryCredential,
  deleteRegistryCredential,
  getRegistryCredential,
  listRegistryCredentials,
  recognizedRegistriesJson,
  registryOfHost,
  toRegistryCredentialJson,
  updateRegistryCredential,
  updateRegistryCredentialSchema,
} from '../../core/registry-credentials';
import { parseJsonBody, parseQuery, uuidParam, type ApiRequest } from '../http/request';
import { json, noContent, type ApiResponse } from '../http/responses';
import type { RouteDocs } from '../http/route-docs';

/** Bodies carrying a secret: their parse errors quote nothing. */
const SENSITIVE = [MAX_MANAGEMENT_BODY_BYTES, { sensitive: true }] as const;

/** `artifactType` as a comma list (API Gateway joins repeated parameters with commas); absent means all. */
const listQuery = z.object({
  artifactType: z
    .string()
    .transform((value) => value.split(',').map((part) => part.trim().toUpperCase()).filter(Boolean))
    .pipe(z.array(z.enum(ARTIFACT_TYPES, { error: `must be one of ${ARTIFACT_TYPES.join(', ')}` })))
    .optional(),
});

const credentialNotFound = (id: string) => notFound(`Registry credential '${id}' not found`);

async function addCredential(req: ApiRequest): Promise<ApiResponse> {
  const request = parseJsonBody(req, addRegistryCredentialSchema, ...SENSITIVE);
  const registry = registryOfHost(request.registryHostname)!;
  const existing = (await listRegistryCredentials(req.caller.accountId)).find((credential) => credential.registryHostname === request.registryHostname);
  if (existing) {
    throw conflict(
      `this account already has registry credential ${existing.registryCredentialId} for ${request.registryHostname} (${registry.registryName}); replace its secret or add artifact types with PATCH /v2/nvcf/registry-credentials/${existing.registryCredentialId}`,
    );
  }
  return json(200, { registryCredential: toRegistryCredentialJson(await createRegistryCredential(req.caller.accountId, request)) });
}

async function listCredentials(req: ApiRequest): Promise<ApiResponse> {
  const { artifactType } = parseQuery(req, listQuery);
  const credentials = (await listRegistryCredentials(req.caller.accountId)).filter(
    (credential) => !artifactType?.length || credential.artifactTypes.some((type) => artifactType.includes(type)),
  );
  return json(200, { registryCredentials: credentials.map(toRegistryCredentialJson) });
}

async function getCredential(req: ApiRequest): Promise<ApiResponse> {
  const id = uuidParam(req, 'registryCredentialId');
  const record = await getRegistryCredential(req.caller.accountId, id);
  if (!record) throw credentialNotFound(id);
  return json(200, { registryCredential: toRegistryCredentialJson(record) });
}

async function updateCredential(req: ApiRequest): Promise<ApiResponse> {
  const id = uuidParam(req, 'registryCredentialId');
  const update = parseJsonBody(req, updateRegistryCredentialSchema, ...SENSITIVE);
  const record = await updateRegistryCredential(req.caller.accountId, id, update);
  if (!record) throw credentialNotFound(id);
  return json(200, { registryCredential: toRegistryCredentialJson(record) });
}

async function deleteCredential(req: ApiRequest): Promise<ApiResponse> {
  const id = uuidParam(req, 'registryCredentialId');
  if (!(await deleteRegistryCredential(req.caller.accountId, id))) throw credentialNotFound(id);
  return noContent();
}

async function recognizedRegistries(): Promise<ApiResponse> {
  return json(200, recognizedRegistriesJson());
}

const CREDENTIAL_ANSWER = { status: 200, description: '`{"registryCredential": RegistryCredential}` (never its secret)' } as const;

export const registryCredentialRouteDocs: RouteDocs = {
  R1: {
    operationId: 'addRegistryCredential', summary: 'Add a registry credential',
    description: 'Pulls of container images, Helm charts, models and resources from that registry use it. One credential per registry host and account.',
    body: addRegistryCredentialSchema,
    examples: { ngc: { registryHostname: 'nvcr.io', secret: { name: '$oauthtoken', value: 'nvapi-example' }, artifactTypes: ['CONTAINER', 'HELM'], description: 'NGC' } },
    answer: CREDENTIAL_ANSWER,
    errors: [409, 413],
  },
  R2: { operationId: 'listRegistryCredentials', summary: 'List registry credentials', query: listQuery, answer: { status: 200, description: '`{"registryCredentials": [RegistryCredential]}`, oldest first' } },
  R3: { operationId: 'getRegistryCredential', summary: 'Get a registry credential', answer: CREDENTIAL_ANSWER, errors: [404] },
  R4: {
    operationId: 'updateRegistryCredential', summary: 'Replace the secret of a registry credential, or add artifact types',
    body: updateRegistryCredentialSchema,
    examples: { rotate: { secret: { name: '$oauthtoken', value: 'nvapi-rotated' } }, addTypes: { artifactTypeEnums: ['MODEL'] } },
    answer: CREDENTIAL_ANSWER,
    errors: [404, 413],
  },
  R5: { operationId: 'deleteRegistryCredential', summary: 'Delete a registry credential', answer: { status: 204, description: 'deleted' }, errors: [404] },
  R6: { operationId: 'listRecognizedRegistries', summary: 'List the registries credentials may be added for', answer: { status: 200, description: '`{"recognizedRegistries": {CONTAINER: [...], HELM: [...], MODEL: [...], RESOURCE: [...]}}`' } },
};

export const registryCredentialRoutes = {
  R1: addCredential,
  R2: listCredentials,
  R3: getCredential,
  R4: updateCredential,
  R5: deleteCredential,
  R6: recognizedRegistries,
};
