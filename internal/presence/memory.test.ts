import { presenceStoreContract } from "./contract.js";
import { MemoryPresenceStore } from "./memory.js";

presenceStoreContract("memory", async () => {
  const store = new MemoryPresenceStore();
  return { store, dispose: () => store.close() };
});
