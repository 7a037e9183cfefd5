// Public surface of the config module (SPEC §3).
export { ConfigError, type ConfigIssue } from './errors.js';
export { loadConfig, parseConfig, votersOf, majorityOf, isLoopback, type QuorateConfig, type ParseOptions } from './load.js';
export { configSchema, parseEndpoint, ROLES, COORDINATIONS, FAILOVER_MODES, DATABASE_MODES, type RawConfig, type Endpoint } from './schema.js';
export { applyEnvOverrides, type AppliedOverride } from './env.js';
export { UNBUILT, unbuiltIssues, type UnbuiltKey } from './unbuilt.js';
