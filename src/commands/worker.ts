import type { Command } from "./command.js";
import { serve } from "./serve.js";

const command: Command = {
  usage: "worker",
  summary: "run rotation workers (and the health server) until SIGTERM/SIGINT",
  run: (args, io) => serve(args, io, { worker: true, scheduler: false, health: true }),
};
export default command;
