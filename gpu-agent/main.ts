/**
 * Entry point of the gpu-agent image. One binary, four roles:
 * - `controller`: reconciles deployed function versions into Kubernetes
 *   Deployments and KEDA ScaledObjects (runs once per cluster, in nvcf-system);
 * - `worker`: the sidecar beside each function container, serving the
 *   version's queue;
 * - `fetch-artifacts`: downloads a version's models and resources before the
 *   function container starts;
 * - `write-secrets`: writes the version's secrets file before the function
 *   container starts (the worker keeps it current afterwards).
 */

const ROLES = {
  controller: 'reconciles deployments into Kubernetes objects',
  worker: "serves a function version's queue beside its container",
  'fetch-artifacts': "downloads a version's models and resources",
  'write-secrets': "writes a version's secrets to /var/secrets/secrets.json",
} as const;

type Role = keyof typeof ROLES;

function usage(): string {
  const lines = Object.entries(ROLES).map(([role, what]) => `  ${role.padEnd(16)} ${what}`);
  return ['usage: gpu-agent <role>', '', 'roles:', ...lines].join('\n');
}

function isRole(value: string | undefined): value is Role {
  return value !== undefined && Object.hasOwn(ROLES, value);
}

const role = process.argv[2];
if (role === '--help' || role === '-h') {
  process.stdout.write(`${usage()}\n`);
} else if (!isRole(role)) {
  process.stderr.write(`${role ? `unknown role "${role}"` : 'missing role'}\n\n${usage()}\n`);
  process.exitCode = 2;
} else {
  const entry =
    role === 'worker'
      ? import('./worker')
      : role === 'controller'
        ? import('./controller/k8s/main')
        : role === 'write-secrets'
          ? import('./secrets-file')
          : import('./fetch-artifacts');
  entry
    .then(({ main }) => main())
    .then(
      (code) => process.exit(code),
      (error: Error) => {
        process.stderr.write(`gpu-agent ${role}: ${error.stack ?? error.message}\n`);
        process.exit(1);
      },
    );
}
