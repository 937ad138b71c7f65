"""`tunewise demo` / `make demo`: the main job on the bundled defaults, start to finish, offline.

Today that is: prepare the bundled assets, check the bundled BBC News data and print its report and
statistics, then freeze a stratified split into a new run folder. The head-to-head arms, fine-tuning and
the verdict join here as they land. Glue only.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from tunewise import assets
from tunewise.data.check_report import check_file
from tunewise.data.check_view import render_check
from tunewise.data.split_view import render_split
from tunewise.stages import split_file


def run_demo(console: Console, runs_root: Path) -> int:
    started = time.perf_counter()
    console.print(Rule("1/3 bundled assets"))
    with console.status("Preparing the bundled dataset and tokenizer (first run converts them once) …"):
        data = assets.bundled_dataset_path()
        assets.bundled_tokenizer_path()
    console.print(f"dataset: {data}")
    console.print(Rule("2/3 tunewise check"))
    with console.status(f"Checking {data.name} …"):
        report = check_file(data)
    render_check(report, console)
    if report.exit_code:
        console.print("[red]The bundled data has errors; this should not happen. Please report it.[/]")
        return report.exit_code
    console.print(Rule("3/3 tunewise split"))
    outcome = split_file(data, runs_root=runs_root)
    render_split(outcome, console)
    console.print(f"\n[bold]done in {time.perf_counter() - started:.1f} s.[/] Next: `tunewise runs --runs-dir "
                  f"{runs_root}` lists runs; `tunewise check YOUR_DATA.jsonl` checks your own data.")
    return 0
