import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "./logger.js";

/** An HTTP server that is listening: where to reach it, and how to stop it. */
export interface Listening {
  readonly port: number;
  /** `http://host:port`, reachable from this machine (a wildcard bind is reached on loopback). */
  readonly url: string;
  /** Stops accepting and ends every open connection; idempotent, never rejects. */
  close(): Promise<void>;
}

/**
 * Listens on `host:port` (port 0: any free port). A failure to listen (the port taken) rejects;
 * later server errors are logged as `<name> server error`. The health server and the gateway share it.
 */
export async function listen(
  server: Server,
  options: { port: number; host: string; name: string; log: Logger },
): Promise<Listening> {
  const { host, name, log } = options;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => log.error({ err: error }, `${name} server error`));
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    url: `http://${reachableHost(host)}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close((error) => {
          if (error) log.warn({ err: error }, `${name} server close failed`);
          resolve();
        });
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** The host to put in a URL: wildcard binds are reached on loopback; IPv6 literals need brackets. */
function reachableHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
