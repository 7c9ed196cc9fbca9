import type { Redis } from "ioredis";
import { createAccountGate } from "../../src/accounts/gate.js";
import { createApp, type App, type AppRoles } from "../../src/app.js";
import { parseConfigText, resolveAccount, type ResolvedConfig } from "../../src/config/config.js";
import { createGraphClient } from "../../src/graph/client.js";
import { createGroupLock } from "../../src/rotation/group-lock.js";
import {
  systemClock,
  type PublisherPort,
  type RotationJobData,
  type RotationMessage,
  type Trigger,
} from "../../src/core/interfaces.js";
import { scheduledRotationId } from "../../src/rotation/queue.js";
import { parseMessage } from "../../src/publish/message.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { createLogger, type Logger } from "../../src/infra/logger.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { createRotationStateStore } from "../../src/rotation/state.js";
import {
  createRotationWorker,
  type AttemptEvent,
  type RotationJobResult,
  type RotationWorker,
} from "../../src/rotation/worker.js";
import { loadSettings } from "../../src/config/settings.js";
import { testRedisUrl, uniquePrefix } from "./redis.js";

export const TEST_TOKEN = "test-token-0123456789";

/** A policy file with one policy over the given groups, on the given channel. */
export function policyYaml(groups: string[], channel: string, schedule = "0 3 * * *"): string {
  return [
    "policies:",
    "  - name: test",
    `    schedule: "${schedule}"`,
    `    channel: "${channel}"`,
    `    groups: [${groups.map((g) => JSON.stringify(g)).join(", ")}]`,
  ].join("\n");
}

export interface TestRotatorOptions {
  graphUrl: string;
  prefix?: string;
  yaml?: string;
  env?: Record<string, string>;
  roles?: Partial<AppRoles>;
  /** Default: a logger at LOG_LEVEL (silent). */
  logger?: Logger;
}

/** An in-process app (composition root) against the test Redis and a simulator. Call `stop()`. */
export async function startTestRotator(options: TestRotatorOptions): Promise<App> {
  const prefix = options.prefix ?? uniquePrefix("app");
  const env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    GRAPH_API_BASE_URL: options.graphUrl,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    HEALTH_PORT: "0",
    LOG_LEVEL: "silent",
    ROTATOR_CONCURRENCY: "8",
    ...options.env,
  };
  const settings = loadSettings(env);
  const config = parseConfigText(
    options.yaml ?? policyYaml(["G-placeholder"], "test:links"),
    "test.yaml",
    env,
    {
      graphApiVersion: settings.GRAPH_API_VERSION,
    },
  );
  const app = createApp({
    settings,
    logger: options.logger ?? createLogger(settings.LOG_LEVEL),
    config,
    roles: { worker: true, scheduler: false, health: false, ...options.roles },
  });
  await app.start();
  return app;
}

/** A rotation as a policy's fire enqueues it: policy `test`, account `default`, fired now, unless given. */
export function scheduledRotation(
  groupId: string,
  channel: string,
  options: { policy?: string; account?: string; fireAt?: number; trigger?: Trigger } = {},
): RotationJobData {
  const { policy = "test", account = "default", fireAt = Date.now(), trigger = "schedule" } = options;
  return {
    rotationId: scheduledRotationId(policy, fireAt, groupId),
    groupId,
    account,
    policy,
    channel,
    trigger,
    fireAt,
    requestedAt: fireAt,
  };
}

/** A log line as pino writes it. */
export type LogLine = Record<string, unknown> & { level: string; msg: string };

/** A logger at `level` whose lines land in `lines` (parsed). */
export function capturingLogger(lines: LogLine[], level = "debug"): Logger {
  return createLogger(level, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
}

export interface TestWorker {
  readonly keys: Keys;
  readonly worker: RotationWorker;
  /** The live config the worker sees; assign `current` to reload. */
  readonly config: { current: ResolvedConfig };
  readonly logs: LogLine[];
  readonly attempts: AttemptEvent[];
  close(): Promise<void>;
}

export interface TestWorkerOptions {
  graphUrl: string;
  redis: Redis;
  prefix: string;
  yaml: string;
  env?: Record<string, string>;
  publisher?: (real: PublisherPort) => PublisherPort;
}

/**
 * A rotation worker wired as the composition root wires it (real Graph client, state, lock,
 * publisher and account gate on the test Redis), with hooks the app does not offer: the live
 * config, a wrapped publisher, captured logs and attempt events. Call `close()`.
 */
export async function startTestWorker(options: TestWorkerOptions): Promise<TestWorker> {
  const { redis } = options;
  const keys = createKeys(options.prefix);
  const env = { WHATSAPP_ACCESS_TOKEN: TEST_TOKEN, ...options.env };
  const config = { current: parseConfigText(options.yaml, "test.yaml", env, { graphApiVersion: "v23.0" }) };
  const logs: LogLine[] = [];
  const attempts: AttemptEvent[] = [];
  const logger = capturingLogger(logs);
  const gate = createAccountGate({ redis, keys, logger, recheckMs: 500 });
  const graph = createGraphClient({ baseUrl: options.graphUrl });
  const real = createPublisher({ redis, keys });
  const connection = redis.duplicate({ maxRetriesPerRequest: null });
  const worker = createRotationWorker({
    keys,
    connection,
    concurrency: 4,
    logger,
    gate,
    config: () => config.current,
    onAttempt: (event) => attempts.push(event),
    deps: {
      graph,
      publisher: options.publisher ? options.publisher(real) : real,
      state: createRotationStateStore(redis, keys),
      lock: createGroupLock(redis, keys),
      resolveAccount: (name) => resolveAccount(config.current, name),
      beforeGraphCall: gate.beforeGraphCall,
      gateCheck: gate.checkCall,
      clock: systemClock,
      logger,
      // Short, like the test timeouts: an unsure call's rotation reads its link back soon.
      unsureSettleMs: 200,
    },
  });
  void worker.run().catch(() => {});
  await worker.waitUntilReady();
  return {
    keys,
    worker,
    config,
    logs,
    attempts,
    async close() {
      await worker.close();
      await graph.close();
      connection.disconnect();
    },
  };
}

/**
 * The whole message a finished rotation job names: the job keeps only a masked link (what a
 * dashboard may show), so the message is read from the channel's `C:latest`.
 */
export async function messageOf(redis: Redis, result: RotationJobResult): Promise<RotationMessage> {
  if ("skipped" in result) throw new Error(`rotation ${result.rotation_id} was skipped: ${result.skipped}`);
  const raw = await redis.hget(`${result.channel}:latest`, result.group_id);
  if (!raw) throw new Error(`no message of group ${result.group_id} in ${result.channel}:latest`);
  const message = parseMessage(raw);
  if (message.rotation_id !== result.published_rotation_id) {
    throw new Error(
      `${result.channel}:latest holds ${message.rotation_id}, not ${result.published_rotation_id}`,
    );
  }
  return message;
}
