import type { ChildProcess } from "node:child_process";

/**
 * Child processes that must not outlive the process that started them. A bench or test that dies
 * half-way (an uncaught error, a stdout closed by `| head`) left its workers, simulator and private
 * redis-servers running: a worker kept retrying its jobs for an hour, loading the machine every
 * later measurement ran on. When this process exits (any exit Node sees; not SIGKILL), each child
 * still running gets SIGKILL.
 */
const owned = new Set<ChildProcess>();
let hooked = false;

function killOwned(): void {
  for (const child of owned) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

export function endWithThisProcess<T extends ChildProcess>(child: T): T {
  if (!hooked) {
    hooked = true;
    process.once("exit", killOwned);
  }
  owned.add(child);
  child.once("exit", () => owned.delete(child));
  return child;
}
