/**
 * The controller's KEDA objects (ScaledObject, TriggerAuthentication) against
 * KEDA's CRD schemas on a real API server, applied by the controller's client
 * under its ServiceAccount. The KEDA operator itself is not built (the Go
 * module proxy refuses github.com/kedacore/keda/v2@v2.21.1), so scaling on the
 * queue depth is not exercised here.
 */
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { K8S } from '../../core/names';
import { ClientNodeApi } from '../../gpu-agent/controller/k8s/api';
import { workloadObjects } from '../../gpu-agent/controller/k8s/objects';
import { CONTEXT, testVersion, workloadOf } from '../support/k8s-fixtures';
import { startControlPlane, type ControlPlane } from './control-plane';
import { adminConfig, applyTemplateObjects, CONTROLLER, eventually, installKedaCrds, serviceAccountConfig } from './platform';

let plane: ControlPlane;
let admin: k8s.KubeConfig;
let controllerApi: ClientNodeApi;

beforeAll(async () => {
  plane = await startControlPlane();
  admin = adminConfig(plane);
  await applyTemplateObjects(admin);
  await installKedaCrds(admin);
  controllerApi = new ClientNodeApi(await serviceAccountConfig(plane, admin, CONTROLLER));
});

afterAll(async () => {
  await plane?.stop();
});

describe("the controller's KEDA objects", () => {
  it('are accepted by the CRD schemas and read back as written (no field pruned)', async () => {
    const version = testVersion({}, { minInstances: 0, maxInstances: 3 });
    const built = workloadObjects(workloadOf(version), CONTEXT);
    for (const object of built) await eventually(() => controllerApi.apply(object));
    for (const kind of ['TriggerAuthentication', 'ScaledObject'] as const) {
      const [stored] = await controllerApi.list(kind, K8S.functionsNamespace);
      const mine = built.find((o) => o.kind === kind)!;
      expect(stored?.metadata.name).toBe(mine.metadata.name);
      // A structural schema prunes unknown fields silently: what was written must all be there.
      expect(stored?.spec).toEqual(mine.spec);
    }
  });

  it('are refused by the schema when malformed (the real validation runs)', async () => {
    const scaled = workloadObjects(workloadOf(testVersion()), CONTEXT).find((o) => o.kind === 'ScaledObject')!;
    // A ScaledObject without its required scaleTargetRef. (A wrongly typed field is refused too, but
    // server-side apply answers that with 500 'failed to create typed patch object', not 422.)
    const { scaleTargetRef: _, ...withoutTarget } = scaled.spec as Record<string, unknown>;
    await expect(controllerApi.apply({ ...scaled, spec: withoutTarget })).rejects.toMatchObject({ code: 422 });
  });
});
