import { UsageError } from "../core/errors.js";
import { startGraphSimulator, type SimulatorOptions } from "../graph-sim/simulator.js";
import { parseCommandArgs } from "./args.js";
import type { Command } from "./command.js";

const OPTIONS = {
  port: { type: "string", default: "0" },
  host: { type: "string", default: "127.0.0.1" },
  token: { type: "string", multiple: true },
  "phone-number-id": { type: "string" },
  group: { type: "string", multiple: true },
  "webhook-url": { type: "string" },
} as const;

/**
 * `graph-sim`: a local Graph API simulator for demos and tests. Prints its base URL as the first
 * stdout line, then runs until SIGTERM/SIGINT. Tokens: every `--token` plus WHATSAPP_ACCESS_TOKEN;
 * with neither, any non-empty bearer token is accepted. Faults are injected over its control API
 * (`/__sim/`, see src/graph/simulator.ts).
 */
const command: Command = {
  options: OPTIONS,
  async run(args, io) {
    const { values } = parseCommandArgs({ args, options: OPTIONS });
    const port = Number(values.port);
    if (!/^\d+$/.test(values.port) || port > 65535)
      throw new UsageError(`--port must be 0..65535, got ${values.port}`);

    const phoneNumberId = values["phone-number-id"];
    // The environment's token is the implicit `default` account's; --token ones are named by a hash.
    const envToken = io.env.WHATSAPP_ACCESS_TOKEN || undefined;
    const tokens: SimulatorOptions["tokens"] = {};
    for (const token of values.token ?? []) {
      if (token === "") throw new UsageError("--token must not be empty");
      tokens[token] = phoneNumberId ? { phoneNumberId } : {};
    }
    if (envToken) tokens[envToken] = { name: "default", ...(phoneNumberId && { phoneNumberId }) };
    const tokenCount = Object.keys(tokens).length;
    const options: SimulatorOptions = { port, host: values.host, ...(tokenCount > 0 && { tokens }) };
    if (values.group) {
      options.groups = values.group.map((id) => ({ id, ...(phoneNumberId && { phoneNumberId }) }));
    }

    // Group webhooks (joins, leaves, suspensions) go to --webhook-url, signed with WHATSAPP_APP_SECRET.
    const webhookUrl = values["webhook-url"];
    if (webhookUrl !== undefined) {
      const appSecret = io.env.WHATSAPP_APP_SECRET;
      if (!appSecret) throw new UsageError("--webhook-url needs WHATSAPP_APP_SECRET to sign the deliveries");
      options.webhook = { url: webhookUrl, appSecret };
    }
    const sim = await startGraphSimulator(options);
    io.out(sim.url);
    io.out(`# point the worker at it: GRAPH_API_BASE_URL=${sim.url} wa-invite-rotator start`);
    io.out(
      tokenCount > 0
        ? `# accepting ${tokenCount} token(s); control API: ${sim.url}/__sim/calls, /__sim/faults, /__sim/groups`
        : `# accepting any bearer token; control API: ${sim.url}/__sim/calls, /__sim/faults, /__sim/groups`,
    );

    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off("SIGTERM", stop);
        process.off("SIGINT", stop);
        resolve();
      };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
    });
    await sim.close();
    return 0;
  },
};
export default command;
