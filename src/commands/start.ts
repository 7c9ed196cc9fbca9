import type { Command } from "./command.js";
import { serve } from "./serve.js";

const command: Command = {
  run: (args, io) => serve(args, io, { worker: true, scheduler: true, health: true }),
};
export default command;
