"""`tunewise advise`: is this data and this situation ready for fine-tuning, before any compute is spent?

A readiness checklist built from a `check` report of the data and the requirements the user states, following
the usual conditions under which fine-tuning pays off:

- enough labelled examples: hundreds per label for classification, roughly a thousand for open generation
  (fewer for extraction, whose answers are more constrained);
- clean data (errors make examples unusable; duplicates and conflicting labels cap what training can learn);
- a stable task: a fine-tuned model freezes today's labels and instructions, prompting adapts in minutes;
- enough volume that per-request savings of a small model add up;
- strict latency or privacy, which favour a small model running on your own machines;
- a training budget that covers at least one candidate.

Each item has a status (ok / warn / blocker), the evidence, and what to do. Then, per candidate base model
from the catalog, an estimate of the training tokens (the data's token lengths x the training share x
epochs), the time (tokens / the catalog's throughput) and the cost (hours x the hourly price given, or the
API's training price). These are estimates: the JSON says where every figure came from.

This module is pure logic over plain data: it knows nothing about files, tokenizers or models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tunewise.advise.catalog import Catalog, CatalogModel
from tunewise.data.records import fix_name

Status = Literal["ok", "warn", "blocker"]
SCHEMA = "tunewise.advise/1"

# Thresholds of the checklist, in one place so the reasoning can be read and argued with.
PER_LABEL_OK, PER_LABEL_MIN = 200, 50            # classification: examples per label
EXAMPLES_OK = {"generate": 1000, "extract": 500}  # generation/extraction: examples in all
EXAMPLES_MIN = {"generate": 200, "extract": 100}
IMBALANCE_WARN = 10.0                            # most common label / least common label
HIGH_VOLUME, LOW_VOLUME = 10_000, 1_000          # requests per day
STRICT_LATENCY_MS = 500                          # below this, a large remote model is hard to fit
LONG_EXAMPLE_TOKENS = 2048                       # p95 above this makes training slow and memory-hungry
QUALITY_CODES = ("duplicate_example", "near_duplicate", "conflicting_labels")
PII_CODES = ("pii_email", "pii_phone", "pii_credit_card", "pii_iban", "pii_ip_address", "pii_ssn", "secret")


@dataclass(frozen=True)
class Requirements:
    """What the user states about the deployment, plus the assumptions of the estimates."""

    volume_per_day: int | None = None
    privacy: bool = False
    change_rate: Literal["low", "medium", "high"] | None = None
    latency_ms: float | None = None
    budget_usd: float | None = None
    epochs: int = 3
    train_fraction: float = 0.7
    cpu_usd_per_hour: float = 0.10
    gpu_usd_per_hour: float = 2.50


@dataclass(frozen=True)
class Item:
    key: str
    status: Status
    title: str
    evidence: str
    action: str


@dataclass(frozen=True)
class Estimate:
    """One candidate: what it is, whether it fits, and what training it would take."""

    name: str
    source: str
    kind: str
    architecture: str
    parameters: int | None
    context_length: int
    licence: str
    offline: bool
    suitable: bool
    notes: list[str]
    training_tokens: int
    cpu_hours: float | None
    gpu_hours: float | None
    cpu_usd: float | None
    gpu_usd: float | None
    api_usd: float | None
    cheapest_usd: float | None
    within_budget: bool | None
    figures: str


@dataclass
class Advice:
    data: dict[str, Any]
    requirements: Requirements
    items: list[Item]
    candidates: list[Estimate]
    assumptions: list[str] = field(default_factory=list)
    catalog: str = "shipped"

    @property
    def blockers(self) -> list[Item]:
        return [i for i in self.items if i.status == "blocker"]

    @property
    def warnings(self) -> list[Item]:
        return [i for i in self.items if i.status == "warn"]

    @property
    def summary(self) -> str:
        if self.blockers:
            keys = ", ".join(i.key for i in self.blockers)
            return (f"Not ready to fine-tune: {len(self.blockers)} blocker(s) ({keys}). "
                    "Fix them, or compare prompting, retrieval and a classical model with `tunewise run` first.")
        if self.warnings:
            return (f"Fine-tuning is worth measuring; {len(self.warnings)} warning(s) to weigh. Run the head-to-head "
                    "(`tunewise run`) and let the measured verdict decide.")
        return "Fine-tuning looks likely to pay off here: measure it with `tunewise run`."

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "summary": self.summary, "ready": not self.blockers, "data": self.data,
                "requirements": asdict(self.requirements), "checklist": [asdict(i) for i in self.items],
                "candidates": [asdict(c) for c in self.candidates], "catalog": self.catalog,
                "assumptions": self.assumptions}


# ---------------------------------------------------------------- the checklist


def advise(report: dict[str, Any], catalog: Catalog, requirements: Requirements,
           catalog_name: str = "shipped") -> Advice:
    """Advice from a `check` report (CheckReport.to_json()), a model catalog and the stated requirements."""
    task = report["task"]
    stats = report.get("stats", {})
    tokens = stats.get("tokens", {}).get("total", {})
    prompt_tokens = stats.get("tokens", {}).get("prompt", {})
    data = {"path": report.get("path"), "task": task, "examples": stats.get("examples", 0),
            "errors": report["summary"]["errors"], "warnings": report["summary"]["warnings"],
            "labels": stats.get("labels"), "tokens_total": tokens, "tokenizer": report.get("tokenizer"),
            "context_length": report.get("context_length")}
    by_code = report["summary"].get("by_code", {})
    items = [_data_quality(report, by_code), _volume_of_examples(task, stats)]
    if task == "classify":
        items.append(_label_balance(stats.get("labels") or {}))
    items += [_lengths(tokens, report.get("context_length")), _stability(requirements.change_rate),
              _volume(requirements.volume_per_day), _latency(requirements.latency_ms),
              _privacy(requirements.privacy, by_code)]
    candidates = [_estimate(model, task, stats.get("examples", 0), tokens, prompt_tokens, requirements)
                  for model in catalog.models]
    items.append(_budget(requirements.budget_usd, candidates))
    candidates.sort(key=lambda c: (not c.suitable, c.cheapest_usd if c.cheapest_usd is not None else float("inf"),
                                   c.name))
    return Advice(data, requirements, items, candidates, _assumptions(requirements, report), catalog_name)


def _data_quality(report: dict[str, Any], by_code: dict[str, int]) -> Item:
    errors = report["summary"]["errors"]
    if errors or not report.get("stats", {}).get("examples"):
        return Item("data_quality", "blocker", "Data is usable",
                    f"{errors:,} error(s) make lines unusable ({_codes(by_code, exclude=())})" if errors
                    else "no valid examples",
                    f"run `tunewise check {report.get('path')}` for line numbers, then "
                    f"`--fix {fix_name(str(report.get('path')), report.get('format'))}`")
    found = {code: by_code[code] for code in QUALITY_CODES if by_code.get(code)}
    if found:
        shown = ", ".join(f"{n:,} {code}" for code, n in found.items())
        return Item("data_quality", "warn", "Data is usable", f"no errors; {shown}",
                    "drop repeats and settle conflicting answers (`tunewise check --fix`): they inflate scores and "
                    "cap what training can learn")
    return Item("data_quality", "ok", "Data is usable", "no errors, no duplicates or conflicting labels", "none")


def _codes(by_code: dict[str, int], exclude: tuple[str, ...]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in sorted(by_code.items()) if code not in exclude) or "none"


def _volume_of_examples(task: str, stats: dict[str, Any]) -> Item:
    n = stats.get("examples", 0)
    title = "Enough labelled examples"
    if task == "classify":
        labels = stats.get("labels") or {}
        if not labels:
            return Item("examples", "blocker", title, "no labels found", "give every example a label")
        fewest_label, fewest = min(labels.items(), key=lambda kv: (kv[1], kv[0]))
        evidence = f"{n:,} examples, {len(labels)} labels; fewest: {fewest_label!r} with {fewest:,}"
        if fewest >= PER_LABEL_OK:
            return Item("examples", "ok", title, evidence + f" (>= {PER_LABEL_OK} per label)", "none")
        status: Status = "warn" if fewest >= PER_LABEL_MIN else "blocker"
        return Item("examples", status, title, evidence + f" (fine-tuning usually wants hundreds per label; "
                                                          f"below {PER_LABEL_MIN} it rarely beats few-shot prompting)",
                    f"collect or label more examples of the small labels (aim for {PER_LABEL_OK}+ each); meanwhile "
                    "compare few-shot, retrieval and the classical arm")
    ok, minimum = EXAMPLES_OK.get(task, 1000), EXAMPLES_MIN.get(task, 200)
    evidence = f"{n:,} examples for {task}"
    if n >= ok:
        return Item("examples", "ok", title, evidence + f" (>= {ok:,})", "none")
    status = "warn" if n >= minimum else "blocker"
    return Item("examples", status, title, evidence + f" (fine-tuning for {task} usually wants ~{ok:,}+)",
                f"collect more examples (aim for {ok:,}+); until then prompting with retrieved examples is the "
                "fair baseline")


def _label_balance(labels: dict[str, int]) -> Item:
    title = "Labels are covered and balanced"
    counts = ", ".join(f"{label} {n:,}" for label, n in sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])))
    if len(labels) < 2:
        return Item("labels", "blocker", title, f"only {len(labels)} label(s): {counts or 'none'}",
                    "a classifier needs at least two labels; check the output column")
    ratio = max(labels.values()) / max(min(labels.values()), 1)
    if ratio > IMBALANCE_WARN:
        return Item("labels", "warn", title, f"largest/smallest label = {ratio:.1f}x: {counts}",
                    "add examples of the rare labels, or judge by macro-F1 (the run reports it)")
    return Item("labels", "ok", title, f"largest/smallest label = {ratio:.1f}x: {counts}", "none")


def _lengths(tokens: dict[str, Any], context: int | None) -> Item:
    title = "Examples fit the context"
    if not tokens:
        return Item("lengths", "warn", title, "no token statistics", "check the data")
    evidence = f"tokens per example: p50 {tokens['p50']:,}, p95 {tokens['p95']:,}, max {tokens['max']:,}"
    if context and tokens["max"] > context:
        return Item("lengths", "warn", title, evidence + f"; longer than the tokenizer's context ({context:,})",
                    "shorten the longest examples or pick a candidate with a longer context; they would be truncated")
    if tokens["p95"] > LONG_EXAMPLE_TOKENS:
        return Item("lengths", "warn", title, evidence + f" (p95 above {LONG_EXAMPLE_TOKENS:,}: slow, memory-hungry "
                                                         "training)", "trim inputs to what the task needs")
    return Item("lengths", "ok", title, evidence, "none")


def _stability(change_rate: str | None) -> Item:
    title = "The task is stable"
    if change_rate is None:
        return Item("stability", "warn", title, "change rate not stated",
                    "pass --change-rate low|medium|high: a fine-tuned model freezes today's labels and instructions")
    if change_rate == "low":
        return Item("stability", "ok", title, "labels and instructions change rarely", "none")
    if change_rate == "medium":
        return Item("stability", "warn", title, "labels or instructions change now and then",
                    "budget a retraining each time they change, and keep the training data current")
    return Item("stability", "blocker", title, "labels or instructions change often",
                "prefer prompting or retrieval (changed in minutes); fine-tune once the task settles")


def _volume(per_day: int | None) -> Item:
    title = "Volume makes per-request savings matter"
    if per_day is None:
        return Item("volume", "warn", title, "request volume not stated",
                    "pass --volume N (requests per day): savings per request only pay back training at volume")
    if per_day >= HIGH_VOLUME:
        return Item("volume", "ok", title, f"{per_day:,} requests/day (>= {HIGH_VOLUME:,})", "none")
    if per_day >= LOW_VOLUME:
        return Item("volume", "ok", title, f"{per_day:,} requests/day: moderate",
                    "check the payback time in the run's cost figures")
    return Item("volume", "warn", title, f"{per_day:,} requests/day (< {LOW_VOLUME:,}): small savings per day",
                "a prompted or hosted model is likely cheaper overall unless quality or privacy demand otherwise")


def _latency(latency_ms: float | None) -> Item:
    title = "Latency requirement"
    if latency_ms is None:
        return Item("latency", "ok", title, "no latency requirement stated", "none")
    if latency_ms <= STRICT_LATENCY_MS:
        return Item("latency", "ok", title, f"{latency_ms:,.0f} ms per request: strict, which favours a small "
                                            "fine-tuned model on your own hardware",
                    "prefer the smallest candidate that reaches the quality bar; check p50/p95 in the run")
    return Item("latency", "ok", title, f"{latency_ms:,.0f} ms per request: relaxed; larger or remote models fit",
                "none")


def _privacy(privacy: bool, by_code: dict[str, int]) -> Item:
    title = "Privacy"
    found = sum(by_code.get(code, 0) for code in PII_CODES)
    if privacy:
        return Item("privacy", "ok", title, "data must stay on your machines: only local candidates are suitable"
                    + (f"; {found:,} personal-data or secret finding(s) in the data" if found else ""),
                    "redact before training (`tunewise check --fix clean.jsonl --redact-pii`)" if found else "none")
    if found:
        return Item("privacy", "warn", title, f"{found:,} personal-data or secret finding(s) in the data, and "
                                              "--privacy not set (API candidates are considered)",
                    "pass --privacy if the data may not leave your machines; redact with `--fix --redact-pii`")
    return Item("privacy", "ok", title, "no personal data or secrets found; no privacy constraint stated", "none")


def _budget(budget: float | None, candidates: list[Estimate]) -> Item:
    title = "Training fits the budget"
    suitable = [c for c in candidates if c.suitable and c.cheapest_usd is not None]
    if not suitable:
        return Item("budget", "blocker", "A suitable base model exists",
                    "no catalog model suits this task and these requirements",
                    "add a model to a catalog of your own (--catalog) or relax the requirements")
    cheapest = min(suitable, key=lambda c: c.cheapest_usd or 0.0)
    evidence = f"cheapest suitable: {cheapest.name}, about {_usd(cheapest.cheapest_usd)} per training run"
    if budget is None:
        return Item("budget", "ok", title, evidence + "; no budget stated", "pass --budget USD to check against it")
    fitting = [c for c in suitable if c.within_budget]
    if not fitting:
        return Item("budget", "blocker", title, evidence + f", above the ${budget:,.2f} budget",
                    "raise the budget, train fewer epochs or on a sample, or choose a smaller model")
    return Item("budget", "ok", title, f"{len(fitting)} of {len(suitable)} suitable candidate(s) fit the "
                                       f"${budget:,.2f} budget; " + evidence, "none")


# ---------------------------------------------------------------- candidates


def _estimate(model: CatalogModel, task: str, examples: int, tokens: dict[str, Any], prompt_tokens: dict[str, Any],
              req: Requirements) -> Estimate:
    notes: list[str] = []
    suitable = True
    if task not in model.tasks:
        suitable = False
        notes.append(f"cannot be fine-tuned for {task} (tasks: {', '.join(model.tasks)})")
    if req.privacy and model.kind == "api":
        suitable = False
        notes.append("hosted: training data would leave your machines (--privacy)")
    if model.kind == "api" and req.latency_ms is not None and req.latency_ms <= STRICT_LATENCY_MS:
        notes.append("hosted: every request adds a network round trip; measure it against --latency-ms")
    lengths = prompt_tokens if model.architecture == "encoder" else tokens
    if lengths and lengths.get("p50", 0) > model.context_length:
        suitable = False
        notes.append(f"typical example ({lengths['p50']:,} tokens) exceeds its context ({model.context_length:,})")
    elif lengths and lengths.get("p95", 0) > model.context_length:
        notes.append(f"p95 example ({lengths['p95']:,} tokens) exceeds its context ({model.context_length:,}): "
                     "long examples would be truncated")
    if model.offline:
        notes.append("ships with tunewise: available offline")
    per_epoch = min(int(lengths.get("sum", 0)), examples * model.context_length) if lengths else 0
    training_tokens = int(per_epoch * req.train_fraction * req.epochs)
    cpu_hours = training_tokens / model.throughput.cpu / 3600 if model.throughput.cpu else None
    gpu_hours = training_tokens / model.throughput.gpu / 3600 if model.throughput.gpu else None
    cpu_usd = cpu_hours * req.cpu_usd_per_hour if cpu_hours is not None else None
    gpu_usd = gpu_hours * req.gpu_usd_per_hour if gpu_hours is not None else None
    api_usd = (training_tokens / 1e6 * model.training_usd_per_million_tokens
               if model.training_usd_per_million_tokens is not None else None)
    costs = [c for c in (cpu_usd, gpu_usd, api_usd) if c is not None]
    cheapest = min(costs) if costs else None
    within = None if req.budget_usd is None or cheapest is None else cheapest <= req.budget_usd
    if within is False:
        notes.append(f"about {_usd(cheapest)} per training run: over the ${req.budget_usd:,.2f} budget")
    return Estimate(model.name, model.source, model.kind, model.architecture, model.parameters, model.context_length,
                    model.licence, model.offline, suitable, notes, training_tokens, _round(cpu_hours),
                    _round(gpu_hours), _round(cpu_usd), _round(gpu_usd), _round(api_usd), _round(cheapest), within,
                    model.figures)


def _usd(value: float | None) -> str:
    return "under $0.01" if value is not None and value < 0.01 else f"${value or 0:,.2f}"


def _round(value: float | None) -> float | None:
    """Four significant figures: estimates this rough should not look precise, and JSON stays stable."""
    return None if value is None else float(f"{value:.4g}")


def _assumptions(req: Requirements, report: dict[str, Any]) -> list[str]:
    return [
        "All times and costs are estimates, not measurements: measure with `tunewise run` before deciding.",
        f"Training tokens = the data's token lengths ({report.get('tokenizer')} tokenizer; other models' tokenizers "
        f"count differently) x {req.train_fraction:g} (the training share of the split) x {req.epochs} epoch(s); "
        "encoders see the prompt only; the total is capped at examples x the model's context.",
        "Time = training tokens / the catalog's throughput for that model (see each model's `figures` for their "
        "source); throughput varies severalfold with hardware, sequence length, batch size and LoRA vs full.",
        f"Cost = hours x ${req.cpu_usd_per_hour:g}/h on a CPU or ${req.gpu_usd_per_hour:g}/h on a GPU "
        "(--cpu-usd-per-hour/--gpu-usd-per-hour; defaults are placeholders, not quotes), or the API's training "
        "price per million tokens from the catalog (prices change: check the date in `figures`).",
        "One training run; a hyperparameter search multiplies it.",
    ]
