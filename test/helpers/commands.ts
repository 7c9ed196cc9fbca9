import type { Redis } from "ioredis";
import { testRedis } from "./redis.js";

/** A command as ioredis sends it: its name, arguments and the promise of its reply. */
export interface SentCommand {
  readonly name: string;
  readonly args: unknown[];
  readonly promise: Promise<unknown>;
}

/**
 * Calls `see` with every command `client` (a Redis or a Cluster) sends from now on, before it goes
 * out: for tests that count a path's round trips or check EVAL against EVALSHA.
 */
export function onEachCommand(client: object, see: (command: SentCommand) => void): void {
  const target = client as { sendCommand: (command: unknown, ...rest: unknown[]) => unknown };
  const send = target.sendCommand.bind(target);
  target.sendCommand = (command, ...rest) => {
    see(command as SentCommand);
    return send(command, ...rest);
  };
}

/**
 * A connection of its own to the test Redis, connected, and every command it sends from then on
 * (for a script's EVAL-then-EVALSHA count on a fresh connection); quit by `defer` after the test.
 */
export async function countedRedis(
  defer: (close: () => Promise<unknown>) => void,
): Promise<{ counted: Redis; sent: SentCommand[] }> {
  const counted = testRedis();
  defer(() => counted.quit());
  await counted.ping();
  const sent: SentCommand[] = [];
  onEachCommand(counted, (command) => sent.push(command));
  return { counted, sent };
}
