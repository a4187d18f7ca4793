"""A picture of what a dashboard shows, drawn from a real Prometheus's data: each
time-series panel's own queries and legends, laid out by its gridPos."""
import json
import re
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

VARIABLES = {"instance": ".*", "notifier": ".*", "__rate_interval": "15s", "__interval": "15s", "__range": "1m"}


def expand(expr):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: VARIABLES[m.group(1) or m.group(2)], expr)


def legend(fmt, metric):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt or "") or str(metric)


def draw(dashboard_file, prom, out, minutes=5, step=1):
    """Render dashboard_file's timeseries panels over the last minutes into out (PNG).
    Returns {panel title: number of series drawn}."""
    dash = json.loads(open(dashboard_file).read())
    panels = [p for p in dash["panels"] if p["type"] == "timeseries" and "Events lost" not in p["title"]
              and "collection time" not in p["title"]]
    rows = sorted({p["gridPos"]["y"] for p in panels})
    end = time.time()
    start = end - 60 * minutes
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(16, 4.2 * len(rows)), facecolor="#111217")
    grid = fig.add_gridspec(len(rows), 24)
    drawn = {}
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[rows.index(g["y"]), g["x"]:g["x"] + g["w"]], facecolor="#181b1f")
        n = 0
        for t in p.get("targets", []):
            ans = prom.query_range(expand(t["expr"]), start, end, step)
            for series in ans["data"]["result"]:
                xs = [float(v[0]) - end for v in series["values"]]
                ys = [float(v[1]) for v in series["values"]]
                ax.plot(xs, ys, linewidth=1.6, label=legend(t.get("legendFormat"), series["metric"]))
                n += 1
        drawn[p["title"]] = n
        ax.set_title(p["title"], loc="left", fontsize=11, color="#ccccdc")
        ax.set_xlabel("seconds ago", fontsize=8, color="#8e8e8e")
        ax.grid(color="#2c3235", linewidth=0.6)
        ax.tick_params(labelsize=8, colors="#8e8e8e")
        if n:
            ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.suptitle(f"{dash['title']} (from a real Prometheus scraping mnmon during the test bed's scenarios)",
                 color="#ccccdc", fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    plt.close(fig)
    return drawn
