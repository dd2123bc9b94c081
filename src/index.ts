/**
 * The public library API: what a custom deployment or a user's own tests
 * import. Namespaces keep each part's names apart.
 */

// Pure domain: rules, protocol decisions, wire schemas.
export * as Agora from "./domain/agora/Agora.js"
export * as Auction from "./domain/auction/index.js"
export * as ClusterConfig from "./domain/cluster/Config.js"
export type { StateMachine } from "./domain/cluster/StateMachine.js"
export * as Envelope from "./domain/Envelope.js"
export * from "./domain/Ids.js"
export * as Messages from "./domain/Messages.js"
export * as Money from "./domain/Money.js"
// Layers: the edges, real and simulated.
export * as Server from "./layers/Server.js"
export * as SimRuntime from "./layers/SimRuntime.js"
export * as StoreSqlite from "./layers/StoreSqlite.js"
export * as TransportSim from "./layers/TransportSim.js"
export * as TransportUdp from "./layers/TransportUdp.js"
// Services: one per subsystem.
export * as AuctionServer from "./services/AuctionServer.js"
export * as Client from "./services/Client.js"
export * as Cluster from "./services/Cluster.js"
export * as LogStore from "./services/LogStore.js"
export * as Transport from "./services/Transport.js"
