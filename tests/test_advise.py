"""`tunewise advise`: constructed datasets reach each checklist outcome; the JSON is stable; the model
catalog is validated with errors that name the file, line, field and fix."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from tunewise.advise.catalog import CatalogError, load_catalog, parse_catalog, shipped_catalog_text
from tunewise.advise.readiness import Requirements, advise
from tunewise.cli.app import app
from tunewise.data.check_report import check_file
from tunewise.data.checks import CheckOptions
from tunewise.data.tokens import TokenCounter

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray yankee zulu amber basil cedar dune ember fern grove harbor "
         "island jasper kettle lantern meadow nectar orchard pebble quartz river saffron timber umber valley willow").split()
GOOD = Requirements(volume_per_day=50_000, privacy=True, change_rate="low", latency_ms=200, budget_usd=1000)


def sentences(n: int, seed: int, words: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, words)) + f" case {seed}-{i}" for i in range(n)]


def classify_rows(counts: dict[str, int]) -> list[dict]:
    return [{"text": text, "label": label} for seed, (label, n) in enumerate(counts.items())
            for text in sentences(n, seed)]


def judge(write, rows, requirements=GOOD, name="d.jsonl", pii=False, context=4096, task=None, extra: str = ""):
    path = write(name, "".join(json.dumps(r) + "\n" for r in rows) + extra)
    report = check_file(path, task=task, counter=TokenCounter(None, context, "words"),
                        options=CheckOptions(scan_pii=pii))
    catalog, _ = load_catalog()
    return advise(report.to_json(), catalog, requirements)


def status(advice) -> dict[str, str]:
    return {item.key: item.status for item in advice.items}


def test_ready_classification_data_passes_every_item(write):
    advice = judge(write, classify_rows({"billing": 220, "outage": 230}))
    assert status(advice) == {"data_quality": "ok", "examples": "ok", "labels": "ok", "lengths": "ok",
                              "stability": "ok", "volume": "ok", "latency": "ok", "privacy": "ok", "budget": "ok"}
    assert not advice.blockers and not advice.warnings and advice.to_json()["ready"] is True
    names = [c.name for c in advice.candidates]
    # privacy: the hosted candidate is last and unsuitable; the bundled models are marked offline
    hosted = next(c for c in advice.candidates if c.kind == "api")
    assert not hosted.suitable and "leave your machines" in hosted.notes[0] and names[-1] == hosted.name
    bundled = {c.name: c for c in advice.candidates if c.offline}
    assert set(bundled) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    assert all(c.suitable and "available offline" in " ".join(c.notes) for c in bundled.values())


def test_few_and_imbalanced_labels(write):
    advice = judge(write, classify_rows({"a": 300, "b": 20, "c": 25}))
    items = {i.key: i for i in advice.items}
    assert items["examples"].status == "blocker" and "'b' with 20" in items["examples"].evidence
    assert items["labels"].status == "warn" and "15.0x" in items["labels"].evidence
    assert advice.to_json()["ready"] is False and "blocker" in advice.summary.lower() or "Not ready" in advice.summary
    middling = judge(write, classify_rows({"a": 120, "b": 90}), name="m.jsonl")
    assert status(middling)["examples"] == "warn" and status(middling)["labels"] == "ok"


def test_data_errors_block_and_duplicates_warn(write):
    rows = classify_rows({"x": 210, "y": 210})
    broken = judge(write, rows, extra="{not json\n")
    assert status(broken)["data_quality"] == "blocker" and "invalid_json" in broken.items[0].evidence
    repeated = judge(write, rows + rows[:15], name="dup.jsonl")
    assert status(repeated)["data_quality"] == "warn" and "15 duplicate_example" in repeated.items[0].evidence


@pytest.mark.parametrize("n,expected", [(1200, "ok"), (300, "warn"), (60, "blocker")])
def test_generation_wants_about_a_thousand_examples(write, n, expected):
    rows = [{"input": q, "output": a} for q, a in zip(sentences(n, 1), sentences(n, 2))]
    advice = judge(write, rows, task="generate")
    assert status(advice)["examples"] == expected and "labels" not in status(advice)
    encoder = next(c for c in advice.candidates if c.name == "all-minilm-l6-v2")
    assert not encoder.suitable and "cannot be fine-tuned for generate" in encoder.notes[0]


@pytest.mark.parametrize("requirements,key,expected", [
    (Requirements(change_rate="high"), "stability", "blocker"),
    (Requirements(change_rate="medium"), "stability", "warn"),
    (Requirements(), "stability", "warn"),
    (Requirements(volume_per_day=200), "volume", "warn"),
    (Requirements(volume_per_day=3_000), "volume", "ok"),
    (Requirements(), "volume", "warn"),
    (Requirements(budget_usd=0.000001), "budget", "blocker"),
    (Requirements(budget_usd=10_000), "budget", "ok"),
])
def test_stated_requirements(write, requirements, key, expected):
    advice = judge(write, classify_rows({"x": 210, "y": 210}), requirements)
    assert status(advice)[key] == expected


def test_personal_data_without_privacy_warns_and_long_examples_warn(write):
    rows = classify_rows({"x": 210, "y": 210})
    rows[3]["text"] += " write to jane.doe@example.com"
    advice = judge(write, rows, Requirements(), pii=True, context=10)
    items = {i.key: i for i in advice.items}
    assert items["privacy"].status == "warn" and "--privacy" in items["privacy"].action
    assert items["lengths"].status == "warn" and "context (10)" in items["lengths"].evidence
    private = judge(write, rows, Requirements(privacy=True), pii=True, name="p.jsonl")
    assert status(private)["privacy"] == "ok" and "redact" in {i.key: i for i in private.items}["privacy"].action


def test_estimates_follow_the_token_counts_and_prices(write):
    advice = judge(write, classify_rows({"x": 210, "y": 210}), Requirements(epochs=2, gpu_usd_per_hour=4.0))
    total = advice.data["tokens_total"]["sum"]
    smol = next(c for c in advice.candidates if c.name == "smollm2-135m-instruct")
    assert smol.training_tokens == int(total * 0.7 * 2)
    catalog, _ = load_catalog()
    gpu = next(m for m in catalog.models if m.name == smol.name).throughput.gpu
    assert smol.gpu_hours == pytest.approx(smol.training_tokens / gpu / 3600, rel=1e-3)
    assert smol.gpu_usd == pytest.approx(smol.gpu_hours * 4.0, rel=1e-3)
    hosted = next(c for c in advice.candidates if c.kind == "api")
    assert hosted.suitable and hosted.api_usd == pytest.approx(smol.training_tokens / 1e6 * 3.0, rel=1e-3)
    assert any("estimates" in line for line in advice.assumptions)


def test_json_is_stable(write):
    rows = classify_rows({"x": 210, "y": 210})
    first = json.dumps(judge(write, rows).to_json(), sort_keys=True)
    second = json.dumps(judge(write, rows).to_json(), sort_keys=True)
    assert first == second
    out = json.loads(first)
    assert set(out) == {"schema", "summary", "ready", "data", "requirements", "checklist", "candidates", "catalog",
                        "assumptions"} and out["schema"] == "tunewise.advise/1"
    assert set(out["checklist"][0]) == {"key", "status", "title", "evidence", "action"}
    assert set(out["candidates"][0]) == {
        "name", "source", "kind", "architecture", "parameters", "context_length", "licence", "offline", "suitable",
        "notes", "training_tokens", "cpu_hours", "gpu_hours", "cpu_usd", "gpu_usd", "api_usd", "cheapest_usd",
        "within_budget", "figures"}


def test_cli_json_and_exit_codes(write):
    runner = CliRunner()
    small = write("small.jsonl", "".join(json.dumps(r) + "\n" for r in classify_rows({"a": 12, "b": 12})))
    result = runner.invoke(app, ["advise", str(small), "--json", "--no-pii", "--change-rate", "low"])
    assert result.exit_code == 2, result.output
    out = json.loads(result.stdout)
    assert out["ready"] is False and {"key": "examples", "status": "blocker"}.items() <= out["checklist"][1].items()
    shown = runner.invoke(app, ["advise", str(small), "--no-pii", "--volume", "100000", "--budget", "5"])
    assert shown.exit_code == 2 and "Fine-tuning readiness" in shown.stdout and "smollm2-135m-instruct" in shown.stdout
    bad = runner.invoke(app, ["advise", str(small), "--change-rate", "sometimes"])
    assert bad.exit_code == 2 and "low, medium or high" in bad.stderr


def test_shipped_catalog_loads_and_bad_catalogs_are_explained(tmp_path):
    catalog = parse_catalog(shipped_catalog_text(), "shipped")
    assert len(catalog.models) >= 6 and {m.kind for m in catalog.models} == {"local", "api"}
    text = shipped_catalog_text().replace("    context_length: 512\n", "    contex_length: 512\n", 1)
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path / "mine.yaml")
    message = str(caught.value)
    line = text.splitlines().index("    contex_length: 512") + 1
    assert f"mine.yaml:{line}: models.1.contex_length (model 'all-minilm-l6-v2')" in message
    assert "Fix: remove or rename `contex_length`" in message and "models.1.context_length" in message
    assert "Fix: add `context_length`" in message
    (tmp_path / "neg.yaml").write_text(shipped_catalog_text().replace("parameters: 134515008", "parameters: -5"))
    with pytest.raises(CatalogError, match=r"neg\.yaml:\d+: models\.0\.parameters .*got -5.*Fix: set `parameters`"):
        load_catalog(tmp_path / "neg.yaml")
    (tmp_path / "syntax.yaml").write_text("models:\n  - name: [unclosed\n")
    with pytest.raises(CatalogError, match=r"syntax\.yaml:\d+:\d+: not valid YAML"):
        load_catalog(tmp_path / "syntax.yaml")
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")


def test_strict_latency_favours_local_models_and_flags_hosted_ones(write):
    rows = classify_rows({"x": 210, "y": 210})
    strict = judge(write, rows, Requirements(latency_ms=150))
    latency = next(i for i in strict.items if i.key == "latency")
    assert "strict" in latency.evidence and "smallest candidate" in latency.action
    hosted = next(c for c in strict.candidates if c.kind == "api")
    assert any("round trip" in note for note in hosted.notes)
    relaxed = judge(write, rows, Requirements(latency_ms=3000), name="r.jsonl")
    assert "relaxed" in next(i for i in relaxed.items if i.key == "latency").evidence
    assert not any("round trip" in note for c in relaxed.candidates for note in c.notes)
