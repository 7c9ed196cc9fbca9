import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { luaScript } from "../../src/infra/scripts.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";

let redis: Redis;
const prefix = uniquePrefix("lua-script");

beforeAll(() => {
  redis = testRedis();
});

afterAll(async () => {
  await deleteKeys(redis, prefix);
  await redis.quit();
});

/** Each key's string length, then the arguments: what the server saw, in order. */
const LENGTHS = luaScript<(number | string)[]>(
  "waRotatorTestLengths",
  "any",
  `
local out = {}
for i = 1, #KEYS do out[#out + 1] = redis.call('STRLEN', KEYS[i]) end
for i = 1, #ARGV do out[#out + 1] = ARGV[i] end
return out
`,
);

describe("luaScript", () => {
  it('takes as many keys as each call gives when declared with "any"', async () => {
    await redis.set(`${prefix}:a`, "xy");
    await redis.set(`${prefix}:b`, "xyz");
    expect(await LENGTHS.run(redis, [`${prefix}:a`], ["1"])).toEqual([2, "1"]);
    expect(await LENGTHS.run(redis, [`${prefix}:a`, `${prefix}:b`, `${prefix}:none`], [7, "z"])).toEqual([
      2,
      3,
      0,
      "7",
      "z",
    ]);
    expect(await LENGTHS.run(redis, [], ["only"])).toEqual(["only"]);
  });

  it("refuses a call with the wrong number of keys for a fixed count", async () => {
    const one = luaScript<number>("waRotatorTestOneKey", 1, "return redis.call('EXISTS', KEYS[1])");
    await expect(one.run(redis, [`${prefix}:a`, `${prefix}:b`], [])).rejects.toThrow(/takes 1 keys, got 2/);
    expect(await one.run(redis, [`${prefix}:none`], [])).toBe(0);
  });
});
