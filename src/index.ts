// The package's public surface (`import … from 'quorate'`): the client
// library, the configuration loader and its types, and the error codes a node
// answers with. Everything else under dist/ is internal: the package's
// `exports` lets nothing else be imported. `quorate/client` is the client
// library alone.

// The client library (also `quorate/client`).
export {
  QuorateClient,
  QuorateClientError,
  QuorateHttpError,
  CommitUnknownError,
  UnavailableError,
} from './api/client.js';
export type {
  QuorateClientOptions,
  Consistency,
  HealthKind,
  KvEntry,
  KvPutResult,
  KvDeleteResult,
  KvListResult,
  TxnCompare,
  TxnOp,
  TxnRequest,
  TxnResult,
  WatchEvent,
  HealthResult,
  ClusterHealthNode,
  ClusterHealth,
  ClusterStatus,
  ClusterDump,
  FailoverSafeResult,
} from './api/client.js';

// Configuration: load and validate a node's config file (docs/configuration.md).
export { loadConfig, parseConfig, applyEnvOverrides, ConfigError } from './config/index.js';
export type { QuorateConfig, ParseOptions, ConfigIssue, RawConfig, Endpoint, AppliedOverride } from './config/index.js';

// The error codes of the HTTP API (docs/api.md): a QuorateHttpError's `code`
// is one of these, answered with ERROR_STATUS[code].
export { ERROR_STATUS, isErrorCode } from './api/errors.js';
export type { ErrorCode } from './api/errors.js';
