/**
 * The key of functions' secrets in the template: a rotating customer-managed
 * key, named to every runtime, that the functions Lambda may only seal with
 * (GenerateDataKey) and only the gpu-agent's identities (the function pods'
 * worker identity; the controller, for Helm functions' Secrets) may open with
 * (Decrypt), each only under the platform's encryption context. The actions
 * come from SECRETS_KMS_ACTIONS, which core/secrets.ts calls (its unit test
 * pins that against a KMS stand-in).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV as ENV_NAMES, K8S, REGISTRY_CREDENTIAL_ENCRYPTION_CONTEXT_KEYS, SECRETS_ENCRYPTION_CONTEXT_KEYS, SECRETS_KMS_ACTIONS } from '../../core/names';
import { LAMBDA_NAMES } from '../../lib/api-functions';
import { actionsOf, find, logicalId, roleStatements, synthesize, type Statement, type Synthesized } from './support';

let synth: Synthesized;
beforeAll(() => {
  synth = synthesize();
});
afterAll(() => synth?.dispose());

const keyArn = () => JSON.stringify({ 'Fn::GetAtt': [logicalId(synth.stack.data.secretsKey), 'Arn'] });
/** Statements of every inline policy of the template that name the secrets key, by role logical id. */
function secretsKeyGrants(): Record<string, Statement[]> {
  const grants: Record<string, Statement[]> = {};
  for (const policy of Object.values(synth.template.findResources('AWS::IAM::Policy'))) {
    const statements = (policy.Properties.PolicyDocument.Statement as Statement[]).filter((s) => JSON.stringify(s.Resource).includes(keyArn()));
    for (const role of policy.Properties.Roles as { Ref: string }[]) if (statements.length) (grants[role.Ref] ??= []).push(...statements);
  }
  return grants;
}
const CONTEXT_CONDITION = {
  'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...SECRETS_ENCRYPTION_CONTEXT_KEYS] },
  Null: { 'kms:EncryptionContextKeys': 'false' },
};
/** Registry credentials use the same key only under their own context keys (core/registry-credentials.ts). */
const CREDENTIAL_CONDITION = {
  'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...REGISTRY_CREDENTIAL_ENCRYPTION_CONTEXT_KEYS] },
  Null: { 'kms:EncryptionContextKeys': 'false' },
};

