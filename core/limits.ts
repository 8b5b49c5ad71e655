/** Limits of the platform, in one place. Decisions come from nvcf-api.md section 7. */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Request bodies up to this size travel inside the queue message. */
export const MAX_INLINE_REQUEST_BYTES = 200 * 1000;
/** Larger request bodies are refused with 413 (use assets); the invocation service's default (NVCF_MAX_REQUEST_BYTES). */
export const MAX_REQUEST_BYTES = 100 * MiB;
/** Results larger than this go to S3 as a zip and are answered with 302. */
export const MAX_RESPONSE_BYTES = 5 * MiB;
/** Results up to this size are stored inline in the invocation item (DynamoDB items are ≤ 400 KB). */
export const MAX_INLINE_RESULT_BYTES = 300 * KiB;
/** Management API bodies (functions, deployments, assets) are small JSON documents. */
export const MAX_MANAGEMENT_BODY_BYTES = 256 * KiB;

export const POLL_SECONDS_DEFAULT = 5;
/** Poll window of a call with `Accept: text/event-stream` that sends no NVCF-POLL-SECONDS (as open-source NVCF). */
export const POLL_SECONDS_STREAM_DEFAULT = 1200;
export const POLL_SECONDS_MAX = 3600;
/** API Gateway (HTTP API) ends an integration after 30 s: through it, answer 202 before that. */
export const API_GATEWAY_POLL_CAP_SECONDS = 25;
/** CloudFront's origin response timeout on the invocation URL (seconds to the first byte, and between two bytes). */
export const INVOCATION_URL_ORIGIN_TIMEOUT_SECONDS = 60;
/** Through the invocation URL (and locally), answer 202 before CloudFront's origin timeout. */
export const INVOCATION_URL_POLL_CAP_SECONDS = 55;

/** Ports of the invocation service: callers', and the attach port workers call back on. */
export const DEFAULT_INVOCATION_PORT = 8000;
export const DEFAULT_ATTACH_PORT = 8001;
/** A gRPC session (one caller connection to one worker) with no call open ends after this long by default (NVCF_GRPC_IDLE_SECONDS). */
export const DEFAULT_GRPC_SESSION_IDLE_SECONDS = 30;
/** How long the calls of a new gRPC session wait for a worker to take it before they are answered UNAVAILABLE. */
export const GRPC_SESSION_ATTACH_SECONDS = 60;
/** Requests one invocation service instance holds at once by default (NVCF_MAX_IN_FLIGHT). */
export const DEFAULT_MAX_IN_FLIGHT = 1024;
/** Bytes of request bodies one invocation service instance holds at once by default (NVCF_MAX_HELD_REQUEST_BYTES). */
export const DEFAULT_MAX_HELD_REQUEST_BYTES = GiB;
/** Seconds a 429 from a saturated invocation service asks the caller to wait. */
export const SATURATED_RETRY_AFTER_SECONDS = 1;
/** Largest count of one window of a rate limit (`<count>-<unit>`). */
export const MAX_RATE_LIMIT_COUNT = 1_000_000_000;
/** A rate-limit counter item outlives its window by this much before DynamoDB's TTL may remove it. */
export const RATE_LIMIT_COUNTER_GRACE_SECONDS = 60;
/** An account's quotas (core/quotas.ts) are cached this long by the invocation service: a changed override is seen within it. */
export const QUOTA_CACHE_SECONDS = 5;
/** An invocation service replica holding concurrent-invocation slots says it is alive this often (core/quotas.ts). */
export const CONCURRENCY_HEARTBEAT_SECONDS = 20;
/** A replica silent this long is taken for dead: the next refusal of the full quota gives its slots back. */
export const CONCURRENCY_HOLDER_STALE_SECONDS = 90;
/** API keys are cached this long by the invocation service: a revoked key stops working within it. */
export const API_KEY_CACHE_SECONDS = 10;
/** A function's versions are cached this long by the invocation service: a deploy or undeploy is seen within it. */
export const VERSION_CACHE_SECONDS = 2;
/** Seconds an invocation service instance keeps serving held calls after SIGTERM (Kubernetes' grace period is a little longer). */
export const INVOCATION_DRAIN_SECONDS = 90;

export const MAX_REQUEST_CONCURRENCY = 1024;
export const MAX_TAGS = 64;
export const MAX_TAG_LENGTH = 128;
export const MAX_NAME_LENGTH = 128;
export const MAX_DESCRIPTION_LENGTH = 256;

export const ASSET_MAX_BYTES = 5 * GiB;
export const PRESIGNED_URL_SECONDS = 3600;
export const ASSET_TTL_SECONDS = 24 * 3600;
export const INVOCATION_TTL_SECONDS = 24 * 3600;
export const INSTANCE_HEARTBEAT_TTL_SECONDS = 120;
export const QUEUE_POSITION_CAP = 1000;

