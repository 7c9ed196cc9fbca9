import { describe, expect, it } from "vitest";
import { AccountFailingError, LockLostError, StopError } from "../../src/core/errors.js";
import { GraphError, type GraphErrorInit } from "../../src/graph/errors.js";
import { disposition } from "../../src/rotation/worker.js";

const graphError = (init: Partial<GraphErrorInit>) =>
  new GraphError({
    code: "GRAPH_TRANSIENT",
    action: "retry",
    scope: "request",
    operation: "create-invite-link",
    detail: "test",
    groupId: "G1",
    ...init,
  });

const withGate = { gate: true, finalAttempt: false };

describe("disposition: what a failed attempt means for its job", () => {
  it("a throttle waits without using an attempt, even on the last one", () => {
    const error = graphError({ code: "GRAPH_THROTTLED", action: "throttle", scope: "account" });
    expect(disposition(error, { gate: true, finalAttempt: true })).toMatchObject({
      action: "throttled",
      error,
    });
    expect(disposition(error, { gate: false, finalAttempt: false }).action).toBe("throttled");
  });

  it("a lost group lock tries again soon, by class or by code", () => {
    expect(disposition(new LockLostError("G1"), withGate).action).toBe("lock-lost");
    const foreign = Object.assign(new Error("lost"), { code: "E_LOCK_LOST" });
    expect(disposition(foreign, withGate).action).toBe("lock-lost");
  });

  it("a failing account holds the rotation only when a gate runs", () => {
    const error = new AccountFailingError("acme", "GRAPH_AUTH", "G1");
    expect(disposition(error, withGate)).toMatchObject({ action: "held", error });
    expect(disposition(error, { gate: false, finalAttempt: false })).toMatchObject({
      action: "fail",
      code: "E_ACCOUNT_FAILING",
      stop: true,
    });
  });

  it("a rejected token fails for good and marks the account, when a gate runs", () => {
    const error = graphError({ code: "GRAPH_AUTH", action: "stop", scope: "account", graphCode: 190 });
    expect(disposition(error, withGate)).toMatchObject({
      action: "fail",
      code: "GRAPH_AUTH",
      stop: true,
      tokenFailed: true,
    });
    expect(disposition(error, { gate: false, finalAttempt: false })).toMatchObject({ tokenFailed: false });
  });

  it("a retryable error retries until the last attempt, which fails without stop", () => {
    const error = graphError({});
    expect(disposition(error, withGate)).toMatchObject({
      action: "retry",
      code: "GRAPH_TRANSIENT",
      stop: false,
    });
    expect(disposition(error, { gate: true, finalAttempt: true })).toMatchObject({
      action: "fail",
      stop: false,
    });
  });

  it("other errors: their code, or E_ROTATION; retry: false stops; a thrown string is coerced", () => {
    expect(disposition(new Error("boom"), withGate)).toMatchObject({ action: "retry", code: "E_ROTATION" });
    expect(disposition(new StopError("E_UNKNOWN_ACCOUNT", "no such account"), withGate)).toMatchObject({
      action: "fail",
      code: "E_UNKNOWN_ACCOUNT",
      stop: true,
    });
    const coerced = disposition("text", withGate);
    expect(coerced.action).toBe("retry");
    expect(coerced.error).toBeInstanceOf(Error);
  });
});
