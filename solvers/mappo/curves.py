"""Training-curve figure in the layout of Fig. 5 (a)-(f)."""
from __future__ import annotations

from pathlib import Path

# Panel order as the paper's Sec. VI text uses it (its Fig. 5 caption list is shifted by one).
PANELS = (("usr", "(a) USR"), ("utility", "(b) total utility"), ("utility_comm", "(c) communication utility"),
          ("utility_sense", "(d) sensing utility"), ("signaling", "(e) signaling overhead"),
          ("loss", "(f) total training loss"))


def plot(history: list[dict], path: Path, title: str) -> Path:
    """One panel per Fig. 5 metric present in `history` (x axis: training frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, t) for k, t in PANELS if any(k in h for h in history)] or [("return", "episode return")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels):
        pts = [(h["frames"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training frames")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
