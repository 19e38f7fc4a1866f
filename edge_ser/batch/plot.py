"""The timeline plot of one recording: a lane per role, each segment coloured by its emotion.

matplotlib is imported inside `render_timeline` (the optional `[plot]` extra), with the Agg
backend, so batches run headless and the runtime does not need it.
"""

from __future__ import annotations

import io

from edge_ser.events import NON_SPEECH, UNCERTAIN

TIMELINE_PNG = "timeline.png"
COLOURS = {"angry": "#d62728", "sad": "#1f77b4", "happy": "#2ca02c", "neutral": "#9e9e9e",
           UNCERTAIN: "#e0e0e0", NON_SPEECH: "#f5f5dc"}
_OTHER = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")


def render_timeline(summary: dict[str, object], records: list[dict[str, object]]) -> bytes:
    """The PNG: x = time in seconds, one lane per role, bar alpha = confidence."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise RuntimeError("the timeline plot needs matplotlib: pip install "
                           "'edge-ser[plot]'") from None
    roles = list(summary["roles"])
    labels = [*summary["labels"], UNCERTAIN, NON_SPEECH]
    colours = {label: COLOURS.get(label, _OTHER[i % len(_OTHER)])
               for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.6 * len(roles)), dpi=100)
    try:
        for lane, role in enumerate(roles):
            for r in records:
                if r["role"] != role:
                    continue
                start, end = float(r["start_s"]), float(r["end_s"])
                ax.broken_barh([(start, max(end - start, 0.01))], (lane - 0.4, 0.8),
                               facecolors=colours[r["label"] or NON_SPEECH],
                               alpha=0.35 + 0.65 * float(r["confidence"]))
        ax.set_yticks(range(len(roles)), roles)
        ax.set_ylim(-0.6, len(roles) - 0.4)
        ax.set_xlim(0, max(float(summary["duration_s"]), 0.1))
        ax.set_xlabel("time (s)")
        title = summary["call_id"] or summary["key"]
        ax.set_title(f"{title}: emotion per segment", fontsize=10)
        fig.legend(handles=[Patch(color=colours[label], label=label) for label in labels],
                   loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()
