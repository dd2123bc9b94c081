/** The public library API: what a custom deployment imports. */
export * from "./domain/Ids.js"
