import { sessionRoutesContract } from "./contract.js";
import { MemorySessionRoutes } from "./memory.js";

sessionRoutesContract("memory", async (ttlMs) => {
  const routes = new MemorySessionRoutes({ ttlMs });
  return {
    routes,
    async wipe() {
      routes.clear();
    },
    another: async () => new MemorySessionRoutes({ ttlMs, sharing: routes }),
    async dispose() {
      await routes.close();
    },
  };
});
