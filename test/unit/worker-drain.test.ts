import { describe, expect, it } from 'vitest';
import { mayDrain } from '../../gpu-agent/worker/drain';

describe('who may drain a worker', () => {
  it('lets loopback drain, as the function container beside the worker may', () => {
    for (const remote of ['127.0.0.1', '::1', '::ffff:127.0.0.1']) expect(mayDrain(remote, '10.0.1.7')).toBe(true);
  });

  it('lets the node drain (kubelet calls the preStop hook from its address), and no other pod', () => {
    expect(mayDrain('10.0.1.7', '10.0.1.7')).toBe(true);
    expect(mayDrain('::ffff:10.0.1.7', '10.0.1.7')).toBe(true);
    expect(mayDrain('10.0.2.33', '10.0.1.7')).toBe(false);
    expect(mayDrain(undefined, '10.0.1.7')).toBe(false);
  });

  it('lets anyone drain when no node address is configured (outside Kubernetes)', () => {
    expect(mayDrain('10.0.2.33', undefined)).toBe(true);
  });
});
