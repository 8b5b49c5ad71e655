/**
 * Admin command for API keys and per-account quotas, run as `npm run keys -- <command>`. It talks to
 * the ApiKeys table through the AWS SDK's normal credential chain, so it works
 * against any environment the SDK can reach (AWS, or the emulators when
 * AWS_ENDPOINT_URL_DYNAMODB points at them), and finds a running local stack
 * (`npm start`) by its PORT.
 *
 * Exit codes: 0 done, 1 the operation failed, 2 usage error.
 */
import { parseArgs } from 'node:util';
import { accountIdSchema, API_KEY_PREFIX, apiKeyStatus, createApiKey, listApiKeys, revokeApiKey } from '../core/api-keys';
import { ENV } from '../core/names';
import { QUOTA_NAMES, parseQuotaValues, type QuotaName, type QuotaValues } from '../core/quota-settings';
import { changeQuotaOverrides, quotaOverrides } from '../core/quotas';
import { SCOPES, type Scope } from '../core/routes';
import { DEFAULT_LOCAL_PORT, findLocalStack } from '../local/discovery';

const USAGE = `usage:
  npm run keys -- create --account <id> [--scopes <scope,scope,...>] [--description <text>] [--table <name>]
  npm run keys -- revoke <key or its sha256> [--table <name>]
  npm run keys -- list --account <id> [--table <name>]
  npm run keys -- quota set --account <id> [--functions <n>] [--versions-per-function <n>] [--deployed-instances <n>]
                           [--gpus <n>] [--concurrent-invocations <n>] [--asset-bytes <n>]
  npm run keys -- quota show --account <id>

create prints the new key alone on stdout; it is shown only this once.
scopes (default: all): ${SCOPES.join(', ')}
The ApiKeys table is --table, else the ${ENV.apiKeysTable} environment variable; for a deployed stack it is
the stack output ApiKeysTableName:
  export ${ENV.apiKeysTable}=$(aws cloudformation describe-stacks --stack-name Nvcf \\
    --query "Stacks[0].Outputs[?OutputKey=='ApiKeysTableName'].OutputValue" --output text)
Without either, the local stack (npm start) running with the same PORT is used.
quota set overrides the installation's quotas (${ENV.quotas}, CDK context nvcf:quotas) for one account that has
API keys: a whole number, "unlimited", or "default" to go back to the installation's value. quota show prints the
account's overrides. Against AWS, also set ${ENV.quotasTable} (stack output QuotasTableName).`;

/** A mistake in the command line: reported with the usage text and exit code 2. */
class UsageError extends Error {}

const SHA256_HEX = /^[0-9a-f]{64}$/;

