/**
 * Vitest setup: a turn of the Node event loop after every test. Simulations are synchronous,
 * and a file of them (the simulator's seeds, ~70 s) would otherwise run back to back with only
 * microtasks between tests; the worker then never reads the main process's answer to its
 * "onTaskUpdate" call, which times out after 60 s and fails a run whose tests all passed.
 */
import { afterEach } from "vitest"

afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)))
