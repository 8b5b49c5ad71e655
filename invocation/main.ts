/**
 * Entry of the invocation service (`node /app/invocation.mjs` in the
 * gpu-agent image): serves callers and workers until SIGTERM, then drains.
 */
import { logger } from './http';
import { InvocationService } from './service';
import { readSettings } from './settings';

async function main(): Promise<void> {
  const settings = readSettings();
  const service = new InvocationService(settings);
  await service.start();
  const port = await service.listen();
  logger.info('invocation service ready', { port, attachPort: service.attachPort, attachHost: settings.attachHost });
  const stop = () => {
    logger.info('draining');
    service.drain().then(
      () => process.exit(0),
      (error: Error) => {
        logger.error('drain failed', { error });
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: Error) => {
  process.stderr.write(`invocation service: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
