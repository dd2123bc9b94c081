/**
 * SimScheduler: an Effect `Scheduler.Scheduler` that only queues. Effect's
 * default scheduler runs fiber slices on microtasks and `setTimeout`, i.e. on
 * real time and the Node event loop; this one runs nothing by itself, so the
 * simulation driver (`SimRuntime.ts`) decides when queued work runs, and runs
 * it in one fixed order: first queued, first run.
 */
import type { RuntimeFiber } from "effect/Fiber"
import type { Scheduler, Task } from "effect/Scheduler"

/** Effect's own default for `currentMaxOpsBeforeYield`. */
export const simOpsBeforeYieldMaxDefault = 2048

/**
 * Above this many consumed slots at the head, the queue array is compacted,
 * so a long burst at one virtual instant does not keep every task it ever ran.
 */
const compactHeadMin = 4096

export class SimScheduler implements Scheduler {
  private tasks: Array<Task> = []
  private head = 0

  /**
   * @param opsBeforeYieldMax a fiber yields (goes to the back of the queue)
   * after this many operations, so one busy fiber cannot starve the others.
   * Fixed here rather than read from the fiber's `currentMaxOpsBeforeYield`
   * on every operation, which would cost a FiberRef lookup per op.
   */
  constructor(readonly opsBeforeYieldMax: number = simOpsBeforeYieldMaxDefault) {}

  /** The priority is ignored: Effect's default runner only orders priorities within one batch, and Agora sets none. */
  scheduleTask(task: Task, _priority: number): void {
    this.tasks.push(task)
  }

  shouldYield(fiber: RuntimeFiber<unknown, unknown>): number | false {
    return fiber.currentOpCount > this.opsBeforeYieldMax ? 0 : false
  }

  /** Tasks queued and not yet run. */
  get pendingCount(): number {
    return this.tasks.length - this.head
  }

  /**
   * Runs queued tasks, including those they queue, in FIFO order, until the
   * queue is empty or `tasksMax` tasks have run. Returns how many ran.
   */
  drain(tasksMax: number): number {
    let ranCount = 0
    while (this.head < this.tasks.length && ranCount < tasksMax) {
      const task = this.tasks[this.head]
      this.head += 1
      ranCount += 1
      task?.()
      if (this.head >= compactHeadMin && this.head * 2 >= this.tasks.length) {
        this.tasks = this.tasks.slice(this.head)
        this.head = 0
      }
    }
    if (this.head === this.tasks.length) {
      this.tasks.length = 0
      this.head = 0
    }
    return ranCount
  }
}
