"""The `tunewise` command line: parse arguments, call stage functions, print with Rich. No logic here.

Every user-derived string printed through Rich markup is escaped: a label like "[/]" must print as text.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tunewise.cli.init_command import init
from tunewise.cli.review_command import review_app
from tunewise.cli.shared import (
    EncodingOpt,
    FormatOpt,
    MapOpt,
    MaxLineOpt,
    ModelOpt,
    RunsOpt,
    SheetOpt,
    TaskOpt,
    cannot_write,
    console,
    err,
    existing,
    fail,
    mapping_of,
)
from tunewise.cli.ui_command import ui

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Should you fine-tune? Measure it on your own data.")
app.add_typer(review_app, name="review")


@app.callback()
def _root() -> None:
    """Should you fine-tune? Measure it on your own data."""


@app.command()
def check(
    data: Annotated[Path, typer.Argument(help="Data file to check")],
    task: TaskOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    fix: Annotated[Path | None, typer.Option("--fix", help="Write a cleaned copy to this path (JSONL; .csv/.tsv for a table)")] = None,
    redact_pii: Annotated[bool, typer.Option("--redact-pii", help="With --fix: replace personal data and secrets")] = False,
    unescape_html: Annotated[bool, typer.Option("--unescape-html", help="With --fix: decode HTML entities, drop tags")] = False,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    no_pii: Annotated[bool, typer.Option("--no-pii", help="Skip the PII and secrets scan")] = False,
    max_line_bytes: MaxLineOpt = 4 * 1024 * 1024,
    encoding: EncodingOpt = None,
    sheet: SheetOpt = None,
) -> None:
    """Report every problem in a data file, line by line, before any compute is spent. Exit 2 on errors."""
    from tunewise.data.check_report import check_file
    from tunewise.data.check_view import render_check
    from tunewise.data.checks import CheckOptions
    from tunewise.data.fix import FixError, fix_file

    existing(data)
    if (redact_pii or unescape_html) and fix is None:
        raise fail(f"{'--redact-pii' if redact_pii else '--unescape-html'} works on the cleaned copy: add --fix OUT.jsonl (OUT.csv for a table)")
    column_mapping = mapping_of(mapping)
    try:
        with err.status(f"Checking {escape(str(data))} …", spinner="dots") if not as_json else nullcontext():
            report = check_file(data, task=task, model=model, fmt=fmt, mapping=column_mapping, encoding=encoding,
                                sheet=sheet, max_line_bytes=max_line_bytes, options=CheckOptions(scan_pii=not no_pii))
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        render_check(report, console)
    if fix is not None:
        try:
            result = fix_file(report, fix, redact_pii=redact_pii, unescape_html=unescape_html)
        except FixError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise cannot_write(fix, exc) from None
        out = err if as_json else console
        out.print(f"[bold]fixed:[/] kept {result.kept:,}, dropped {result.dropped:,}, repaired {result.repaired:,}, "
                  f"redacted {result.redacted:,} span(s) -> {escape(str(result.output))} "
                  f"(report: {escape(str(result.report_path))})")
        if result.merged:
            out.print(f"[yellow]warning:[/] {escape(result.merged_summary())}", soft_wrap=True)
        if result.dropped_labels:
            out.print(f"dropped by label: {escape(result.label_summary())}", soft_wrap=True)
        if result.warning:
            out.print(f"[yellow]warning:[/] {escape(result.warning)}")
    raise typer.Exit(report.exit_code)


@app.command()
def advise(
    data: Annotated[Path, typer.Argument(help="Data file to judge")],
    task: TaskOpt = None,
    volume: Annotated[int | None, typer.Option("--volume", min=0, help="Expected requests per day")] = None,
    privacy: Annotated[bool, typer.Option("--privacy", help="The data may not leave your machines")] = False,
    change_rate: Annotated[str | None, typer.Option("--change-rate", help="How often labels/instructions change: low | medium | high")] = None,
    latency_ms: Annotated[float | None, typer.Option("--latency-ms", min=0, help="Latency each request must meet")] = None,
    budget: Annotated[float | None, typer.Option("--budget", min=0, help="Training budget in USD")] = None,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="Your own model catalog YAML (default: the shipped one)")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs assumed by the estimates")] = 3,
    cpu_price: Annotated[float, typer.Option("--cpu-usd-per-hour", min=0, help="Hourly price of a CPU machine")] = 0.10,
    gpu_price: Annotated[float, typer.Option("--gpu-usd-per-hour", min=0, help="Hourly price of one GPU")] = 2.50,
    model: ModelOpt = None,
    no_pii: Annotated[bool, typer.Option("--no-pii", help="Skip the PII and secrets scan")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the advice as JSON")] = False,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    encoding: EncodingOpt = None,
    sheet: SheetOpt = None,
) -> None:
    """Before any compute: is this data (and your situation) ready for fine-tuning? Checklist and candidate models."""
    from tunewise.advise.catalog import CatalogError, load_catalog
    from tunewise.advise.readiness import Requirements
    from tunewise.advise.readiness import advise as make_advice
    from tunewise.cli.advise_view import render_advice
    from tunewise.data.check_report import check_file
    from tunewise.data.checks import CheckOptions

    existing(data)
    if change_rate is not None and change_rate not in ("low", "medium", "high"):
        raise fail(f"--change-rate {change_rate!r}: use low, medium or high")
    try:
        models, source = load_catalog(catalog)
        with err.status(f"Checking {escape(str(data))} …", spinner="dots") if not as_json else nullcontext():
            report = check_file(data, task=task, model=model, fmt=fmt, mapping=mapping_of(mapping), encoding=encoding,
                                sheet=sheet, options=CheckOptions(scan_pii=not no_pii))
    except (CatalogError, ValueError) as exc:
        raise fail(str(exc)) from None
    requirements = Requirements(volume_per_day=volume, privacy=privacy, change_rate=change_rate,  # type: ignore[arg-type]
                                latency_ms=latency_ms, budget_usd=budget, epochs=epochs, cpu_usd_per_hour=cpu_price,
                                gpu_usd_per_hour=gpu_price)
    result = make_advice(report.to_json(), models, requirements, source)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        render_advice(result, console)
    raise typer.Exit(2 if result.blockers else 0)


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="Data file to split")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same split")] = 13,
    val: Annotated[float, typer.Option(help="Validation fraction")] = 0.1,
    test: Annotated[float, typer.Option(help="Test fraction")] = 0.2,
    no_stratify: Annotated[bool, typer.Option("--no-stratify", help="Do not balance labels across splits")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of a new run folder")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --out: replace a split already there")] = False,
    runs_dir: RunsOpt = Path("runs"),
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    encoding: EncodingOpt = None,
    sheet: SheetOpt = None,
) -> None:
    """Deterministic stratified train/val/test split; duplicates and near duplicates never cross splits."""
    from tunewise.data.split import SplitError
    from tunewise.data.split_view import render_split
    from tunewise.pipeline.split_file import split_file
    from tunewise.store.runs import RunError

    existing(data)
    try:
        outcome = split_file(data, seed=seed, val_fraction=val, test_fraction=test, stratify=not no_stratify,
                             fmt=fmt, mapping=mapping_of(mapping), out_dir=out, runs_root=runs_dir, force=force,
                             encoding=encoding, sheet=sheet)
    except (SplitError, RunError, ValueError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise cannot_write(out or runs_dir, exc) from None
    render_split(outcome, console)


@app.command()
def leakage(
    first: Annotated[Path, typer.Argument(help="e.g. the training file")],
    second: Annotated[Path, typer.Argument(help="e.g. the test file")],
    as_json: Annotated[bool, typer.Option("--json", help="Print leaks as JSON")] = False,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    encoding: EncodingOpt = None,
    sheet: SheetOpt = None,
) -> None:
    """Find examples of SECOND whose input also appears (exactly or normalised) in FIRST. Exit 2 on leaks."""
    from rich.table import Table

    from tunewise.data.formats import read_examples
    from tunewise.data.split import find_leakage

    column_mapping = mapping_of(mapping)
    datasets: list[Any] = []
    for path in (first, second):
        # SECOND is read with FIRST's columns (given or inferred), as a run reads data.test: a small file must
        # not have its columns guessed anew
        columns = column_mapping or (datasets[0].mapping if datasets else None)
        try:
            data = read_examples(existing(path), fmt=fmt, mapping=columns, encoding=encoding, sheet=sheet)
        except ValueError as exc:
            raise fail(str(exc)) from None
        if not data.examples or data.error_lines or data.truncated_at:
            raise fail(f"{path}: {len(data.examples):,} valid example(s), {len(data.error_lines):,} line(s) with errors; "
                       f"a leakage check needs a clean file: run `tunewise check {path}`")
        datasets.append(data)
    leaks = find_leakage(datasets[0].examples, datasets[1].examples)
    if as_json:
        sys.stdout.write(json.dumps([leak.to_dict() for leak in leaks], indent=2) + "\n")
    elif leaks:
        table = Table(title=escape(f"{len(leaks):,} leak(s): inputs of {second.name} already in {first.name}"))
        for name in ("kind", f"{first.name} line", f"{second.name} line", "ids"):
            table.add_column(escape(name))
        for leak in leaks[:50]:
            table.add_row(leak.kind, str(leak.a_line), str(leak.b_line), escape(f"{leak.a_id} / {leak.b_id}"))
        console.print(table)
    else:
        console.print(f"[bold green]✓ no leakage[/] between {escape(str(first))} and {escape(str(second))}")
    raise typer.Exit(2 if leaks else 0)


@app.command()
def runs(runs_dir: RunsOpt = Path("runs")) -> None:
    """List run folders, newest first."""
    from rich.table import Table

    from tunewise.store.runs import list_runs

    records = list_runs(runs_dir)
    if not records:
        console.print(f"no runs under {escape(str(runs_dir))}")
        return
    table = Table(title=escape(f"Runs in {runs_dir}"))
    table.add_column("id", no_wrap=True)
    for name in ("created", "status", "command", "data sha256"):
        table.add_column(name, overflow="fold")
    for record in records:
        table.add_row(record.id, record.created_at, record.status, escape(record.command[:60]),
                      (record.data_sha256 or "")[:12])
    console.print(table)


@app.command()
def assets(
    verify: Annotated[bool, typer.Option("--verify", help="Re-check the checksums of converted assets")] = False,
) -> None:
    """Show the bundled model, embedder and dataset; convert what is missing (once, offline)."""
    from rich.table import Table

    from tunewise import assets as bundled

    rows = bundled.asset_report(convert=True)
    table = Table(title=escape(f"Bundled assets (cache: {bundled.cache_dir()})"))
    for name in ("asset", "source", "ready", "size", "path", "note"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(row.name, row.source, "✓" if row.ready else "✗", f"{row.size_bytes / 1e6:,.1f} MB",
                      escape(str(row.path)), escape(row.note))
    console.print(table)
    problems = bundled.verify() if verify else []
    for problem in problems:
        err.print(escape(f"✗ {problem.asset}: {problem.path}: {problem.problem}"), style="red")
    if verify and not problems:
        console.print("[bold green]✓ all converted assets match their recorded checksums[/]")
    raise typer.Exit(2 if problems or not all(r.ready for r in rows) else 0)


app.command()(init)
app.command()(ui)


@app.command()
def run(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML (see `tunewise init`)")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set arms.0.k=5")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run folder (skips finished work)")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore and do not fill the answer cache")] = False,
    extend: Annotated[bool, typer.Option("--extend", help="With --resume: score more of the frozen test split for "
                                                          "the arms still in contention (evaluation.budget), "
                                                          "with alpha spending over looks")] = False,
) -> None:
    """Run every arm of an experiment on one frozen split and print per-arm quality."""

    _run(experiment, overrides, resume, no_cache, only_finetune=False, arms=None, extend=extend)


@app.command()
def train(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML with `type: finetune` arms")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set arms.0.training.epochs=2")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run folder from its last complete checkpoint")] = None,
    arm: Annotated[list[str] | None, typer.Option("--arm", help="Train only this finetune arm (repeatable)")] = None,
) -> None:
    """Fine-tune the experiment's `finetune` arms on the frozen split and score them on the test split.

    SIGTERM writes a checkpoint and exits 0; `--resume RUN` continues exactly where it stopped.
    """
    _run(experiment, overrides, resume, False, only_finetune=True, arms=arm)


def _run(path: Path, overrides: list[str] | None, resume: Path | None, no_cache: bool, *, only_finetune: bool,
         arms: list[str] | None, extend: bool = False) -> None:
    """`run` and `train`. Under torchrun / accelerate launch every process runs this; process 0 prints, writes
    and evaluates, the others train quietly and exit 0 (see tunewise.train.ranks)."""
    from tunewise.arms import registry
    from tunewise.arms.base import TrainingInterrupted
    from tunewise.arms.context import no_progress
    from tunewise.cli.experiment_view import render_result
    from tunewise.config import ConfigError, load_experiment
    from tunewise.pipeline.experiment import ExperimentError, rich_progress, run_experiment
    from tunewise.store.runs import RunError
    from tunewise.train.ranks import RankError, launched, start

    existing(path)
    ranks = launched()
    try:
        config = load_experiment(path, overrides)
        if only_finetune:
            chosen = [a for a in config.arms if registry.trains(a) and (not arms or a.name in arms)]
            if not chosen:
                names = [a.name for a in config.arms if registry.trains(a)]
                raise ConfigError(f"{path}: no finetune arm to train{f' named {arms}' if arms else ''}; "
                                  f"finetune arms: {names or 'none'}. Fix: add an arm with `type: finetune`")
            config.arms = chosen
        if extend and not _plan_extension(config, resume):
            return
        ranks = start()
        log = (lambda m: console.print(escape(m))) if ranks.main else (lambda m: None)
        with rich_progress(console) if ranks.main else nullcontext(no_progress) as progress:
            result = run_experiment(config, resume=resume, progress=progress, log=log, use_cache=not no_cache,
                                    ranks=ranks)
    except TrainingInterrupted as exc:
        if ranks.main:
            console.print(f"[yellow]{escape(str(exc))}.[/] Continue with: tunewise {'train' if only_finetune else 'run'} "
                          f"{escape(str(path))} --resume {escape(str(exc.run_path))}")
        raise typer.Exit(0) from None
    except RankError:
        raise typer.Exit(2) from None  # process 0 failed first and reports it; this process only stops
    except (ConfigError, ExperimentError, RunError) as exc:
        raise fail(str(exc) if ranks.main else f"process {ranks.rank}: {exc}") from None
    except OSError as exc:
        raise cannot_write(None, exc) from None
    if not ranks.main:
        raise typer.Exit(0)
    render_result(result, console)
    raise typer.Exit(1 if result.failures else 0)


def _plan_extension(config: Any, resume: Path | None) -> bool:
    """--extend: write the next look (pipeline/extend.py) and say so; False when there is nothing to score."""
    from tunewise.pipeline.extend import plan_extension

    if resume is None:
        raise fail("--extend needs the run to extend: tunewise run EXPERIMENT --resume RUN --extend")
    plan = plan_extension(config, resume)
    console.print(escape(plan.message))
    return plan.look is not None


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `tunewise run`")],
) -> None:
    """Recompute the evidence of a finished run from its folder and rewrite results.json and the report.

    No model work: predictions, the frozen split and the manifest are all it reads, so a training or
    robustness record added later joins the report.
    """
    from tunewise.cli.experiment_view import render_verdict
    from tunewise.evaluate.evidence import EvidenceError, results_from_run
    from tunewise.report import write_report
    from tunewise.store.runs import RunError

    if not run_dir.is_dir():
        raise fail(f"{run_dir}: not a folder; give a run folder such as runs/<run-id>")
    try:
        results, metrics = results_from_run(run_dir)
        write_report(run_dir, results, metrics)
    except (EvidenceError, RunError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise cannot_write(run_dir, exc) from None
    render_verdict(results["verdict"], run_dir, console)


@app.command()
def demo(
    runs_dir: RunsOpt = Path("runs"),
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a field of examples/bbc-news.yaml")] = None,
) -> None:
    """The main job on the bundled defaults: check the BBC News data, then the head-to-head on it."""
    from tunewise.config import ConfigError
    from tunewise.pipeline.demo import run_demo

    try:
        code = run_demo(console, runs_dir, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def serve(
    run_dir: Annotated[Path | None, typer.Argument(help="Run folder whose arm to serve")] = None,
    arm: Annotated[list[str] | None, typer.Option("--arm", help="Arm of the run (repeatable; default: the arm the verdict recommends)")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Without a run: a local model folder or smollm2")] = None,
    adapters: Annotated[Path | None, typer.Option("--adapters", help="Without a run: a folder of LoRA adapter folders")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one)")] = 8000,
    api_key_file: Annotated[Path | None, typer.Option("--api-key-file", help="Accepted API keys, one per line (also: $TUNEWISE_API_KEYS)")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests admitted at once; more get 429")] = 256,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Requests per batched model call")] = 16,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="How long a batch waits to fill")] = 10.0,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Per-request time limit (504 after)")] = 120.0,
    drain_timeout_s: Annotated[float | None, typer.Option("--drain-timeout", help="After SIGTERM, how long in-flight requests may take (503 after; default: --timeout + 5 s)")] = None,
    cache_size: Annotated[int, typer.Option("--cache-size", help="Exact-match answer cache entries (0: off)")] = 4096,
    semantic_cache: Annotated[bool, typer.Option("--semantic-cache", help="Also reuse answers to near-identical questions")] = False,
    capture: Annotated[Path | None, typer.Option("--capture", help="Append answered chats to this JSONL (training format)")] = None,
    capture_pii: Annotated[str, typer.Option("--capture-pii", help="redact | skip captured records with personal data")] = "redact",
    open_network: Annotated[bool, typer.Option("--open-network", help="Allow a non-loopback --host without API keys (a proxy in front authenticates)")] = False,
    public_metrics: Annotated[bool, typer.Option("--public-metrics", help="Serve /metrics without an API key")] = False,
    public_docs: Annotated[bool, typer.Option("--public-docs", help="Serve /openapi.json and /docs without an API key")] = False,
    precision: Annotated[str, typer.Option(help="auto | bf16 | fp32 | fp16")] = "auto",
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="Folder for uploads, fine-tuning jobs and their models; turns on /v1/files and /v1/fine_tuning/jobs")] = None,
    max_upload_bytes: Annotated[int, typer.Option("--max-upload-bytes", help="Largest file POST /v1/files accepts")] = 64_000_000,
) -> None:
    """Serve a run's arm (or a model, or LoRA adapters) behind an OpenAI-compatible API."""
    from pydantic import ValidationError

    from tunewise.serve.adapters import AdapterError
    from tunewise.serve.auth import AuthConfigError
    from tunewise.serve.config import ServeConfig
    from tunewise.serve.models import ServeSetupError
    from tunewise.serve.server import run_server

    try:
        config = ServeConfig(host=host, port=port, api_key_file=api_key_file, max_queue=max_queue,
                             max_batch=max_batch, max_wait_ms=max_wait_ms, timeout_s=timeout_s,
                             drain_timeout_s=drain_timeout_s, cache_size=cache_size,
                             semantic_cache=semantic_cache, capture_path=capture, capture_pii=capture_pii,
                             open_network=open_network, public_metrics=public_metrics, public_docs=public_docs,
                             precision=precision, state_dir=state_dir, max_upload_bytes=max_upload_bytes)
        run_server(config, run=run_dir, arms=arm, model=model, adapters=adapters,
                   log=lambda m: err.print(escape(m)))
    except ValidationError as exc:
        raise fail("; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors())) from None
    except (ServeSetupError, AdapterError, AuthConfigError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port} or open a file: {exc.strerror or exc}") from None


def main() -> None:
    """Console entry point: bad input is reported by the commands; anything else is a bug, said plainly."""
    try:
        app()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a last line of defence so users see one clear line, with details on request
        from tunewise.assets import AssetError

        if isinstance(exc, AssetError):
            err.print(f"error: {exc}", markup=False, highlight=False)
            raise SystemExit(2) from None
        if os.environ.get("TUNEWISE_DEBUG"):
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc}\n"
                  "This is a tunewise bug; re-run with TUNEWISE_DEBUG=1 for the traceback and report it.",
                  markup=False, highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
