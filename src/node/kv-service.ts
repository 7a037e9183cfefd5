// The replicated KV as the HTTP API's KvService (src/api/ports.ts): reads go
// to this node's KvStateMachine (the applied index to its MachineRegistry), writes and read barriers through the
// replica (QuorateNode.propose / readBarrier). Nothing of Raft leaks out.
import type { KvService } from '../api/ports.js';
import type { KvMachineReader } from '../state/index.js';

/** What the adapter needs of a node; members are looked up at call time. */
export interface KvNode extends Pick<KvService, 'propose' | 'readBarrier'> {
  readonly kv: KvMachineReader;
  readonly machines: { readonly appliedIndex: number };
}

export function kvServiceOf(node: KvNode): KvService {
  return {
    get appliedIndex() {
      return node.machines.appliedIndex;
    },
    get revision() {
      return node.kv.revision;
    },
    get: (key) => node.kv.get(key),
    range: (prefix, limit, startAfter) => node.kv.range(prefix, limit, startAfter),
    watch: (prefix, fromRevision, listener, options) => node.kv.watch(prefix, fromRevision, listener, options),
    checksum: () => node.kv.checksum(),
    propose: (command, options) => node.propose(command, options),
    readBarrier: (timeoutMs) => node.readBarrier(timeoutMs),
  };
}
