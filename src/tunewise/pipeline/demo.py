"""`tunewise demo` / `make demo`: the main job on the bundled defaults, start to finish, offline.

Prepare the bundled assets, check the bundled BBC News data and print its report and statistics, then run
the head-to-head of `examples/bbc-news.yaml` on one frozen split: zero-shot, few-shot, retrieval, classical,
an ensemble, a LoRA-fine-tuned SmolLM2 and a MiniLM classifier head, with robustness re-runs, the evidence
(intervals, paired tests, cost) and the verdict, which is printed with the path of the HTML report. Glue only.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from tunewise import assets
from tunewise.cli.experiment_view import render_result
from tunewise.config import load_experiment
from tunewise.data.check_report import check_file
from tunewise.data.check_view import render_check
from tunewise.pipeline.experiment import rich_progress, run_experiment

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bbc-news.yaml"


def run_demo(console: Console, runs_root: Path, overrides: list[str] | None = None) -> int:
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
    console.print(Rule("3/3 tunewise run examples/bbc-news.yaml"))
    if not EXAMPLE.is_file():
        console.print(f"[red]{EXAMPLE} not found: the demo runs from a source checkout (`make demo`).[/]")
        return 2
    experiment = load_experiment(EXAMPLE, [f"runs_dir={runs_root}", *(overrides or [])])
    with rich_progress(console) as progress:
        result = run_experiment(experiment, progress=progress, log=lambda m: console.print(escape(m)))
    render_result(result, console)
    console.print(f"\n[bold]done in {time.perf_counter() - started:.1f} s.[/] Next: `tunewise runs --runs-dir "
                  f"{escape(str(runs_root))}` lists runs; `tunewise check YOUR_DATA.jsonl` checks your own data; "
                  "`tunewise init` starts an experiment of your own.")
    return 1 if result.failures else 0
