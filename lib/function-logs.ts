/**
 * Function logs on EKS: one CloudWatch log group per installation, filled by
 * a kept log agent, the AWS for Fluent Bit chart (a DaemonSet on the GPU
 * nodes), and read by the logs Lambda (core/function-logs.ts).
 *
 * Why the chart and not the CloudWatch Observability add-on: the add-on
 * writes every pod of the cluster into fixed groups
 * (`/aws/containerinsights/<cluster>/application`) with streams named after
 * the log file, and its role needs CloudWatchAgentServerPolicy; the chart
 * tails only the function namespace, names each stream after the version
 * (from the labels the controller puts on pods), writes into our group with
 * our retention, and needs three actions on that group alone.
 *
 * Streams: `<functionId>/<versionId>/<pod>/<container>`, so FilterLogEvents on
 * `<functionId>/<versionId>/` reads one version's streams and no other's; the
 * pod's `worker` container is the platform's own lines.
 */
import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { K8S } from '../core/names';
import type { ResolvedConfig } from './config';
import type { GpuCluster } from './gpu-cluster';
import { acknowledgeWildcard } from './iam';
import { PodIdentityRole } from './pod-identity';

export const LOG_AGENT = { release: 'aws-for-fluent-bit', namespace: 'kube-system', serviceAccount: 'nvcf-log-agent' } as const;

/** The actions the log agent needs on the group (it never creates groups: autoCreateGroup is off). */
export const LOG_AGENT_ACTIONS = ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'] as const;

/** Fluent Bit record accessors of the labels the controller puts on every pod of a version (gpu-agent/controller/k8s/objects.ts). */
export const LOG_STREAM_TEMPLATE =
  "$kubernetes['labels']['nvcf.io/function-id']/$kubernetes['labels']['nvcf.io/version-id']/$kubernetes['pod_name']/$kubernetes['container_name']";

/** Kubelet's log files of the function namespace's containers only (`<pod>_<namespace>_<container>-<id>.log`). */
export const LOG_AGENT_INPUT_PATH = `/var/log/containers/*_${K8S.functionsNamespace}_*.log`;

export interface FunctionLogsProps {
  readonly config: ResolvedConfig;
  readonly gpuCluster: GpuCluster;
}

export class FunctionLogs extends Construct {
  readonly logGroup: logs.LogGroup;
  readonly agentIdentity: PodIdentityRole;

  constructor(scope: Construct, id: string, { config, gpuCluster }: FunctionLogsProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Group', {
      retention: config.functionLogRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.agentIdentity = new PodIdentityRole(this, 'AgentIdentity', {
      cluster: gpuCluster.cluster,
      namespace: LOG_AGENT.namespace,
      serviceAccount: LOG_AGENT.serviceAccount,
      description: 'NVCF log agent (Fluent Bit): writes the stdout/stderr of function pods into the function log group',
      createServiceAccount: false,
    });
    this.agentIdentity.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ShipFunctionLogs', actions: [...LOG_AGENT_ACTIONS], resources: [this.logGroup.logGroupArn] }),
    );
    acknowledgeWildcard(
      this.agentIdentity.policy,
      this.logGroup.logGroupArn,
      'The log group ARN ends in :* to cover its log streams, which Fluent Bit creates per pod and container at run time; the grant is this one group.',
    );

    const chart = gpuCluster.cluster.addHelmChart('LogAgent', {
      chart: 'aws-for-fluent-bit',
      repository: 'https://aws.github.io/eks-charts',
      version: config.chartVersions.awsForFluentBit,
      release: LOG_AGENT.release,
      namespace: LOG_AGENT.namespace,
      values: {
        serviceAccount: { create: true, name: LOG_AGENT.serviceAccount },
        input: { path: LOG_AGENT_INPUT_PATH },
        // The container's line stays the `log` string as printed; pod annotations are not copied into every record.
        filter: { mergeLog: 'Off', extraFilters: 'Annotations Off' },
        cloudWatch: { enabled: false },
        cloudWatchLogs: {
          enabled: true,
          region: Stack.of(this).region,
          logGroupName: this.logGroup.logGroupName,
          logStreamTemplate: LOG_STREAM_TEMPLATE,
          // Only a record without the labels (none in this namespace: the controller labels every pod) falls back to this prefix.
          logStreamPrefix: 'unlabelled-',
          autoCreateGroup: false,
        },
        firehose: { enabled: false },
        kinesis: { enabled: false },
        elasticsearch: { enabled: false },
        // Function pods run on the tainted GPU nodes; the agent runs beside them and nowhere else.
        tolerations: [{ key: K8S.gpuTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: K8S.gpuLabel, operator: 'Exists' }] }] },
          },
        },
      },
      wait: false,
    });
    // Like KEDA: its AWS calls fail until restarted if it starts before its Pod Identity.
    chart.node.addDependency(this.agentIdentity.association, gpuCluster.systemNodegroup);
  }

  /** What the logs Lambda may do: read the group's events, nothing else. */
  readStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({ sid: 'ReadFunctionLogs', actions: ['logs:FilterLogEvents'], resources: [this.logGroup.logGroupArn] });
  }
}
