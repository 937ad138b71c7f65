"""Typed settings shared by the experiment and every arm: data, task, split, evaluation, cost, and the arm base
classes each arm module's config builds on.

Pydantic models only, every field described, unknown keys refused (a typo must not silently fall back to a
default). Knows nothing about arms' behaviour, models or files; imports no torch, scikit-learn or scipy, so
loading and checking an experiment file is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    path: Path = Field(description="Data file (JSONL, JSON, CSV/TSV, Parquet or Excel .xlsx). Relative paths are relative "
                                   "to the YAML file. The special value `bundled:bbc-news` is the bundled BBC News dataset "
                                   "(topic classification); `bundled:bbc-headlines` the same articles as headline "
                                   "writing (input: the body, output: its first line, the headline).")
    format: Literal["jsonl", "json", "csv", "parquet", "xlsx"] | None = Field(None, description="Container format; default: from the extension.")
    mapping: dict[str, str] | None = Field(None, description="Column mapping, e.g. {input: body, output: category}, when the "
                                                             "data does not use a standard shape; roles: input, output, "
                                                             "system, instruction, id. Default: inferred from the columns "
                                                             "of a table (`tunewise check` prints the guess).")
    encoding: str | None = Field(None, description="Text encoding of the file, e.g. cp1252 or utf-16; default: UTF-8, "
                                                   "with lines in a legacy encoding detected and reported.")
    sheet: str | None = Field(None, description="Excel workbooks: the sheet to read; default: the first.")
    test: Path | None = Field(None, description="Your own test file (same columns as `path`), used as the test split "
                                                "instead of a random one; checked like `path`. Relative to the YAML file.")
    val: Path | None = Field(None, description="Your own validation file; default: drawn from `path` "
                                               "(split.val_fraction of it).")
    allow_leakage: bool = Field(False, description="Run even when test or validation inputs also appear (exactly or "
                                                   "as near duplicates) in the training data; scores will be optimistic.")


class TaskConfig(Strict):
    type: Literal["classify", "extract", "generate"] = Field(description="What the model must do with each input.")
    labels: list[str] | dict[str, str] | None = Field(
        None, description="Classification labels; default: every label in the training split. A mapping from the "
                          "file's codes to names ({\"0\": negative, \"1\": positive}) makes prompts use the names and "
                          "maps predictions back to the codes.")
    instructions: str | None = Field(None, description="Task instructions given to prompted models; default: the task's own.")
    json_schema: dict[str, Any] | None = Field(None, description="For extract: the JSON schema answers must follow.")
    max_input_words: int = Field(200, ge=8, description="Inputs (and exemplars) are cut to this many words in prompts, "
                                                        "so few-shot prompts stay within small models' budgets.")
    exemplar_words: int | None = Field(None, ge=8, description="Exemplars (few-shot and retrieval) are cut to this many "
                                       "words; default: max_input_words. Short exemplars still show the answer format "
                                       "and make k-shot prompts several times cheaper to score.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Generation budget for extract/generate tasks.")

    @field_validator("labels", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        """YAML reads `{0: negative}` with an integer key and `[0, 1]` as integers; labels in files are text."""
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(value, list):
            return [v if isinstance(v, str) else str(v) for v in value]
        return value

    @field_validator("labels")
    @classmethod
    def _names_distinct(cls, value: Any) -> Any:
        if isinstance(value, dict):
            names = list(value.values())
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"label names must be distinct; {repeated} name more than one code")
        return value


class SplitConfig(Strict):
    seed: int = Field(13, description="Seed of the frozen split and of every sampled choice (exemplars, subsets).")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of examples held out for validation.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of examples held out for the head-to-head test.")
    stratify: bool = Field(True, description="Keep label proportions equal across splits.")
    max_test: int | None = Field(None, ge=1, description="Evaluate every arm on this many test examples (a stratified, "
                                                          "seeded subset) to bound time on a CPU; default: the whole test split.")
    by: str | None = Field(None, description="A date/time column (example metadata): the newest test_fraction of the "
                                             "rows is the test split and the next newest val_fraction the validation "
                                             "split, instead of a random draw. Rows whose date cannot be read are "
                                             "reported and left out.")

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1 so examples remain for training")
        return self


class ArmConfig(Strict):
    """What every arm has: a unique name. Each arm module subclasses it with `type: Literal["<type>"]`."""

    name: str = Field(description="Unique arm name; used for predictions/<name>.jsonl and in the report.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


class LocalArmConfig(ArmConfig):
    """A prompted arm on a local model: which model, precision, batch and prompt template."""

    model: str = Field("smollm2", description="Local folder, hub id, or `smollm2` for the bundled SmolLM2-135M-Instruct.")
    precision: Literal["auto", "bf16", "fp32", "fp16"] = Field("auto", description="auto = bf16 where the hardware runs it fast, else fp32.")
    batch_size: int = Field(8, ge=1, le=512, description="Examples per forward pass.")
    prompt: str = Field("default", description="Prompt template: a named variant of the task (default, terse, cot).")
    variants: list[str] | None = Field(None, description="Several prompt templates compared as separate arms named `<name>@<variant>`.")


class RemotePrice(Strict):
    input_per_million: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_million: float = Field(ge=0, description="USD per million completion tokens.")
    as_of: str = Field(description="When the price was read (prices change; the report shows this date).")


class CostConfig(Strict):
    hardware_usd_per_hour: float | None = Field(
        None, ge=0, description="What an hour of the machine running local arms costs; local cost = measured "
                                "seconds x this. Unset: the dated price table's row for the detected hardware "
                                "(CUDA GPU name, else CPU cores x a per-vCPU price); the report names the row.")
    hardware_price_table: str | None = Field(
        None, description="Your own copy of tunewise/catalog/hardware_prices.yaml (a path), used when "
                          "hardware_usd_per_hour is unset.")
    remote_prices: dict[str, RemotePrice] = Field(default_factory=dict, description="Per remote model name: token "
                                                                                      "prices, user-editable and dated.")
    requests_per_day: float = Field(1000.0, gt=0, description="Requests a day you expect to serve: sets the payback "
                                                             "period of training and the volume it is amortised over.")
    horizon_days: float = Field(365.0, gt=0, description="Days over which training cost is amortised when arms are "
                                                         "compared per request (volume = requests_per_day x this).")


class PerturbationConfig(Strict):
    """One way of damaging test inputs for the robustness check (see tunewise.evaluate.robustness)."""

    kind: Literal["typos", "case", "whitespace", "punctuation", "truncate"] = Field(
        description="typos: letter swaps, drops, insertions and keyboard-neighbour slips; case: upper, lower or "
                    "random casing; whitespace: extra spaces and line breaks between words; punctuation: all "
                    "punctuation removed; truncate: only the first part of the input kept.")
    rate: float = Field(0.05, ge=0, le=1, description="typos: chance each letter is edited; whitespace: chance each "
                                                        "gap between words is widened or broken.")
    mode: Literal["upper", "lower", "random"] = Field("random", description="case: which casing.")
    keep: float = Field(0.5, gt=0, le=1, description="truncate: share of the words kept, from the start.")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$",
                             description="Name in predictions/<arm>~<name>.jsonl and tables; default: derived from "
                                         "kind and parameter, e.g. typos-0.05.")


class RobustnessConfig(Strict):
    perturbations: list[PerturbationConfig] = Field(
        default_factory=list, description="Perturbations applied to a copy of the test subset; every arm is re-run on "
                                          "each copy. Empty (the default) skips the robustness check.")
    max_examples: int = Field(100, ge=1, description="Perturb about this many test examples (a stratified, seeded "
                                                     "subset of the evaluated ones; per-label rounding may add a few): "
                                                     "each perturbation re-runs every arm on them.")


class GatesConfig(Strict):
    """Hard limits an arm must meet to be considered at all; unset (the default) checks nothing."""

    min_retention: float | None = Field(None, gt=0, le=1, description="Fine-tuned arms whose general-capability "
                                                                      "retention (the forgetting probe's, "
                                                                      "training/<arm>.json) is below this are out; arms "
                                                                      "without a forgetting record pass.")
    max_robustness_drop: float | None = Field(None, ge=0, le=1, description="Arms whose largest primary-metric drop "
                                                                            "over evaluation.robustness's perturbations "
                                                                            "is above this are out; needs perturbations.")
    max_invalid_rate: float | None = Field(None, ge=0, le=1, description="Extract tasks: arms whose share of answers "
                                                                         "that are not a valid JSON object (1 - "
                                                                         "json_valid) is above this are out.")
    max_p95_latency_s: float | None = Field(None, gt=0, description="Arms whose p95 seconds per request (the "
                                                                    "single-request probe's when it ran) is above "
                                                                    "this are out.")
    max_cost_per_1k_usd: float | None = Field(None, ge=0, description="Arms whose USD per 1,000 requests, training "
                                                                      "amortised, is above this are out; an arm whose "
                                                                      "cost is unknown is out too.")


class BudgetConfig(Strict):
    """How much one `tunewise run --resume RUN --extend` may add; changing it does not change the run's config."""

    examples: int | None = Field(None, ge=1, description="Most extra test examples one --extend scores for the arms "
                                                        "in contention; default: as many as are evaluated now "
                                                        "(each extension doubles the test set).")
    minutes: float | None = Field(None, gt=0, description="Estimated minutes one --extend may take (the arms' "
                                                          "measured compute seconds per example); fewer extra "
                                                          "examples are scored to fit.")


