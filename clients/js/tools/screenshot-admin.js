// Writes a screenshot of the admin page (docs/admin.png) with a few clients connected and
// events flowing: `scripts/test-browser.sh --screenshot` runs it. Usage:
//   node tools/screenshot-admin.js OUTPUT.png
import WebSocket from 'ws';
import { connect } from '../livebridge.js';
import { Hub, waitFor } from '../tests/support/hub.js';
import { launchBrowser } from '../tests/support/browser.js';

const output = process.argv[2] ?? 'admin.png';
const SECONDS_OF_TRAFFIC = 12;

const hub = await Hub.start();
const clients = [
  connect(hub.url, { clientType: 'lightroom', clientName: 'Lightroom Classic Plugin', channels: ['jobs', 'system', 'photos'] }),
  connect(hub.url, { clientType: 'gui', clientName: 'Desktop GUI v2.0', channels: ['jobs', 'photos', 'sessions', 'system'], WebSocket }),
  connect(hub.url, { clientType: 'web', clientName: 'Web UI', channels: ['jobs', 'photos', 'sessions'], WebSocket }),
  connect(hub.url, { clientType: 'mobile', clientName: 'iPhone', channels: ['approval', 'sessions'] }),
];
const browser = await launchBrowser();
try {
  await waitFor(() => clients.every((c) => c.state === 'open' || c.state === 'polling'), { what: 'clients' });
  const page = await browser.newPage({ viewport: { width: 1440, height: 1280 }, colorScheme: 'light' });
  await page.goto(`${hub.url}/`);
  await page.locator('#live-status').filter({ hasText: /live via/ }).waitFor();
  // A photo session being processed: jobs progress, photos get analysed and approved.
  for (let tick = 0; tick < SECONDS_OF_TRAFFIC * 4; tick++) {
    const job = 1000 + Math.floor(tick / 8);
    const events = [{ type: 'job_progress', job_id: `job-${job}`, stage: ['analyzing', 'applying preset', 'exporting'][tick % 3], progress: ((tick % 8) + 1) * 12.5 }];
    if (tick % 3 === 0) events.push({ type: 'photo_analyzed', photo_id: 5000 + tick, ai_score: Math.round((6 + (tick % 40) / 10) * 10) / 10 });
    if (tick % 5 === 0) events.push({ type: 'photo_approved', photo_id: 5000 + tick, session_id: 12 });
    if (tick % 7 === 0) events.push({ type: 'session_updated', session_id: 12, total_photos: 240, processed_photos: 40 + tick * 4, status: 'processing' });
    if (tick % 11 === 0) events.push({ type: 'approval_queue_updated', queue_count: 30 - Math.floor(tick / 11), session_id: 12 });
    if (tick % 16 === 0) events.push({ type: 'queue_status', pending_count: 48 - tick, processing_count: 2, completed_count: tick, failed_count: 0 });
    if (tick === 30) events.push({ type: 'resource_warning', resource_type: 'gpu_memory', current_value: 91.5, threshold: 90, message: 'GPU memory high' });
    await hub.publish(events);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await page.selectOption('#publish-type', 'job_progress');
  await page.fill('#field-job_id', 'job-1005');
  await page.fill('#field-stage', 'exporting');
  await page.fill('#field-progress', '75');
  await page.click('#publish-button');
  await page.locator('#publish-result.ok').waitFor();
  await page.evaluate(() => window.scrollTo(0, 0)); // clicking Publish scrolled the form into view
  await page.screenshot({ path: output, fullPage: false });
  console.log(`wrote ${output}`);
} finally {
  await browser.close();
  await Promise.all(clients.map((c) => c.close()));
  await hub.stop();
}
