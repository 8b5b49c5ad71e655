#!/usr/bin/env node
// `nvcf` (cli/main.ts): TypeScript run through the package's own tsx, as npm start runs, so nothing is built first.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
