import { startGraphSimulator } from "../src/graph-sim/simulator.js";

/**
 * The Graph simulator in a process of its own, so a bench's CPU figures are the rotator's alone.
 * `node dist/bench/sim-process.js [latencyMs]` prints its base URL, then runs until SIGTERM.
 */
const latencyMs = Number(process.argv[2] ?? 0);
const sim = await startGraphSimulator({ latencyMs });
process.stdout.write(`${sim.url}\n`);
process.once("SIGTERM", () => void sim.close().then(() => process.exit(0)));
