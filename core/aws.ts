/**
 * One AWS SDK client per service and process. Endpoints are never plumbed
 * through code: locally the SDK's own `AWS_ENDPOINT_URL_<SERVICE>` variables
 * point these clients at the emulators.
 */
import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { EKSClient } from '@aws-sdk/client-eks';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';

// Supported: Node >= 20.11 locally, nodejs24.x on Lambda. The SDK's notice that its releases after
// January 2027 need Node 22 is about upgrading package-lock.json, not about this process: keep it out of every terminal.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

let documentClient: DynamoDBDocumentClient | undefined;
let sqsClient: SQSClient | undefined;
let s3Client: S3Client | undefined;
let eksClient: EKSClient | undefined;

export function dynamo(): DynamoDBDocumentClient {
  documentClient ??= DynamoDBDocumentClient.from(new DynamoDBClient({}), {
    marshallOptions: { removeUndefinedValues: true },
  });
  return documentClient;
}

/**
 * Runs one conditional DynamoDB write; false when its condition did not hold
 * (someone else changed the item first), which every caller treats as an
 * answer rather than an error.
 */
export async function conditionalWrite(write: () => Promise<unknown>): Promise<boolean> {
  try {
    await write();
    return true;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return false;
    throw error;
  }
}

export function sqs(): SQSClient {
  sqsClient ??= new SQSClient({});
  return sqsClient;
}

export function s3(): S3Client {
  // Path-style keeps presigned URLs valid for emulators on an IP address; AWS accepts both.
  // Checksums only when required: otherwise a presigned PUT carries the CRC32 of an empty body and S3 refuses the upload.
  s3Client ??= new S3Client({ forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL_S3), requestChecksumCalculation: 'WHEN_REQUIRED' });
  return s3Client;
}

export function eks(): EKSClient {
  eksClient ??= new EKSClient({});
  return eksClient;
}

/** Forgets the clients, so a test that moves endpoints gets fresh ones. */
export function resetAwsClients(): void {
  documentClient = undefined;
  sqsClient = undefined;
  s3Client = undefined;
  eksClient = undefined;
}
