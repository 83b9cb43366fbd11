"""Organ table (CSV, JSON), cumulative DVH plot and a one-page HTML report.

The organ table has one row per region plus ``patient`` (the body mask): label value, voxels,
volume (ml), mass (g, from the density map), mean and maximum dose, D2 / D50 / D98 (the
minimum dose of the hottest 2 / 50 / 98 % of the volume, :func:`mcdose.metrics.dvh_metrics`)
and V_x (percent of the volume receiving at least x) for the chosen thresholds; with several
time points also the time-integrated activity and the organ's fitted effective half-life.
Doses are in Gy (several time points, or a single-time-point dose) or Gy/s (one time
point: dose rate at scan time) — mcdose's one unit convention.  With several time points
the rows also carry the fitted model, its parameters and AICc weight; every row carries the
uncertainty budget (``u_*_percent``, Gear et al. 2018) and lesions, with the recovery
correction, their corrected values beside the uncorrected ones.

Pictures are drawn with matplotlib's object API (no pyplot state) and embedded in the HTML
as base64 PNG, so the report is one self-contained file.  Slices are shown in array order:
axial slices with the array's x to the right and y down, coronal slices with z up — for the
usual DICOM orientation (identity direction) that is the radiological convention (patient's
right on the image's left, anterior up, superior up).
"""

from __future__ import annotations

import base64
import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

__all__ = [
    "dose_columns",
    "headline_rows",
    "json_safe",
    "method_note",
    "organ_table",
    "plot_dvh",
    "plot_slices",
    "plot_time_activity",
    "render_html",
    "write_table_csv",
    "write_table_json",
]

PATIENT = "patient"


def _unit_key(unit: str) -> str:
    return unit.replace("/", "_")


def dose_columns(unit: str, thresholds: Sequence[float]) -> list[str]:
    """Column names of the dose part of the organ table, e.g. ``mean_Gy``, ``V10Gy_percent``."""
    u = _unit_key(unit)
    cols = [f"mean_{u}", f"max_{u}", f"D2_{u}", f"D50_{u}", f"D98_{u}"]
    cols += [f"V{t:g}{u}_percent" for t in thresholds]
    return cols


