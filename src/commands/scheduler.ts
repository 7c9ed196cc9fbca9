import type { Command } from "./command.js";
import { serve } from "./serve.js";

const command: Command = {
  usage: "scheduler",
  summary: "run the scheduler (and the health server) until SIGTERM/SIGINT; replicas may share one Redis",
  run: (args, io) => serve(args, io, { worker: false, scheduler: true, health: true }),
};
export default command;
