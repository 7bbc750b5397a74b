"""Writing a paper figure: its data as CSV and its plot as PNG (shared by the tasks' `figures()`)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Iterable, Sequence


def write_figure(out_dir: Path, n: int, header: Sequence[str], rows: Iterable[Sequence],
                 draw: Callable) -> list[Path]:
    """Write fig{n}.csv (header + rows) and fig{n}.png (draw(ax) on one axis); return both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / f"fig{n}.csv", out_dir / f"fig{n}.png"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    draw(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return [png_path, csv_path]
