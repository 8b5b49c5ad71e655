/**
 * What an operator watches: one CloudWatch dashboard and the alarms that
 * mean someone should look (API 5xx, errors and throttles of every Lambda,
 * the sweeper included, dead letters, a queue that stopped draining, and
 * with a GPU cluster the invocation service's ALB: its own 5xx and a target
 * group without healthy pods), optionally mailed through SNS.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { AGENT_METRICS, METRICS_NAMESPACE } from '../core/names';
import { LAMBDA_NAMES, type ApiFunctions } from './api-functions';
import type { ResolvedConfig } from './config';
import type { NvcfHttpApi } from './http-api';
import type { InvocationPlane } from './invocation-plane';

export interface MonitoringProps {
  readonly config: ResolvedConfig;
  readonly api: NvcfHttpApi;
  readonly functions: ApiFunctions;
  /** @default - none (no GPU cluster): no invocation service to watch */
  readonly invocation?: InvocationPlane;
}

const PERIOD = Duration.minutes(5);

export class Monitoring extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];
  /** Where alarms are sent, when an alarm e-mail is configured. */
  readonly alarmTopic?: sns.Topic;

  constructor(scope: Construct, id: string, { config, api, functions, invocation }: MonitoringProps) {
    super(scope, id);
    const prefix = Stack.of(this).stackName;
    const fns = functions.functions;
    const agentMetric = (metricName: string) => new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, statistic: cloudwatch.Stats.MAXIMUM, period: PERIOD });
    const deadLetters = agentMetric(AGENT_METRICS.deadLetterMessages);
    const oldestAge = agentMetric(AGENT_METRICS.oldestMessageAgeSeconds);

    if (config.alarmEmail) {
      const key = new kms.Key(this, 'AlarmTopicKey', {
        description: `Encrypts the alarm notifications of ${prefix}`,
        enableKeyRotation: true,
      });
      // CloudWatch publishes to the encrypted topic on its own behalf.
      key.addToResourcePolicy(
        new iam.PolicyStatement({
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          resources: ['*'],
        }),
      );
      this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { displayName: `${prefix} alarms`, masterKey: key, enforceSSL: true });
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(config.alarmEmail));
    }

    const alarm = (id: string, props: cloudwatch.AlarmProps): cloudwatch.Alarm => {
      const created = new cloudwatch.Alarm(this, id, {
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...props,
      });
      if (this.alarmTopic) created.addAlarmAction(new actions.SnsAction(this.alarmTopic));
      this.alarms.push(created);
      return created;
    };

    alarm('Api5xx', {
      alarmName: `${prefix}-api-5xx`,
      alarmDescription: 'The NVCF API answered with 5xx errors. Check the API access logs (integrationError, authorizerError), the Lambda error alarms and, for pexec routes, the invocation ALB alarms (a function\'s own 5xx counts here too).',
      metric: api.stage.metricServerError({ period: PERIOD, statistic: cloudwatch.Stats.SUM }),
      threshold: 5,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });
    // The sweeper has no callers: its failures show as queues and dead letters left behind.
    const impact = (name: (typeof LAMBDA_NAMES)[number]) =>
      name === 'sweeper' ? 'unused queues stay and dead-lettered invocations stay pending until a pass succeeds' : 'callers saw 5xx';
    for (const name of LAMBDA_NAMES) {
      alarm(`${name}-errors`, {
        alarmName: `${prefix}-lambda-${name}-errors`,
        alarmDescription: `The ${name} Lambda failed (unhandled errors or timeouts). Its log group holds the stack traces; ${impact(name)}.`,
        metric: fns[name].metricErrors({ period: PERIOD, statistic: cloudwatch.Stats.SUM }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      });
      alarm(`${name}-throttles`, {
        alarmName: `${prefix}-lambda-${name}-throttles`,
        alarmDescription: `The ${name} Lambda was throttled: the account's Lambda concurrency is exhausted. Raise the concurrency quota or lower the API throttling limits.`,
        metric: fns[name].metricThrottles({ period: PERIOD, statistic: cloudwatch.Stats.SUM }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      });
    }
    alarm('DeadLetters', {
      alarmName: `${prefix}-dead-letter-messages`,
      alarmDescription:
        'Invocations failed every delivery and moved to a dead-letter queue (nvcf-<versionId>-dlq). Inspect the messages and the worker logs of that version. Published by the gpu-agent.',
      metric: deadLetters,
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    });
    alarm('OldestMessageAge', {
      alarmName: `${prefix}-oldest-message-age`,
      alarmDescription: `A version queue has held a message for more than ${config.oldestMessageAgeAlarmSeconds} s: instances are missing, stuck or too few. Check the deployment's instances and its GPU nodegroup. Published by the gpu-agent.`,
      metric: oldestAge,
      threshold: config.oldestMessageAgeAlarmSeconds,
      evaluationPeriods: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    });

    const invocationWidgets = invocation ? this.watchInvocationService(prefix, invocation, alarm) : [];

    const perLambda = (title: string, metric: (name: (typeof LAMBDA_NAMES)[number]) => cloudwatch.IMetric) =>
      new cloudwatch.GraphWidget({ title, width: 8, left: LAMBDA_NAMES.map(metric) });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${prefix}-overview`,
      defaultInterval: Duration.hours(3),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'API requests',
            width: 8,
            left: [api.stage.metricCount({ period: PERIOD, statistic: cloudwatch.Stats.SUM, label: 'Requests' })],
          }),
          new cloudwatch.GraphWidget({
            title: 'API errors',
            width: 8,
            left: [
              api.stage.metricClientError({ period: PERIOD, statistic: cloudwatch.Stats.SUM, label: '4xx' }),
              api.stage.metricServerError({ period: PERIOD, statistic: cloudwatch.Stats.SUM, label: '5xx' }),
            ],
          }),
          new cloudwatch.GraphWidget({
            title: 'API latency (ms)',
            width: 8,
            left: [
              api.stage.metricLatency({ period: PERIOD, statistic: cloudwatch.Stats.p(50), label: 'p50' }),
              api.stage.metricLatency({ period: PERIOD, statistic: cloudwatch.Stats.p(99), label: 'p99' }),
            ],
          }),
        ],
        [
          perLambda('Lambda errors', (name) => fns[name].metricErrors({ period: PERIOD, statistic: cloudwatch.Stats.SUM, label: name })),
          perLambda('Lambda throttles', (name) => fns[name].metricThrottles({ period: PERIOD, statistic: cloudwatch.Stats.SUM, label: name })),
          perLambda('Lambda duration p99 (ms)', (name) => fns[name].metricDuration({ period: PERIOD, statistic: cloudwatch.Stats.p(99), label: name })),
        ],
        ...(invocationWidgets.length ? [invocationWidgets] : []),
        [
          new cloudwatch.GraphWidget({ title: 'Dead-letter messages', width: 8, left: [deadLetters.with({ label: 'max over dead-letter queues' })] }),
          new cloudwatch.GraphWidget({ title: 'Oldest queued message (s)', width: 8, left: [oldestAge.with({ label: 'max over version queues' })] }),
          new cloudwatch.AlarmStatusWidget({ title: 'Alarms', width: 8, height: 6, alarms: this.alarms }),
        ],
      ],
    });
  }

  /**
   * Alarms and graphs of the invocation service, seen at its ALB. Target 5xx
   * include functions' own 500s (passed through to callers), so only the
   * ALB's own 5xx (no healthy pod, refused connections, timeouts) alarm.
   */
  private watchInvocationService(prefix: string, invocation: InvocationPlane, alarm: (id: string, props: cloudwatch.AlarmProps) => cloudwatch.Alarm): cloudwatch.IWidget[] {
    const alb = invocation.loadBalancer.metrics;
    const targets = invocation.targetGroup.metrics;
    const albErrors = alb.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, { period: PERIOD, statistic: cloudwatch.Stats.SUM });
    const healthy = targets.healthyHostCount({ period: Duration.minutes(1), statistic: cloudwatch.Stats.MINIMUM });
    alarm('InvocationAlb5xx', {
      alarmName: `${prefix}-invocation-alb-5xx`,
      alarmDescription:
        'The invocation ALB answered 5xx itself (502/503/504): no ready invocation service pod, refused connections or timeouts. Check the nvcf-invocation pods in nvcf-system, their TargetGroupBinding and the AWS Load Balancer Controller.',
      metric: albErrors,
      threshold: 5,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });
    alarm('InvocationNoHealthyPods', {
      alarmName: `${prefix}-invocation-no-healthy-pods`,
      alarmDescription:
        'The invocation target group had no healthy invocation service pod for 3 minutes: every invocation fails. Check the nvcf-invocation Deployment in nvcf-system, its readiness, and the AWS Load Balancer Controller that registers its pods.',
      metric: healthy,
      threshold: 1,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      // No datapoints means no registered target either.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    return [
      new cloudwatch.GraphWidget({ title: 'Invocation requests', width: 8, left: [alb.requestCount({ period: PERIOD, statistic: cloudwatch.Stats.SUM, label: 'Requests' })], right: [healthy.with({ label: 'healthy pods' })] }),
      new cloudwatch.GraphWidget({
        title: 'Invocation errors',
        width: 8,
        left: [albErrors.with({ label: 'ALB 5xx' }), targets.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, { period: PERIOD, statistic: cloudwatch.Stats.SUM, label: 'service and function 5xx' })],
      }),
      new cloudwatch.GraphWidget({
        title: 'Invocation response time (s)',
        width: 8,
        left: [
          targets.targetResponseTime({ period: PERIOD, statistic: cloudwatch.Stats.p(50), label: 'p50' }),
          targets.targetResponseTime({ period: PERIOD, statistic: cloudwatch.Stats.p(99), label: 'p99' }),
        ],
      }),
    ];
  }
}