/** Deliveries of one invocation before its message moves to the dead-letter queue. */
export const DEFAULT_MAX_RECEIVE_COUNT = 3;
/** Visibility timeout of a version queue; the worker extends it while a job runs. */
export const QUEUE_VISIBILITY_TIMEOUT_SECONDS = 300;
/** Queue messages (and dead letters) are kept as long as invocation records. */
export const QUEUE_RETENTION_SECONDS = 4 * 24 * 3600;

/** Instances one deployment specification may ask for (a managed nodegroup holds at most 1000 nodes). */
export const MAX_INSTANCES_PER_SPECIFICATION = 1000;
/** GPU offers (EKS nodegroups or NVCF_GPUS) are cached this long in each Lambda. */
export const GPU_OFFERS_CACHE_SECONDS = 60;
/** Time an undeploy spends erroring queued invocations before it leaves the rest to a retry. */
export const UNDEPLOY_DRAIN_SECONDS = 8;

/** Container ports the platform keeps for its own monitoring (nvcf-api.md §4.1); functions may not listen on them. */
export const RESERVED_CONTAINER_PORTS: readonly number[] = [8080, 8010];
/** Longest `health.timeout` accepted; a health check that needs longer is a container that is not up. */
export const MAX_HEALTH_TIMEOUT_SECONDS = 3600;
/** `containerEnvironment`: variables per version, and characters of a name (values share MAX_SECRET_VALUE_LENGTH). */
export const MAX_ENVIRONMENT_VARIABLES = 256;
export const MAX_ENVIRONMENT_NAME_LENGTH = 256;
/** Variables the platform sets in every function container (nvcf-api.md §4.1); functions cannot set their own. */
export const PLATFORM_ENVIRONMENT_PREFIX = 'NVCF_';
export const MAX_SECRET_NAME_LENGTH = 48;
/** Characters of one secret value (a JSON object counts as its serialized text). */
export const MAX_SECRET_VALUE_LENGTH = 32768;
/**
 * Secrets of one version. NVCF's open-source service bounds the count without
 * publishing a number; 100 names is far more than the API keys and tokens a
 * container reads, and keeps the file small enough to rewrite every time one changes.
 */
export const MAX_SECRETS = 100;
/**
 * Bytes of a version's secrets file (`/var/secrets/secrets.json`, UTF-8 JSON). The set is
 * stored sealed on the version's DynamoDB item (400 KB per item), base64 makes it 4/3
 * larger, and the rest of the definition needs room too.
 */
export const MAX_SECRETS_FILE_BYTES = 128 * KiB;
/** Characters of a URI or path in a function definition (inferenceUrl, containerImage, helmChart, model uris). */
export const MAX_URI_LENGTH = 2048;

/**
 * Lambda's synchronous payload quotas ("6 MB"), measured on the JSON it carries: the API
 * Gateway event must be smaller than 6 MiB, the function's answer at most 6 MiB + 100 bytes.
 * API Gateway answers 413 itself when the event is too large, and 500 when the answer is.
 */
export const LAMBDA_REQUEST_PAYLOAD_BYTES = 6 * MiB;
export const LAMBDA_RESPONSE_PAYLOAD_BYTES = 6 * MiB + 100;
/**
 * A request body is accepted only while its form in the Lambda event stays within this:
 * API Gateway (HTTP API) passes bodies whose Content-Type is not text base64-encoded (4/3
 * larger), text ones as a JSON string (each `"` and `\` counts twice, control characters
 * six times). Lambda's request quota less 144 KiB for headers and request context (HTTP API
 * headers are at most 10 KiB), so the limit does not depend on the headers a client sends.
 */
export const MAX_REQUEST_PAYLOAD_BODY_BYTES = 6000 * KiB;
/** The largest binary (non-text Content-Type) request body: its base64 form is MAX_REQUEST_PAYLOAD_BODY_BYTES. */
export const MAX_BINARY_REQUEST_BYTES = (MAX_REQUEST_PAYLOAD_BODY_BYTES / 4) * 3;
/**
 * A result is answered directly only while its body, as it travels in the Lambda answer
 * (JSON-escaped text, or base64), stays under this: Lambda's response quota less room for
 * the container's headers (Node reads at most 16 KiB of them) and the NVCF ones.
 */
export const MAX_DIRECT_RESPONSE_PAYLOAD_BYTES = LAMBDA_RESPONSE_PAYLOAD_BYTES - 64 * KiB;
/** Problem `detail` stored on an invocation is cut to this many bytes (a DynamoDB item holds 400 KB). */
export const MAX_PROBLEM_DETAIL_BYTES = 4 * KiB;
/** What the invocations Lambda keeps of its remaining time to answer (202 with NVCF-REQID) before Lambda would end it. */
export const LAMBDA_ANSWER_MARGIN_MS = 3000;
