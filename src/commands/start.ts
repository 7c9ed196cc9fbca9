import type { Command } from "./command.js";
import { serve } from "./serve.js";

const command: Command = {
  usage: "start",
  summary: "run the scheduler, rotation workers and the health server until SIGTERM/SIGINT",
  run: (args, io) => serve(args, io, { worker: true, scheduler: true, health: true }),
};
export default command;
