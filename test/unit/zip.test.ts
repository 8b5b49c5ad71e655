import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeZip } from '../../gpu-agent/worker/zip';

describe('writeZip', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nvcf-zip-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('writes an archive that unzip verifies and extracts byte-exact, from memory and from files', async () => {
    const fromFile = randomBytes(200_000);
    await writeFile(join(dir, 'input.bin'), fromFile);
    const inMemory = Buffer.from('"hello"');
    await writeZip(join(dir, 'out.zip'), [
      { name: 'req.response', source: inMemory },
      { name: 'images/photo.bin', source: { file: join(dir, 'input.bin') } },
      { name: 'empty', source: Buffer.alloc(0) },
    ]);
    expect(execFileSync('unzip', ['-t', join(dir, 'out.zip')]).toString()).toContain('No errors detected');
    execFileSync('unzip', ['-q', join(dir, 'out.zip'), '-d', join(dir, 'x')]);
    expect((await readFile(join(dir, 'x', 'req.response'))).equals(inMemory)).toBe(true);
    expect((await readFile(join(dir, 'x', 'images', 'photo.bin'))).equals(fromFile)).toBe(true);
    expect((await readFile(join(dir, 'x', 'empty'))).length).toBe(0);
  });
});
