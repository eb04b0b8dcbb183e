// Compiled (not run) by tests/types.test.js: uses the public API as an app would, so the
// declarations in livebridge.d.ts are checked to be valid and to describe the client.
import { connect, LivebridgeClient, LivebridgeError, PROTOCOL_VERSION, type ConnectionState, type LivebridgeMessage, type RecoveryFailed } from '../../livebridge.js';

const client: LivebridgeClient = connect('http://127.0.0.1:5100', {
  clientType: 'web',
  clientName: 'Web UI',
  channels: ['jobs'],
  token: async () => 'token',
  upgradeInterval: 0,
});
const state: ConnectionState = client.state;
const transport: 'websocket' | 'polling' | null = client.transport;
const id: string | null = client.clientId;
const off: () => void = client.on('job_progress', (event: LivebridgeMessage) => console.log(event.job_id, event.offset));
client.on('state', (next, detail) => console.log(next satisfies ConnectionState, detail.attempt));
client.on('recovery_failed', (notice: RecoveryFailed) => console.log(notice.channel, notice.position?.offset));
off();
async function use(): Promise<void> {
  const reply = await client.send({ type: 'job_progress', job_id: 'j', stage: 's', progress: 1 });
  console.log(reply.type, state, transport, id, PROTOCOL_VERSION);
  await client.subscribe('photos');
  await client.unsubscribe(['photos']);
  try {
    await client.close();
  } catch (error) {
    if (error instanceof LivebridgeError) console.log(error.status, error.code);
  }
}
void use();

// @ts-expect-error a message needs a type
void client.send({ job_id: 1 });
// @ts-expect-error no such state
const wrong: ConnectionState = 'connected';
void wrong;
// @ts-expect-error transport is read-only
client.transport = 'polling';
