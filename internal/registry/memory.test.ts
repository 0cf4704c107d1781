import { serverRegistryContract } from "./contract.js";
import { MemoryServerRegistry } from "./memory.js";

serverRegistryContract("memory", async () => {
  const registry = new MemoryServerRegistry({ regainAfterMs: 20 });
  return {
    registry,
    observer: registry,
    regainWithinMs: 1_000,
    async expire(serverId) {
      registry.expire(serverId);
    },
    async dispose() {
      await registry.close();
    },
  };
});
