/**
 * Lines of a readable stream (stdin), bounded: a line longer than `maxChars`
 * is reported as `TooLong` instead of being held in memory, and reading
 * pauses while more than `highWater` lines wait for the consumer (the
 * writer is held back by the pipe, nothing is dropped).
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"

export type LineItem =
  | { readonly _tag: "Line"; readonly text: string }
  | { readonly _tag: "TooLong"; readonly chars: number }

export interface Lines {
  /** The next line, or none at the end of the input. */
  readonly take: Effect.Effect<Option.Option<LineItem>>
}

export interface LinesOptions {
  readonly maxChars: number
  /** Lines waiting before reading pauses. Default 256. */
  readonly highWater?: number | undefined
}

/**
 * Reads `input` (default stdin) in the current scope; the scope's end stops
 * reading and destroys the stream, so it no longer keeps the process alive.
 */
export const readLines = (
  options: LinesOptions,
  input: NodeJS.ReadableStream & { destroy?: () => void } = process.stdin
): Effect.Effect<Lines, never, Scope.Scope> =>
  Effect.gen(function* () {
    const highWater = options.highWater ?? 256
    const mailbox = yield* Mailbox.make<LineItem>()
    let partial = ""
    /** Characters of the current line beyond the limit have been seen: it is reported as too long. */
    let overflowChars = 0
    let ended = false

    const pushLine = () => {
      const item: LineItem =
        overflowChars > 0
          ? { _tag: "TooLong", chars: overflowChars }
          : { _tag: "Line", text: partial.endsWith("\r") ? partial.slice(0, -1) : partial }
      partial = ""
      overflowChars = 0
      mailbox.unsafeOffer(item)
    }
    const onData = (chunk: string | Buffer) => {
      const text = typeof chunk === "string" ? chunk : chunk.toString("utf8")
      let start = 0
      for (;;) {
        const newline = text.indexOf("\n", start)
        const piece = newline === -1 ? text.slice(start) : text.slice(start, newline)
        if (overflowChars > 0 || partial.length + piece.length > options.maxChars) {
          overflowChars += partial.length + piece.length
          partial = ""
        } else {
          partial += piece
        }
        if (newline === -1) break
        pushLine()
        start = newline + 1
      }
      if (Option.getOrElse(mailbox.unsafeSize(), () => 0) >= highWater) input.pause()
    }
    const onEnd = () => {
      if (ended) return
      ended = true
      if (partial.length > 0 || overflowChars > 0) pushLine()
      mailbox.unsafeDone(Exit.void)
    }
    const onError = () => onEnd()

    yield* Effect.acquireRelease(
      Effect.sync(() => {
        input.setEncoding("utf8")
        input.on("data", onData)
        input.on("end", onEnd)
        input.on("close", onEnd)
        input.on("error", onError)
        input.resume()
      }),
      () =>
        Effect.sync(() => {
          input.off("data", onData)
          input.off("end", onEnd)
          input.off("close", onEnd)
          input.off("error", onError)
          input.pause()
          // A paused pipe may still hold the event loop open: nothing reads it after this.
          input.destroy?.()
        })
    )

    const take: Effect.Effect<Option.Option<LineItem>> = Effect.gen(function* () {
      const next = yield* Effect.option(mailbox.take)
      if (!ended && Option.getOrElse(mailbox.unsafeSize(), () => 0) < highWater / 2 && input.isPaused()) {
        input.resume()
      }
      return next
    })
    return { take }
  })
