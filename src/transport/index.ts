// Public surface of the peer transport.
export { PeerTransport } from './peer-transport.js';
export type { DisconnectReason, PeerAddress, PeerStats, PeerTransportOptions, TransportLogger } from './options.js';
export {
  FrameDecoder, FrameType, DEFAULT_FRAME_LIMITS, FRAME_HEADER_BYTES, encodeFrame, encodeFrameHeader, encodeMessages,
  decodeMessages, encodeHello, decodeHello, encodeHelloAck, decodeHelloAck, encodeRefusal, decodeRefusal,
  encodeSnapshotBegin, decodeSnapshotBegin, encodeSnapshotChunkHeader, decodeSnapshotChunk, encodeSnapshotEnd,
  decodeSnapshotEnd,
} from './codec.js';
export type { Channel, Frame, FrameDecoderOptions, FrameTypeName, Hello, HelloAck, Refusal, SnapshotBegin, SnapshotEnd } from './codec.js';
export { PROTOCOL_VERSION, MIN_COMPATIBLE_VERSION, negotiateVersion, judgeHello } from './handshake.js';
export type { VersionRange, HelloVerdict, AcceptorIdentity } from './handshake.js';
export { assertTransportSecurity, isLoopbackHost } from './security.js';
export type { TlsFiles, TlsSetting } from './security.js';
export { crc32c } from '../lib/crc32c.js';
export {
  TransportError, FrameError, HandshakeRefused, PeerUnknown, TransportClosed, SnapshotTransferFailed, InsecureTransport,
  TransportConfigError,
} from './errors.js';
