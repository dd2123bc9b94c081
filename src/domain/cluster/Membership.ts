/**
 * Membership (DESIGN §5): members are (id, incarnation), each a voter or a
 * learner. Every server uses the latest membership entry in its log,
 * committed or not (Raft §4.1); only voters count for elections and commits.
 */
import type { Incarnation, Seq, ServerId } from "../Ids.js"
import type { EntryBody, Member } from "./Entry.js"

export interface Membership {
  readonly members: ReadonlyArray<Member>
  /** The seq of the entry that set it (0: none yet). */
  readonly seq: Seq
}

export const emptyMembership: Membership = { members: [], seq: 0 }

export const voters = (membership: Membership): ReadonlyArray<Member> =>
  membership.members.filter((m) => m.voter)

/** How many voters make a majority. */
export const quorum = (membership: Membership): number => Math.floor(voters(membership).length / 2) + 1

export const findMember = (
  membership: Membership,
  id: ServerId,
  incarnation: Incarnation
): Member | undefined => membership.members.find((m) => m.id === id && m.incarnation === incarnation)

export const isVoter = (membership: Membership, id: ServerId, incarnation: Incarnation): boolean =>
  findMember(membership, id, incarnation)?.voter === true

export const memberKey = (member: { readonly id: ServerId; readonly incarnation: Incarnation }): string =>
  `${member.id}/${member.incarnation}`

/** The membership after an entry at `seq`; entries that do not change it leave it as is. */
export const applyMembershipEntry = (membership: Membership, body: EntryBody, seq: Seq): Membership => {
  switch (body._tag) {
    case "GroupFormed":
      return { members: body.members, seq }
    case "ServerJoined":
      return {
        members: [...membership.members.filter((m) => memberKey(m) !== memberKey(body.member)), body.member],
        seq
      }
    case "ServerPromoted":
      return {
        members: membership.members.map((m) =>
          m.id === body.id && m.incarnation === body.incarnation ? { ...m, voter: true } : m
        ),
        seq
      }
    case "ServerLeft":
      return {
        members: membership.members.filter((m) => !(m.id === body.id && m.incarnation === body.incarnation)),
        seq
      }
    default:
      return membership
  }
}

/**
 * The highest seq held by a majority of voters, given each voter's match
 * point (DESIGN §5: only matchSeq moves the leader's count).
 */
export const majorityMatch = (membership: Membership, matchOf: (member: Member) => Seq): Seq => {
  const matches = voters(membership)
    .map(matchOf)
    .sort((a, b) => b - a)
  return matches[quorum(membership) - 1] ?? 0
}
