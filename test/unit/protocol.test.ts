import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { actuationMessage, isStorableIdentity, parseDeviceMessage, reply, type ActuationCommand } from '../../src/gateway/protocol.js';

const uuid = '6f1c2c0e-6d5e-4a53-9d3b-2f7a4d1d8e11';

describe('parseDeviceMessage', () => {
  it('parses the authentication message', () => {
    expect(parseDeviceMessage('{"type":"device","deviceId":"example001","deviceToken":"eyJ0eXA.x.y"}')).toEqual({
      type: 'device',
      deviceId: 'example001',
      deviceToken: 'eyJ0eXA.x.y',
    });
  });

  it('parses ping', () => {
    expect(parseDeviceMessage('{"type":"ping"}')).toEqual({ type: 'ping' });
  });

  it('parses an ack by id, defaulting statusCode to 200', () => {
    expect(parseDeviceMessage(JSON.stringify({ type: 'ack', id: uuid }))).toEqual({ type: 'ack', id: uuid, statusCode: 200 });
    expect(parseDeviceMessage(JSON.stringify({ type: 'ack', id: uuid, statusCode: 500, reasonPhrase: 'motor jammed' }))).toEqual({
      type: 'ack',
      id: uuid,
      statusCode: 500,
      reasonPhrase: 'motor jammed',
    });
  });

  it('refuses an ack whose reasonPhrase PostgreSQL cannot store (wrong format), before it joins a batch', () => {
    for (const reasonPhrase of ['bad\u0000', '\ud800', 'x\udc00y']) {
      expect(parseDeviceMessage(JSON.stringify({ type: 'ack', id: uuid, statusCode: 200, reasonPhrase }))).toBeNull();
    }
    expect(parseDeviceMessage(JSON.stringify({ type: 'ack', id: uuid, reasonPhrase: 'ok \ud83d\ude00' }))).not.toBeNull();
  });

  it('tells an identity that cannot be stored (refused as an invalid token)', () => {
    expect(isStorableIdentity({ deviceId: 'lamp-1', accountId: null })).toBe(true);
    expect(isStorableIdentity({ deviceId: 'lamp-1', accountId: 'acme' })).toBe(true);
    expect(isStorableIdentity({ deviceId: 'nul\u0000id', accountId: null })).toBe(false);
    expect(isStorableIdentity({ deviceId: '\ud800', accountId: null })).toBe(false);
    expect(isStorableIdentity({ deviceId: 'lamp-1', accountId: 'a\u0000' })).toBe(false);
  });

  it('parses a cumulative ack (upTo)', () => {
    expect(parseDeviceMessage('{"type":"ack","upTo":17}')).toEqual({ type: 'ack', upTo: 17 });
  });

  it('ignores fields it does not know (old agents send extras)', () => {
    expect(parseDeviceMessage('{"type":"ping","pad":"xx","ts":1}')).toEqual({ type: 'ping' });
    expect(parseDeviceMessage('{"type":"device","deviceId":"d","deviceToken":"t","version":"1.2"}')).toEqual({
      type: 'device',
      deviceId: 'd',
      deviceToken: 't',
    });
  });

  it('accepts the largest allowed fields', () => {
    const message = { type: 'device', deviceId: 'd'.repeat(256), deviceToken: 't'.repeat(16 * 1024) };
    expect(parseDeviceMessage(JSON.stringify(message))).toEqual(message);
  });

  it.each([
    ['not JSON', 'hello'],
    ['truncated JSON', '{"type":"device"'],
    ['empty string', ''],
    ['JSON null', 'null'],
    ['a JSON string', '"ping"'],
    ['a JSON number', '42'],
    ['an array', '[{"type":"ping"}]'],
    ['an empty object', '{}'],
    ['unknown type', '{"type":"hello"}'],
    ['type of the wrong case', '{"type":"PING"}'],
    ['type that is not a string', '{"type":1}'],
    ['device without deviceToken', '{"type":"device","deviceId":"d"}'],
    ['device without deviceId', '{"type":"device","deviceToken":"t"}'],
    ['device with a numeric deviceId', '{"type":"device","deviceId":42,"deviceToken":"t"}'],
    ['device with a null deviceToken', '{"type":"device","deviceId":"d","deviceToken":null}'],
    ['device with an object deviceToken', '{"type":"device","deviceId":"d","deviceToken":{"a":1}}'],
    ['device with an empty deviceId', '{"type":"device","deviceId":"","deviceToken":"t"}'],
    ['device with an empty deviceToken', '{"type":"device","deviceId":"d","deviceToken":""}'],
    ['device with an oversize deviceId', JSON.stringify({ type: 'device', deviceId: 'd'.repeat(257), deviceToken: 't' })],
    ['device with an oversize deviceToken', JSON.stringify({ type: 'device', deviceId: 'd', deviceToken: 't'.repeat(16 * 1024 + 1) })],
    ['ack without id or upTo', '{"type":"ack"}'],
    ['ack with an id that is not a uuid', '{"type":"ack","id":"42"}'],
    ['ack with a numeric id', '{"type":"ack","id":42}'],
    ['ack with a statusCode below 100', JSON.stringify({ type: 'ack', id: uuid, statusCode: 99 })],
    ['ack with a statusCode above 999', JSON.stringify({ type: 'ack', id: uuid, statusCode: 1000 })],
    ['ack with a fractional statusCode', JSON.stringify({ type: 'ack', id: uuid, statusCode: 200.5 })],
    ['ack with a string statusCode', JSON.stringify({ type: 'ack', id: uuid, statusCode: '200' })],
    ['ack with an oversize reasonPhrase', JSON.stringify({ type: 'ack', id: uuid, reasonPhrase: 'r'.repeat(1025) })],
    ['ack with upTo 0', '{"type":"ack","upTo":0}'],
    ['ack with a negative upTo', '{"type":"ack","upTo":-3}'],
    ['ack with a fractional upTo', '{"type":"ack","upTo":1.5}'],
    ['ack with a string upTo', '{"type":"ack","upTo":"5"}'],
  ])('returns null for %s', (_name, rawMessage) => {
    expect(parseDeviceMessage(rawMessage)).toBeNull();
  });
});

