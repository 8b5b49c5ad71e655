/**
 * An IAM role bound to a Kubernetes ServiceAccount through EKS Pod Identity.
 *
 * aws-eks-v2's ServiceAccount construct also writes the IRSA annotation
 * (`eks.amazonaws.com/role-arn`) on the account. The IRSA webhook then injects
 * a web-identity token that the AWS SDK prefers over Pod Identity credentials,
 * and that token cannot assume a role that only trusts pods.eks.amazonaws.com.
 * This construct binds the role without that annotation.
 */
import * as eks from 'aws-cdk-lib/aws-eks-v2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct, type IDependable } from 'constructs';

export interface PodIdentityRoleProps {
  readonly cluster: eks.Cluster;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly description: string;
  /**
   * Create the ServiceAccount too; leave false when a Helm chart owns it.
   * @default true
   */
  readonly createServiceAccount?: boolean;
  /**
   * What the ServiceAccount needs to exist first (its namespace).
   * @default - nothing
   */
  readonly dependsOn?: IDependable[];
}

export class PodIdentityRole extends Construct {
  readonly role: iam.Role;
  readonly association: eks.CfnPodIdentityAssociation;
  readonly serviceAccount?: eks.KubernetesManifest;

  constructor(scope: Construct, id: string, props: PodIdentityRoleProps) {
    super(scope, id);
    const { cluster, namespace, serviceAccount } = props;

    this.role = new iam.Role(this, 'Role', {
      // Pod Identity tags the session with the cluster, namespace and account name.
      assumedBy: new iam.SessionTagsPrincipal(new iam.ServicePrincipal('pods.eks.amazonaws.com')),
      description: props.description,
    });
    this.association = new eks.CfnPodIdentityAssociation(this, 'Association', {
      clusterName: cluster.clusterName,
      namespace,
      serviceAccount,
      roleArn: this.role.roleArn,
    });
    this.association.node.addDependency(cluster.eksPodIdentityAgent!);

    if (props.createServiceAccount ?? true) {
      this.serviceAccount = new eks.KubernetesManifest(this, 'ServiceAccount', {
        cluster,
        manifest: [
          {
            apiVersion: 'v1',
            kind: 'ServiceAccount',
            metadata: { name: serviceAccount, namespace, labels: { 'app.kubernetes.io/name': serviceAccount, 'app.kubernetes.io/part-of': 'nvcf' } },
          },
        ],
      });
      this.serviceAccount.node.addDependency(...(props.dependsOn ?? []));
    }
  }

  /** The role's inline policy, where its grants (and their nag acknowledgements) live. */
  get policy(): Construct {
    return this.role.node.findChild('DefaultPolicy') as Construct;
  }
}
