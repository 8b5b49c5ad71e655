/**
 * The health check of a gRPC function (nvcf-api.md §4.3): the standard
 * `grpc.health.v1.Health/Check` for the overall service (`""`) on the
 * inference port, through @grpc/grpc-js. Its two messages are tiny and
 * encoded here by hand, so no .proto is loaded: HealthCheckRequest is
 * `string service = 1` (empty for ""), HealthCheckResponse `ServingStatus
 * status = 1` with SERVING = 1.
 */
import { Client, credentials, status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { HEALTH_CHECK_METHOD } from '../../core/grpc';
const SERVING = 1;
const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/** HealthCheckRequest{service}: field 1, length-delimited. */
export function encodeHealthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  if (name.length === 0) return Buffer.alloc(0);
  if (name.length > 127) throw new Error('health check service names over 127 bytes are not supported');
  return Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}

/** HealthCheckResponse.status (0, UNKNOWN, when absent); other fields are skipped. */
export function decodeHealthCheckResponse(bytes: Buffer): number {
  let offset = 0;
  let status = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; offset < bytes.length; shift += 7) {
      const byte = bytes[offset++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('truncated varint in the health check response');
  };
  while (offset < bytes.length) {
    const key = varint();
    const wire = key & 7;
    if (key >>> 3 === 1 && wire === 0) status = varint();
    else if (wire === 0) varint();
    else if (wire === 2) {
      const length = varint();
      offset += length;
    }
    else if (wire === 1) offset += 8;
    else if (wire === 5) offset += 4;
    else throw new Error(`unexpected wire type ${wire} in the health check response`);
  }
  return status;
}

/**
 * One `grpc.health.v1.Health/Check` of `service` at host:port (plaintext):
 * undefined when SERVING, else why not.
 */
export function checkGrpcHealth(host: string, port: number, timeoutMs: number, service = ''): Promise<string | undefined> {
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const client = new Client(target, credentials.createInsecure());
  const what = `gRPC health check ${HEALTH_CHECK_METHOD} (service "${service}") at ${target}`;
  return new Promise<string | undefined>((resolve) => {
    client.makeUnaryRequest(
      HEALTH_CHECK_METHOD,
      encodeHealthCheckRequest,
      decodeHealthCheckResponse,
      service,
      { deadline: Date.now() + timeoutMs },
      (error: ServiceError | null, status?: number) => {
        if (error) return resolve(`${what} failed: ${grpcStatus[error.code] ?? error.code} ${error.details}`);
        resolve(status === SERVING ? undefined : `${what} answered ${STATUS_NAMES[status ?? 0] ?? status}, expected SERVING`);
      },
    );
  }).finally(() => client.close());
}