def organ_table(
    dose: np.ndarray,
    regions: Sequence[Any],
    density: np.ndarray,
    geometry: Geometry,
    *,
    unit: str,
    thresholds: Sequence[float] = (),
    body: np.ndarray | None = None,
    extra: Mapping[int | str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Dose statistics per region.

    Parameters
    ----------
    dose : ndarray (z, y, x)
        Dose (Gy) or dose rate (Gy/s).
    regions : sequence of Region
        ``value``, ``name``, ``mask`` (dose grid); masks may overlap.
    density : ndarray
        g/cm³, for the masses.
    geometry : Geometry
        Voxel volume.
    unit : str
        ``"Gy"`` or ``"Gy/s"`` (column names and labels).
    thresholds : sequence of float
        Dose levels x (in ``unit``) for V_x.
    body : ndarray of bool, optional
        Adds a ``patient`` row.
    extra : mapping, optional
        Region value (or ``"patient"``) → further columns (activity, half-life ...).

    Returns
    -------
    list of dict
        One row per region, in order, then ``patient``.
    """
    from mcdose.metrics import dvh_metrics

    u = _unit_key(unit)
    voxel_ml = geometry.voxel_volume_cm3
    rows: list[dict[str, Any]] = []
    items: list[tuple[Any, str, np.ndarray]] = [(r.value, r.name, r.mask) for r in regions]
    if body is not None and np.any(body):
        items.append((None, PATIENT, body))
    for value, name, mask in items:
        mask = np.asarray(mask, dtype=bool)
        n = int(np.count_nonzero(mask))
        if n == 0:
            continue
        values = dose[mask].astype(np.float64)
        m = dvh_metrics(dose, mask, d_percent=(2.0, 50.0, 98.0), v_levels=tuple(thresholds))
        row: dict[str, Any] = {
            "name": name,
            "label": value,
            "voxels": n,
            "volume_ml": n * voxel_ml,
            "mass_g": float(np.sum(density[mask], dtype=np.float64)) * voxel_ml,
            f"mean_{u}": float(values.mean()),
            f"max_{u}": float(values.max()),
            f"D2_{u}": m["D2"],
            f"D50_{u}": m["D50"],
            f"D98_{u}": m["D98"],
        }
        for t in thresholds:
            row[f"V{t:g}{u}_percent"] = 100.0 * m[f"V_{float(t):g}"]
        key = PATIENT if value is None else value
        if extra and key in extra:
            row.update(extra[key])
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return f"{value:g}"
        return f"{value:.6g}"
    return str(value)


def write_table_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write the organ table as CSV (header = union of the rows' keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_fmt(row.get(c)) for c in columns])
    return path


def json_safe(obj: Any) -> Any:
    """``obj`` with NumPy scalars/arrays and paths made plain, NaN and infinity as None."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_table_json(path: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Write the report document (organ rows, units, time-activity data, provenance).

    Strict JSON: non-finite numbers are written as ``null``.
    """
    from mcdose.io.jsonio import write_json

    return write_json(path, json_safe(document), allow_nan=False)


# --------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_dvh(dose: np.ndarray, regions: Sequence[tuple[str, np.ndarray]], unit: str,
             bins: int = 300) -> bytes:
    """Cumulative DVHs, one curve per region, on one dose axis; PNG bytes."""
    from mcdose.metrics import cumulative_dvh

    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    top = max((float(dose[m].max()) for _, m in regions if np.any(m)), default=1.0)
    top = top if top > 0 else 1.0
    for name, mask in regions:
        if not np.any(mask):
            continue
        levels, volume = cumulative_dvh(dose, mask, bins, max_dose=top)
        ax.plot(levels, 100.0 * volume, label=name, lw=1.5)
    ax.set_xlabel(f"dose ({unit})" if unit == "Gy" else f"dose rate ({unit})")
    ax.set_ylabel("volume (%)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    if regions:
        ax.legend(fontsize=7, loc="upper right", ncol=1 + len(regions) // 12)
    ax.set_title("Cumulative dose-volume histograms")
    return _png(fig)


def plot_slices(
    dose: np.ndarray,
    density: np.ndarray,
    geometry: Geometry,
    unit: str,
    *,
    labels: np.ndarray | None = None,
    names: Mapping[int, str] | None = None,
    centre: tuple[int, int, int] | None = None,
) -> tuple[bytes, tuple[int, int, int]]:
    """Axial and coronal slices of the dose over the density (CT), with label outlines.

    The dose colour scale is a square-root scale (PowerNorm 0.5) from 0 to the maximum, so
    that a background of a few percent of a hot lesion stays visible; doses below 0.5 % of
    the maximum are transparent.

    Parameters
    ----------
    centre : (z, y, x), optional
        Voxel the slices pass through; default the dose maximum.

    Returns
    -------
    png : bytes
    centre : (z, y, x)
    """
    from matplotlib.colors import PowerNorm

    if centre is None:
        centre = tuple(int(v) for v in np.unravel_index(int(np.argmax(dose)), dose.shape))
    k, j, _ = centre
    sx, sy, sz = geometry.spacing_mm
    nz, ny, nx = dose.shape
    peak = float(dose.max()) or 1.0
    fig = _figure(10.0, 4.6)
    views = [
        ("axial", dose[k], density[k], None if labels is None else labels[k],
         (-0.5 * sx, (nx - 0.5) * sx, (ny - 0.5) * sy, -0.5 * sy), "upper",
         f"axial slice z index {k}"),
        ("coronal", dose[:, j, :], density[:, j, :], None if labels is None else labels[:, j, :],
         (-0.5 * sx, (nx - 0.5) * sx, -0.5 * sz, (nz - 0.5) * sz), "lower",
         f"coronal slice y index {j}"),
    ]
    image = None
    for i, (_, d2, rho2, lab2, extent, origin, title) in enumerate(views):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(rho2, cmap="gray", vmin=0.0, vmax=1.6, extent=extent, origin=origin,
                  interpolation="nearest")
        shown = np.ma.masked_less(d2, 0.005 * peak)
        image = ax.imshow(shown, cmap="inferno", norm=PowerNorm(0.5, vmin=0.0, vmax=peak),
                          alpha=0.7, extent=extent, origin=origin, interpolation="nearest")
        if lab2 is not None and np.any(lab2):
            h, w = lab2.shape
            xs = np.linspace(extent[0] + 0.5 * (extent[1] - extent[0]) / w,
                             extent[1] - 0.5 * (extent[1] - extent[0]) / w, w)
            y0, y1 = (extent[3], extent[2]) if origin == "upper" else (extent[2], extent[3])
            ys = np.linspace(y0 + 0.5 * (y1 - y0) / h, y1 - 0.5 * (y1 - y0) / h, h)
            for value in np.unique(lab2):
                if value == 0:
                    continue
                ax.contour(xs, ys, (lab2 == value).astype(float), levels=[0.5],
                           colors="cyan", linewidths=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (mm from first voxel)", fontsize=8)
        ax.set_ylabel(("y" if origin == "upper" else "z") + " (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
    if image is not None:
        cbar = fig.colorbar(image, ax=fig.axes, shrink=0.8)
        cbar.set_label(f"dose ({unit})" if unit == "Gy" else f"dose rate ({unit})")
    return _png(fig), centre  # type: ignore[return-value]


def plot_time_activity(hours: Sequence[float], curves: Mapping[str, Sequence[float]],
                       fits: Mapping[str, Any] | None = None) -> bytes:
    """Organ time-activity curves (MBq vs h), measured points and fitted models; PNG."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    t = np.asarray(hours, dtype=float)
    grid = np.linspace(0.0, float(t.max()) * 1.3, 200)
    for name, values in curves.items():
        line = ax.plot(t, values, "o", label=name)[0]
        fit = (fits or {}).get(name)
        if fit is None:
            continue
        from mcdose.dosimetry.timeintegration import model_curve

        values_fit = model_curve(fit.method, fit.parameters, grid)
        if values_fit is not None:
            ax.plot(grid, values_fit, "-", color=line.get_color(), lw=1)
        else:
            ax.plot(t, values, "-", color=line.get_color(), lw=1)
    ax.set_xlabel("time after administration (h)")
    ax.set_ylabel("activity (MBq)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("Time-activity curves")
    return _png(fig)


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>mcdose dosimetry report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; margin-top: 1.2em; }
table { border-collapse: collapse; font-size: 0.8em; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: right; }
th { background: #eee; } td.name { text-align: left; }
.kv td { text-align: left; } .note { font-size: 0.8em; color: #555; }
img { max-width: 100%; }
</style></head><body>
<h1>Patient dosimetry — {{ quantity }}</h1>
<p class="note">{{ summary }}</p>
{% if headline %}<h2>Dose &plusmn; combined standard uncertainty (k = 1)</h2>
<table><tr>{% for c in headline_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in headline %}<tr>{% for c in headline_columns -%}
<td{% if loop.first %} class="name"{% endif %}>{{ row[c] }}</td>
{%- endfor %}</tr>
{% endfor %}</table>{% endif %}
{% for n in method_notes %}<p class="note">{{ n }}</p>{% endfor %}
<h2>Dose on CT</h2>
<img alt="dose slices" src="data:image/png;base64,{{ slices_png }}">
<h2>Organs and lesions</h2>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for c in columns -%}
<td{% if c == 'name' %} class="name"{% endif %}>{{ row[c] }}</td>
{%- endfor %}</tr>
{% endfor %}</table>
<p class="note">{{ table_note }}</p>
<h2>Dose-volume histograms</h2>
<img alt="DVH" src="data:image/png;base64,{{ dvh_png }}">
{% if tac_png %}<h2>Time-activity curves</h2>
<img alt="time-activity curves" src="data:image/png;base64,{{ tac_png }}">{% endif %}
<h2>Inputs and provenance</h2>
<table class="kv">{% for k, v in provenance %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>
{% endfor %}</table>
</body></html>
"""


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        if isinstance(value, float):
            text = _fmt(value)
        elif isinstance(value, (list, tuple)):
            text = ", ".join(_fmt(v) if isinstance(v, float) else str(v) for v in value)
        else:
            text = str(value)
        out.append((prefix, text))


def render_html(
    *,
    quantity: str,
    summary: str,
    rows: Sequence[Mapping[str, Any]],
    slices_png: bytes,
    dvh_png: bytes,
    provenance: Mapping[str, Any],
    tac_png: bytes | None = None,
    table_note: str = "",
    headline: Sequence[Mapping[str, str]] = (),
    method_notes: Sequence[str] = (),
) -> str:
    """The one-page report as an HTML string (jinja2, autoescaped, images inline)."""
    import jinja2

    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    shown = [{c: _fmt(row.get(c)) for c in columns} for row in rows]
    flat: list[tuple[str, str]] = []
    _flatten("", provenance, flat)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    if not rows:
        raise InputError("the organ table is empty")
    return env.from_string(_TEMPLATE).render(
        quantity=quantity,
        summary=summary,
        columns=columns,
        rows=shown,
        slices_png=base64.b64encode(slices_png).decode("ascii"),
        dvh_png=base64.b64encode(dvh_png).decode("ascii"),
        tac_png=base64.b64encode(tac_png).decode("ascii") if tac_png else "",
        provenance=flat,
        table_note=table_note,
        headline=list(headline),
        headline_columns=list(headline[0]) if headline else [],
        method_notes=list(method_notes),
    )


def headline_rows(rows: Sequence[Mapping[str, Any]], unit: str) -> list[dict[str, str]]:
    """Per region: mean dose ± combined standard uncertainty, the uncertainty terms, the
    chosen time-activity model and its AICc weight (the report's first table)."""
    u = _unit_key(unit)
    out = []
    for row in rows:
        mean = row.get(f"mean_{u}_rc_corrected", row.get(f"mean_{u}"))
        total = row.get(f"u_total_{u}")
        item = {"region": str(row["name"]),
                f"mean dose ({unit})": f"{_fmt(mean)} ± {_fmt(total)}" if total is not None
                else _fmt(mean),
                "u total (%)": _fmt_pct(row.get("u_total_percent"))}
        for term in ("calibration", "volume", "fit", "recovery", "mc"):
            item[f"u {term} (%)"] = _fmt_pct(row.get(f"u_{term}_percent"))
        if "recovery_coefficient" in row:
            item["RC"] = f"{row['recovery_coefficient']:.3f}"
            item[f"uncorrected mean ({unit})"] = _fmt(row.get(f"mean_{u}"))
        if "model" in row:
            w = row.get("aicc_weight")
            item["model"] = str(row["model"])
            item["AICc weight"] = "" if w is None else f"{w:.3f}"
        if "stp_method" in row:
            item["STP"] = str(row["stp_method"])
            item["T_eff (h)"] = _fmt(row.get("stp_t_eff_h"))
        out.append(item)
    keys: list[str] = []
    for item in out:
        keys += [k for k in item if k not in keys]
    return [{k: item.get(k, "") for k in keys} for item in out]


def _fmt_pct(value: Any) -> str:
    return "" if value is None else f"{float(value):.2f}"


def method_note(quantity: str, integration: str | None, fit_level: str, stp: str | None,
                recovery: bool) -> str:
    """One paragraph naming the methods used and their sources (report)."""
    parts = [f"Quantity: {quantity}."]
    if integration is not None:
        parts.append(f"Time integration: {integration} ({fit_level} level); 'auto' picks the "
                     "model of least AICc (Glatting et al., Med Phys 34 (2007) 4285) among "
                     "those with at least K + 2 time points; clearance never slower than "
                     "physical decay.")
    if stp is not None:
        from mcdose.dosimetry.stp import ACCURACY

        parts.append(f"Single time point: {ACCURACY[stp]}")
    if recovery:
        parts.append("Lesion recovery correction: mean activity and dose divided by RC(volume)"
                     " of the SPECT protocol (mcdose's own SPECT simulation of spheres); "
                     "uncorrected values beside.")
    parts.append("Uncertainty budget after the EANM guidance (Gear et al., EJNMMI 45 (2018) "
                 "2456): calibration (user-given), volume (boundary ± half a voxel of the "
                 "segmentation image), fit "
                 "(covariance to TIA), recovery, Monte Carlo statistics; combined in "
                 "quadrature.")
    return " ".join(parts)
