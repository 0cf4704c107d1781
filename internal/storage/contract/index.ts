export { accountStoreContract } from "./account-store.contract.js";
export { channelStoreContract } from "./channel-store.contract.js";
export { inboxContract } from "./inbox.contract.js";
export { messageLogContract } from "./message-log.contract.js";
export type { MakeStore, StoreHandle } from "./helpers.js";
