// Shared by the browser-*.mjs end-to-end scripts: Debian's Chromium through playwright-core,
// the server under test (RT_URL), and the restart handshake with the Rust test that runs us
// (see rt_tests::browser::run_script).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const base = process.env.RT_URL;
export const artifacts = process.env.RT_ARTIFACTS;
if (!base) throw new Error('run through rt_tests::browser::run_script (RT_URL unset)');

/** A fresh headless Chromium profile, with extra command-line `args`; `close()` removes it. */
export async function browser(args = []) {
  if (!process.env.RT_CHROMIUM) throw new Error('RT_CHROMIUM unset: run through rt_tests::browser::run_script');
  const profile = mkdtempSync(join(tmpdir(), 'rt-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.RT_CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...args,
    ],
    viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => console.error(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  return {
    context,
    page,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// The Rust side's answers, read only by scripts that restart the server (an open stdin would
// keep the others from exiting).
let stdin = null;
const answers = [];
const waiting = [];

/** Kills the server and starts it again on the same port (with new arguments if given). */
export async function restartServer(...args) {
  if (!stdin) {
    stdin = createInterface({ input: process.stdin });
    stdin.on('line', (line) => (waiting.length ? waiting.shift()(line) : answers.push(line)));
  }
  console.log(`@restart${args.length ? ` ${args.join(' ')}` : ''}`);
  const answer = answers.length ? answers.shift() : await new Promise((r) => waiting.push(r));
  if (answer !== 'ok') throw new Error(`restart failed: ${answer}`);
}

/** Publishes through the HTTP API as the application backend would. */
export async function publish(channel, data, event) {
  const res = await fetch(`${base}/api/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Api-Key': 'test-key' },
    body: JSON.stringify(event ? { channel, data, event } : { channel, data }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`publish answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

/**
 * Resolves once `check()` is truthy (polled), or rejects with `what` after `ms`, and with what
 * `show()` (if given) returns then, to tell why.
 */
export async function until(what, check, ms = 15000, show = null) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${show ? `: ${JSON.stringify(await show())}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function assert(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}

/** Runs `main`, then exits 0, or 1 with the error; stdin is released either way. */
export function run(main) {
  main().then(
    () => {
      stdin?.close();
      console.log('PASS');
      process.exit(0);
    },
    (e) => {
      console.error(e?.stack ?? e);
      stdin?.close();
      process.exit(1);
    },
  );
}
