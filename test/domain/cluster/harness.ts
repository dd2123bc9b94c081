/**
 * Builds replicas in a given state and steps them by hand, in the style of
 * etcd's raft_paper_test.go: init → step → check outputs and state exactly.
 */
import { type ClusterConfig, defaultClusterConfig } from "../../../src/domain/cluster/Config.js"
import type { EntryBody, LogEntry, Member } from "../../../src/domain/cluster/Entry.js"
import { MemoryLog } from "../../../src/domain/cluster/Log.js"
import type { HardState, Output, Replica } from "../../../src/domain/cluster/Replica.js"
import { makeReplica, step, takeReady } from "../../../src/domain/cluster/Step.js"
import type { Body } from "../../../src/domain/Envelope.js"
import type { GroupId, Incarnation, ServerId } from "../../../src/domain/Ids.js"
import type { Address } from "../../../src/domain/Schemas.js"
import { counter } from "../../support/Counter.js"

export type TestReplica = Replica<number, number, number, string>
export type TestOutput = Output<number, number, string>

export const group = "g1" as GroupId
export const config: ClusterConfig = { ...defaultClusterConfig, failureJitterMs: 0 }

export const sid = (id: string) => id as ServerId
export const inc = (id: string) => `${id}-i` as Incarnation
export const addressOf = (id: string): Address => ({ host: `host-${id}`, port: 7000 })
export const member = (id: string, voter = true): Member => ({
  id: sid(id),
  incarnation: inc(id),
  voter,
  address: addressOf(id)
})

/** A log whose first entry forms the group with `members`, followed by `bodies` at the given epochs. */
export const entries = (
  members: ReadonlyArray<Member>,
  tail: ReadonlyArray<readonly [epoch: number, body: EntryBody]>
): Array<LogEntry> => [
  { epoch: 1, seq: 1, body: { _tag: "GroupFormed", group, members } },
  ...tail.map(([epoch, body], i) => ({ epoch, seq: i + 2, body }))
]

export const app = (amount: number): EntryBody => ({ _tag: "App", data: [amount] })
export const noop = (leader: string): EntryBody => ({ _tag: "LeaderElected", leader: sid(leader) })

export interface ReplicaSetup {
  readonly id: string
  readonly log: ReadonlyArray<LogEntry>
  readonly hard?: Partial<HardState>
  readonly nowMs?: number
  readonly config?: ClusterConfig
  /** Uniform [0, 1) for jitter and stretch; 0 unless told. */
  readonly random?: () => number
}

export const replicaOf = (setup: ReplicaSetup): TestReplica => {
  const log = new MemoryLog()
  for (const entry of setup.log) log.append(entry)
  const hard: HardState = {
    group,
    incarnation: inc(setup.id),
    epoch: log.lastEpoch,
    vote: null,
    commitSeq: 1,
    ...setup.hard
  }
  const replica = makeReplica({
    machine: counter,
    config: setup.config ?? config,
    id: sid(setup.id),
    selfAddress: addressOf(setup.id),
    random: setup.random ?? (() => 0),
    hard,
    incarnation: hard.incarnation,
    log,
    nowMs: setup.nowMs ?? 0
  })
  takeReady(replica)
  return replica
}

export const receive = (
  replica: TestReplica,
  from: string,
  epoch: number,
  body: Body,
  nowMs = replica.nowMs
): Array<TestOutput> => {
  step(
    replica,
    {
      _tag: "Receive",
      body,
      meta: { from: { role: "server", id: sid(from), incarnation: inc(from), port: 7000 }, group, epoch },
      source: addressOf(from)
    },
    nowMs
  )
  return takeReady(replica)
}

export const tick = (replica: TestReplica, nowMs: number): Array<TestOutput> => {
  step(replica, { _tag: "Tick" }, nowMs)
  return takeReady(replica)
}

/** The bodies sent, with the id of the server whose address they went to. */
export const sent = (
  outputs: ReadonlyArray<TestOutput>
): Array<{ to: string; body: Body; epoch: number | undefined }> =>
  outputs.flatMap((output) =>
    output._tag === "Send"
      ? [{ to: output.to.host.replace("host-", ""), body: output.message.body, epoch: output.message.epoch }]
      : []
  )

/** Output kinds in order, log notes left out. */
export const tags = (outputs: ReadonlyArray<TestOutput>): Array<string> =>
  outputs
    .filter((output) => output._tag !== "Note")
    .map((output) =>
      output._tag === "Send" || output._tag === "Broadcast"
        ? `${output._tag}:${output.message.body._tag}`
        : output._tag
    )

export const dropsOf = (outputs: ReadonlyArray<TestOutput>): Array<string> =>
  outputs.flatMap((output) => (output._tag === "Dropped" ? [output.reason] : []))

/**
 * A leader of epoch 2 over a group of `ids` (the first is the leader), elected
 * through the real protocol with the second id's votes, its no-op committed
 * when `commitNoop` (the second id acked it).
 */
export const electLeader = (
  ids: ReadonlyArray<string>,
  tail: ReadonlyArray<readonly [number, EntryBody]> = [],
  commitNoop = true,
  leaderConfig: ClusterConfig = config
): TestReplica => {
  const [leaderId = "s1", voterId = "s2"] = ids
  const replica = replicaOf({
    id: leaderId,
    log: entries(
      ids.map((id) => member(id)),
      tail
    ),
    config: leaderConfig
  })
  tick(replica, 1_000)
  const nextEpoch = replica.epoch + 1
  receive(replica, voterId, nextEpoch - 1, {
    _tag: "ElectionAnswer",
    nextEpoch,
    granted: true,
    rank: { lastEpoch: 0, lastSeq: 0 }
  })
  receive(replica, voterId, nextEpoch, { _tag: "CoordinatorAck", lastSeq: 0, lastEpoch: 0 })
  step(replica, { _tag: "Persisted", lastSeq: replica.log.lastSeq }, replica.nowMs)
  takeReady(replica)
  if (commitNoop) {
    receive(replica, voterId, nextEpoch, {
      _tag: "ReplicateAck",
      success: true,
      matchSeq: replica.log.lastSeq,
      hintSeq: replica.log.lastSeq
    })
  }
  return replica
}
