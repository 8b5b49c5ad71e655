import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The cluster suite needs binaries built with Go: npm run test:cluster runs it (test/cluster/vitest.config.ts).
    exclude: [...configDefaults.exclude, 'test/cluster/**'],
    pool: 'forks',
    globalSetup: ['test/support/temp-dir.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Lambda code reads its configuration from process.env; keep each file's environment to itself.
    isolate: true,
  },
});
