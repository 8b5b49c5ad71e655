import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalGateway } from '../../local/gateway';
import { serveGateway, type LocalHttpServer } from '../../local/http-server';
import { newAccount, startTestStack, type TestStack } from '../support/stack';

describe('local HTTP front of the API', () => {
  let stack: TestStack;
  let http: LocalHttpServer;
  beforeAll(async () => {
    stack = await startTestStack();
    http = await serveGateway(stack.gateway, 0);
  });
  afterAll(async () => {
    await http.close();
    await stack.stop();
  });

  it('passes requests through to the handlers with their status, headers and body', async () => {
    const { key } = await newAccount(['invoke_function']);
    const response = await fetch(`${http.url}/v2/nvcf/clusterGroups?x=1`, { headers: { authorization: `Bearer ${key}` } });
    expect(response.status).toBe(403);
    expect(response.headers.get('content-type')).toBe('application/problem+json');
    expect(await response.json()).toMatchObject({ status: 403, instance: '/v2/nvcf/clusterGroups' });
  });

  it('refuses a payload over API Gateway’s 10 MB limit with 413', async () => {
    const response = await fetch(`${http.url}/v2/nvcf/assets`, {
      method: 'POST',
      headers: { authorization: 'Bearer nvapi-x' },
      body: Buffer.alloc(10 * 1024 * 1024 + 1),
    });
    expect(response.status).toBe(413);
  });

  it('hands header bytes to the Lambda decoded as UTF-8, as API Gateway does', async () => {
    const { key } = await newAccount();
    const gateway = new LocalGateway({ handlers: { functions: async (event) => ({ statusCode: 200, headers: {}, body: JSON.stringify(event.headers['x-name']) }) } });
    const front = await serveGateway(gateway, 0);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = request(`${front.url}/v2/nvcf/functions`, {
          method: 'POST',
          // Raw UTF-8 bytes on the wire, written one byte per character.
          headers: { authorization: `Bearer ${key}`, 'x-name': Buffer.from('Zoë', 'utf8').toString('latin1') },
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end();
      });
      expect(JSON.parse(body)).toBe('Zoë');
    } finally {
      await front.close();
    }
  });
});
