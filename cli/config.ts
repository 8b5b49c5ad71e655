/**
 * Where `nvcf` finds the API and its key. Each setting comes from, in order:
 * the environment (NVCF_BASE_URL, NVCF_INVOCATION_URL, NVCF_API_KEY,
 * NVCF_FORMAT), the config file `nvcf config set` writes (config.json in
 * NVCF_CONFIG_DIR, else the user's config directory), else the local stack
 * (`npm start`) running with this PORT, whose URL and key it finds as
 * `npm run keys` finds its tables.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type * as Zod from 'zod';
import { describeIssues, ourWords } from '../core/schema-messages';
import { DEFAULT_LOCAL_PORT, findLocalApi } from '../local/discovery';
import { UsageError } from './args';
import { FORMATS } from './output';

function buildConfigSchema(z: typeof Zod) {
  const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });
  return z.object({
    baseUrl: httpUrl.optional(),
    invocationUrl: httpUrl.optional(),
    apiKey: z.string().min(1, 'must not be empty').optional(),
    format: z.enum(FORMATS, { error: `must be ${FORMATS.join(' or ')}` }).optional(),
  });
}
export type Config = Zod.infer<ReturnType<typeof buildConfigSchema>>;

let schema: Promise<ReturnType<typeof buildConfigSchema>> | undefined;

/**
 * Checks settings, naming a bad one as `names` spells it (flag or variable).
 * zod is loaded only when there is a setting to check: its import is a good part of every command's start.
 */
async function checked(settings: Config, names: Record<keyof Config, string>, prefix = ''): Promise<Config> {
  if (Object.values(settings).every((value) => value === undefined)) return {};
  const parsed = (await (schema ??= import('zod').then(buildConfigSchema))).safeParse(settings, { error: ourWords });
  if (parsed.success) return parsed.data;
  throw new UsageError(`${prefix}${describeIssues(parsed.error).replace(/\b(baseUrl|invocationUrl|apiKey|format)\b/g, (field) => names[field as keyof Config])}`);
}

/** The directory of config.json: NVCF_CONFIG_DIR, else $XDG_CONFIG_HOME/nvcf, %APPDATA%\nvcf or ~/.config/nvcf. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NVCF_CONFIG_DIR) return env.NVCF_CONFIG_DIR;
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, 'nvcf');
  if (process.platform === 'win32' && env.APPDATA) return join(env.APPDATA, 'nvcf');
  return join(homedir(), '.config', 'nvcf');
}

export function configFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), 'config.json');
}

/** The config file's settings; none when there is no file yet. */
export async function readConfig(env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const file = configFile(env);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError(`${file} is not JSON; fix it or remove it and run nvcf config set again`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new UsageError(`${file} must hold a JSON object; fix it or remove it and run nvcf config set again`);
  return checked(json as Config, FIELD_NAMES, `${file}: `);
}

/** Merges `changes` into the config file (readable by its user only: it may hold the key). */
export async function writeConfig(changes: Config, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const config = { ...(await readConfig(env)), ...(await checked(changes, FLAG_NAMES)) };
  await mkdir(configDir(env), { recursive: true, mode: 0o700 });
  await writeFile(configFile(env), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return config;
}

export interface Connection {
  baseUrl: string;
  invocationUrl?: string;
  apiKey: string;
  format?: Config['format'];
}

/** The settings in effect: environment over config file over the local stack. */
export async function resolveConnection(env: NodeJS.ProcessEnv = process.env): Promise<Connection> {
  const config = await readConfig(env);
  const fromEnv = await checked(
    { baseUrl: env.NVCF_BASE_URL || undefined, invocationUrl: env.NVCF_INVOCATION_URL || undefined, apiKey: env.NVCF_API_KEY || undefined, format: (env.NVCF_FORMAT || undefined) as Config['format'] },
    ENV_NAMES,
  );
  let baseUrl = fromEnv.baseUrl ?? config.baseUrl;
  let apiKey = fromEnv.apiKey ?? config.apiKey;
  if (!baseUrl) {
    const local = await findLocalApi(env);
    if (!local) {
      throw new UsageError(
        `no API to talk to: set NVCF_BASE_URL or run nvcf config set --base-url <url> (the stack output ApiUrl); no local stack (npm start) runs with PORT=${env.PORT || DEFAULT_LOCAL_PORT}`,
      );
    }
    baseUrl = local.url;
    apiKey ??= local.apiKey;
  }
  if (!apiKey) throw new UsageError(`no API key for ${baseUrl}: set NVCF_API_KEY or run nvcf config set --api-key <key>`);
  return { baseUrl, invocationUrl: fromEnv.invocationUrl ?? config.invocationUrl, apiKey, format: fromEnv.format ?? config.format };
}

const ENV_NAMES: Record<keyof Config, string> = {
  baseUrl: 'NVCF_BASE_URL',
  invocationUrl: 'NVCF_INVOCATION_URL',
  apiKey: 'NVCF_API_KEY',
  format: 'NVCF_FORMAT',
};

/** In the config file a bad setting is named by its field. */
const FIELD_NAMES: Record<keyof Config, string> = {
  baseUrl: 'baseUrl',
  invocationUrl: 'invocationUrl',
  apiKey: 'apiKey',
  format: 'format',
};

const FLAG_NAMES: Record<keyof Config, string> = {
  baseUrl: '--base-url',
  invocationUrl: '--invocation-url',
  apiKey: '--api-key',
  format: '--format',
};
