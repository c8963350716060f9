// The same worker as index.js, built as an exported incoming handler so
// Berth can reuse warm instances (`berth script settings hello-js
// '{"isolation": "reuse"}'`). See incoming-handler.js for what differs.
import worker from "./worker.js";
import { incomingHandlerFor } from "./incoming-handler.js";

export const incomingHandler = incomingHandlerFor(worker);
