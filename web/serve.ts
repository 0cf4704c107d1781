import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, resolve, sep } from "node:path";

/** Where `npm run build:web` (and `npm install`, through `prepare`) writes the web client. */
export const WEB_DIST = resolve(import.meta.dirname, "dist");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".webmanifest": "application/manifest+json",
};

/**
 * Whether a request is for the web client's files rather than the API:
 * GET or HEAD of "/", of "/assets/...", or of a single path segment (such
 * as "/favicon.ico"). Connect and gRPC-Web paths always have two segments
 * ("/chat.v1.AuthService/Login"), and the WebSocket upgrade never comes here.
 */
export function isWebClientRequest(req: IncomingMessage): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  const path = (req.url ?? "/").split("?")[0]!;
  return path === "/" || path.startsWith("/assets/") || /^\/[\w.-]+$/.test(path);
}

/**
 * Serves the built web client (static files, read on each request so a
 * rebuild shows without a restart). Hashed assets are cached for good,
 * index.html is revalidated every time. When nothing is built yet, "/"
 * answers with a page that says how to build it.
 */
export async function serveWebClient(req: IncomingMessage, res: ServerResponse, root = WEB_DIST): Promise<void> {
  let path: string;
  try {
    path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
  } catch {
    return plain(res, 400, "bad path");
  }
  if (path === "/") path = "/index.html";
  const file = resolve(join(root, path));
  if (!file.startsWith(root + sep) || path.split("/").some((part) => part.startsWith("."))) return plain(res, 404, "not found");

  let size: number;
  try {
    const st = await stat(file);
    if (!st.isFile()) return plain(res, 404, "not found");
    size = st.size;
  } catch {
    if (path === "/index.html") return notBuilt(res);
    return plain(res, 404, "not found");
  }

  const type = TYPES[extname(file)] ?? "application/octet-stream";
  const headers: Record<string, string | number> = {
    "content-type": type,
    "content-length": size,
    "x-content-type-options": "nosniff",
    "cache-control": path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
  };
  if (type.startsWith("text/html")) {
    const host = req.headers.host ?? "";
    headers["content-security-policy"] = [
      "default-src 'self'",
      `connect-src 'self' ws://${host} wss://${host}`,
      "img-src 'self' data:",
      "style-src 'self'",
      "script-src 'self'",
      "base-uri 'none'",
      "frame-ancestors 'none'",
      "form-action 'none'",
    ].join("; ");
    headers["referrer-policy"] = "no-referrer";
  }
  res.writeHead(200, headers);
  if (req.method === "HEAD") return void res.end();
  const stream = createReadStream(file);
  stream.on("error", () => res.destroy());
  stream.pipe(res);
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" }).end(`${text}\n`);
}

function notBuilt(res: ServerResponse): void {
  res
    .writeHead(503, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      // The page's own headers: chatd's HTML, framed by another site or sniffed, all the same; it needs only its inline styles.
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
      "referrer-policy": "no-referrer",
    })
    .end(
      `<!doctype html><meta charset="utf-8"><title>Chat: web client not built</title>` +
        `<body style="font-family:system-ui;max-width:40rem;margin:3rem auto;padding:0 1rem">` +
        `<h1>The web client is not built yet</h1>` +
        `<p>chatd is running and its API works, but <code>web/dist</code> is missing. Build the web client and reload this page:</p>` +
        `<pre>npm run build:web</pre>` +
        `<p>(<code>npm install</code> and <code>npm ci</code> build it too.)</p>`,
    );
}
