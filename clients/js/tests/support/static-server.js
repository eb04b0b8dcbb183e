// Test support: a tiny HTTP server on a free loopback port, standing for "another site" (a
// foreign origin): it serves a blank test page and a copy of the client, nothing else.
import http from 'node:http';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const CLIENT = fileURLToPath(new URL('../../livebridge.js', import.meta.url));

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>foreign test page</title>
<link rel="icon" href="data:,"></head><body><p>a page of another origin</p></body></html>`;

export async function startStaticServer() {
  const server = http.createServer((request, response) => {
    const path = new URL(request.url, 'http://x').pathname;
    if (path === '/') {
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      response.end(PAGE);
    } else if (path === '/livebridge.js') {
      response.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      response.end(fs.readFileSync(CLIENT));
    } else {
      response.writeHead(404, { 'Content-Type': 'text/plain' });
      response.end('not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
