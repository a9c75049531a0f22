"""A study's result: :class:`Report` (a table of rows under named columns, notes, figures and
the run's metadata), written as ``<out>/<name>.json``, ``<out>/<name>.md`` and PNG figures."""
import json
import math
import os

__all__ = ["Report", "format_value"]


def format_value(v):
    """A table cell as Markdown text: None -> "N/A", floats to 4 significant digits
    (non-finite as "inf" / "nan"), booleans as "yes" / "no", anything else by str()."""
    if v is None:
        return "N/A"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def _jsonable(v):
    """v with numpy scalars / arrays made JSON-able (non-finite floats kept as strings)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class Report:
    """The result of one study run.

    name: the study's registry name (file stem of its outputs); title: a one-line heading;
    command: the shell command that produced it (``run`` fills it in when None); columns:
    the column names (list of str); rows: list of dicts keyed by exactly those columns (or
    sequences of len(columns) values, converted to dicts); notes: list of str (Markdown
    paragraphs printed under the table); meta: dict (``run`` adds threads, seed, wall time,
    quick flag, data source, load average, date).
    """

    def __init__(self, name, title, command=None, columns=(), rows=(), notes=(), meta=None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.name, self.title, self.command = name, str(title), command
        self.columns = [str(c) for c in columns]
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns must be distinct, got {self.columns}")
        self.rows = []
        for r in rows:
            self.add_row(r)
        self.notes = list(notes)
        self.meta = dict(meta or {})
        self.figures = []          # [(matplotlib Figure, filename)]

    def add_row(self, row=None, **values):
        """Append one row: a dict keyed by the columns, a sequence of len(columns) values,
        or the values by keyword. Missing or unknown columns are a ValueError."""
        if row is None:
            row = values
        elif values:
            raise ValueError("give the row as one dict / sequence or by keyword, not both")
        if not isinstance(row, dict):
            row = list(row)
            if len(row) != len(self.columns):
                raise ValueError(f"row has {len(row)} values for {len(self.columns)} columns "
                                 f"{self.columns}")
            row = dict(zip(self.columns, row))
        missing = [c for c in self.columns if c not in row]
        unknown = [k for k in row if k not in self.columns]
        if missing or unknown:
            raise ValueError(f"row: missing columns {missing}, unknown columns {unknown} "
                             f"(columns: {self.columns})")
        self.rows.append({c: row[c] for c in self.columns})

    def column(self, name):
        """The values of column ``name``, one per row (list)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r} (columns: {self.columns})")
        return [r[name] for r in self.rows]

    def add_figure(self, fig, filename):
        """Attach a matplotlib Figure, saved by :meth:`write` as ``<out>/<filename>`` (a
        .png name, no directories)."""
        if not isinstance(filename, str) or not filename.endswith(".png") or \
                os.path.basename(filename) != filename:
            raise ValueError(f"filename must be a plain '*.png' file name, got {filename!r}")
        if filename in [f for _, f in self.figures]:
            raise ValueError(f"a figure named {filename!r} was already added")
        self.figures.append((fig, filename))

    def table_markdown(self):
        """The table alone, as a Markdown table (str)."""
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(format_value(r[c]) for c in self.columns) + " |"
                for r in self.rows]
        return "\n".join([head, rule, *body])

    def run_line(self):
        """One line saying how the table was produced: command, threads, wall time, mode."""
        m = self.meta
        parts = [f"`{self.command}`" if self.command else "(no command recorded)"]
        if "threads" in m:
            parts.append(f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}")
        if "wall_time_s" in m:
            parts.append(f"wall time {m['wall_time_s']:.0f} s")
        if "quick" in m:
            parts.append("quick mode" if m["quick"] else "full settings")
        if "loadavg_start" in m:
            parts.append("load average " + " / ".join(f"{x:.2f}" for x in m["loadavg_start"])
                         + " at the start")
        if "data" in m and isinstance(m["data"], dict) and "source" in m["data"]:
            parts.append(f"data: {m['data']['source']}")
        return "; ".join(parts)

    def markdown(self):
        """The whole report as Markdown: title, how it was run, the table, notes, figures."""
        out = [f"# {self.title}", "", self.run_line(), "", self.table_markdown(), ""]
        for n in self.notes:
            out += [n, ""]
        for _, f in self.figures:
            out += [f"![{f}]({f})", ""]
        return "\n".join(out)

    def to_dict(self):
        """The report as a JSON-able dict (figures by file name)."""
        return _jsonable({"name": self.name, "title": self.title, "command": self.command,
                          "columns": self.columns, "rows": self.rows, "notes": self.notes,
                          "meta": self.meta, "figures": [f for _, f in self.figures]})

    def write(self, out):
        """Write ``<out>/<name>.json``, ``<out>/<name>.md`` and the figures' PNGs (creating
        ``out``); returns the list of paths written."""
        out = os.fspath(out)
        os.makedirs(out, exist_ok=True)
        paths = []
        for fig, filename in self.figures:
            p = os.path.join(out, filename)
            fig.savefig(p, dpi=110)
            paths.append(p)
        p = os.path.join(out, f"{self.name}.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")
        paths.insert(0, p)
        p = os.path.join(out, f"{self.name}.md")
        with open(p, "w", encoding="utf-8") as f:
            f.write(self.markdown())
        paths.insert(1, p)
        return paths

    def __repr__(self):
        return (f"Report({self.name!r}, {len(self.rows)} rows x {len(self.columns)} columns, "
                f"{len(self.figures)} figures)")
