import { configDefaults, defineConfig } from 'vitest/config';

const E2E = 'test/e2e/**/*.test.ts';

export default defineConfig({
  test: {
    // The cluster suite needs binaries built with Go: npm run test:cluster runs it (test/cluster/vitest.config.ts).
    exclude: [...configDefaults.exclude, 'test/cluster/**'],
    pool: 'forks',
    maxWorkers: 2,
    globalSetup: ['test/support/temp-dir.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Lambda code reads its configuration from process.env; keep each file's environment to itself.
    isolate: true,
    // Unit, CDK and integration files two at a time (vitest's default on 2 cores is one worker); then the
    // end-to-end files one at a time (a maxWorkers-1 project runs after the others): their processes and timing
    // assertions want the machine, and two of them side by side flaked.
    projects: [
      { extends: true, test: { name: 'e2e', include: [E2E], maxWorkers: 1 } },
      { extends: true, test: { name: 'unit, cdk, integration', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, 'test/cluster/**', E2E] } },
    ],
  },
});
