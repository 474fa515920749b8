// Runs one scenario of scenarios.mjs in Debian's Chromium, driven by playwright-core:
//
//   node run.mjs '{"scenario": "...", "partnerUrl": "...", "popupUrl": "...", ...}'
//
// Input (one JSON argument):
//   scenario     a name in scenarios.mjs
//   partnerUrl   the partner test page (partner.html), on another origin than latchkey
//   popupUrl     the hosted page to open, with its authorization code
//   values       (optional) what the scenario fills in, by control name
//   screenshot   (optional) where the scenario may save a PNG of the page
//
// The partner page opens the popup as the public API's sample apps do. After the steps,
// the runner waits for the scenario's expected window messages and checks them, every
// one coming from latchkey's origin. Throughout, it fails the scenario on any Content
// Security Policy violation, uncaught script error or unexpected console error in the
// popup; and every page the popup shows (the first one, and any a step audits) must have
// no WCAG 2.x A/AA violation (axe-core) and no horizontal scroll at 500x700.
//
// Output: one JSON line on stdout, {ok, problems, messages, origins, audits}; the exit
// status is 0 only when ok. Playwright never downloads a browser here: it starts
// /usr/bin/chromium (CHROMIUM overrides the path).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { scenarios } from './scenarios.mjs';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];
const POPUP = { width: 500, height: 700 };
// Every wait is bounded; the whole run too.
const STEP_TIMEOUT_MS = 15_000;
const RUN_TIMEOUT_MS = 90_000;
// After the expected messages arrived: how long an unexpected extra one may take.
const QUIET_MS = 300;

const input = JSON.parse(process.argv[2] ?? '{}');
const scenario = scenarios[input.scenario];
const result = { ok: false, problems: [], messages: [], origins: [], audits: [] };

function finish(code) {
  result.ok = code === 0 && result.problems.length === 0;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.ok ? 0 : 1);
}

setTimeout(() => {
  result.problems.push(`the scenario did not end within ${RUN_TIMEOUT_MS} ms`);
  finish(1);
}, RUN_TIMEOUT_MS).unref();

if (!scenario) {
  result.problems.push(`no scenario ${JSON.stringify(input.scenario)}; known: ${Object.keys(scenarios).join(', ')}`);
  finish(1);
}

const latchkeyOrigin = new URL(input.popupUrl).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // The partner's own host name, so that it is another site than latchkey's, as in
    // production (cookies' SameSite rules look at sites, not ports).
    '--host-resolver-rules=MAP partner.test 127.0.0.1',
  ],
});

try {
  // latchkey's test certificate is self-signed.
  const context = await browser.newContext({ viewport: POPUP, ignoreHTTPSErrors: true });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const allowed = scenario.allowConsole ?? [];
  const onLatchkey = (url) => {
    try {
      return new URL(url).origin === latchkeyOrigin;
    } catch {
      return false;
    }
  };
  context.on('console', (message) => {
    const text = message.text();
    const page = message.page();
    const where = page && !page.isClosed() ? page.url() : message.location().url;
    const source = message.location().url || where;
    if (/Content Security Policy/i.test(text)) {
      result.problems.push(`CSP violation on ${where}: ${text} (${source})`);
    } else if (message.type() === 'error' && onLatchkey(where) && !allowed.some((re) => re.test(text))) {
      result.problems.push(`console error on ${where}: ${text} (${source})`);
    }
  });
  context.on('weberror', (error) => result.problems.push(`uncaught script error: ${error.error().message}`));

  const partner = await context.newPage();
  await partner.goto(`${input.partnerUrl}?popup=${encodeURIComponent(input.popupUrl)}`);
  const [popup] = await Promise.all([
    partner.waitForEvent('popup'),
    partner.getByRole('button', { name: 'Connect an account' }).click(),
  ]);
  await popup.setViewportSize(POPUP);
  await popup.waitForURL((url) => url.origin === latchkeyOrigin);
  await popup.waitForLoadState('load');

  const audit = (label) => auditPage(popup, label);
  await audit('the page as opened');
  const tools = { popup, partner, input, audit, fill, expectText };
  await scenario.steps(tools);

  await waitForMessages(partner, scenario.expect.length);
  const received = await partner.evaluate(() => window.received);
  result.messages = received.map((message) => message.data);
  result.origins = received.map((message) => message.origin);
  checkMessages(received, scenario.expect);
  if (scenario.closes) {
    if (!popup.isClosed()) {
      await popup.waitForEvent('close').catch(() => result.problems.push('the popup did not close'));
    }
  } else if (popup.isClosed()) {
    result.problems.push('the popup closed, and it should have stayed open');
  }
  await context.close();
} catch (error) {
  result.problems.push(`the scenario failed: ${error.stack ?? error}`);
} finally {
  await browser.close().catch(() => {});
}
finish(0);

