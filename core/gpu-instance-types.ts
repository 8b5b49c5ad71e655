/**
 * NVIDIA GPUs per AWS instance type, for the GPU families a nodegroup may
 * use. One function instance runs on one node of its instance type and takes
 * all of that node's GPUs (`nvidia.com/gpu` limit), so a multi-GPU type is
 * not split between instances. Counts are from the EC2 accelerated computing
 * specifications (also in the AWS Batch GPU jobs table).
 */

/** GPUs of each known instance type. */
export const GPU_INSTANCE_TYPES: Readonly<Record<string, number>> = {
  // G4dn: NVIDIA T4
  'g4dn.xlarge': 1,
  'g4dn.2xlarge': 1,
  'g4dn.4xlarge': 1,
  'g4dn.8xlarge': 1,
  'g4dn.16xlarge': 1,
  'g4dn.12xlarge': 4,
  'g4dn.metal': 8,
  // G5: NVIDIA A10G
  'g5.xlarge': 1,
  'g5.2xlarge': 1,
  'g5.4xlarge': 1,
  'g5.8xlarge': 1,
  'g5.16xlarge': 1,
  'g5.12xlarge': 4,
  'g5.24xlarge': 4,
  'g5.48xlarge': 8,
  // G5g (Graviton): NVIDIA T4G
  'g5g.xlarge': 1,
  'g5g.2xlarge': 1,
  'g5g.4xlarge': 1,
  'g5g.8xlarge': 1,
  'g5g.16xlarge': 2,
  'g5g.metal': 2,
  // G6: NVIDIA L4
  'g6.xlarge': 1,
  'g6.2xlarge': 1,
  'g6.4xlarge': 1,
  'g6.8xlarge': 1,
  'g6.16xlarge': 1,
  'g6.12xlarge': 4,
  'g6.24xlarge': 4,
  'g6.48xlarge': 8,
  // G6e: NVIDIA L40S
  'g6e.xlarge': 1,
  'g6e.2xlarge': 1,
  'g6e.4xlarge': 1,
  'g6e.8xlarge': 1,
  'g6e.16xlarge': 1,
  'g6e.12xlarge': 4,
  'g6e.24xlarge': 4,
  'g6e.48xlarge': 8,
  // Gr6: NVIDIA L4, more memory per vCPU
  'gr6.4xlarge': 1,
  'gr6.8xlarge': 1,
  // P3 / P3dn: NVIDIA V100
  'p3.2xlarge': 1,
  'p3.8xlarge': 4,
  'p3.16xlarge': 8,
  'p3dn.24xlarge': 8,
  // P4d / P4de: NVIDIA A100
  'p4d.24xlarge': 8,
  'p4de.24xlarge': 8,
  // P5: NVIDIA H100; P5e / P5en: NVIDIA H200
  'p5.4xlarge': 1,
  'p5.48xlarge': 8,
  'p5e.48xlarge': 8,
  'p5en.48xlarge': 8,
  // P6: NVIDIA B200
  'p6-b200.48xlarge': 8,
};

/** Whether the table knows `instanceType`; configuration can warn about or refuse the others. */
export function isKnownGpuInstanceType(instanceType: string): boolean {
  return Object.hasOwn(GPU_INSTANCE_TYPES, instanceType);
}

/** GPUs of `instanceType`; 1 for a type the table does not know, which every GPU instance has at least. */
export function gpusPerInstance(instanceType: string): number {
  return isKnownGpuInstanceType(instanceType) ? GPU_INSTANCE_TYPES[instanceType]! : 1;
}