class JudgeSettings(Strict):
    """An LLM judging the arms' answers (generate and extract tasks): see tunewise.evaluate.judge."""

    mode: Literal["pointwise", "pairwise"] = Field(
        "pointwise", description="pointwise: each answer scored on its own (evaluation.judge.scale); pairwise: "
                                 "every two arms' answers to one input compared, in both orders (A/B, then B/A); "
                                 "a win counts only when both orders agree, else it is a tie.")
    scale: Literal["1-5", "pass_fail"] = Field(
        "1-5", description="pointwise: a score from 1 to 5 (scaled to 0-1 as (s - 1) / 4), or pass/fail (1 or 0).")
    model: str | None = Field(
        None, description="The judge model: without base_url a local folder, hub id or `smollm2` (the bundled "
                          "model, the default); with base_url the model name the endpoint serves (required).")
    base_url: str | None = Field(None, description="An OpenAI-compatible endpoint for the judge, e.g. "
                                                   "http://127.0.0.1:8000/v1; unset: the judge runs locally.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="Endpoint judges: environment variable holding the "
                                                                  "key; null for none.")
    concurrency: int = Field(4, ge=1, le=256, description="Endpoint judges: requests in flight at once.")
    timeout_s: float = Field(60, gt=0, description="Endpoint judges: per-request timeout.")
    retries: int = Field(4, ge=0, le=20, description="Endpoint judges: retries on 429/5xx/timeouts.")
    precision: Literal["auto", "bf16", "fp32", "fp16"] = Field("auto", description="Local judges: precision.")
    batch_size: int = Field(8, ge=1, le=512, description="Local judges: prompts per forward pass.")
    max_tokens: int = Field(48, ge=4, le=4096, description="Endpoint judges: the reply budget (verdict and a short "
                                                          "reason).")
    rubric: str | None = Field(None, min_length=1, description="What a good answer is, in your words; default: the "
                                                               "task kind's own rubric (generate: faithful, "
                                                               "relevant, concise; extract: every field right).")
    use_reference: bool = Field(True, description="Show the judge the reference answer too; false: judge the answer "
                                                  "against the input alone.")
    arms: list[str] | None = Field(None, min_length=1, description="Arms to judge; default: every arm that "
                                                                  "finished.")

    @model_validator(mode="after")
    def _endpoint_names_its_model(self) -> JudgeSettings:
        if self.base_url is not None and not self.model:
            raise ValueError("evaluation.judge.base_url is set but evaluation.judge.model is not. Fix: set "
                             "evaluation.judge.model to the model name the endpoint serves")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"evaluation.judge.base_url {self.base_url!r} is not an http(s) URL. Fix: give the "
                             "endpoint's API root, e.g. http://127.0.0.1:8000/v1")
        return self


