// The TypeScript declarations (livebridge.d.ts) compile in strict mode and describe the API an
// app uses (tests/types/usage.ts, which also checks that misuse is refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const TSC = require.resolve('typescript/bin/tsc');
const USAGE = fileURLToPath(new URL('./types/usage.ts', import.meta.url));

test('livebridge.d.ts compiles in strict mode against an app that uses the API', async () => {
  const args = [TSC, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--lib', 'es2022,dom', USAGE];
  const output = await new Promise((resolve) => {
    // Killed if still running after 50 s (inside the runner's 60 s per test), saying so.
    execFile(process.execPath, args, { timeout: 50000 }, (error, stdout, stderr) =>
      resolve({ code: error?.killed ? 'killed: tsc still running after 50 s' : (error?.code ?? 0), text: stdout + stderr }),
    );
  });
  assert.equal(output.code, 0, output.text);
});