function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        account: { type: 'string' },
        scopes: { type: 'string' },
        description: { type: 'string' },
        table: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(QUOTA_NAMES.map((name) => [quotaOption(name), { type: 'string' as const }])),
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function requireAccount(account: string | undefined): string {
  if (!account) throw new UsageError('--account <id> is required');
  const parsed = accountIdSchema.safeParse(account);
  if (!parsed.success) throw new UsageError(`--account: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

function parseScopes(list: string | undefined): Scope[] | undefined {
  if (list === undefined) return undefined;
  const scopes = list.split(',').map((scope) => scope.trim()).filter(Boolean);
  if (scopes.length === 0) throw new UsageError('--scopes needs at least one scope');
  const unknown = scopes.filter((scope) => !(SCOPES as readonly string[]).includes(scope));
  if (unknown.length > 0) throw new UsageError(`unknown scope(s) ${unknown.join(', ')}; known scopes: ${SCOPES.join(', ')}`);
  return scopes as Scope[];
}

/** `versionsPerFunction` → `versions-per-function`. */
function quotaOption(name: QuotaName): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** The quota options given: values to set, and names to reset to the installation's. */
function parseQuotaOptions(values: Record<string, unknown>): { set: QuotaValues; reset: QuotaName[] } {
  const set: Record<string, number | null> = {};
  const reset: QuotaName[] = [];
  for (const name of QUOTA_NAMES) {
    const raw = values[quotaOption(name)];
    if (typeof raw !== 'string') continue;
    const text = raw.trim().toLowerCase();
    if (text === 'default') reset.push(name);
    else if (text === 'unlimited') set[name] = null;
    else if (/^\d+$/.test(text)) set[name] = Number(text);
    else throw new UsageError(`--${quotaOption(name)} must be a whole number, "unlimited" or "default", got "${raw}"`);
  }
  const checked = parseQuotaValues(set);
  if (typeof checked === 'string') throw new UsageError(checked);
  if (Object.keys(checked).length === 0 && reset.length === 0) {
    throw new UsageError(`quota set needs at least one of ${QUOTA_NAMES.map((name) => `--${quotaOption(name)}`).join(', ')}`);
  }
  return { set: checked, reset };
}

/**
 * Points core/config at the ApiKeys table: --table wins over the environment,
 * and without either the local stack running with this PORT is used.
 */
async function selectTable(table: string | undefined): Promise<void> {
  if (table) process.env[ENV.apiKeysTable] = table;
  if (process.env[ENV.apiKeysTable]) return;
  const localStack = await findLocalStack();
  if (localStack) {
    Object.assign(process.env, localStack);
    return;
  }
  throw new UsageError(
    `no ApiKeys table given: set ${ENV.apiKeysTable} to the table's name (stack output ApiKeysTableName) or pass --table <name>; ` +
      `no local stack (npm start) runs with PORT=${process.env.PORT || DEFAULT_LOCAL_PORT}`,
  );
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [command, ...rest] = positionals;
  switch (command) {
    case 'create': {
      if (rest.length > 0) throw new UsageError(`create takes no positional arguments, got "${rest.join(' ')}"`);
      const accountId = requireAccount(values.account);
      const scopes = parseScopes(values.scopes);
      await selectTable(values.table);
      const { key, record } = await createApiKey({ accountId, scopes, description: values.description });
      console.log(key);
      console.error(`created an API key for account ${accountId} with scopes ${record.scopes.join(',')}; it is not shown again (sha256 ${record.keyHash})`);
      return 0;
    }
    case 'revoke': {
      const [keyOrHash, ...extra] = rest;
      if (!keyOrHash || extra.length > 0) throw new UsageError('revoke takes exactly one argument: the key or its sha256');
      if (!keyOrHash.startsWith(API_KEY_PREFIX) && !SHA256_HEX.test(keyOrHash)) {
        throw new UsageError(`"${keyOrHash}" is neither an API key (${API_KEY_PREFIX}...) nor a sha256 in lower-case hex`);
      }
      await selectTable(values.table);
      if (!(await revokeApiKey(keyOrHash))) {
        console.error('no such API key');
        return 1;
      }
      console.error('revoked; requests with this key now get 401 (API Gateway may serve a cached authorization for up to its cache TTL)');
      return 0;
    }
    case 'list': {
      if (rest.length > 0) throw new UsageError(`list takes no positional arguments, got "${rest.join(' ')}"`);
      const accountId = requireAccount(values.account);
      await selectTable(values.table);
      for (const record of await listApiKeys(accountId)) {
        // Keys made over HTTP expire; an expired one is refused like a revoked one.
        const state = apiKeyStatus(record).toLowerCase();
        console.log([record.keyHash, state, record.createdAt, record.scopes.join(','), record.description ?? ''].join('\t'));
      }
      return 0;
    }
    case 'quota': {
      const [action, ...extra] = rest;
      if (extra.length > 0) throw new UsageError(`quota ${action} takes no further positional arguments, got "${extra.join(' ')}"`);
      if (action !== 'set' && action !== 'show') throw new UsageError('quota takes set or show');
      const accountId = requireAccount(values.account);
      const change = action === 'set' ? parseQuotaOptions(values) : undefined;
      await selectTable(values.table);
      if (!process.env[ENV.quotasTable]) throw new UsageError(`no Quotas table given: set ${ENV.quotasTable} (stack output QuotasTableName)`);
      // An override for an account nobody can use is a typo: refused, like a bad option.
      if ((await listApiKeys(accountId)).length === 0) throw new UsageError(`account ${accountId} has no API keys; create one first (npm run keys -- create --account ${accountId})`);
      const overrides = change ? await changeQuotaOverrides(accountId, change.set, change.reset) : await quotaOverrides(accountId);
      console.log(JSON.stringify({ accountId, overrides }));
      return 0;
    }
    case undefined:
      throw new UsageError('a command is required');
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    console.error(`${error.message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else {
    console.error(`keys: ${(error as Error).name}: ${(error as Error).message}`);
    process.exitCode = 1;
  }
}
