import { openDatabase } from "../storage/sqlite/database.js";
import { pushEndpointStoreContract } from "./contract.js";
import { SqlitePushEndpointStore } from "./sqlite.js";

pushEndpointStoreContract("sqlite", async () => {
  const db = openDatabase(":memory:");
  return { store: new SqlitePushEndpointStore(db), dispose: async () => void db.close() };
});
