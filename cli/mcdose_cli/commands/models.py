"""``mcdose models``: the shipped residual-CNN models and their cards (mcdose's package data)."""

from __future__ import annotations

import json

import click


@click.command(name="models")
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
@click.option("--brief", is_flag=True, help="One line per model, without the cards.")
def models(as_json: bool, brief: bool) -> None:
    """List the residual-CNN models shipped with mcdose and print their model cards.

    `mcdose dose --method cnn` without --model uses the default one.
    """
    from residualnet.shipped import MODELS_DIR, shipped_models

    found = shipped_models()
    if as_json:
        click.echo(json.dumps({m.name: {"path": str(m.path), **m.card} for m in found},
                              indent=1))
        return
    if not found:
        click.echo(f"no shipped models in {MODELS_DIR}")
        return
    for m in found:
        click.echo(m.summary())
    if brief:
        return
    for m in found:
        click.echo("")
        click.echo(m.card_markdown.rstrip() or f"(no card for {m.name})")
