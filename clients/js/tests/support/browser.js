// Test support: headless Chromium (Debian's /usr/bin/chromium, installed by
// scripts/install-browser-deps.sh) driven by playwright-core, and a page watcher that records
// console errors and failed requests so a test can assert there were none.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// What this machine needs: no sandbox (root in a container), no GPU, no QUIC, and no
// background traffic to Google services (no network here besides loopback).
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium with a fresh profile (playwright makes a temporary user-data-dir). */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
}

/**
 * Records what went wrong on a page: console errors, uncaught exceptions, requests that
 * failed at the network level, and HTTP responses >= 400.
 */
export function watchPage(page) {
  const problems = { consoleErrors: [], pageErrors: [], failedRequests: [], badResponses: [] };
  page.on('console', (message) => {
    if (message.type() === 'error') problems.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => problems.pageErrors.push(String(error)));
  page.on('requestfailed', (request) => problems.failedRequests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`));
  page.on('response', (response) => {
    if (response.status() >= 400) problems.badResponses.push(`${response.status()} ${response.request().method()} ${response.url()}`);
  });
  return problems;
}
