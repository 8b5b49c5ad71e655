/**
 * The one test that bundles a Lambda for real, with the local esbuild as
 * `cdk synth` does, then loads the bundle and calls it: proof that the ESM
 * output, the createRequire banner and the external AWS SDK work together.
 */
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { PROJECT_ROOT, createApiLambda } from '../../lib/api-functions';
import { resolveConfig } from '../../lib/config';
import { ENV, testApp } from './support';

// Inside node_modules, so that the bundle's external imports resolve like they do on Lambda.
const test = testApp({ 'aws:cdk:bundling-stacks': ['**'], 'aws:cdk:disable-asset-staging': false }, join(PROJECT_ROOT, 'node_modules'));
afterAll(() => test.dispose());

it('bundles the authorizer into an ESM file that imports the runtime’s AWS SDK, loads, and refuses a request without a key', async () => {
  const stack = new Stack(test.app, 'Bundle', { env: ENV });
  const fn = createApiLambda(stack, 'authorizer', { config: resolveConfig({ gpuCluster: false }), environment: {} });
  const template = Template.fromStack(stack);
  const s3Key: string = template.toJSON().Resources[stack.getLogicalId(fn.node.defaultChild as never)].Properties.Code.S3Key;
  const bundle = join(test.outdir, `asset.${s3Key.replace(/\.zip$/, '')}`, 'index.mjs');

  const code = readFileSync(bundle, 'utf8');
  const bytes = statSync(bundle).size;
  console.log(`authorizer Lambda bundle: ${(bytes / 1024).toFixed(1)} KiB (+ source map)`);
  expect(code.startsWith("import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);")).toBe(true);
  expect(code).toMatch(/from\s*"@aws-sdk\/client-dynamodb"/);
  expect(code).not.toMatch(/class DynamoDBClient\b/);
  expect(bytes).toBeLessThan(1024 * 1024);

  const { handler } = await import(pathToFileURL(bundle).href);
  const result = await handler({ version: '2.0', type: 'REQUEST', routeKey: 'GET /v2/nvcf/functions', headers: {}, identitySource: [] });

  expect(result).toEqual({ isAuthorized: true, context: { authenticated: 'false', reason: expect.stringContaining('Bearer') } });
});

it('ends npm run synth with where each template went and its resource count (bin/synth-summary.ts)', () => {
  const summary = testApp();
  try {
    const stack = new Stack(summary.app, 'Summary', { env: ENV });
    createApiLambda(stack, 'gpus', { config: resolveConfig({ gpuCluster: false }), environment: {} });
    const resources = Object.keys(summary.app.synth().getStackByName('Summary').template.Resources).length;

    const output = execFileSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'bin', 'synth-summary.ts'), summary.outdir], { cwd: PROJECT_ROOT, encoding: 'utf8' });

    expect(resources).toBeGreaterThan(0);
    expect(output).toBe(`synthesized Summary: ${relative(PROJECT_ROOT, join(summary.outdir, 'Summary.template.json'))} (${resources} resources)\n`);
  } finally {
    summary.dispose();
  }
});
