// Compiled (not run) by tests/types.test.js: uses the public API as an app would, so the
// declarations in livebridge.d.ts are checked to be valid and to describe the client.
import { connect, LivebridgeClient, LivebridgeError, PROTOCOL_VERSION, type ConnectionState, type LivebridgeMessage, type RecoveryFailed } from '../../livebridge.js';
import type { CatalogueEvent, JobProgressEvent } from '../../livebridge.js';

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

// Catalogue events are typed by their `type` (catalogue.d.ts, generated from the catalogue).
client.on('job_progress', (event) => {
  const progress: number = event.progress;
  const jobId: number | string = event.job_id;
  const message: string | undefined = event.message;
  const offset: number | undefined = event.offset;
  console.log(progress, jobId, message, offset, event.timestamp.length);
});
client.on('system_status', (event) => console.log(typeof event.status === 'string' ? event.status : event.status['cpu']));
function describe(event: CatalogueEvent): string {
  switch (event.type) {
    case 'session_updated':
      return `${event.session_id}: ${event.progress_percent.toFixed(1)}%`;
    case 'queue_status':
      return String(event.pending_count + event.failed_count);
    default:
      return event.type;
  }
}
const progressed: JobProgressEvent = { type: 'job_progress', timestamp: 't', job_id: 7, stage: 'analyzing', progress: 45.5 };
console.log(describe(progressed));
// A hub's own catalogue: the map generated for it (here written out) types its listeners.
interface PrintEvents {
  print_queued: { type: 'print_queued'; timestamp: string; copies: number };
}
const printer: LivebridgeClient<PrintEvents> = connect<PrintEvents>('http://127.0.0.1:5100');
printer.on('print_queued', (event) => console.log(event.copies.toFixed(0)));

// @ts-expect-error no such field on job_progress (a LivebridgeMessage would allow any)
client.on('job_progress', (event) => console.log(event.progres));
// @ts-expect-error progress is a number, not a string
client.on('job_progress', (event) => { const text: string = event.progress; void text; });
// @ts-expect-error a job id may be a string, so it is not a number
const jobNumber: number = progressed.job_id;
void jobNumber;
// @ts-expect-error a job_progress event needs its stage
const incomplete: JobProgressEvent = { type: 'job_progress', timestamp: 't', job_id: 7, progress: 1 };
void incomplete;
// @ts-expect-error progress must be a number
const mistyped: JobProgressEvent = { type: 'job_progress', timestamp: 't', job_id: 7, stage: 's', progress: '50' };
void mistyped;
// @ts-expect-error print_queued's copies is a number
printer.on('print_queued', (event) => { const copies: string = event.copies; void copies; });