describe('server messages', () => {
  it('reply() is {code, content} and nothing else', () => {
    expect(reply(200, 'Subscribed to ws server')).toBe('{"code":200,"content":"Subscribed to ws server"}');
  });

  const command: ActuationCommand = {
    accountId: 'c4715841-bb1e-4c87-ad78-2376fe596a11',
    deviceId: 'example001',
    gatewayId: 'example001',
    componentId: '1e447b10-9afd-4221-b4d8-7bc5c5bb6c3f',
    command: 'LED.v1.0',
    params: [{ name: 'LED', value: '1' }],
  };

  it("actuationMessage is the original server's shape plus the top-level id", () => {
    const id = crypto.randomUUID();
    const message = JSON.parse(actuationMessage(id, command));
    // The example from the original README, with `id` added.
    expect(message).toStrictEqual({
      code: 1024,
      id,
      content: {
        type: 'command',
        transport: 'ws',
        content: {
          accountId: 'c4715841-bb1e-4c87-ad78-2376fe596a11',
          deviceId: 'example001',
          gatewayId: 'example001',
          componentId: '1e447b10-9afd-4221-b4d8-7bc5c5bb6c3f',
          command: 'LED.v1.0',
          params: [{ name: 'LED', value: '1' }],
        },
      },
    });
    expect(Object.keys(message)).toEqual(['code', 'id', 'content']);
    expect(Object.keys(message.content)).toEqual(['type', 'transport', 'content']);
    expect(Object.keys(message.content.content)).toEqual(['accountId', 'deviceId', 'gatewayId', 'componentId', 'command', 'params']);
  });

  it('does not leak fields that are not part of the command', () => {
    const withExtras = { ...command, secret: 'x', internalStatus: 'queued' } as ActuationCommand;
    const message = JSON.parse(actuationMessage(crypto.randomUUID(), withExtras));
    expect(Object.keys(message.content.content)).toEqual(['accountId', 'deviceId', 'gatewayId', 'componentId', 'command', 'params']);
  });

  it('keeps a null accountId and params values of any JSON type', () => {
    const params = [
      { name: 'on', value: true },
      { name: 'level', value: 3 },
      { name: 'rgb', value: [255, 0, 0] },
      { name: 'meta', value: { a: null } },
    ];
    const message = JSON.parse(actuationMessage(uuid, { ...command, accountId: null, params }));
    expect(message.content.content.accountId).toBeNull();
    expect(message.content.content.params).toStrictEqual(params);
  });

  it('adds seq only when one is given', () => {
    expect(JSON.parse(actuationMessage(uuid, command))).not.toHaveProperty('seq');
    expect(JSON.parse(actuationMessage(uuid, command, 7))).toMatchObject({ code: 1024, id: uuid, seq: 7 });
  });

  it('is the text JSON.stringify writes for the message object (built by hand: escapes, null, the accountId override)', () => {
    const odd = { ...command, deviceId: 'd"\\\u2028\u0001', componentId: '\ud800', params: [{ name: 'x', value: { nested: ['a', 1.5, null, false] } }] };
    const asObject = (c: ActuationCommand, seq?: number) =>
      JSON.stringify({ code: 1024, id: uuid, ...(seq === undefined ? {} : { seq }), content: { type: 'command', transport: 'ws', content: { accountId: c.accountId, deviceId: c.deviceId, gatewayId: c.gatewayId, componentId: c.componentId, command: c.command, params: c.params } } });
    expect(actuationMessage(uuid, odd)).toBe(asObject(odd));
    expect(actuationMessage(uuid, odd, 9007199254740991)).toBe(asObject(odd, 9007199254740991));
    expect(actuationMessage(uuid, command, 3, null)).toBe(asObject({ ...command, accountId: null }, 3));
    expect(actuationMessage(uuid, { ...command, accountId: null }, 3, 'acc-1')).toBe(asObject({ ...command, accountId: 'acc-1' }, 3));
  });
});
