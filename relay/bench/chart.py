"""The spike chart: accepted/s, delivered/s and lag over time, as a PNG.

matplotlib is a bench-only dependency (the `bench` extra, installed by `make bench`),
imported here only, when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path

from relay.bench.timeline import Timeline

__all__ = ["draw"]


def draw(
    timeline: Timeline,
    path: Path,
    *,
    spike_start: float,
    spike_end: float,
    budget: float,
    caption: str,
) -> None:
    """Two panels sharing the time axis (seconds from the spike's first request):
    events/s accepted and delivered with the budget, then the lag."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    offset = spike_start - timeline.start
    seconds = [second + 0.5 - offset for second in range(timeline.seconds)]
    figure, (rates, lag) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    rates.plot(seconds, timeline.accepted, label="accepted/s (ingest answered 2xx)", lw=1.4)
    rates.plot(seconds, timeline.delivered, label="delivered/s (upstream received)", lw=1.4)
    rates.axhline(budget, color="grey", ls="--", lw=1, label=f"upstream budget {budget:g}/s")
    rates.set_ylabel("events/s")
    rates.legend(loc="upper right")
    lag.fill_between(seconds, timeline.lag, step="mid", alpha=0.4, color="tab:red")
    lag.plot(seconds, timeline.lag, color="tab:red", lw=1.2, label="lag (accepted, not delivered)")
    lag.set_ylabel("events waiting")
    lag.set_xlabel("seconds from the start of the spike")
    lag.legend(loc="upper right")
    for axes in (rates, lag):
        axes.axvspan(0, spike_end - spike_start, color="tab:orange", alpha=0.12)
        axes.grid(alpha=0.3)
    rates.text(
        1, 0.97, "spike", va="top", color="tab:orange", transform=rates.get_xaxis_transform()
    )
    rates.set_title(f"Spike of {budget * 8:g}/s for 20 s, upstream budget {budget:g}/s")
    figure.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
