// Public surface of the peer transport.
export { PeerTransport } from './peer-transport.js';
export { snapshotFile } from './snapshot.js';
export type { ReceivedSnapshotFile } from './snapshot.js';
export type { DisconnectReason, PeerAckInfo, PeerAddress, PeerHelloInfo, PeerStats, PeerTransportOptions, TransportLogger } from './options.js';
export {
  FrameDecoder, FrameType, DEFAULT_FRAME_LIMITS, FRAME_HEADER_BYTES, encodeFrame, encodeFrameHeader, encodeMessages,
  decodeMessages, encodeHelloOpen, decodeHelloOpen, encodeChallenge, decodeChallenge, encodeAuth, decodeAuth,
  encodeHelloAck, decodeHelloAck, encodeRefusal, decodeRefusal, encodeSnapshotBegin, decodeSnapshotBegin,
  encodeSnapshotChunkHeader, decodeSnapshotChunk, encodeSnapshotEnd, decodeSnapshotEnd, scanMsgpack, isPeerApiUrl,
  REFUSED, INCARNATION_MAX,
} from './codec.js';
export type {
  Auth, Challenge, Channel, ClusterSettings, Frame, FrameDecoderOptions, FrameTypeName, Hello, HelloAck, HelloOpen, Refusal, SnapshotBegin, SnapshotEnd,
} from './codec.js';
export {
  PROTOCOL_VERSION, MIN_COMPATIBLE_VERSION, CLUSTER_SECRET_MIN_BYTES, SETTINGS_VERSION, negotiateVersion, judgeHello, dialerMac, acceptorMac, settingsDiffer,
} from './handshake.js';
export type { VersionRange, HelloVerdict, AcceptorIdentity, SettingDifference } from './handshake.js';
export {
  assertTransportSecurity, isLoopbackHost, loadClusterSecret, newClusterSecret, formatClusterSecret, certificateNamesHost,
} from './security.js';
export type { TlsFiles, TlsSetting } from './security.js';
export { crc32c } from '../lib/crc32c.js';
export {
  TransportError, FrameError, HandshakeRefused, PeerUnknown, TransportClosed, SnapshotTransferFailed, InsecureTransport,
  TransportConfigError,
} from './errors.js';
