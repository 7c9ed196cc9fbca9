import type { RedisClient } from "./redis.js";

/**
 * A Lua script registered once per client (ioredis `defineCommand`): the first call on a connection
 * sends its text (EVAL), every later one only its SHA1 (EVALSHA), and a server that lost its script
 * cache (a restart, a failover, SCRIPT FLUSH) gets the text again by itself. Works the same on one
 * node, a Sentinel-managed master and a Cluster (each node's connection loads it on first use).
 *
 * `R` is the reply's shape as the script returns it (Lua numbers arrive as integers, false as null).
 */
export interface LuaScript<R> {
  /** The command's name on the client: unique per script text. */
  readonly name: string;
  /** How many keys it takes; `"any"`: as many as each call gives (sent as numkeys first). */
  readonly keys: number | "any";
  readonly lua: string;
  run(redis: RedisClient, keys: readonly string[], args: readonly ScriptArg[]): Promise<R>;
}

/** An ARGV value: a Buffer goes to Redis as its bytes, unconverted. */
export type ScriptArg = string | number | Buffer;

type ScriptCommand = (...args: ScriptArg[]) => Promise<unknown>;

const names = new Map<string, string>();

/** Declares a script; `name` must be unique in the process (a camel-case command name). */
export function luaScript<R>(name: string, keys: number | "any", lua: string): LuaScript<R> {
  const known = names.get(name);
  if (known !== undefined && known !== lua) throw new Error(`two Lua scripts are named ${name}`);
  names.set(name, lua);
  const registered = new WeakSet<RedisClient>();
  return {
    name,
    keys,
    lua,
    run(redis, keyList, args) {
      if (keys !== "any" && keyList.length !== keys) {
        return Promise.reject(new Error(`script ${name} takes ${keys} keys, got ${keyList.length}`));
      }
      if (!registered.has(redis)) {
        redis.defineCommand(name, keys === "any" ? { lua } : { numberOfKeys: keys, lua });
        registered.add(redis);
      }
      const command = (redis as unknown as Record<string, ScriptCommand>)[name]!;
      if (keys === "any") return command.call(redis, keyList.length, ...keyList, ...args) as Promise<R>;
      return command.call(redis, ...keyList, ...args) as Promise<R>;
    },
  };
}
