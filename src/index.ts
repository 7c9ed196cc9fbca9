/**
 * The package's library entry (`import ... from "wa-invite-rotator"`): what a subscriber or a test
 * of one needs. The rotator itself runs through the CLI (`wa-invite-rotator start`); the Graph
 * simulator is served from `wa-invite-rotator/testing` (src/testing.ts).
 */
export {
  subscribe,
  type DeliverySource,
  type SubscribeOptions,
  type Subscription,
} from "./publish/subscriber.js";
export {
  canonicalPayload,
  decodeMessage,
  parseMessage,
  rotationMessageSchema,
  serializeMessage,
  signMessage,
  signMessageV1,
  signaturePayloadV1,
  verifySignature,
  type SignatureVersion,
  type VerifyOptions,
} from "./publish/message.js";
export { channelKeys, DEFAULT_CHANNEL, type ChannelKeys } from "./core/keys.js";
export type { RotationMessage, Trigger } from "./core/interfaces.js";
