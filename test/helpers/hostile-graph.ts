import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { randomBytes } from "node:crypto";

/**
 * A hostile Graph server for the tests (beside the simulator): per group, a script of bad answers
 * to POST …/invite_link, played one per call, after which it behaves. It keeps each group's current
 * link like Graph: only an answered, well-formed POST creates one; DELETE removes it; GET reads it.
 */
export type HostileAnswer =
  /** 503 transient, the Authorization header echoed into every body field and many headers. */
  | "echo"
  /** 200 with a 900,000-character link. */
  | "giant-link"
  /** 200 with a link carrying NUL, ESC and bidi characters. */
  | "control-link"
  /** 200 with a 3 MB body. */
  | "huge-body"
  /** 200 whose body drips a byte every 200 ms. */
  | "slow-drip"
  /** 302 to another host. */
  | "redirect"
  /** A thousand headers, each echoing the token. */
  | "many-headers"
  /** Headers, half a body, then the connection is destroyed. */
  | "cut-body"
  /** 429 (80007) asking to wait for ever: `Retry-After` of 3 million years and a usage header's year. */
  | "absurd-wait"
  /** 429 (131208) whose `Retry-After` and usage header are garbage echoing the token. */
  | "garbage-wait";

export interface HostileGraph {
  readonly url: string;
  /** The group's current link as Graph has it (undefined when it has none). */
  current(groupId: string): string | undefined;
  close(): Promise<void>;
}

export async function startHostileGraph(scripts: Record<string, HostileAnswer[]>): Promise<HostileGraph> {
  const links = new Map<string, string>();
  const played = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const auth = req.headers.authorization ?? "";
    const match = /^\/v[\d.]+\/([^/]+)\/invite_link$/.exec(new URL(req.url ?? "/", "http://x").pathname);
    const group = match ? decodeURIComponent(match[1]!) : undefined;
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    if (!group) return json(400, { error: { message: "unsupported", code: 100 } });
    if (req.method === "DELETE") {
      links.delete(group);
      return json(200, { success: true });
    }
    if (req.method === "GET") {
      const link = links.get(group);
      return json(200, link ? { invite_link: link } : { messaging_product: "whatsapp" });
    }
    const step = played.get(group) ?? 0;
    played.set(group, step + 1);
    const answer = scripts[group]?.[step];
    const token = auth.replace(/^Bearer\s+/i, "");
    switch (answer) {
      case undefined: {
        const link = `https://chat.whatsapp.com/${randomBytes(16).toString("base64url")}`;
        links.set(group, link);
        return json(200, { messaging_product: "whatsapp", invite_link: link });
      }
      case "echo":
        return json(
          503,
          {
            error: {
              message: `bad token ${auth}`,
              type: token,
              code: 2,
              is_transient: true,
              error_subcode: token,
              error_user_title: token.slice(3),
              error_user_msg: `${token.slice(0, 12)}…${token.slice(-9)}`,
              error_data: { details: auth, token },
              fbtrace_id: token,
            },
          },
          {
            "x-echo-authorization": auth,
            "www-authenticate": `Bearer error="${token}"`,
            "x-app-usage": JSON.stringify({ call_count: 10, note: token }),
            "x-business-use-case-usage": JSON.stringify({ "1": [{ type: auth, call_count: 5 }] }),
            "x-fb-trace-id": token,
          },
        );
      case "giant-link":
        return json(200, { invite_link: `https://chat.whatsapp.com/${"A".repeat(900_000)}` });
      case "control-link":
        return json(200, { invite_link: "https://chat.whatsapp.com/Ab\u0000Cd\u001b[2J\u202eEfGhIj" });
      case "huge-body":
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(`{"invite_link":"${"x".repeat(3 * 1024 * 1024)}"}`);
      case "slow-drip": {
        res.writeHead(200, { "content-type": "application/json" });
        const body = `{"invite_link":"https://chat.whatsapp.com/${"B".repeat(20)}","pad":"${token}"}`;
        let i = 0;
        const timer = setInterval(() => {
          if (i >= body.length || res.destroyed) {
            clearInterval(timer);
            timers.delete(timer);
            return void res.end();
          }
          res.write(body[i++]!);
        }, 200);
        timers.add(timer);
        return;
      }
      case "redirect":
        res.writeHead(302, { location: `http://evil.example/${token}`, "x-echo": auth });
        return res.end(`<html><title>${auth}</title></html>`);
      case "many-headers": {
        const headers: Record<string, string> = {};
        for (let i = 0; i < 1000; i++) headers[`x-h${i}`] = token;
        return json(200, { invite_link: "https://chat.whatsapp.com/CCCCCCCCCCCC" }, headers);
      }
      case "cut-body":
        res.writeHead(200, { "content-type": "application/json", "content-length": "400" });
        res.write(`{"invite_link":"https://chat.whatsapp.com/DDDDDDDDDDDDDDD","x":"${token}`);
        return void setTimeout(() => res.destroy(), 20);
      case "absurd-wait":
        return json(
          429,
          { error: { message: "Application request limit reached", code: 80007 } },
          {
            "retry-after": "99999999999999",
            "x-business-use-case-usage": JSON.stringify({
              "1": [
                {
                  type: "whatsapp_business_management",
                  call_count: 100,
                  estimated_time_to_regain_access: 525_600,
                },
              ],
            }),
          },
        );
      case "garbage-wait":
        return json(
          429,
          { error: { message: `rate limit hit for ${auth}`, code: 131208 } },
          { "retry-after": `soon ${token}`, "x-business-use-case-usage": `{"1":[{"type":"${token}",` },
        );
    }
  };

  const server: Server = createServer(handle);
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    current: (groupId) => links.get(groupId),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearInterval(timer);
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
