import { existsSync } from "node:fs";
import type { Redis } from "ioredis";
import jsQRModule from "jsqr";
import { chromium, devices, type Browser } from "playwright-core";
import { PNG } from "pngjs";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startGatewayFixture, type GatewayFixture } from "../helpers/gateway.js";
import { testRedis } from "../helpers/redis.js";

/**
 * The join page in a real browser: headless Chromium from Debian's `chromium` package, driven by
 * playwright-core through `executablePath` (no browser download). On a desktop viewport the page
 * shows a QR code that decodes to the current invite link, and the link itself, loading nothing
 * from anywhere else; on a phone the visit's navigation goes straight to the invite link.
 */
// jsqr is CommonJS with a `default` export: typed as the module under NodeNext, a function at run time.
const jsQR = ((jsQRModule as unknown as { default?: typeof jsQRModule.default }).default ??
  jsQRModule) as unknown as typeof jsQRModule.default;

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let browser: Browser;
let redis: Redis;
let fx: GatewayFixture;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install Debian's browser with \`apt-get install -y chromium\` ` +
        "(or point CHROMIUM_PATH at one)",
    );
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

afterAll(async () => {
  await browser?.close();
});

beforeEach(async () => {
  redis = testRedis();
  fx = await startGatewayFixture({
    redis,
    name: "browser",
    links: "  - slug: spring\n    groups: [G1, G2]",
    groups: ["G1", "G2"],
  });
});

afterEach(async () => {
  await fx.close();
  await redis.quit();
});

describe("the join page in Chromium", () => {
  it("on a desktop shows a QR code of the current link and the link, and loads nothing else", async () => {
    const link = await fx.rotate("G1");
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const requests: string[] = [];
    const violations: string[] = [];
    page.on("request", (request) => requests.push(request.url()));
    page.on("console", (message) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
    });
    const response = await page.goto(`${fx.url}/join/spring`);
    expect(response?.status()).toBe(200);

    await expect.poll(() => page.locator("#invite-link").textContent()).toBe(link);
    const qr = page.locator('svg[aria-label^="QR code"]');
    const png = PNG.sync.read(await qr.screenshot());
    const decoded = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
    expect(decoded?.data).toBe(link);

    expect(requests.every((url) => url.startsWith(fx.url))).toBe(true);
    expect(violations).toEqual([]);
    await context.close();
  });

  it("on a phone lands on the invite link, and after a rotation on the new one", async () => {
    const context = await browser.newContext({ ...devices["Pixel 7"] });
    const page = await context.newPage();
    // No network here: the browser's top-level navigation to the link is what shows where it lands
    // (it then fails to resolve chat.whatsapp.com; Playwright cannot answer a redirect's target).
    const landing = async () => {
      const navigation = page.waitForRequest(
        (r) => r.isNavigationRequest() && r.url().startsWith("https://"),
      );
      await page.goto(`${fx.url}/join/spring`).catch(() => undefined);
      const request = await navigation;
      expect(request.redirectedFrom()?.url()).toBe(`${fx.url}/join/spring`);
      return request.url();
    };
    const first = await fx.rotate("G2");
    expect(await landing()).toBe(first);
    const second = await fx.rotate("G2");
    expect(await landing()).toBe(second);
    await context.close();
  });
});
