/**
 * The cluster's timings and limits (DESIGN §5, §7). Every loop, window and
 * retry has a stated bound here.
 */

export interface ClusterConfig {
  /** Leader heartbeat period (`--heartbeat-interval`, 50 ms). */
  readonly heartbeatIntervalMs: number
  /** No word from the leader this long → election (`--failure-timeout`, 300 ms). */
  readonly failureTimeoutMs: number
  /** Up to this much random extra on the failure timeout, drawn from the seeded Random (150 ms). */
  readonly failureJitterMs: number
  /** A member silent this long is removed, down to `minServers` voters (`--removal-timeout`, 30 s). */
  readonly removalTimeoutMs: number
  /** Voters the group never shrinks below by removal (`--min-servers`, 3). */
  readonly minServers: number
  /** Servers started together (`--expect`, 1): the group forms only once this many are heard. */
  readonly expect: number
  /** How long a group-less server listens before forming a group (1 s). */
  readonly discoveryWindowMs: number
  /** Period of discovery broadcasts and join requests while looking for a group (200 ms). */
  readonly discoveryIntervalMs: number
  /** Period of leader announcements, so groups that formed apart meet (2 s). */
  readonly announceIntervalMs: number
  /** A batch unacknowledged this long is resent from the follower's match point. */
  readonly retransmitTimeoutMs: number
  /**
   * Batches in flight per follower. It sets how fast a follower that restarted catches up, and a
   * leader elected right after such a restart commits nothing until that follower holds its
   * no-op: with 8 (8 KB per round trip) a kill of the leader seconds after a restart took ~650 ms
   * to the first commit under load, with 64 ~340 ms.
   */
  readonly windowBatches: number
  /** Bytes of entries in one Replicate (the datagram limit minus the envelope). */
  readonly batchBytesMax: number
  /** A checkpoint is taken after this many applied entries… */
  readonly checkpointEntries: number
  /** …or this long after the last one, if anything was applied since. */
  readonly checkpointIntervalMs: number
  /** Entries a checkpoint keeps in memory before its seq, so a follower that far behind catches up from the log. */
  readonly catchUpEntries: number
  /** Characters of snapshot text per chunk (escaping may double them on the wire: keep under half the datagram). */
  readonly snapshotChunkChars: number
  /** Snapshot chunks in flight per follower. */
  readonly snapshotWindowChunks: number
}

export const defaultClusterConfig: ClusterConfig = {
  heartbeatIntervalMs: 50,
  failureTimeoutMs: 300,
  failureJitterMs: 150,
  removalTimeoutMs: 30_000,
  minServers: 3,
  expect: 1,
  discoveryWindowMs: 1_000,
  discoveryIntervalMs: 200,
  announceIntervalMs: 2_000,
  retransmitTimeoutMs: 150,
  windowBatches: 64,
  batchBytesMax: 1_000,
  checkpointEntries: 5_000,
  checkpointIntervalMs: 60_000,
  catchUpEntries: 5_000,
  snapshotChunkChars: 480,
  snapshotWindowChunks: 64
}