/// Waits until the partner page has at least `count` messages, then a moment more, so an
/// unexpected extra message is seen too.
async function waitForMessages(partner, count) {
  if (count > 0) {
    await partner
      .waitForFunction((n) => window.received.length >= n, count, { timeout: STEP_TIMEOUT_MS })
      .catch(() => {});
  }
  await partner.waitForTimeout(QUIET_MS);
}

/// Each expected message, in order: every field given must match (a RegExp tests a
/// string, anything else is compared as JSON); fields not given are not checked.
function checkMessages(received, expected) {
  received.forEach((message, n) => {
    if (message.origin !== latchkeyOrigin) {
      result.problems.push(`message ${n} came from ${message.origin}, not ${latchkeyOrigin}`);
    }
  });
  if (received.length !== expected.length) {
    result.problems.push(
      `expected ${expected.length} message(s), got ${received.length}: ${JSON.stringify(received.map((m) => m.data))}`,
    );
  }
  expected.forEach((want, n) => {
    const got = received[n]?.data ?? {};
    for (const [field, value] of Object.entries(want)) {
      const ok = value instanceof RegExp
        ? typeof got[field] === 'string' && value.test(got[field])
        : JSON.stringify(got[field]) === JSON.stringify(value);
      if (!ok) {
        result.problems.push(`message ${n}: ${field} is ${JSON.stringify(got[field])}, expected ${value}`);
      }
    }
  });
}

/// axe-core's WCAG A/AA rules and a horizontal-scroll check on the page as it is now.
/// axe runs through the DevTools protocol, which the page's CSP does not govern, so the
/// CSP stays in force for the page's own resources.
async function auditPage(page, label) {
  await page.waitForLoadState('load');
  const found = await page.evaluate(AXE_SOURCE).then(() =>
    page.evaluate(async (tags) => {
      const report = await window.axe.run(document, { runOnly: { type: 'tag', values: tags } });
      const root = document.documentElement;
      return {
        url: location.href,
        violations: report.violations.map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          nodes: v.nodes.map((node) => node.target.join(' ')),
        })),
        passes: report.passes.length,
        width: root.clientWidth,
        scrollWidth: root.scrollWidth,
      };
    }, AXE_TAGS),
  );
  result.audits.push({ label, ...found });
  for (const violation of found.violations) {
    result.problems.push(
      `${label}: axe ${violation.id} (${violation.impact}): ${violation.help} at ${violation.nodes.join(', ')}`,
    );
  }
  if (found.scrollWidth > found.width) {
    result.problems.push(`${label}: scrolls sideways at ${found.width}px (content is ${found.scrollWidth}px wide)`);
  }
}

/// Fills the controls named in `values` (by their `name`): text by typing, checkboxes by
/// checking, selects by choosing.
async function fill(page, values) {
  for (const [name, value] of Object.entries(values)) {
    const control = page.locator(`[name="${name}"]`);
    const kind = await control.evaluate((element) => element.type);
    if (kind === 'checkbox') {
      await control.setChecked(Boolean(value));
    } else if (kind.startsWith('select')) {
      await control.selectOption(String(value));
    } else {
      await control.fill(String(value));
    }
  }
}

/// Fails the step unless `text` is shown on the page.
async function expectText(page, text) {
  await page.getByText(text).first().waitFor({ state: 'visible' });
}
