/**
 * bench/failover.svg: committed writes per 100 ms over time, the leader
 * kills marked, Agora above etcd. Rendered by Vega-Lite → Vega's SVG
 * renderer in Node (no canvas, no browser).
 */
import * as vega from "vega"
import * as vl from "vega-lite"

export interface Series {
  readonly title: string
  /** [seconds since the window start, writes committed in that 100 ms]. */
  readonly points: ReadonlyArray<readonly [number, number]>
  /** Seconds since the window start of each leader kill. */
  readonly kills: ReadonlyArray<number>
  /** Failover times, ms, for the subtitle. */
  readonly failoversMs: ReadonlyArray<number>
}

const panel = (series: Series, xMax: number, yMax: number): Record<string, unknown> => {
  const median = [...series.failoversMs].sort((a, b) => a - b)[Math.floor(series.failoversMs.length / 2)]
  return {
    title: {
      text: series.title,
      subtitle:
        median === undefined
          ? "no leader kill"
          : `${series.kills.length} leader kills (kill -9), median failover ${Math.round(median)} ms`,
      anchor: "start"
    },
    width: 900,
    height: 200,
    layer: [
      {
        data: { values: series.points.map(([t, n]) => ({ t, n })) },
        mark: { type: "line", interpolate: "step-after", strokeWidth: 1 },
        encoding: {
          x: { field: "t", type: "quantitative", title: "seconds", scale: { domain: [0, xMax] } },
          y: { field: "n", type: "quantitative", title: "committed per 100 ms", scale: { domain: [0, yMax] } }
        }
      },
      {
        data: { values: series.kills.map((t) => ({ t })) },
        mark: { type: "rule", color: "#d62728", strokeDash: [4, 3] },
        encoding: { x: { field: "t", type: "quantitative" } }
      }
    ]
  }
}

/** Renders the panels one above the other to SVG text. */
export const renderFailoverSvg = async (panels: ReadonlyArray<Series>): Promise<string> => {
  const xMax = Math.max(1, ...panels.flatMap((p) => p.points.map(([t]) => t)))
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "Committed writes per 100 ms with the leader killed (red)", fontSize: 14 },
    vconcat: panels.map((p) => panel(p, xMax, Math.max(1, ...p.points.map(([, n]) => n)))),
    config: { font: "sans-serif", view: { stroke: null } }
  } as unknown as vl.TopLevelSpec
  const compiled = vl.compile(spec).spec
  const view = new vega.View(vega.parse(compiled), { renderer: "none" })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}
