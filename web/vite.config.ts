import { defineConfig } from "vite";

// The web client. `npm run build:web` writes web/dist, which chatd serves at
// "/" on its HTTP/1.1 listener. `npm run dev:web` serves these sources with
// hot reload and proxies the API and the WebSocket to a chatd on :8080.
const chatd = process.env.CHATD_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  root: import.meta.dirname,
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: {
      "/chat.v1.": { target: chatd, changeOrigin: false },
      "/ws": { target: chatd.replace(/^http/, "ws"), ws: true },
    },
  },
});
