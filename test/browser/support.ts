import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { chromium, type Browser, type Locator, type Page } from "playwright-core";
import { waitFor } from "../support/wait.js";

const run = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, "../..");
/** Debian's chromium; never a browser that playwright downloads. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Installs Debian's chromium when it is missing (scripts/browser.sh) and
 * launches it headless. Any failure throws: a machine without a working
 * browser fails the browser test, it never skips it.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    try {
      await run("bash", [resolve(ROOT, "scripts/browser.sh")], { cwd: ROOT, env: { ...process.env, CHROMIUM_PATH: CHROMIUM }, maxBuffer: 64 << 20 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`could not install chromium with scripts/browser.sh: ${e.message}\n${e.stderr ?? ""}`);
    }
  }
  try {
    return await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  } catch (err) {
    throw new Error(`chromium at ${CHROMIUM} did not start: ${(err as Error).message}`);
  }
}

/** Builds web/ from the current sources into web/dist, which chatd serves. */
export async function buildWebClient(): Promise<void> {
  const vite = resolve(ROOT, "node_modules/vite/bin/vite.js");
  try {
    await run(process.execPath, [vite, "build", "web", "--logLevel", "warn"], { cwd: ROOT, maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`vite build failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
}

/** Fails the test on anything the page logs as an error or throws. */
export function watchPage(page: Page, name: string, problems: string[]): Page {
  page.on("pageerror", (err) => problems.push(`${name}: page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${name}: console error: ${msg.text()}`);
  });
  return page;
}

export interface StoredCredentials {
  accessToken: string;
  refreshToken: string;
  userId: string;
  deviceId: string;
  username: string;
}

export async function storedCredentials(page: Page): Promise<StoredCredentials | undefined> {
  const raw = (await page.evaluate("localStorage.getItem('chat.credentials')")) as string | null;
  return raw ? (JSON.parse(raw) as StoredCredentials) : undefined;
}

/** Fills the sign-up form and waits until the client is connected. */
export async function signUpInPage(page: Page, baseUrl: string, username: string, password: string, displayName: string): Promise<void> {
  await page.goto(baseUrl);
  await page.getByTestId("tab-signup").click();
  await page.locator("input[name=username]").fill(username);
  await page.locator("input[name=displayName]").fill(displayName);
  await page.locator("input[name=password]").fill(password);
  await page.getByTestId("auth-submit").click();
  await waitConnected(page);
}

export async function logInInPage(page: Page, baseUrl: string, username: string, password: string): Promise<void> {
  await page.goto(baseUrl);
  await page.getByTestId("tab-login").click();
  await page.locator("input[name=username]").fill(username);
  await page.locator("input[name=password]").fill(password);
  await page.getByTestId("auth-submit").click();
  await waitConnected(page);
}

export async function waitConnected(page: Page, timeout = 15_000): Promise<void> {
  await page.locator('[data-testid=connection][data-state="open"]').waitFor({ timeout });
}

/** The texts of the messages shown in the open chat, oldest first. */
export async function shownMessages(page: Page): Promise<string[]> {
  return page.locator("[data-testid=message] [data-testid=message-text]").allTextContents();
}

export function unique(prefix: string): string {
  return `${prefix}${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`.slice(0, 32);
}

/*
 * Reads made in one step in the page. The chat list and the chat pane are drawn anew on live
 * events (messages, presence, receipts): an element found in one call (an ElementHandle, or the
 * handle behind Locator.evaluate and Locator.boundingBox) may be out of the page by the next,
 * and read there it gives nothing or stale values. Locator.evaluateAll finds and reads in one
 * evaluation, so a redraw cannot come between the two.
 */

/** Reads the one element `locator` finds (`read` maps the matches), waiting until there is exactly one. */
export async function readOne<R>(locator: Locator, read: (els: Element[]) => R[], what: string, timeoutMs = 10_000): Promise<R> {
  let seen = 0;
  try {
    const [value] = await waitFor(
      async () => {
        const all = await locator.evaluateAll(read);
        seen = all.length;
        return all.length === 1 && all;
      },
      what,
      timeoutMs,
      20,
    );
    return value!;
  } catch (err) {
    throw new Error(`${(err as Error).message}; matching elements: ${seen}`);
  }
}

type Shown = string | RegExp | null;

/**
 * Waits until the one element `locator` finds shows `expected` (equal, or matched by a RegExp),
 * as an auto-retrying assertion: what is shown may follow the event waited for by a redraw.
 */
async function expectShown(locator: Locator, read: (els: Element[], arg: string) => (string | null)[], arg: string, expected: Shown, message: string, timeoutMs: number): Promise<void> {
  const ok = (v: string | null | undefined) => (expected instanceof RegExp ? typeof v === "string" && expected.test(v) : v === expected);
  let seen: (string | null)[] = [];
  try {
    await waitFor(async () => ok((seen = await locator.evaluateAll(read, arg)).length === 1 ? seen[0] : undefined), message, timeoutMs, 20);
  } catch {
    throw new assert.AssertionError({ message: `${message} (after ${timeoutMs} ms; shown: ${JSON.stringify(seen)})`, actual: seen.length === 1 ? seen[0] : seen, expected, operator: "expectShown" });
  }
}

export function expectText(locator: Locator, expected: string | RegExp, message = `text ${String(expected)}`, timeoutMs = 10_000): Promise<void> {
  return expectShown(locator, (els) => els.map((e) => e.textContent), "", expected, message, timeoutMs);
}

export function expectAttribute(locator: Locator, name: string, expected: Shown, message = `${name}=${String(expected)}`, timeoutMs = 10_000): Promise<void> {
  return expectShown(locator, (els, n) => els.map((e) => e.getAttribute(n)), name, expected, message, timeoutMs);
}

/** An input's, textarea's or select's value. */
export function expectValue(locator: Locator, expected: string | RegExp, message = `value ${String(expected)}`, timeoutMs = 10_000): Promise<void> {
  return expectShown(locator, (els) => els.map((e) => (e as HTMLInputElement).value), "", expected, message, timeoutMs);
}
