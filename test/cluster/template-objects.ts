/**
 * The Kubernetes objects the CDK app applies to the cluster, read from the
 * synthesized template (cdk.out, written by `npm run synth`), so the cluster
 * suite checks what is deployed rather than a copy.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** A Kubernetes object as it appears in a manifest. */
export interface ManifestObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string> };
  readonly [field: string]: unknown;
}

const TEMPLATE = join(import.meta.dirname, '..', '..', 'cdk.out', 'Nvcf.template.json');

/**
 * The objects of every KubernetesManifest resource whose manifest is a plain
 * string (no CloudFormation tokens: namespaces, ServiceAccounts, RBAC, the
 * admission policy), in template order.
 */
export function templateObjects(): ManifestObject[] {
  if (!existsSync(TEMPLATE)) throw new Error(`cluster: no synthesized template at ${TEMPLATE}; run npm run synth first`);
  const template = JSON.parse(readFileSync(TEMPLATE, 'utf8')) as { Resources: Record<string, { Type: string; Properties?: { Manifest?: unknown } }> };
  const objects: ManifestObject[] = [];
  for (const resource of Object.values(template.Resources)) {
    if (resource.Type !== 'Custom::AWSCDK-EKS-KubernetesResource' || typeof resource.Properties?.Manifest !== 'string') continue;
    objects.push(...(JSON.parse(resource.Properties.Manifest) as ManifestObject[]));
  }
  return objects;
}
