"""``mcdose nuclide NAME [--json]``: a nuclide's ICRP-107 emissions per decay.

Composition only: :func:`mcdose.nuclides.load_nuclide` does the work; this module formats
its result as a rich table or as JSON on stdout.  Unknown names raise
:class:`mcdose.errors.UnknownNuclideError`, which :func:`mcdose_cli.main.main` prints as one
line (``mcdose: error: unknown nuclide 'Xx-999'; did you mean ...``) with exit status 2.
"""

from __future__ import annotations

import json

import click

#: How many lines the summary lists (largest energy per decay first).
MAIN_LINES = 12
#: Lines below this yield per decay or energy (keV) are left out of the summary list.
MIN_LINE_YIELD = 1e-3
MIN_LINE_ENERGY_KEV = 1.0


def _format_half_life(nuclide) -> str:
    seconds = f"{nuclide.half_life_s:.6g} s"
    if nuclide.half_life_value is None or nuclide.half_life_unit in (None, "s"):
        return seconds
    return f"{nuclide.half_life_value:g} {nuclide.half_life_unit} ({seconds})"


def _category_rows(nuclide) -> list[tuple[str, float, float]]:
    """(label, yield per decay, keV per decay) for every non-empty category."""
    rows: list[tuple[str, float, float]] = []
    for label, beta in (("β⁻", nuclide.beta_minus), ("β⁺", nuclide.beta_plus)):
        if beta is not None:
            rows.append((label, beta.yield_per_decay, beta.energy_per_decay_keV))
    categories = (
        ("conversion electrons", nuclide.conversion_electrons),
        ("Auger electrons", nuclide.auger_electrons),
        ("γ rays", nuclide.gammas),
        ("X rays", nuclide.xrays),
        ("annihilation photons", nuclide.annihilation),
        ("alphas (local)", nuclide.alphas),
        ("alpha recoils (local)", nuclide.alpha_recoils),
        ("fission fragments (local)", nuclide.fission_fragments),
        ("neutrons (ignored, not in totals)", nuclide.neutrons),
    )
    for label, lines in categories:
        if lines.total_yield > 0:
            rows.append((label, lines.total_yield, lines.energy_per_decay_keV))
    return rows


def _main_lines(nuclide) -> list[tuple[str, float, float]]:
    """(kind, energy keV, yield per decay) of the lines carrying most energy."""
    found: list[tuple[str, float, float]] = []
    for kind, lines in (
        ("γ", nuclide.gammas),
        ("X", nuclide.xrays),
        ("annihilation", nuclide.annihilation),
        ("conversion e⁻", nuclide.conversion_electrons),
        ("Auger e⁻", nuclide.auger_electrons),
        ("α", nuclide.alphas),
    ):
        for energy, yield_ in zip(lines.energies_keV, lines.yields, strict=True):
            if yield_ >= MIN_LINE_YIELD and energy >= MIN_LINE_ENERGY_KEV:
                found.append((kind, float(energy), float(yield_)))
    found.sort(key=lambda row: row[1] * row[2], reverse=True)
    return found[:MAIN_LINES]


def _print_summary(nuclide) -> None:
    from rich.console import Console
    from rich.table import Table

    from mcdose.nuclides import ICRP107_CITATION

    console = Console(highlight=False, soft_wrap=False)
    console.print(f"[bold]{nuclide.name}[/bold]  half-life {_format_half_life(nuclide)}")
    for label, beta in (("β⁻", nuclide.beta_minus), ("β⁺", nuclide.beta_plus)):
        if beta is not None:
            branch = beta.branch_energy_per_decay_keV / beta.yield_per_decay
            console.print(
                f"{label} spectrum: mean {beta.mean_keV:.2f} keV per particle "
                f"(ICRP branch means: {branch:.2f} keV), endpoint {beta.endpoint_keV:.1f} keV"
            )

    table = Table(title="Emissions per decay")
    table.add_column("category")
    table.add_column("yield / decay", justify="right")
    table.add_column("keV / decay", justify="right")
    table.add_column("mean keV", justify="right")
    for label, yield_, energy in _category_rows(nuclide):
        table.add_row(label, f"{yield_:.4g}", f"{energy:.2f}", f"{energy / yield_:.2f}")
    table.add_section()
    totals = (
        ("electrons (β + IE + Auger)", nuclide.electron_energy_per_decay_keV),
        ("photons (γ + X + annihilation)", nuclide.photon_energy_per_decay_keV),
        ("local (α + recoil + fission)", nuclide.local_energy_per_decay_keV),
    )
    for label, energy in totals:
        if energy > 0 or not label.startswith("local"):
            table.add_row(label, "", f"{energy:.2f}", "")
    total = f"{nuclide.total_energy_per_decay_keV:.2f}"
    table.add_row("[bold]total[/bold]", "", f"[bold]{total}[/bold]", "")
    console.print(table)

    lines = _main_lines(nuclide)
    if lines:
        main = Table(title="Main lines")
        main.add_column("kind")
        main.add_column("energy keV", justify="right")
        main.add_column("yield %", justify="right")
        main.add_column("keV / decay", justify="right")
        for kind, energy, yield_ in lines:
            main.add_row(kind, f"{energy:.2f}", f"{100 * yield_:.3g}", f"{energy * yield_:.3f}")
        console.print(main)
    console.print(f"Source: {ICRP107_CITATION}", style="dim")


@click.command(name="nuclide")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the emissions as JSON on stdout.")
def nuclide(name: str, as_json: bool) -> None:
    """Show the ICRP-107 emissions of nuclide NAME (e.g. Lu-177, 177Lu, Tc-99m).

    Half-life, energy per decay by category (keV), and the main lines.  With --json, a JSON
    object with at least half_life_s, mean_beta_keV, electron_energy_per_decay_keV and
    photon_energy_per_decay_keV.
    """
    from mcdose.nuclides import load_nuclide

    loaded = load_nuclide(name)
    if as_json:
        click.echo(json.dumps(loaded.to_dict(), indent=2))
    else:
        _print_summary(loaded)
