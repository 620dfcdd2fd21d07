"""The evaluation table: which columns a result row is shown in, and each number with its uncertainty
(``ddpm eval`` prints it, the report draws it as HTML, the model card quotes its last row)."""
from __future__ import annotations

from typing import Any


# The one definition of an evaluation table (``ddpm eval`` prints it, the report draws it as HTML):
# (row key, heading, format). A number is shown with its uncertainty where the row has one (UNCERTAINTY).
EVAL_COLUMNS = [("sampler", "sampler", "{}"), ("steps", "steps", "{}"), ("guidance", "w", "{:g}"),
                ("classifier_scale", "clf s", "{:g}"), ("num", "samples", "{}"),
                ("fid", "FID [95% bootstrap]", "{:.2f}"), ("domain_fid", "domain FID [95% bootstrap]", "{:.3f}"),
                ("domain_is", "domain IS", "{:.2f}"), ("domain_confident", "confident", "{:.1%}"),
                ("domain_asked", "asked class", "{:.1%}"), ("nll_bpd", "NLL bits/dim", "{:.3f}"),
                ("checkpoint_step", "ckpt step", "{}"), ("wall_s", "wall s", "{:.0f}")]
# key: (low, high) keys of its 95% interval, or the key of its spread, shown ± in the key's format: a standard
# error, except the IS analogue's, which is its standard deviation over 10 splits as the IS papers report it
UNCERTAINTY = {"fid": ("fid_low", "fid_high"), "domain_fid": ("domain_fid_low", "domain_fid_high"),
               "domain_is": "domain_is_std", "domain_confident": "domain_confident_se", "domain_asked": "domain_asked_se",
               "nll_bpd": "nll_bpd_stderr"}


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    if row.get(key) is None:
        return ""
    spread = UNCERTAINTY.get(key)
    if isinstance(spread, tuple) and all(row.get(k) is not None for k in spread):
        return f"{fmt.format(row[key])} [{fmt.format(row[spread[0]])}, {fmt.format(row[spread[1]])}]"
    if isinstance(spread, str) and row.get(spread) is not None:
        return f"{fmt.format(row[key])} ± {fmt.format(row[spread]).rstrip('%')}"
    return fmt.format(row[key])


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The heading row and one row of strings per evaluation (columns that no row has are left out)."""
    cols = [c for c in EVAL_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    return [[name for _, name, _ in cols]] + [[_cell(r, k, fmt) for k, _, fmt in cols] for r in rows]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of evaluation rows, headed by how they were computed (seed, reference)."""
    cells = table_cells(rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    r0 = rows[0]
    head = f"seed {r0['seed']}, {'EMA' if r0.get('ema', True) else 'raw'} weights, reference {r0['reference']}"
    hist = [f"class histogram ({r['steps']} steps): {r['class_histogram']}" for r in rows if r.get("class_histogram")]
    return "\n".join([head, *lines, *hist])
