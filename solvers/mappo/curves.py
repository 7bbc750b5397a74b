"""Training-curve figure: one panel per environment metric, then the episode return and the loss."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence


def plot(history: list[dict], path: Path, title: str, metrics: Sequence[str] = ()) -> Path:
    """First the periodic evaluation's objective (the first `eval/<metric>` of `history`, on the
    task's evaluation episodes), then one panel per per-frame environment metric in `metrics` (the
    order `end_frame` reports them; on ent-usr these include Fig. 5 (a)-(e)), then the episode
    return and the total training loss (Fig. 5 (f)); x axis: training frames. Keys absent from
    `history` are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = next((k for h in history for k in h if k.startswith("eval/")), None)
    keys = [k for k in (evaluated, *metrics, "return", "loss") if k and any(k in h for h in history)]
    cols = max(1, min(4, len(keys)))
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.1 * rows + 0.5), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(h["frames"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2, marker="o" if key == evaluated else None, ms=3)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("training frames")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
