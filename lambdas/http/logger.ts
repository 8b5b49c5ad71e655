import { Logger } from '@aws-lambda-powertools/logger';
import { SERVICE_NAME } from '../../core/names';

/** The Lambdas' structured logger; POWERTOOLS_* variables set by CDK tune it. */
export const logger = new Logger({ serviceName: SERVICE_NAME });
