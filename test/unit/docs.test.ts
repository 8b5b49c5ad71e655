/**
 * Keeps the documentation honest, cheaply: every relative link of README.md
 * and docs/*.md reaches a file of the repository (and a heading of it, when the
 * link names one), no link leaves the repository's tree or points at documents
 * a clone does not have, and docs/api.md documents every route of
 * core/routes.ts with its reference and scope, so a new route without docs
 * fails here.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROUTES, SCOPES } from '../../core/routes';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..', '..');
const DOCS_DIR = join(ROOT, 'docs');

function documentationFiles(root = ROOT): string[] {
  const docs = join(root, 'docs');
  const inDocs = existsSync(docs) ? readdirSync(docs).filter((name) => name.endsWith('.md')).map((name) => join(docs, name)) : [];
  return [join(root, 'README.md'), ...inDocs];
}

/** Markdown without its fenced code blocks (a link-like text in a shell example is no link). */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '');
}

/** Targets of the inline links `[text](target)` of a markdown text. */
function linkTargets(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\[[^\]]*\]\(\s*(?:<([^>]+)>|([^)\s]+))(?:\s+"[^"]*")?\s*\)/g)].map((match) => (match[1] ?? match[2])!);
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens; repeats get -1, -2, ... */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, text] of prose(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = text!.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** What is wrong with one link of `file`, or undefined when it is fine. */
function linkProblem(file: string, target: string, root = ROOT): string | undefined {
  if (/^(https?|mailto):/i.test(target)) return undefined;
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return `uses the scheme of ${target}; link to a file of the repository or to an https page`;
  const [path, anchor] = target.split('#', 2) as [string, string | undefined];
  if (isAbsolute(path)) return `is an absolute path, which no clone has; use a path relative to ${relative(root, file)}`;
  const resolved = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
  const inside = relative(root, resolved);
  if (inside.startsWith('..') || isAbsolute(inside)) return 'leaves the repository';
  if (!existsSync(resolved)) return `names ${inside}, which does not exist`;
  if (anchor !== undefined && statSync(resolved).isFile() && resolved.endsWith('.md')) {
    if (!headingAnchors(readFileSync(resolved, 'utf8')).has(anchor)) return `names the heading #${anchor}, which ${inside} does not have`;
  }
  return undefined;
}

/** Documents of the project's shared working area that a user's clone does not have. */
const OUTSIDE_DOCUMENTS = /\bDESIGN\.md\b|\bnvcf-api\.md\b|\bTOOLCHAIN\.md\b|\bSTYLE\.md\b|shared documents|\bseeds\//;

/** The table rows of docs/api.md, as trimmed cells. */
function tableRows(markdown: string): string[][] {
  return markdown
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
}

describe('documentation', () => {
  const files = documentationFiles();

  it('has the architecture and API notes in docs/', () => {
    expect(files.map((file) => relative(ROOT, file))).toEqual(expect.arrayContaining(['README.md', join('docs', 'architecture.md'), join('docs', 'api.md')]));
  });

  it('links only to files and headings of the repository', () => {
    const problems = files.flatMap((file) =>
      linkTargets(readFileSync(file, 'utf8')).flatMap((target) => {
        const problem = linkProblem(file, target);
        return problem ? [`${relative(ROOT, file)}: (${target}) ${problem}`] : [];
      }),
    );
    expect(problems).toEqual([]);
  });

  it('names no document a clone does not have', () => {
    const mentions = files.flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .flatMap((line, i) => (OUTSIDE_DOCUMENTS.test(line) ? [`${relative(ROOT, file)}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(mentions).toEqual([]);
  });

  it('documents every route of core/routes.ts in docs/api.md, with its reference and scope', () => {
    const rows = tableRows(readFileSync(join(DOCS_DIR, 'api.md'), 'utf8'));
    const problems = ROUTES.flatMap((route) => {
      const row = rows.find((cells) => cells.some((cell) => cell === `\`${route.method} ${route.path}\``));
      if (!row) return [`${route.ref} ${route.method} ${route.path} is missing from the endpoint table of docs/api.md`];
      const mistakes = [];
      if (row[0] !== route.ref) mistakes.push(`${route.method} ${route.path} is listed as ${row[0]}, not ${route.ref}`);
      const scope = route.scope ?? 'none';
      if (!row.includes(scope)) mistakes.push(`${route.ref} is listed without its scope ${scope}`);
      return mistakes;
    });
    expect(problems).toEqual([]);
  });

  it('names every scope in docs/api.md', () => {
    const api = readFileSync(join(DOCS_DIR, 'api.md'), 'utf8');
    expect(SCOPES.filter((scope) => !api.includes(`\`${scope}\``))).toEqual([]);
  });
});

describe('documentation checks', () => {
  it('find links outside code blocks only', () => {
    expect(linkTargets('see [a](docs/a.md#x) and [b](<c d.md>)\n```\n[no](link.md)\n```\n')).toEqual(['docs/a.md#x', 'c d.md']);
  });

  it('make anchors as GitHub does', () => {
    expect([...headingAnchors('# Direct invocation (I5)\n## Functions (F1–F8)\n## `npm start`\n## Limits\n## Limits\n')]).toEqual([
      'direct-invocation-i5',
      'functions-f1f8',
      'npm-start',
      'limits',
      'limits-1',
    ]);
  });

  it('refuse links that leave the repository, are absolute, or miss their file or heading', () => {
    const readme = join(ROOT, 'README.md');
    expect(linkProblem(readme, '../shared/DESIGN.md')).toBe('leaves the repository');
    expect(linkProblem(readme, '/work/shared/nvcf-api.md')).toMatch(/absolute path/);
    expect(linkProblem(readme, 'file:///etc/hosts')).toMatch(/scheme/);
    expect(linkProblem(readme, 'docs/missing.md')).toMatch(/does not exist/);
    expect(linkProblem(readme, 'docs/api.md#no-such-heading')).toMatch(/does not have/);
    expect(linkProblem(readme, 'docs/api.md#direct-invocation-i5')).toBeUndefined();
    expect(linkProblem(readme, 'https://docs.nvidia.com/cloud-functions/')).toBeUndefined();
  });

  it('refuse mentions of the shared documents', () => {
    expect(OUTSIDE_DOCUMENTS.test('The design is in `DESIGN.md` of the shared documents')).toBe(true);
    expect(OUTSIDE_DOCUMENTS.test('see docs/architecture.md')).toBe(false);
  });
});
