/**
 * cdk-nag acknowledgements for resources that aws-cdk-lib creates on its own
 * (the EKS kubectl provider and custom-resource provider framework), whose
 * roles and runtimes we cannot shape without forking the constructs. Findings
 * on our own resources are acknowledged where those resources are defined.
 */
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference.js';
import type { IConstruct } from 'constructs';
import { acknowledge, acknowledgeWildcard } from './iam';

const KUBECTL_PROVIDER_REASON =
  "aws-cdk-lib's EKS kubectl provider (runs kubectl and helm for this stack's manifests and charts, only during deployments) attaches these AWS managed policies to its own roles; the construct offers no way to replace them.";

/** Acknowledges the findings on the kubectl provider below an aws-eks-v2 cluster. */
export function acknowledgeKubectlProvider(provider: IConstruct): void {
  const stack = Stack.of(provider);
  for (const node of provider.node.findAll()) {
    if (node instanceof iam.CfnRole) {
      for (const arn of stack.resolve(node.managedPolicyArns) ?? []) {
        acknowledge(node, `AwsSolutions-IAM4[Policy::${flattenCfnReference(arn)}]`, KUBECTL_PROVIDER_REASON);
      }
    }
    if (node instanceof lambda.Function && node.node.id === 'Handler') {
      acknowledge(
        node,
        'AwsSolutions-L1',
        "The kubectl handler's Python runtime is chosen by aws-cdk-lib for the kubectl/helm layer it bundles; it moves forward with aws-cdk-lib upgrades.",
      );
      const invoker = provider.node.findAll().find((child) => child instanceof iam.CfnPolicy && child.node.path.includes('framework-onEvent'));
      if (invoker) {
        acknowledgeWildcard(
          invoker,
          `${node.functionArn}:*`,
          "The custom-resource provider framework invokes its own kubectl handler; the wildcard only covers that one function's versions and aliases.",
        );
      }
    }
  }
}
