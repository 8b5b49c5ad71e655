/**
 * `nvcf`: the NVCF API from a terminal, in the NGC CLI's words (`ngc cf
 * function create --container-image ... --inference-url ...`), through the
 * typed client (client/). Run it as `npx nvcf <command>` (bin/nvcf.mjs);
 * `nvcf --help` and `nvcf <command> --help` list everything, with examples.
 *
 * Exit codes: 0 done, 1 the API or the operation failed (its problem's title
 * and detail on stderr), 2 a mistake in the command line or the settings.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import yauzl from 'yauzl';
import { NvcfClient, NvcfConnectionError, NvcfError, type AuthFn, type DeploymentProgress, type FunctionVersion, type InvocationOutcome } from '../client';
import type { Scope } from '../core/routes';
import {
  assetDescriptionOf,
  secretsOf,
  contentTypeOf,
  createFunctionRequest,
  deploymentRequest,
  keyValue,
  parseJson,
  parseTarget,
  UsageError,
  versionTarget,
  type DeploymentFlags,
  type FunctionFlags,
} from './args';
import { configFile, resolveConnection, writeConfig } from './config';
import { chooseFormat, FORMATS, formatDetails, formatTable, printer, progress, type Format, type Printer } from './output';

interface Context {
  client: NvcfClient;
  out: Printer;
}

/** The client and printer of a command, from the settings in effect and `--format`. */
async function context(command: Command): Promise<Context> {
  const { format } = command.optsWithGlobals<{ format?: Format }>();
  const connection = await resolveConnection();
  return { client: new NvcfClient(connection), out: printer(chooseFormat(format, connection.format, Boolean(process.stdout.isTTY))) };
}

