/**
 * The interactive `agora client` under a pseudo-terminal (`script`), against
 * one real server on loopback, the other participants being `--json` clients
 * (DESIGN §7, seed NOTES "Client UX"). Each answer is typed only once its
 * prompt is on screen: prompts lose type-ahead (EFFECT-NOTES, CLI).
 */
import { execFileSync } from "node:child_process"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { Harness, type JsonClient, type Screen } from "./harness.js"

const hasScript = (() => {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

const ENTER = "\r"
const BACKSPACE = "\x7f"
const CTRL_D = "\x04"

let harness: Harness

beforeAll(async () => {
  if (!hasScript) return
  harness = await Harness.make()
  // Rounds end early when everyone has bid; one test lets a round run out (8 s).
  await harness.startServers(1, ["--round-timeout", "8", "--start-timeout", "30"])
}, 50_000)

afterEach(async () => {
  await harness?.killClients()
})

afterAll(async () => {
  await harness?.cleanup()
}, 20_000)

const jsonClient = (name: string): Promise<{ client: JsonClient; session: number }> => {
  const client = harness.jsonClient(name)
  const connected = client.waitType("ready").then((ready) => ({ client, session: ready.session as number }))
  // Started early and awaited later: a failure is reported where it is awaited, not as unhandled.
  connected.catch(() => {})
  return connected
}

/** Waits for the menu and picks an option. */
const choose = async (screen: Screen, option: number) => {
  await screen.expect("4) Exit")
  await screen.expect("Choose an option (1-4)")
  screen.type(`${option}${ENTER}`)
}

const sessionOf = async (screen: Screen): Promise<number> =>
  Number((await screen.expect(/\(session \d+\)/)).replace(/\D/g, ""))

describe.skipIf(!hasScript)("agora client (interactive, under a pseudo-terminal)", () => {
  it("a bidder joins from the list, is re-asked a too-low bid, wins; Ctrl-D at the menu leaves (exit 0)", async () => {
    // Every process starts at once: starting node is most of a test's time.
    const screen = harness.interactiveClient("ui-bidder")
    const otherStarting = jsonClient("other-bidder")
    const auctioneer = (await jsonClient("seller")).client
    const created = await auctioneer.request({
      op: "create",
      item: "Vase",
      minBid: 10,
      minRounds: 1,
      minBidders: 2
    })
    const auction = created.auction as number

    await screen.expect("AGORA")
    await screen.expect("Finding a server...")
    await screen.expect("Connected as ui-bidder")
    const me = await sessionOf(screen)
    await screen.expect("1) Create an auction")
    await screen.expect("2) List auctions")
    await screen.expect("3) Join an auction")
    await choose(screen, 3)

    // The list table; pick our auction's row number.
    await screen.expect(/#\s+Auction\s+Item\s+Min Bid\s+Rounds\s+Bidders\s+Status/)
    const row = await screen.expect(
      new RegExp(`\\n\\s*\\d+\\s+${auction}\\s+Vase\\s+\\$10\\s+1\\s+0/2\\s+waiting`)
    )
    const number = row.trim().split(/\s+/)[0]
    await screen.expect("Join which auction?")
    screen.type(`${number}${ENTER}`)
    await screen.expect(`Joined auction ${auction} "Vase"`)

    const other = await otherStarting
    expect(await other.client.request({ op: "join", auction })).toMatchObject({ type: "joined" })
    await auctioneer.waitType("ready-check")
    expect(await auctioneer.request({ op: "start", auction })).toMatchObject({ type: "started" })

    await screen.expect(`Auction ${auction} "Vase" started: 1 round(s)`)
    await screen.expect("--- Round 1 of 1: minimum bid $10 ---")
    await screen.expect(/round 1 of 1: \d+ s left/)
    await screen.expect("Your bid (min $10): $")
    screen.type(`5${ENTER}`)
    await screen.expect("The minimum bid is $10")
    screen.type(`${BACKSPACE}50${ENTER}`)
    await screen.expect("Your bid of $50 for round 1 is in.")
    await screen.expect(`bidder ${me} (you) has bid in round 1`)

    await other.client.waitType("bid-received")
    expect(await other.client.request({ op: "bid", auction, amount: 20 })).toMatchObject({
      type: "bid-accepted"
    })
    await screen.expect(`has bid in round 1`)
    await screen.expect("Round 1 results:")
    await screen.expect(new RegExp(`bidder ${me} \\(you\\)\\s+\\$50\\s+\\$50`))
    await screen.expect("CONGRATULATIONS! YOU WON!")
    await screen.expect('You won "Vase" with a total of $50.')
    await screen.expect("Final standings:")
    await screen.expect(new RegExp(`1\\s+bidder ${me} \\(you\\)\\s+<- winner\\s+\\$50`))
    await screen.expect(/2\s+bidder \d+\s+\$20/)

    // Back at the menu; Ctrl-D leaves cleanly.
    await screen.expect("4) Exit")
    await screen.expect("Choose an option (1-4)")
    screen.type(CTRL_D)
    await screen.expect("Goodbye.")
    expect(await screen.process.exited).toBe(0)
    expect((await auctioneer.waitType("auction-closed")).winner).toBe(me)
  }, 45_000)

  it("an auctioneer creates with friendly re-prompts, starts on the ready check, sees the result, exits with 4", async () => {
    const screen = harness.interactiveClient("ui-seller")
    const biddersStarting = Promise.all([jsonClient("bidder-a"), jsonClient("bidder-b")])
    await screen.expect("Connected as ui-seller")
    await choose(screen, 1)
    await screen.expect("Item name:")
    screen.type(`   ${ENTER}`)
    await screen.expect("The item must not be empty")
    screen.type(`Teapot${ENTER}`)
    await screen.expect("Minimum bid: $")
    screen.type(`0${ENTER}`)
    await screen.expect("The minimum bid must be a whole number from 1 to")
    screen.type(`${BACKSPACE}7${ENTER}`)
    await screen.expect("Rounds (1-100)")
    screen.type(`0${ENTER}`)
    await screen.expect("Rounds must be a whole number from 1 to 100")
    screen.type(`${BACKSPACE}1${ENTER}`)
    await screen.expect("Minimum bidders (2-1000)")
    screen.type(ENTER) // the default, 2
    const created = await screen.expect(/Auction \d+ "Teapot" created/)
    const auction = Number(created.replace(/\D/g, ""))
    await screen.expect("Waiting for 2 bidders to join")

    const [b1, b2] = await biddersStarting
    expect(await b1.client.request({ op: "join", auction })).toMatchObject({ type: "joined" })
    expect(await b2.client.request({ op: "join", auction })).toMatchObject({ type: "joined" })
    await screen.expect(`2 bidders have joined auction ${auction}.`)
    await screen.expect("Start auction now? (y/n)")
    screen.type("y")
    await screen.expect("Starting the auction...")
    await screen.expect(`bidders bidder ${b1.session}, bidder ${b2.session}.`)
    await screen.expect("--- Round 1 of 1: minimum bid $7 ---")
    await screen.expect(/round 1 of 1: \d+ s left/)

    await b1.client.waitType("round-started")
    await b2.client.waitType("round-started")
    expect(await b1.client.request({ op: "bid", auction, amount: 8 })).toMatchObject({ type: "bid-accepted" })
    await screen.expect(`bidder ${b1.session} has bid in round 1`)
    expect(await b2.client.request({ op: "bid", auction, amount: 12 })).toMatchObject({
      type: "bid-accepted"
    })
    await screen.expect(`bidder ${b2.session} has bid in round 1`)
    await screen.expect("Round 1 results:")
    await screen.expect(new RegExp(`bidder ${b1.session}\\s+\\$8\\s+\\$8`))
    await screen.expect(new RegExp(`bidder ${b2.session}\\s+\\$12\\s+\\$12`))
    await screen.expect(`Auction over: "Teapot" goes to bidder ${b2.session} for $12.`)
    await screen.expect("Final standings:")
    expect(screen.text).not.toContain("CONGRATULATIONS")

    await choose(screen, 4)
    await screen.expect("Goodbye.")
    expect(await screen.process.exited).toBe(0)
  }, 45_000)

  it("holds events while the bid prompt waits, and ends the prompt when the round runs out", async () => {
    const screen = harness.interactiveClient("ui-slow")
    const otherStarting = jsonClient("quick-bidder")
    const auctioneer = (await jsonClient("seller-2")).client
    const created = await auctioneer.request({
      op: "create",
      item: "Clock",
      minBid: 10,
      minRounds: 1,
      minBidders: 2
    })
    const auction = created.auction as number
    await screen.expect("Connected as ui-slow")
    const me = await sessionOf(screen)
    await choose(screen, 3)
    const row = await screen.expect(new RegExp(`\\n\\s*\\d+\\s+${auction}\\s+Clock`))
    await screen.expect("Join which auction?")
    screen.type(`${row.trim().split(/\s+/)[0]}${ENTER}`)
    await screen.expect(`Joined auction ${auction} "Clock"`)
    const other = await otherStarting
    await other.client.request({ op: "join", auction })
    await auctioneer.waitType("ready-check")
    await auctioneer.request({ op: "start", auction })

    await screen.expect("Your bid (min $10): $")
    await other.client.waitType("round-started")
    expect(await other.client.request({ op: "bid", auction, amount: 15 })).toMatchObject({
      type: "bid-accepted"
    })
    // The bid of the other bidder is not printed under the open prompt ...
    await new Promise((done) => setTimeout(done, 500))
    expect(screen.text).not.toContain(`bidder ${other.session} has bid`)
    // ... but after it, once the deadline ended the round (and the prompt) without our bid.
    await screen.expect("Round 1 closed before your bid was sent.", 20_000)
    await screen.expect(`bidder ${other.session} has bid in round 1`)
    await screen.expect("Round 1 results:")
    await screen.expect(new RegExp(`bidder ${me} \\(you\\)\\s+\\$0\\s+\\$0`))
    await screen.expect(`Auction over: bidder ${other.session} won "Clock" with $15; your total was $0.`)
    await choose(screen, 4)
    expect(await screen.process.exited).toBe(0)
  }, 45_000)

  it("Ctrl-D while waiting for bidders (no prompt open) leaves cleanly", async () => {
    const screen = harness.interactiveClient("ui-quitter")
    await screen.expect("Connected as ui-quitter")
    await choose(screen, 1)
    await screen.expect("Item name:")
    screen.type(`Lamp${ENTER}`)
    await screen.expect("Minimum bid: $")
    screen.type(`3${ENTER}`)
    await screen.expect("Rounds (1-100)")
    screen.type(ENTER)
    await screen.expect("Minimum bidders (2-1000)")
    screen.type(ENTER)
    await screen.expect("Waiting for 2 bidders to join")
    // Keys are watched right after that line is printed: repeat the key until it is seen.
    const pressing = setInterval(() => screen.type(CTRL_D), 300)
    try {
      await screen.expect("Goodbye.")
    } finally {
      clearInterval(pressing)
    }
    expect(await screen.process.exited).toBe(0)
  }, 30_000)
})
