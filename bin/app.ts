/**
 * The CDK app: reads the `nvcf:*` context (see README, "Deploy to AWS"),
 * builds the stack, and runs cdk-nag's AwsSolutions checks on it, so that a
 * synth with an unacknowledged finding fails.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../lib/config';
import { configFromContext } from '../lib/context';
import { NvcfStack } from '../lib/nvcf-stack';

const app = new App();
try {
  const { stackName, config } = configFromContext(app.node);
  new NvcfStack(app, stackName, {
    ...config,
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });
} catch (error) {
  // A configuration mistake is the user's to fix: the message says how, a stack trace would bury it.
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(1);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
