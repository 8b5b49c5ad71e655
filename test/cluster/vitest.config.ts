import { defineConfig } from 'vitest/config';

// The cluster suite (npm run test:cluster): real control plane built by test/cluster/build.sh.
// Kept out of the fast suite (vitest.config.ts excludes test/cluster) so npm test needs no Go.
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
