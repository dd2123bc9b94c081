import * as Schema from "effect/Schema"

/** A bad combination of options, or a failure the user must act on: printed as one line, exit code 1. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}
