/**
 * The worker's drain endpoint: `GET /drain` on 0.0.0.0:<drain port> starts
 * the worker's drain (as SIGTERM does) and answers 200 once it is over. The
 * inference container's preStop hook calls it, so Kubernetes stops the
 * container only after the worker has finished or handed back its jobs.
 */
import { createServer, type Server } from 'node:http';
import { DRAIN_PATH, logger } from './config';

export interface DrainServer {
  server: Server;
  /** Stops listening once the answers in flight are written (at most `timeoutMs`). */
  close(timeoutMs?: number): Promise<void>;
}

/** Whether a request from `remote` may drain: loopback always, otherwise only `allowed` when it is set. */
export function mayDrain(remote: string | undefined, allowed: string | undefined): boolean {
  const address = remote?.replace(/^::ffff:/, '');
  if (address === '127.0.0.1' || address === '::1') return true;
  return allowed === undefined || address === allowed;
}

/**
 * Serves the drain endpoint on `port`; `drain` starts the drain (if not
 * started) and resolves once it is over. Only loopback and `allowedAddress`
 * (when given) may call it. A port that cannot be bound is logged and the
 * worker runs without the endpoint.
 */
export async function serveDrain(port: number, drain: () => Promise<void>, { allowedAddress, host = '0.0.0.0' }: { allowedAddress?: string; host?: string } = {}): Promise<DrainServer | undefined> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://worker').pathname;
    if (path !== DRAIN_PATH || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (!mayDrain(req.socket.remoteAddress, allowedAddress)) {
      logger.warn('drain refused', { remote: req.socket.remoteAddress });
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden\n');
      return;
    }
    logger.info('drain requested', { remote: req.socket.remoteAddress });
    drain().then(
      () => res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end('drained\n'),
      (error: Error) => {
        logger.error('drain failed', { error });
        res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' }).end('drain failed\n');
      },
    );
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
  } catch (error) {
    logger.warn('drain endpoint not available', { port, error: error as Error });
    return undefined;
  }
  return {
    server,
    close: (timeoutMs = 2000) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), timeoutMs);
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