class EvaluationConfig(Strict):
    primary_metric: Literal["accuracy", "macro_f1", "score", "judge", "rouge_l", "chrf", "bleu", "field_f1"] | None = Field(
        None, description="The metric arms are ranked by: accuracy or macro_f1 for classification; score (the "
                          "task's own: exact match) or judge (evaluation.judge's score, 0-1) for extract/generate; "
                          "rouge_l, chrf or bleu (0-1) for generate; field_f1 for extract. Default: accuracy, or "
                          "score.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level of the paired tests between arms; "
                                                         "confidence intervals are at 1 - alpha.")
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000, description="Bootstrap resamples for confidence "
                                                                          "intervals and paired bootstrap tests "
                                                                          "(seeded with split.seed).")
    quality_bar: float | None = Field(None, ge=0, le=1, description="Absolute bar on the primary metric an arm must "
                                                                   "reach to be recommended; default: equivalent to "
                                                                   "the best arm within evaluation.margin.")
    margin: float = Field(0.02, gt=0, lt=1, description="The smallest difference in the primary metric that matters "
                                                        "(metric units; 0.02 = 2 points of accuracy or macro-F1). An "
                                                        "arm is equivalent to the best when the paired difference's "
                                                        "1 - 2 alpha (90%) interval lies inside ±margin (two "
                                                        "one-sided tests); only then may a cheaper arm be preferred.")
    baseline_arm: str | None = Field(None, description="Arm that ROI is measured against; default: the first "
                                                       "zero_shot arm, else the first arm.")
    max_failure_rate: float = Field(0.0, ge=0, le=1, description="An arm whose share of failed requests is above "
                                                                 "this is never recommended.")
    slice_by: list[str] = Field(default_factory=list, description="Example metadata fields to break metrics down by "
                                                                  "(a fairness check flags the largest gap).")
    slice_gap_warn: float = Field(0.1, ge=0, le=1, description="A gap in the primary metric between two slices of "
                                                               "one arm at least this large is reported as a warning.")
    review_size: int = Field(20, ge=0, le=1000, description="Test examples where arms disagree, sampled (seeded) "
                                                            "into the report's review sheet for a person to judge.")
    latency_probe: int = Field(30, ge=0, le=1000, description="Single requests (batch of one, after one warm-up) "
                                                              "timed per arm for its p50/p95 latency, apart from "
                                                              "batched throughput; 0 turns the probe off (remote arms "
                                                              "then make no extra calls).")
    latency_probe_seconds: float | None = Field(10.0, gt=0, description="Time budget of one arm's probe: it stops "
                                                                         "once this is spent and at least 5 requests "
                                                                         "are timed; null: always latency_probe "
                                                                         "requests.")
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig,
                                         description="Score drop of every arm on perturbed test inputs "
                                                     "(written to robustness.json).")
    budget: BudgetConfig = Field(default_factory=BudgetConfig,
                                 description="What `tunewise run --resume RUN --extend` may add per call (examples "
                                             "or minutes); it may be changed between calls.")
    gates: GatesConfig = Field(default_factory=GatesConfig,
                               description="Hard limits (retention, robustness drop, invalid outputs, p95 latency, "
                                           "cost): an arm failing one is out of the verdict, with the reason.")
    judge: JudgeSettings | None = Field(None, description="An LLM judge scoring generate/extract answers "
                                                          "(pointwise or pairwise, with a rubric); its score is the "
                                                          "metric `judge` (see docs/evidence.md). Unset: no judge.")

    @model_validator(mode="after")
    def _robustness_gate_has_perturbations(self) -> EvaluationConfig:
        if self.gates.max_robustness_drop is not None and not self.robustness.perturbations:
            raise ValueError("evaluation.gates.max_robustness_drop is set but evaluation.robustness has no "
                             "perturbations, so there is no drop to gate on. Fix: add evaluation.robustness."
                             "perturbations (e.g. [{kind: typos}]) or remove the gate")
        return self

    @model_validator(mode="after")
    def _perturbation_names_unique(self) -> EvaluationConfig:
        from tunewise.evaluate.robustness import Perturbation

        names = [Perturbation(p.kind, p.rate, p.mode, p.keep, p.name).name for p in self.robustness.perturbations]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"evaluation.robustness.perturbations: repeated name(s) {repeated}; give each a `name`")
        return self
