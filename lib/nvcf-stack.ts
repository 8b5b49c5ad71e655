/**
 * The whole platform in one stack: data, the GPU cluster with its agent
 * (optional), the API with its Lambdas, monitoring, and the outputs a console
 * user needs.
 */
import { Annotations, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { TABLES, type TableName } from '../core/tables';
import { ApiFunctions } from './api-functions';
import { resolveConfig, type NvcfConfigProps, type ResolvedConfig } from './config';
import { DataStore } from './data-store';
import { FunctionLogs } from './function-logs';
import { GpuAgent } from './gpu-agent';
import { GpuCluster } from './gpu-cluster';
import { NvcfHttpApi } from './http-api';
import { InvocationPlane } from './invocation-plane';
import { Monitoring } from './monitoring';

export interface NvcfStackProps extends StackProps, NvcfConfigProps {}

/** Names of the stack outputs; bin/keys.ts and the README rely on them. */
export const OUTPUTS = {
  apiUrl: 'ApiUrl',
  invocationUrl: 'InvocationUrl',
  bucketName: 'BucketName',
  clusterName: 'ClusterName',
  agentRoleArn: 'AgentRoleArn',
  workerRoleArn: 'WorkerRoleArn',
  dashboardName: 'DashboardName',
  tableName: (table: TableName) => `${TABLES[table].id}TableName`,
} as const;

export class NvcfStack extends Stack {
  readonly config: ResolvedConfig;
  readonly data: DataStore;
  readonly gpuCluster?: GpuCluster;
  readonly agent?: GpuAgent;
  readonly invocation?: InvocationPlane;
  readonly functionLogs?: FunctionLogs;
  readonly functions: ApiFunctions;
  readonly api: NvcfHttpApi;
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: NvcfStackProps = {}) {
    super(scope, id, {
      description: 'NVIDIA Cloud Functions compatible GPU functions on AWS (nvcf-on-aws)',
      ...props,
    });
    this.config = resolveConfig(props);
    this.config.warnings.forEach((warning, i) => Annotations.of(this).addWarningV2(`nvcf:config-${i}`, warning));

    this.data = new DataStore(this, 'Data', { config: this.config });
    if (this.config.gpuCluster) {
      this.gpuCluster = new GpuCluster(this, 'GpuCluster', { config: this.config });
      this.agent = new GpuAgent(this, 'GpuAgent', { config: this.config, data: this.data, gpuCluster: this.gpuCluster });
      this.invocation = new InvocationPlane(this, 'Invocation', { config: this.config, data: this.data, gpuCluster: this.gpuCluster, agent: this.agent });
      this.functionLogs = new FunctionLogs(this, 'FunctionLogs', { config: this.config, gpuCluster: this.gpuCluster });
    }
    this.functions = new ApiFunctions(this, 'Functions', { config: this.config, data: this.data, cluster: this.gpuCluster, functionLogs: this.functionLogs });
    this.api = new NvcfHttpApi(this, 'Http', { config: this.config, functions: this.functions, invocationService: this.invocation?.apiIntegration });
    this.monitoring = new Monitoring(this, 'Monitoring', { config: this.config, api: this.api, functions: this.functions, invocation: this.invocation });

    new CfnOutput(this, OUTPUTS.apiUrl, { value: this.api.url, description: 'Base URL of the NVCF API (send Authorization: Bearer <API key>)' });
    for (const [name, table] of Object.entries(this.data.tables)) {
      new CfnOutput(this, OUTPUTS.tableName(name as TableName), { value: table.tableName, description: `DynamoDB table ${TABLES[name as TableName].id}` });
    }
    new CfnOutput(this, OUTPUTS.bucketName, { value: this.data.bucket.bucketName, description: 'S3 bucket of assets, large inputs and outputs, models' });
    new CfnOutput(this, OUTPUTS.dashboardName, { value: this.monitoring.dashboard.dashboardName, description: 'CloudWatch dashboard of the platform' });
    if (this.invocation) {
      new CfnOutput(this, OUTPUTS.invocationUrl, {
        value: this.invocation.url,
        description: 'Invocation URL: pexec, SSE streaming and direct invocation (function-id header, or {functionId}.invocation.<domain> with nvcf:invocationDomain)',
      });
    }
    if (this.gpuCluster && this.agent) {
      new CfnOutput(this, OUTPUTS.clusterName, { value: this.gpuCluster.cluster.clusterName, description: 'EKS cluster (aws eks update-kubeconfig --name <this>)' });
      new CfnOutput(this, OUTPUTS.agentRoleArn, { value: this.agent.controllerIdentity.role.roleArn, description: 'IAM role of the gpu-agent controller (Pod Identity)' });
      new CfnOutput(this, OUTPUTS.workerRoleArn, { value: this.agent.workerIdentity.role.roleArn, description: 'IAM role of the worker sidecar in function pods (Pod Identity)' });
    }
  }
}
