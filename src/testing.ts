/**
 * The testing entry (`import ... from "wa-invite-rotator/testing"`): a local WhatsApp Graph API
 * simulator with fault injection, for demos and for tests of code around the rotator. It is kept
 * out of the library entry so a subscriber never loads it.
 */
export { startGraphSimulator, type GraphSimulator, type SimulatorOptions } from "./graph-sim/simulator.js";
export { simFaults, type Fault, type FaultMatch } from "./graph-sim/faults.js";
export type { SimCall } from "./graph-sim/http.js";
export type { SimAccountOptions, SimGroupInput, SimGroupView } from "./graph-sim/state.js";
