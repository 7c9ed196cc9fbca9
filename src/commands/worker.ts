import type { Command } from "./command.js";
import { serve, SERVE_OPTIONS } from "./serve.js";

const command: Command = {
  options: SERVE_OPTIONS,
  run: (args, io) => serve(args, io, { worker: true, scheduler: false, health: true }),
};
export default command;
