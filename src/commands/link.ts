import { ConfigError, UsageError } from "../core/errors.js";
import { parseDuration } from "../core/durations.js";
import { signedQuery } from "../gateway/signed.js";
import { parseCommandArgs } from "./args.js";
import type { Command } from "./command.js";
import { loadRuntime } from "./runtime.js";

/** Default lifetime of a signed join URL when `--ttl` is not given. */
const DEFAULT_TTL = "7d";

const OPTIONS = { ttl: { type: "string" }, uses: { type: "string" } } as const;

/**
 * `link <slug> [--ttl <duration>] [--uses N]`: prints a signed join URL of a link of the policy
 * file, `GATEWAY_PUBLIC_URL/join/<slug>?exp=…&uses=…&sig=…`, that expires after `--ttl` (default
 * 7d) and admits at most N visits (default: no limit). Exit 2 on an unknown slug or without
 * `ROTATOR_LINK_SECRET`.
 */
const command: Command = {
  options: OPTIONS,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs({ args, allowPositionals: true, options: OPTIONS });
    if (positionals.length !== 1) throw new UsageError("name exactly one link slug");
    const slug = positionals[0]!;
    const ttlMs = parseDuration(values.ttl ?? DEFAULT_TTL);
    if (ttlMs === undefined || ttlMs < 1_000) {
      throw new UsageError(`--ttl: not a duration of at least 1s (write 30m, 12h, 7d): ${values.ttl}`);
    }
    let uses: number | undefined;
    if (values.uses !== undefined) {
      uses = Number(values.uses);
      if (!/^\d+$/.test(values.uses) || !Number.isSafeInteger(uses) || uses < 1) {
        throw new UsageError(`--uses: a whole number of at least 1, got ${values.uses}`);
      }
    }
    const { settings, config } = await loadRuntime(io, { logLevel: "warn" });
    if (!config.links.some((link) => link.slug === slug)) {
      const known = config.links.map((link) => link.slug).join(", ") || "none";
      throw new ConfigError(config.file, [
        { path: "links", message: `no link with slug "${slug}" (links: ${known})` },
      ]);
    }
    const secret = settings.ROTATOR_LINK_SECRET;
    if (secret === undefined) {
      throw new ConfigError("environment", [
        {
          path: "ROTATOR_LINK_SECRET",
          message: "not set: signed join URLs need it (the gateway needs the same value)",
        },
      ]);
    }
    const exp = Math.ceil((Date.now() + ttlMs) / 1000);
    io.out(`${settings.GATEWAY_PUBLIC_URL}/join/${slug}?${signedQuery({ slug, exp, uses }, secret)}`);
    return 0;
  },
};
export default command;
