/**
 * The body of deploy (D1) and update-deployment (D3): `{"deploymentSpecifications": [GpuSpec, ...]}`
 * as nvcf-api.md §2.2 describes it. Fields this platform does not know are
 * ignored, as NVCF's own service ignores them; rules that need the function
 * version or the GPU offers live in core/deployments.ts.
 */
import * as z from 'zod';
import { MAX_INSTANCES_PER_SPECIFICATION, MAX_REQUEST_CONCURRENCY } from './limits';

/** NVCF's own wording for this rule, which clients match on. */
export const MIN_ABOVE_MAX_MESSAGE = "Invalid request: 'minInstances' must be lesser than or equal to 'maxInstances'";

const names = z.array(z.string().min(1).max(256)).max(64);

export const gpuSpecificationSchema = z
  .object({
    gpu: z.string().min(1).max(64),
    /** Defaults to the deployed one of the same GPU on update, else to the GPU's default (first) instance type. */
    instanceType: z.string().min(1).max(128).optional(),
    minInstances: z.number().int().min(0).max(MAX_INSTANCES_PER_SPECIFICATION),
    maxInstances: z.number().int().min(1).max(MAX_INSTANCES_PER_SPECIFICATION),
    /** Defaults to 1 on deploy and to the deployed value on update. */
    maxRequestConcurrency: z.number().int().min(1).max(MAX_REQUEST_CONCURRENCY).optional(),
    backend: z.string().min(1).max(64).optional(),
    availabilityZones: names.optional(),
    clusters: names.optional(),
    regions: names.optional(),
    attributes: names.optional(),
    preferredOrder: z.number().int().min(1).max(99).optional(),
    /** Helm values overrides; Helm functions only. */
    configuration: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((spec) => spec.minInstances <= spec.maxInstances, { message: MIN_ABOVE_MAX_MESSAGE, path: ['minInstances'] });

export type GpuSpecificationInput = z.infer<typeof gpuSpecificationSchema>;

export const deploymentRequestSchema = z.object({
  deploymentSpecifications: z.array(gpuSpecificationSchema).min(1, 'must list at least one GPU specification'),
});

export type DeploymentRequest = z.infer<typeof deploymentRequestSchema>;
