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
