import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { chromium, type Browser, type Locator, type Page } from "playwright-core";
import { withDirLock } from "../support/dir-lock.js";
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

const BUILD_DIR = resolve(ROOT, "node_modules/.cache/chat-web-build");
/** What the web client's bundle is made of: its own sources, the generated code it imports, the locked packages. */
const BUILD_INPUTS = ["web/src", "web/public", "web/index.html", "web/vite.config.ts", "gen/es", "package-lock.json"];

/**
 * Builds web/ from the current sources into web/dist, which chatd serves, unless web/dist
 * was last built (by a suite, under the lock) from exactly these sources. The browser
 * suites run side by side (npm test runs two files at once): a build empties web/dist
 * while the other suite's pages load from it, so builds take turns and a second is skipped.
 */
export async function buildWebClient(): Promise<void> {
  const vite = resolve(ROOT, "node_modules/vite/bin/vite.js");
  const stamp = join(BUILD_DIR, "inputs");
  await withDirLock(join(BUILD_DIR, "lock"), "the web client's build", async () => {
    const inputs = hashOf(BUILD_INPUTS);
    // Under the lock only a build writes the stamp, so it reads whole.
    if (existsSync(resolve(ROOT, "web/dist/index.html")) && existsSync(stamp) && readFileSync(stamp, "utf8") === inputs) return;
    rmSync(stamp, { force: true });
    try {
      await run(process.execPath, [vite, "build", "web", "--logLevel", "warn"], { cwd: ROOT, maxBuffer: 64 << 20 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`vite build failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
    }
    writeFileSync(stamp, inputs);
  });
}

/** A digest of every file under these paths (relative to the repository), names included. */
function hashOf(paths: readonly string[]): string {
  const hash = createHash("sha256");
  const add = (path: string) => {
    const full = resolve(ROOT, path);
    if (!existsSync(full)) return;
    if (statSync(full).isDirectory()) {
      for (const entry of readdirSync(full).sort()) add(join(path, entry));
      return;
    }
    hash.update(`${path}\0`).update(readFileSync(full)).update("\0");
  };
  for (const path of paths) add(path);
  return hash.digest("hex");
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
