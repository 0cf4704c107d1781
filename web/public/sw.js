// The web client's service worker: shows chatd's Web Push notifications and
// opens the chat of the one clicked.
//
// Plain JavaScript in web/public on purpose: Vite copies this folder to the
// root of web/dist as it is, so the worker keeps the fixed URL /sw.js, which
// gives it the scope "/" (a worker controls only paths under its own) and
// lets a browser find its updates (chatd serves it with no-cache). A bundled
// TypeScript worker would get a hashed name under /assets/ instead. It needs
// no imports, so nothing is lost by leaving it out of the build.
//
// The payload is what internal/push/webpush.ts `webPushPayload` sends:
// {title, body, tag, type, channelId, messageId, seq, senderUserId,
// senderName, channelTitle, count, mentioned?, targetSeq?}, all strings.
// The page side of "open-chat" is `chatToOpen` in web/src/push.ts.

const FALLBACK_TITLE = "New message";

self.addEventListener("install", () => {
  // A new version takes over at once: there is no cache whose versions could clash.
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("push", (event) => {
  event.waitUntil(showNotification(readPayload(event.data)));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openChat(event.notification.data?.channelId));
});

self.addEventListener("pushsubscriptionchange", (event) => {
  // The browser replaced or dropped the subscription. Telling chatd needs an
  // access token, which lives in the page's storage, not here; so subscribe
  // again with the same options and let the page register the new address
  // at its next start (refreshPush). Until then pushes go to the old address,
  // whose push service answers 410, and chatd drops it.
  const options = event.oldSubscription?.options;
  if (event.newSubscription || !options) return;
  event.waitUntil(self.registration.pushManager.subscribe(options).catch(() => undefined));
});

/** The push's JSON, or {} for a push without data or with data that is not a JSON object. */
function readPayload(data) {
  try {
    const payload = data ? data.json() : null;
    return payload && typeof payload === "object" ? payload : {};
  } catch {
    return {};
  }
}

function text(value) {
  return typeof value === "string" ? value : "";
}

/**
 * Always shows something: a push subscribed with userVisibleOnly that shows
 * nothing is held against the site by the browser. One notification per
 * chat (the tag is the channel's collapse key), replaced by the next one,
 * which alerts again because it stands for messages not shown yet.
 */
function showNotification(payload) {
  const tag = text(payload.tag);
  const channelId = text(payload.channelId);
  return self.registration.showNotification(text(payload.title) || FALLBACK_TITLE, {
    body: text(payload.body),
    tag,
    renotify: tag !== "",
    data: { channelId, seq: text(payload.seq), type: text(payload.type) },
  });
}

/**
 * Brings a window of the client to the chat: one already open is asked to
 * open it (it keeps its state, unlike a reload) and focused; otherwise a
 * new window opens on it.
 */
async function openChat(channelId) {
  const chat = /^\d+$/.test(channelId ?? "") ? channelId : "";
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const target = windows.find((w) => w.focused) ?? windows[0];
  if (!target) return self.clients.openWindow(chat ? `./#/c/${chat}` : "./");
  if (chat) target.postMessage({ type: "open-chat", channelId: chat });
  return target.focus();
}