describe('the secrets key', () => {
  it('is a customer-managed key with rotation on', () => {
    synth.template.hasResourceProperties('AWS::KMS::Key', { Description: "Wraps the data keys of NVCF functions' secrets; only the gpu-agent may decrypt", EnableKeyRotation: true });
  });

  it('is named to every Lambda and to the gpu-agent, which passes it on to the worker and the init containers', () => {
    const resources = synth.template.toJSON().Resources;
    for (const name of LAMBDA_NAMES) {
      expect(JSON.stringify(resources[logicalId(synth.stack.functions.functions[name])].Properties.Environment.Variables[ENV_NAMES.secretsKeyId])).toBe(keyArn());
    }
    const env = find(synth.template, 'Deployment', K8S.controllerName).spec.template.spec.containers[0].env;
    expect(env.map((e: { name: string }) => e.name)).toContain(ENV_NAMES.secretsKeyId);
  });

  it('lets the functions Lambda seal (GenerateDataKey) and never open, only under the platform encryption context', () => {
    const statements = roleStatements(synth.template, logicalId(synth.stack.functions.functions.functions.role as never)).filter((s) => JSON.stringify(s.Resource).includes(keyArn()));
    expect(statements).toEqual([
      { Sid: 'SealFunctionSecrets', Effect: 'Allow', Action: SECRETS_KMS_ACTIONS.seal[0], Resource: JSON.parse(keyArn()), Condition: CONTEXT_CONDITION },
      { Sid: 'SealRegistryCredentials', Effect: 'Allow', Action: SECRETS_KMS_ACTIONS.seal[0], Resource: JSON.parse(keyArn()), Condition: CREDENTIAL_CONDITION },
    ]);
  });

  it('lets the worker identity (worker sidecar and write-secrets) open, only under the platform encryption context', () => {
    const statements = roleStatements(synth.template, logicalId(synth.stack.agent!.workerIdentity.role)).filter((s) => JSON.stringify(s.Resource).includes(keyArn()));
    expect(statements).toEqual([
      { Sid: 'OpenFunctionSecrets', Effect: 'Allow', Action: SECRETS_KMS_ACTIONS.open[0], Resource: JSON.parse(keyArn()), Condition: CONTEXT_CONDITION },
      // fetch-artifacts: NGC models and resources with the owner's credential.
      { Sid: 'OpenRegistryCredentials', Effect: 'Allow', Action: SECRETS_KMS_ACTIONS.open[0], Resource: JSON.parse(keyArn()), Condition: CREDENTIAL_CONDITION },
    ]);
  });

  it('lets the controller open too, for the Secret of a Helm function’s chart and for image pull Secrets, each under its own condition', () => {
    const statements = roleStatements(synth.template, logicalId(synth.stack.agent!.controllerIdentity.role)).filter((s) => JSON.stringify(s.Resource).includes(keyArn()));
    expect(statements).toEqual([
      { Sid: 'OpenFunctionSecrets', Effect: 'Allow', Action: SECRETS_KMS_ACTIONS.open[0], Resource: JSON.parse(keyArn()), Condition: CONTEXT_CONDITION },
      // The image pull Secrets of container functions, from their owners' registry credentials.
      { Sid: 'OpenRegistryCredentials', Effect: 'Allow', Action: SECRETS_KMS_ACTIONS.open[0], Resource: JSON.parse(keyArn()), Condition: CREDENTIAL_CONDITION },
    ]);
  });

  it('is granted to no other role: no other Lambda, not KEDA, not the invocation service', () => {
    const grants = secretsKeyGrants();
    const allowed = new Map<string, readonly string[]>([
      [logicalId(synth.stack.functions.functions.functions.role as never), SECRETS_KMS_ACTIONS.seal],
      [logicalId(synth.stack.agent!.workerIdentity.role), SECRETS_KMS_ACTIONS.open],
      [logicalId(synth.stack.agent!.controllerIdentity.role), SECRETS_KMS_ACTIONS.open],
    ]);
    for (const [role, statements] of Object.entries(grants)) expect([role, actionsOf(statements)]).toEqual([role, [...(allowed.get(role) ?? [])]]);
    expect(Object.keys(grants).sort()).toEqual([...allowed.keys()].sort());
  });
});

describe('the registry credentials table', () => {
  const tableArn = () => JSON.stringify({ 'Fn::GetAtt': [logicalId(synth.stack.data.tables.registryCredentials), 'Arn'] });
  /** The DynamoDB actions each role holds on the table, by role logical id. */
  function tableGrants(): Record<string, string[]> {
    const grants: Record<string, string[]> = {};
    for (const policy of Object.values(synth.template.findResources('AWS::IAM::Policy'))) {
      const statements = (policy.Properties.PolicyDocument.Statement as Statement[]).filter((s) => JSON.stringify(s.Resource).includes(tableArn()));
      for (const role of policy.Properties.Roles as { Ref: string }[]) if (statements.length) (grants[role.Ref] ??= []).push(...actionsOf(statements));
    }
    return grants;
  }

  it('is read and written by the functions Lambda (R1–R6), queried by deploy, fetch-artifacts and the controller, and by no other role', () => {
    const role = (fn: { role?: unknown }) => logicalId(fn.role as never);
    expect(tableGrants()).toEqual({
      [role(synth.stack.functions.functions.functions)]: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem'],
      [role(synth.stack.functions.functions.deployments)]: ['dynamodb:Query'],
      [logicalId(synth.stack.agent!.workerIdentity.role)]: ['dynamodb:Query'],
      [logicalId(synth.stack.agent!.controllerIdentity.role)]: ['dynamodb:Query'],
    });
  });
});
