// integration-dispatch: the Supabase-native way in. Verifies the caller, validates the
// request and enqueues through dispatch.enqueue_job, the same SQL function the daemon's API
// uses; the Python daemon runs the job. No vendor logic, no vendor secrets here.
//
// Behaviour lives in handler.ts (a pure function of request and deps); this file only reads
// the environment and serves. Locally (plain Deno, no gateway) set
// INTEGRATION_DISPATCH_PORT to listen on 127.0.0.1:<port>; on the platform Deno.serve's
// address is the runtime's.

import { ConfigError, loadConfig } from "shared/credential-provider.ts";
import { allowedAdapters } from "shared/adapter-registry.ts";
import { Verifier } from "shared/auth.ts";
import type { Deps } from "shared/types.ts";
import { handle, misconfigured } from "./handler.ts";
import { createDb } from "./db.ts";

function build(): (request: Request) => Response | Promise<Response> {
  try {
    const config = loadConfig(Deno.env);
    let db;
    try {
      db = createDb(config.dbUrl);
    } catch {
      // The driver's own message may quote the URL, password included: never pass it on.
      throw new ConfigError("the database URL (DISPATCH_DB_URL or SUPABASE_DB_URL) cannot be parsed by the driver");
    }
    const deps: Deps = {
      db,
      auth: new Verifier(config),
      adapters: allowedAdapters(config.extraAdapters),
      maxBodyBytes: config.maxBodyBytes,
      log: (event) => console.log(JSON.stringify(event)),
    };
    return (request) => handle(request, deps);
  } catch (e) {
    // One line naming the variable (never a value); every request then answers 503.
    return misconfigured((e as Error).message.split("\n")[0], (line) => console.error(line));
  }
}

const serve = build();
const port = Deno.env.get("INTEGRATION_DISPATCH_PORT");
if (port) {
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(port),
    onListen: ({ hostname, port }) => console.error(`integration-dispatch: listening on http://${hostname}:${port}`),
  }, serve);
} else {
  Deno.serve(serve);
}