function integerOption(text: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError('must be a whole number');
  return Number(text);
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function example(command: Command, ...lines: string[]): Command {
  return command.addHelpText('after', `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((line) => `  $ ${line}`).join('\n')}`);
}

const FUNCTION_COLUMNS = ['name', 'id', 'versionId', 'status', 'createdAt'];

/** A health check in one line: grpc.health.v1 for a gRPC function, the path and status code for an HTTP one. */
function healthLine(health: NonNullable<FunctionVersion['health']>): string {
  if (health.protocol === 'gRPC') return `gRPC grpc.health.v1 on ${health.port}, ${health.timeout}`;
  return `${health.protocol} ${health.uri} on ${health.port}, ${health.timeout}, expects ${health.expectedStatusCode}`;
}

function functionDetails(version: FunctionVersion): string {
  const { activeInstances, health, rateLimit, ...rest } = version;
  return formatDetails({ ...rest, health: health && healthLine(health), rateLimit: rateLimit?.rateLimit, activeInstances: activeInstances?.length });
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** `--json-secret-file`s: each a JSON object, named after its file as the NGC CLI names it. */
async function jsonSecrets(files: string[] = []): Promise<{ name: string; value: Record<string, unknown> }[]> {
  return Promise.all(
    files.map(async (file) => {
      const text = await readFile(file, 'utf8').catch((error: Error) => {
        throw new UsageError(`--json-secret-file: cannot read ${file}: ${error.message}`);
      });
      const value = parseJson(`--json-secret-file ${file}`, text);
      if (!value || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`--json-secret-file ${file} must hold a JSON object`);
      return { name: basename(file).replace(/\.[^.]*$/, ''), value: value as Record<string, unknown> };
    }),
  );
}

// Deployments

async function followDeployment(client: NvcfClient, out: Printer, functionId: string, versionId: string): Promise<number> {
  const bar = progress(`deployment ${functionId}:${versionId}`);
  const describe = (p: DeploymentProgress) => {
    const health = p.healthInfo.map((info) => info.error).join('; ');
    return `${p.status}: ${p.readyInstances}/${p.minInstances} instance(s) ready${health ? `; ${health}` : ''}`;
  };
  const last = await client.watchDeployment(functionId, versionId, (p) => bar.update(p.minInstances > 0 ? Math.min(1, p.readyInstances / p.minInstances) : undefined, describe(p)));
  bar.stop();
  if (last.status === 'ACTIVE') {
    out.note(`deployment ACTIVE: ${last.readyInstances} instance(s) ready`);
    return 0;
  }
  out.note(`deployment ${last.status}${last.healthInfo.length ? ':' : ''}`);
  for (const info of last.healthInfo) out.note(`  ${[info.gpu, info.instanceType].filter(Boolean).join(' ')}: ${info.error}`);
  return 1;
}

function printDeployment(out: Printer, deployment: Awaited<ReturnType<NvcfClient['getDeployment']>>): void {
  out.print(deployment, () => {
    const specs = formatTable(deployment.deploymentSpecifications, ['gpu', 'instanceType', 'minInstances', 'maxInstances', 'maxRequestConcurrency']);
    const { deploymentSpecifications, healthInfo, ...rest } = deployment;
    const health = healthInfo?.length ? `\n\n${formatTable(healthInfo, ['gpu', 'instanceType', 'error'])}` : '';
    return `${formatDetails(rest)}\n\n${specs}${health}`;
  });
}

// Invocation

/** Unpacks a large output's zip into `dir`; answers the files written with their sizes. */
async function unzip(zipFile: string, dir: string): Promise<{ name: string; bytes: number }[]> {
  const root = resolve(dir);
  const zip = await new Promise<yauzl.ZipFile>((done, fail) => yauzl.open(zipFile, { lazyEntries: true }, (error, opened) => (error ? fail(error) : done(opened))));
  const files: { name: string; bytes: number }[] = [];
  await new Promise<void>((done, fail) => {
    zip.on('error', fail);
    zip.on('end', () => done());
    zip.on('entry', (entry: yauzl.Entry) => {
      const target = resolve(root, entry.fileName);
      // yauzl refuses absolute and ../ names already; this keeps any other escape out too.
      if (!target.startsWith(root + sep)) return fail(new Error(`the zip holds a file outside its directory: ${entry.fileName}`));
      if (entry.fileName.endsWith('/')) return void mkdir(target, { recursive: true }).then(() => zip.readEntry(), fail);
      zip.openReadStream(entry, (error, stream) => {
        if (error) return fail(error);
        mkdir(dirname(target), { recursive: true })
          .then(() => pipeline(stream, createWriteStream(target)))
          .then(() => {
            files.push({ name: entry.fileName, bytes: entry.uncompressedSize });
            zip.readEntry();
          }, fail);
      });
    });
    zip.readEntry();
  });
  return files;
}

async function saveLargeOutput(client: NvcfClient, out: Printer, outcome: Extract<InvocationOutcome, { kind: 'large-output' }>, outputDir: string | undefined): Promise<void> {
  if (!outputDir) {
    out.print({ requestId: outcome.requestId, location: outcome.location }, () => formatDetails({ requestId: outcome.requestId, location: outcome.location }));
    out.note('a large output: pass --output DIR to download and unpack it (the link is valid for an hour)');
    return;
  }
  await mkdir(outputDir, { recursive: true });
  const scratch = await mkdtemp(join(outputDir, '.nvcf-download-'));
  try {
    const zipFile = join(scratch, 'output.zip');
    const { size, body } = await client.downloadLargeOutput(outcome.location);
    const bar = progress(`downloading ${outcome.requestId ?? 'output'}`);
    let received = 0;
    await pipeline(
      body,
      async function* (chunks: AsyncIterable<Uint8Array>) {
        for await (const chunk of chunks) {
          received += chunk.length;
          bar.update(size ? received / size : undefined, size ? `of ${size} bytes` : `${received} bytes`);
          yield chunk;
        }
      },
      createWriteStream(zipFile),
    );
    bar.stop();
    const files = await unzip(zipFile, outputDir);
    out.print({ requestId: outcome.requestId, directory: outputDir, files }, () => formatTable(files, ['name', 'bytes']));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Prints an invocation's final outcome; a pending one is followed first (progress on stderr). */
async function finish(client: NvcfClient, out: Printer, first: InvocationOutcome, options: { outputDir?: string; label?: string }): Promise<void> {
  let outcome = first;
  if (outcome.kind === 'pending') {
    const bar = progress(options.label ?? `request ${outcome.requestId}`);
    try {
      outcome = await client.awaitOutcome(outcome, (pending) => {
        const partial = pending.partialResponse === undefined ? '' : typeof pending.partialResponse === 'string' ? pending.partialResponse : JSON.stringify(pending.partialResponse);
        const shown = partial.length > 80 ? `${partial.slice(0, 77)}...` : partial;
        bar.update(pending.percentComplete === undefined ? undefined : pending.percentComplete / 100, `${pending.invocationStatus}${shown ? ` ${shown}` : ''}`);
      });
      bar.update(1, 'fulfilled');
    } finally {
      bar.stop();
    }
  }
  switch (outcome.kind) {
    case 'result':
      process.stdout.write(outcome.body);
      if (process.stdout.isTTY && !outcome.body.toString('utf8').endsWith('\n')) process.stdout.write('\n');
      return;
    case 'large-output':
      return saveLargeOutput(client, out, outcome, options.outputDir);
    case 'stream':
      for await (const event of outcome.events) {
        if (out.format === 'json') process.stdout.write(`${JSON.stringify(event)}\n`);
        else process.stdout.write(`${event.event && event.event !== 'message' ? `${event.event}: ` : ''}${event.data}\n`);
      }
      return;
    case 'pending':
      throw new Error('unreachable: awaitOutcome answers only a final outcome');
  }
}

async function requestBody(options: { data?: string; file?: string }): Promise<{ body: unknown; contentType?: string }> {
  if (options.data !== undefined && options.file !== undefined) throw new UsageError('give the request body once: --data JSON or --file FILE');
  if (options.data !== undefined) return { body: parseJson('--data', options.data) };
  if (options.file !== undefined) {
    const bytes = options.file === '-' ? await readStdin() : await readFile(options.file).catch((error: Error) => {
      throw new UsageError(`--file: cannot read ${options.file}: ${error.message}`);
    });
    return { body: bytes, contentType: 'application/json' };
  }
  return { body: {} };
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Creates an asset for a file and uploads it with a progress bar; answers its id. */
async function uploadFile(client: NvcfClient, file: string, options: { contentType?: string; description?: string } = {}): Promise<string> {
  const size = (await stat(file).catch((error: Error) => {
    throw new UsageError(`cannot read ${file}: ${error.message}`);
  })).size;
  const asset = await client.createAsset({ contentType: options.contentType ?? contentTypeOf(file), description: options.description ?? assetDescriptionOf(basename(file)) });
  const bar = progress(`uploading ${basename(file)}`);
  await client.uploadAsset(asset, createReadStream(file), size, (sent) => bar.update(size > 0 ? sent / size : 1, `of ${size} bytes`));
  bar.stop();
  return asset.assetId;
}

// The program

/** The whole command tree (exported for the test that every command's help has an example). */
export function buildProgram(): Command {
  const program = new Command('nvcf')
    .description('NVIDIA Cloud Functions on your own AWS account (or npm start), from the command line')
    .addOption(new Option('--format <format>', 'output: table (on a terminal) or json (when piped)').choices(FORMATS))
    .exitOverride()
    .showHelpAfterError('(add --help for usage and examples)')
    .configureHelp({ showGlobalOptions: true });
  example(
    program,
    'nvcf function create --name echo --container-image nvcr.io/nvcf-examples/echo:1.0 --inference-url /echo --health-uri /health',
    'nvcf deploy create <function-id>:<version-id> --targeted-dep-spec LOCAL:local.gpu:1:1 --wait',
    "nvcf invoke <function-id> --data '{\"message\": \"hello\"}'",
  ).addHelpText('after', `\nSettings: NVCF_BASE_URL, NVCF_INVOCATION_URL, NVCF_API_KEY, NVCF_FORMAT, else ${configFile()} (nvcf config set), else the local stack (npm start) with this PORT.`);

  // config
  const config = program.command('config').description('the base URL, invocation URL, API key and output format nvcf uses');
  example(
    config
      .command('set')
      .description(`write settings to the config file (NVCF_CONFIG_DIR, else ${configFile()})`)
      .option('--base-url <url>', 'the API (stack output ApiUrl)')
      .option('--invocation-url <url>', 'where invocations go (stack output InvocationUrl); default the base URL')
      .option('--api-key <key>', 'the API key (nvapi-...)')
      .addOption(new Option('--format <format>', 'default output format').choices(FORMATS))
      .action(async (_options, command: Command) => {
        // optsWithGlobals: the program's own --format may take the value of this one.
        const { baseUrl, invocationUrl, apiKey, format } = command.optsWithGlobals<{ baseUrl?: string; invocationUrl?: string; apiKey?: string; format?: Format }>();
        const settings = { baseUrl, invocationUrl, apiKey, format };
        if (Object.values(settings).every((value) => value === undefined)) throw new UsageError('give at least one of --base-url, --invocation-url, --api-key, --format');
        await writeConfig(settings);
        process.stderr.write(`saved to ${configFile()}\n`);
      }),
    'nvcf config set --base-url https://abc123.execute-api.us-east-1.amazonaws.com --api-key nvapi-...',
  );
  example(
    config
      .command('show')
      .description('the settings in effect (the key shortened)')
      .action(async (_options, command: Command) => {
        const { format } = command.optsWithGlobals<{ format?: Format }>();
        const connection = await resolveConnection();
        const shown = { ...connection, apiKey: `${connection.apiKey.slice(0, 10)}...`, configFile: configFile() };
        printer(chooseFormat(format, connection.format, Boolean(process.stdout.isTTY))).print(shown, () => formatDetails(shown));
      }),
    'nvcf config show',
  );

  // function
  const fn = program.command('function').alias('fn').description('create, list, show, delete and tag function versions');
  example(
    fn
      .command('create')
      .description('create a function, or a new version of one when its id is given')
      .argument('[function-id]', 'add a version to this function')
      .requiredOption('--name <name>', 'function name: letters, digits, - and _')
      .requiredOption('--inference-url <path>', 'the path the container serves inference on, e.g. /echo')
      .option('--inference-port <port>', 'the port it listens on (default 8000)', integerOption)
      .option('--container-image <image>', 'container image, e.g. nvcr.io/org/image:tag')
      .option('--container-args <args>', 'arguments of the container command')
      .option('--container-environment-variable <key:value>', 'environment variable of the container (repeatable)', collect)
      .option('--model <name:version:uri>', 'a model to place under /config/models/<name> (repeatable)', collect)
      .option('--resource <name:version:uri>', 'a resource to place under /config/resources/<name> (repeatable)', collect)
      .option('--helm-chart <url>', 'Helm chart (oci:// or https://) instead of a container image')
      .option('--helm-chart-service <name>', "the chart's Service that serves inference (with --helm-chart)")
      .addOption(new Option('--api-body-format <format>', 'request body format').choices(['PREDICT_V2', 'CUSTOM']))
      .addOption(new Option('--function-type <type>', 'function type').choices(['DEFAULT', 'STREAMING']))
      .option('--health-uri <path>', 'health check path (default /v2/health/ready)')
      .option('--health-port <port>', 'health check port (default the inference port)', integerOption)
      .addOption(new Option('--health-protocol <protocol>', 'health check protocol').choices(['HTTP', 'gRPC']))
      .option('--health-timeout <duration>', 'ISO-8601 duration a health check may take, e.g. PT10S')
      .option('--health-expected-status-code <code>', 'status of a passing HTTP health check (default 200)', integerOption)
      .option('--description <text>', 'description (default the name)')
      .option('--tag <tag>', 'a tag (repeatable)', collect)
      .option('--secret <name:value>', 'a secret for the container (repeatable)', collect)
      .option('--json-secret-file <file>', 'a JSON object as a secret named after the file (repeatable)', collect)
      .action(async (functionId: string | undefined, options: FunctionFlags & { jsonSecretFile?: string[] }, command: Command) => {
        const request = createFunctionRequest(options, await jsonSecrets(options.jsonSecretFile));
        const { client, out } = await context(command);
        const created = functionId ? await client.createVersion(parseTarget(functionId, false).functionId, request) : await client.createFunction(request);
        out.print(created, () => functionDetails(created));
      }),
    'nvcf function create --name echo --container-image nvcr.io/nvcf-examples/echo:1.0 --inference-url /echo --health-uri /health',
  );
  example(
    fn
      .command('list')
      .description("list the account's function versions (or one function's)")
      .argument('[function-id]', "list this function's versions only")
      .addOption(new Option('--access-filter <filter...>', 'visibility').choices(['private', 'public', 'authorized']))
      .action(async (functionId: string | undefined, options: { accessFilter?: string[] }, command: Command) => {
        const { client, out } = await context(command);
        const versions = functionId ? await client.listVersions(parseTarget(functionId, false).functionId) : await client.listFunctions({ visibility: options.accessFilter });
        out.print(versions, () => formatTable(versions, FUNCTION_COLUMNS));
      }),
    'nvcf function list',
    'nvcf function list <function-id> --format json',
  );
  example(
    fn
      .command('info')
      .description('show a function version')
      .argument('<function-id:version-id>')
      .action(async (target: string, _options, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const { client, out } = await context(command);
        const version = await client.getVersion(functionId, versionId);
        out.print(version, () => functionDetails(version));
      }),
    'nvcf function info <function-id>:<version-id>',
  );
  example(
    fn
      .command('delete')
      .alias('remove')
      .description('delete an INACTIVE function version (nvcf deploy remove first)')
      .argument('<function-id:version-id>')
      .action(async (target: string, _options, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const { client, out } = await context(command);
        await client.deleteVersion(functionId, versionId);
        out.print({ functionId, versionId, deleted: true }, () => `deleted ${functionId}:${versionId}`);
      }),
    'nvcf function delete <function-id>:<version-id>',
  );
  example(
    fn
      .command('update-metadata')
      .description("replace a version's tags")
      .argument('<function-id:version-id>')
      .option('--tag <tag>', 'a tag (repeatable)', collect)
      .option('--clear-tags', 'remove every tag')
      .action(async (target: string, options: { tag?: string[]; clearTags?: boolean }, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        if (!options.tag && !options.clearTags) throw new UsageError('give the new tags with --tag (repeatable), or --clear-tags to remove them all');
        if (options.tag && options.clearTags) throw new UsageError('give --tag or --clear-tags, not both');
        const { client, out } = await context(command);
        const version = await client.updateMetadata(functionId, versionId, options.tag ?? []);
        out.print(version, () => functionDetails(version));
      }),
    'nvcf function update-metadata <function-id>:<version-id> --tag team-a --tag prod',
  );

  example(
    fn
      .command('update-secret')
      .description("replace a version's secrets (running instances see them within a minute)")
      .argument('<function-id:version-id>')
      .option('--secret <name:value>', 'a secret (repeatable)', collect)
      .option('--json-secret-file <file>', 'a JSON object as a secret named after the file (repeatable)', collect)
      .action(async (target: string, options: { secret?: string[]; jsonSecretFile?: string[] }, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const secrets = secretsOf(options.secret, await jsonSecrets(options.jsonSecretFile));
        if (!secrets) throw new UsageError('give the secrets with --secret NAME:VALUE or --json-secret-file FILE (repeatable); the set replaces the current one');
        const { client, out } = await context(command);
        await client.updateSecrets(functionId, versionId, secrets);
        out.print({ functionId, versionId, secrets: secrets.map((secret) => secret.name) }, () => `secrets of ${functionId}:${versionId} replaced: ${secrets.map((secret) => secret.name).join(', ')}`);
      }),
    'nvcf function update-secret <function-id>:<version-id> --secret API_TOKEN:s3cr3t',
  );

  // deploy
  const deploy = program.command('deploy').description('deploy, show, change and remove the deployment of a function version');
  const specOptions = (command: Command) =>
    command
      .option('--targeted-dep-spec <spec>', 'gpu:instanceType:min:max[:maxRequestConcurrency][:clusters][:regions][:attributes][:preferredOrder] (repeatable)', collect)
      .option('--dep-spec <spec>', 'backend:gpu:instanceType:min:max[:maxRequestConcurrency], the older form (repeatable)', collect)
      .option('--configuration <json>', 'Helm values overrides (Helm functions only)')
      .option('--wait', 'show the status and ready instances until ACTIVE; exit 1 with the health info on ERROR');
  example(
    specOptions(deploy.command('create').description('deploy a function version').argument('<function-id:version-id>')).action(
      async (target: string, options: DeploymentFlags & { wait?: boolean }, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const request = deploymentRequest(options);
        const { client, out } = await context(command);
        const deployment = await client.deploy(functionId, versionId, request);
        if (!options.wait) return printDeployment(out, deployment);
        process.exitCode = await followDeployment(client, out, functionId, versionId);
        printDeployment(out, await client.getDeployment(functionId, versionId));
      },
    ),
    'nvcf deploy create <function-id>:<version-id> --targeted-dep-spec LOCAL:local.gpu:1:2 --wait',
  );
  example(
    deploy
      .command('info')
      .description('show the deployment of a version')
      .argument('<function-id:version-id>')
      .action(async (target: string, _options, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const { client, out } = await context(command);
        printDeployment(out, await client.getDeployment(functionId, versionId));
      }),
    'nvcf deploy info <function-id>:<version-id>',
  );
  example(
    specOptions(deploy.command('update').description('change a deployment (min/max instances, concurrency)').argument('<function-id:version-id>')).action(
      async (target: string, options: DeploymentFlags & { wait?: boolean }, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const request = deploymentRequest(options);
        const { client, out } = await context(command);
        const deployment = await client.updateDeployment(functionId, versionId, request);
        if (!options.wait) return printDeployment(out, deployment);
        process.exitCode = await followDeployment(client, out, functionId, versionId);
        printDeployment(out, await client.getDeployment(functionId, versionId));
      },
    ),
    'nvcf deploy update <function-id>:<version-id> --targeted-dep-spec LOCAL:local.gpu:0:4',
  );
  example(
    deploy
      .command('log')
      .alias('logs')
      .description("the stdout and stderr lines of a version's instances (and of the platform's worker beside each)")
      .argument('<function-id:version-id>')
      .option('--since <time>', 'lines at or after this ISO 8601 time or epoch milliseconds')
      .option('--limit <lines>', 'at most this many lines per page (default 100, at most 1000)', integerOption)
      .option('--instance-id <id>', "this instance's lines only")
      .option('-f, --follow', 'keep printing new lines (every 2 s) until interrupted')
      .action(async (target: string, options: { since?: string; limit?: number; instanceId?: string; follow?: boolean }, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const { client, out } = await context(command);
        const query = { since: options.since, limit: options.limit === undefined ? undefined : String(options.limit), instanceId: options.instanceId };
        const page = await client.functionLogs(functionId, versionId, query);
        const line = (entry: (typeof page.lines)[number]) => `${entry.timestamp} ${entry.instanceId} ${entry.source}/${entry.stream} ${entry.message}`;
        if (!options.follow) return out.print(page, () => page.lines.map(line).join('\n'));
        // Following prints as lines come: JSON lines (one object each) rather than one document.
        const show = (lines: typeof page.lines) => lines.forEach((entry) => process.stdout.write(`${out.format === 'json' ? JSON.stringify(entry) : line(entry)}\n`));
        show(page.lines);
        for (let cursor = page.cursor; ; ) {
          await new Promise((resolve) => setTimeout(resolve, 2000));
          const next = await client.functionLogs(functionId, versionId, { ...query, since: undefined, cursor });
          show(next.lines);
          cursor = next.cursor;
        }
      }),
    'nvcf deploy log <function-id>:<version-id> --follow',
  );
  example(
    deploy
      .command('remove')
      .aliases(['delete', 'rm'])
      .description('undeploy a version (running calls finish first)')
      .argument('<function-id:version-id>')
      .option('--graceful', "accepted as the NGC CLI sends it: running calls always finish")
      .action(async (target: string, options: { graceful?: boolean }, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const { client, out } = await context(command);
        const version = await client.undeploy(functionId, versionId, { graceful: options.graceful });
        out.print(version, () => `${functionId}:${versionId} is ${version.status}`);
      }),
    'nvcf deploy remove <function-id>:<version-id>',
  );

  // invoke, status, cancel
  example(
    program
      .command('invoke')
      .description('invoke a function and print its answer')
      .argument('<function-id[:version-id]>')
      .option('-d, --data <json>', 'the request body, JSON (default {})')
      .option('-f, --file <file>', 'the request body from a file (- for stdin), sent as application/json')
      .option('--asset <file>', 'upload the file as an asset first and pass it to the function (repeatable)', collect)
      .option('--async', 'queue the call at once and follow it with a progress bar (NVCF-PERCENT-COMPLETE)')
      .option('--detach', 'with --async: print the request id and exit (follow it with nvcf status)')
      .option('-s, --stream', 'ask for text/event-stream and print each event as it arrives')
      .option('--poll-seconds <seconds>', 'how long each request waits for the answer (NVCF-POLL-SECONDS)', integerOption)
      .option('--output <dir>', 'download and unpack a large output (a 302 to a zip) into this directory')
      .action(async (target: string, options: { data?: string; file?: string; asset?: string[]; async?: boolean; detach?: boolean; stream?: boolean; pollSeconds?: number; output?: string }, command: Command) => {
        const { functionId, versionId } = parseTarget(target, false);
        if (options.detach && !options.async) throw new UsageError('--detach goes with --async');
        if (options.stream && options.async) throw new UsageError('--stream and --async do not go together: a stream is answered on its connection');
        const { body, contentType } = await requestBody(options);
        const { client, out } = await context(command);
        const assetIds: string[] = [];
        for (const file of options.asset ?? []) assetIds.push(await uploadFile(client, file));
        const outcome = await client.invoke(functionId, { versionId, body, contentType, assetIds, stream: options.stream, pollSeconds: options.async ? 0 : options.pollSeconds });
        if (outcome.kind === 'pending' && options.detach) return out.print({ requestId: outcome.requestId, status: outcome.invocationStatus }, () => outcome.requestId);
        await finish(client, out, outcome, { outputDir: options.output });
      }),
    "nvcf invoke <function-id> --data '{\"message\": \"hello\"}'",
    "nvcf invoke <function-id> --async --data '{\"message\": \"slow\", \"delay\": 6, \"progress\": 5}'",
    "nvcf invoke <function-id> --stream --data '{\"message\": \"tick\", \"stream\": true, \"repeats\": 3}'",
    "nvcf invoke <function-id> --asset input.png --data '{\"assets\": true}'",
    "nvcf invoke <function-id> --output out/ --data '{\"outputFile\": {\"name\": \"result.bin\", \"bytes\": 1048576}}'",
  );
  example(
    program
      .command('status')
      .description("a call's state: its answer once it is over; with --wait, follow it until then")
      .argument('<request-id>')
      .option('--wait', 'follow the call with a progress bar until it is over')
      .option('--output <dir>', 'download and unpack a large output into this directory')
      .action(async (requestId: string, options: { wait?: boolean; output?: string }, command: Command) => {
        const { client, out } = await context(command);
        const outcome = await client.status(requestId, options.wait ? {} : { pollSeconds: 0 });
        if (outcome.kind === 'pending' && !options.wait) {
          const shown = { requestId: outcome.requestId, status: outcome.invocationStatus, percentComplete: outcome.percentComplete, partialResponse: outcome.partialResponse };
          return out.print(shown, () => formatDetails(shown));
        }
        await finish(client, out, outcome, { outputDir: options.output });
      }),
    'nvcf status <request-id> --wait',
  );
  example(
    program
      .command('cancel')
      .description('cancel a call that is queued or running')
      .argument('<request-id>')
      .action(async (requestId: string, _options, command: Command) => {
        const { client, out } = await context(command);
        await client.cancel(requestId);
        out.print({ requestId, status: 'canceled' }, () => `request ${requestId} canceled`);
      }),
    'nvcf cancel <request-id>',
  );

  // asset
  const asset = program.command('asset').description('upload, list and delete assets (inputs passed to invocations by id)');
  example(
    asset
      .command('upload')
      .description('upload a file as an asset, with a progress bar; prints its id')
      .argument('<file>')
      .option('--content-type <type>', 'media type (default by the file extension)')
      .option('--description <text>', 'description (default the file name)')
      .action(async (file: string, options: { contentType?: string; description?: string }, command: Command) => {
        const { client, out } = await context(command);
        const assetId = await uploadFile(client, file, options);
        out.print({ assetId }, () => assetId);
      }),
    'nvcf asset upload input.png',
  );
  example(
    asset
      .command('list')
      .description("the account's assets")
      .action(async (_options, command: Command) => {
        const { client, out } = await context(command);
        const assets = await client.listAssets();
        out.print(assets, () => formatTable(assets, ['assetId', 'contentType', 'description']));
      }),
    'nvcf asset list',
  );
  example(
    asset
      .command('info')
      .description('show an asset')
      .argument('<asset-id>')
      .action(async (assetId: string, _options, command: Command) => {
        const { client, out } = await context(command);
        const details = await client.getAsset(assetId);
        out.print(details, () => formatDetails(details));
      }),
    'nvcf asset info <asset-id>',
  );
  example(
    asset
      .command('delete')
      .alias('remove')
      .description('delete an asset')
      .argument('<asset-id>')
      .action(async (assetId: string, _options, command: Command) => {
        const { client, out } = await context(command);
        await client.deleteAsset(assetId);
        out.print({ assetId, deleted: true }, () => `deleted ${assetId}`);
      }),
    'nvcf asset delete <asset-id>',
  );

  // share: authorizations (Z1–Z10)
  const share = program.command('share').description('share a function (or one version) with other accounts, who may then invoke it');
  const sharedWith = (authFn: AuthFn) => authFn.authorizedParties.map((party) => party.ncaId);
  const printShare = (out: Printer, authFn: AuthFn) => out.print(authFn, () => `${authFn.id}${authFn.versionId ? `:${authFn.versionId}` : ''} shared with: ${sharedWith(authFn).join(', ') || '(nobody)'}`);
  example(
    share
      .command('set')
      .description('share with exactly these accounts (replacing whom it was shared with)')
      .argument('<function-id[:version-id]>')
      .argument('<account...>', 'account ids (ncaId)')
      .action(async (target: string, accounts: string[], _options, command: Command) => {
        const { functionId, versionId } = parseTarget(target, false);
        const { client, out } = await context(command);
        printShare(out, await client.authorize(functionId, accounts, versionId));
      }),
    'nvcf share set <function-id> team-b team-c',
  );
  for (const [name, description, run] of [
    ['add', 'add one account to whom it is shared with (after share set)', (client: NvcfClient, t: { functionId: string; versionId?: string }, account: string) => client.addAuthorization(t.functionId, account, t.versionId)],
    ['remove', 'stop sharing with one account', (client: NvcfClient, t: { functionId: string; versionId?: string }, account: string) => client.removeAuthorization(t.functionId, account, t.versionId)],
  ] as const) {
    example(
      share
        .command(name)
        .description(description)
        .argument('<function-id[:version-id]>')
        .argument('<account>', 'an account id (ncaId)')
        .action(async (target: string, account: string, _options, command: Command) => {
          const { client, out } = await context(command);
          printShare(out, await run(client, parseTarget(target, false), account));
        }),
      `nvcf share ${name} <function-id> team-b`,
    );
  }
  example(
    share
      .command('list')
      .description('whom each version of a function is shared with')
      .argument('<function-id>')
      .action(async (target: string, _options, command: Command) => {
        const { client, out } = await context(command);
        const versions = await client.listAuthorizations(parseTarget(target, false).functionId);
        out.print(versions, () => formatTable(versions.map((authFn) => ({ ...authFn, authorizedParties: sharedWith(authFn) })), ['id', 'versionId', 'authorizedParties']));
      }),
    'nvcf share list <function-id>',
  );
  example(
    share
      .command('clear')
      .description('share with nobody any more (a function: every version too)')
      .argument('<function-id[:version-id]>')
      .action(async (target: string, _options, command: Command) => {
        const { functionId, versionId } = parseTarget(target, false);
        const { client, out } = await context(command);
        printShare(out, await client.deleteAuthorizations(functionId, versionId));
      }),
    'nvcf share clear <function-id>',
  );

  // rate-limit (RL1, RL2)
  const rateLimit = program.command('rate-limit').description("limit the calls a function version takes from each calling account");
  example(
    rateLimit
      .command('set')
      .description('set the limit: <count>-<S|M|H|D>, several comma-separated; over it calls answer 429 with Retry-After')
      .argument('<function-id:version-id>')
      .argument('<rate>', 'e.g. 100-S, 1000-M or 10-S,500-H')
      .option('--account <ncaId:rate>', "an account's own rate (repeatable)", collect)
      .option('--exempt <ncaId>', 'an account the limit does not apply to (repeatable)', collect)
      .action(async (target: string, rate: string, options: { account?: string[]; exempt?: string[] }, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const perNcaIdRate = options.account && Object.fromEntries(options.account.map((pair) => Object.values(keyValue('--account', pair))));
        const { client, out } = await context(command);
        await client.setRateLimit(functionId, versionId, { rateLimit: rate, ...(perNcaIdRate ? { perNcaIdRate } : {}), ...(options.exempt ? { exemptedNcaIds: options.exempt } : {}) });
        out.print({ functionId, versionId, rateLimit: rate }, () => `rate limit of ${functionId}:${versionId}: ${rate}`);
      }),
    'nvcf rate-limit set <function-id>:<version-id> 10-S',
    'nvcf rate-limit set <function-id>:<version-id> 1000-M --account team-b:100-M --exempt team-c',
  );
  example(
    rateLimit
      .command('remove')
      .description('remove the limit')
      .argument('<function-id:version-id>')
      .action(async (target: string, _options, command: Command) => {
        const { functionId, versionId } = versionTarget(target);
        const { client, out } = await context(command);
        await client.deleteRateLimit(functionId, versionId);
        out.print({ functionId, versionId, rateLimit: null }, () => `rate limit of ${functionId}:${versionId} removed`);
      }),
    'nvcf rate-limit remove <function-id>:<version-id>',
  );

  // key (K1–K4)
  const key = program.command('key').description("create, list and revoke the account's API keys");
  example(
    key
      .command('create')
      .description('create a key; its value is printed this once')
      .requiredOption('--description <text>', 'what the key is for')
      .option('--expires-in-days <days>', 'lifetime in days (default 30, at most 365 and not beyond the key in use)', integerOption, 30)
      .option('--scope <scope>', 'a scope of the new key (repeatable; default every scope of the key in use)', collect)
      .action(async (options: { description: string; expiresInDays: number; scope?: string[] }, command: Command) => {
        const { client, out } = await context(command);
        const expiresAt = new Date(Date.now() + options.expiresInDays * DAY_MS).toISOString();
        const created = await client.createKey({ description: options.description, expiresAt, scopes: options.scope as Scope[] | undefined });
        out.print(created, () => created.value ?? '');
      }),
    'nvcf key create --description "CI invoker" --scope invoke_function --expires-in-days 7',
  );
  example(
    key
      .command('list')
      .description("the account's keys, without their values")
      .action(async (_options, command: Command) => {
        const { client, out } = await context(command);
        const keys = await client.listKeys();
        out.print(keys, () => formatTable(keys, ['id', 'description', 'status', 'expires_at']));
      }),
    'nvcf key list',
  );
  example(
    key
      .command('revoke')
      .alias('delete')
      .description('revoke a key (calls with it fail within seconds)')
      .argument('<key-id>', 'the id nvcf key list shows')
      .action(async (keyId: string, _options, command: Command) => {
        const { client, out } = await context(command);
        await client.revokeKey(keyId);
        out.print({ id: keyId, status: 'REVOKED' }, () => `revoked ${keyId}`);
      }),
    'nvcf key revoke <key-id>',
  );

  example(
    program
      .command('usage')
      .description("the account's use of each of its quotas")
      .action(async (_options, command: Command) => {
        const { client, out } = await context(command);
        const usage = await client.accountUsage();
        const rows = Object.entries(usage.quotas).map(([name, entry]) => ({ quota: name, used: entry.used, limit: entry.quota ?? 'unlimited', description: entry.description }));
        out.print(usage, () => formatTable(rows, ['quota', 'used', 'limit', 'description']));
      }),
    'nvcf usage',
  );

  // queue, gpus
  example(
    program
      .command('queue')
      .description("the queue depth of a function's deployed versions, or a call's position")
      .argument('[function-id[:version-id]]')
      .option('--request <request-id>', "the position of this call in its version's queue")
      .action(async (target: string | undefined, options: { request?: string }, command: Command) => {
        if (!target === !options.request) throw new UsageError('give a <function-id[:version-id]> or --request <request-id>');
        const { client, out } = await context(command);
        if (options.request) {
          const position = await client.queuePosition(options.request);
          return out.print(position, () => formatDetails(position));
        }
        const { functionId, versionId } = parseTarget(target!, false);
        const queues = versionId ? await client.versionQueue(functionId, versionId) : await client.functionQueues(functionId);
        out.print(queues, () => formatTable(queues.queues, ['functionVersionId', 'functionName', 'functionStatus', 'queueDepth']));
      }),
    'nvcf queue <function-id>',
    'nvcf queue --request <request-id>',
  );
  example(
    program
      .command('gpus')
      .description('the GPU types and instance types deployments may ask for')
      .action(async (_options, command: Command) => {
        const { client, out } = await context(command);
        const gpus = await client.supportedGpus();
        out.print(gpus, () => formatTable(gpus, ['gpu', 'backend', 'instanceTypes']));
      }),
    'nvcf gpus',
  );
  return program;
}

/** Runs the command line; answers the exit code. */
export async function main(argv: string[]): Promise<number> {
  // `nvcf ... | head`: a reader that went away is not a failure of the command.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(0);
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2; // commander printed the message
    if (error instanceof UsageError) {
      process.stderr.write(`nvcf: ${error.message}\n`);
      return 2;
    }
    if (error instanceof NvcfError) {
      process.stderr.write(`nvcf: ${error.title} (${error.status}): ${error.detail}\n`);
      return 1;
    }
    if (error instanceof NvcfConnectionError) {
      process.stderr.write(`nvcf: ${error.message}\n`);
      return 1;
    }
    process.stderr.write(`nvcf: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  }
}

