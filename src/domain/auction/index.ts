/**
 * The auction domain (DESIGN §3): commands, events, errors, the state, the
 * pure rules `decide` / `evolve`, the notification projection and the reads.
 */
export * from "./Commands.js"
export * from "./decide.js"
export * from "./Errors.js"
export * from "./Events.js"
export * from "./evolve.js"
export * from "./Notifications.js"
export * from "./Phase.js"
export * from "./Queries.js"
export * as Rules from "./Rules.js"
export * from "./State.js"
export * from "./Winner.js"
