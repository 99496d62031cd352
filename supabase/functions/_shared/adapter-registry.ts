// The adapter names a caller may target through this function.
//
// Adapters are implemented once, in Python (app/adapters, one explicit registry); this is only
// the list of their names, so that a job for an integration whose adapter the daemon cannot
// run is refused here with a clear message instead of failing later in the daemon.
// tests/supabase/test_adapter_registry.py checks BUILTIN_ADAPTERS against
// `integration-dispatch adapters list --json`, so the two can never drift.
//
// Third-party adapters (registered through the Python entry point) are allowed by naming them
// in DISPATCH_EXTRA_ADAPTERS (comma-separated), a function secret.

export const BUILTIN_ADAPTERS: readonly string[] = Object.freeze([
  "dynamics_bc",
  "noop",
  "webhook",
  "xledger",
]);

const NAME = /^[a-z][a-z0-9_]{0,62}$/;

/** Built-in names plus DISPATCH_EXTRA_ADAPTERS; throws (naming the variable) on a bad name. */
export function allowedAdapters(extra: string | undefined): ReadonlySet<string> {
  const names = new Set(BUILTIN_ADAPTERS);
  for (const raw of (extra ?? "").split(",")) {
    const name = raw.trim();
    if (!name) continue;
    if (!NAME.test(name)) {
      throw new Error(
        `DISPATCH_EXTRA_ADAPTERS: '${name.slice(0, 40)}' is not an adapter name (lower case, digits, _)`,
      );
    }
    names.add(name);
  }
  return names;
}
