"""The load generator's summary for a person (`render_summary`) and the
problems that make its exit status 3 (`problems`); the summary itself is
the dict `LoadRun.summary()` builds, also printed as JSON with `--json`."""

from __future__ import annotations

from typing import Any


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1000
    return (
        f"{value:.2f} ms"
        if value < 10
        else f"{value:.1f} ms"
        if value < 100
        else f"{value:,.0f} ms"
    )


def counts(counter: dict[str, int]) -> str:
    if not counter:
        return "none"
    return ", ".join(
        f"{key} ({value})" for key, value in sorted(counter.items(), key=lambda kv: -kv[1])
    )


def render_summary(summary: dict[str, Any]) -> str:
    """The summary for a person: one line a topic."""
    clients, messages = summary["clients"], summary["messages"]
    deliveries, latency, to_all = (
        summary["deliveries"],
        summary["latency_s"],
        summary["to_all_receivers_s"],
    )
    generator = summary["generator"]
    failed = sum(clients["connect_failures"].values())
    sent_rate = messages["sent_per_s"]
    per_s = deliveries["per_s"]
    lines = [
        f"wschat load: {summary['url']}, {clients['requested']} clients, "
        f"{messages['rate']:g} msgs/s for {messages['duration']:g} s"
        + (f" (sources {clients['sources']})" if clients["sources"] else ""),
        f"clients     {clients['connected']} connected, {failed} failed to connect"
        + (f" ({counts(clients['connect_failures'])})" if failed else "")
        + f"; {clients['joined']} joined"
        + (
            f", join refused: {counts(clients['join_failures'])}"
            if clients["join_failures"]
            else ""
        ),
        f"messages    {messages['sent']} sent"
        + (f" ({sent_rate:.1f}/s)" if sent_rate else "")
        + f"; reached everyone {messages['reached_everyone']}, some {messages['reached_some']},"
        f" no one {messages['reached_no_one']}"
        + (
            f"; send failures: {counts(messages['send_failures'])}"
            if messages["send_failures"]
            else ""
        ),
        f"deliveries  {deliveries['expected']} expected, {deliveries['received']} received,"
        f" {deliveries['lost']} lost"
        + (
            f" ({deliveries['lost_to_closed_clients']} to clients closed by the server,"
            f" {deliveries['lost_to_connected_clients']} to connected ones)"
            if deliveries["lost"]
            else ""
        )
        + (f", {deliveries['duplicates']} duplicates" if deliveries["duplicates"] else "")
        + (f"; {per_s:,.0f}/s" if per_s else ""),
        f"latency     p50 {ms(latency['p50'])}  p90 {ms(latency['p90'])}  p99 {ms(latency['p99'])}"
        f"  max {ms(latency['max'])}  (per delivery, send to arrival)",
        f"to all      p50 {ms(to_all['p50'])}  p99 {ms(to_all['p99'])}  max {ms(to_all['max'])}"
        f"  (per message that reached everyone: send to its last arrival)",
        f"closes      {counts(summary['closes'])}",
        f"errors      {counts(summary['errors'])}",
    ]
    share = generator["cpu_share"]
    if share is not None:
        line = (
            f"generator   CPU {share:.0%} of one core; event loop lag p99 "
            f"{ms(generator['loop_lag_p99_s'])}, max {ms(generator['loop_lag_max_s'])}"
        )
        if share > 0.9:
            line += " (saturated: the figures include the generator's own delay)"
        lines.append(line)
    if summary["interrupted"]:
        lines.append("interrupted: the figures cover the run up to Ctrl-C")
    return "\n".join(lines)


def problems(summary: dict[str, Any]) -> list[str]:
    """What went wrong in a run that did happen, one phrase each."""
    found = []
    clients, deliveries = summary["clients"], summary["deliveries"]
    failed = sum(clients["connect_failures"].values()) + sum(clients["join_failures"].values())
    if failed:
        found.append(f"{failed} of {clients['requested']} clients did not get in")
    if summary["closes"]:
        found.append(f"the server closed {sum(summary['closes'].values())} clients")
    if deliveries["lost"]:
        found.append(f"{deliveries['lost']} deliveries lost")
    if deliveries["duplicates"]:
        found.append(f"{deliveries['duplicates']} deliveries duplicated")
    if summary["messages"]["send_failures"]:
        found.append("some sends failed")
    return found
