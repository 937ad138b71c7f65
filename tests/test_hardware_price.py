"""Local arms are never silently free: the hourly price comes from the user or from a dated table chosen by the
detected hardware, its source is recorded, and money is printed with three significant figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence_cases import classify_run

from tunewise.config import ConfigError, load_experiment
from tunewise.evaluate.evidence import build_results
from tunewise.evaluate.hardware_price import PriceTableError, _table, cpu_count, price_from_table, resolve_hourly
from tunewise.evaluate.money import usd
from tunewise.settings import CostConfig


def test_the_shipped_table_prices_cpus_per_core_and_gpus_by_name() -> None:
    table, source = _table(None)
    cpu = price_from_table(table, source, None, 2)
    assert cpu.usd_per_hour == pytest.approx(2 * table["cpu"][0]["usd_per_vcpu_hour"]) and cpu.usd_per_hour > 0
    assert cpu.hardware == "2 CPU core(s)" and cpu.as_of and "shipped" in cpu.source
    h200 = price_from_table(table, source, "NVIDIA H200", 16)
    assert h200.row.startswith("NVIDIA H200") and h200.usd_per_hour > cpu.usd_per_hour
    other = price_from_table(table, source, "Some Future GPU", 16)
    assert other.row == "any other CUDA GPU" and other.usd_per_hour > 0


def test_the_users_price_wins_and_an_unset_price_uses_the_table() -> None:
    assert resolve_hourly(CostConfig(hardware_usd_per_hour=0.4)).describe() == \
        "$0.4/hour, set in cost.hardware_usd_per_hour"
    zero = resolve_hourly(CostConfig(hardware_usd_per_hour=0.0))  # an explicit 0 is the user's choice
    assert zero.usd_per_hour == 0 and not zero.row
    default = resolve_hourly(CostConfig())
    assert default.usd_per_hour > 0 and default.hardware == f"{cpu_count()} CPU core(s)"
    assert "row 'general-purpose x86 VM, per vCPU'" in default.describe() and default.as_of in default.describe()


def test_a_users_table_is_read_and_a_broken_one_names_the_fix(tmp_path: Path) -> None:
    mine = tmp_path / "prices.yaml"
    mine.write_text('cpu: [{name: my rack, usd_per_vcpu_hour: 0.5, as_of: "2026-11-30"}]\ngpu: []\n')
    price = resolve_hourly(CostConfig(hardware_price_table=str(mine)))
    assert price.row == "my rack" and price.source == str(mine) and price.usd_per_hour == pytest.approx(0.5 * cpu_count())
    broken = tmp_path / "broken.yaml"
    broken.write_text("cpu: []\n")
    with pytest.raises(PriceTableError, match="lacks a usable row.*Fix: copy the shipped"):
        resolve_hourly(CostConfig(hardware_price_table=str(broken)))


def test_the_table_path_is_relative_to_the_yaml_and_a_missing_one_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text('cpu: [{name: mine, usd_per_vcpu_hour: 1, as_of: "2026-12-01"}]\n')
    body = "name: x\ndata: {path: d.jsonl}\ntask: {type: classify}\narms: [{name: zs, type: zero_shot}]\ncost:\n"
    (tmp_path / "ok.yaml").write_text(body + "  hardware_price_table: prices.yaml\n")
    assert load_experiment(tmp_path / "ok.yaml").cost.hardware_price_table == str((tmp_path / "prices.yaml").resolve())
    (tmp_path / "bad.yaml").write_text(body + "  hardware_price_table: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:6: cost.hardware_price_table: .*nowhere.yaml does not exist"):
        load_experiment(tmp_path / "bad.yaml")


@pytest.mark.parametrize(("value", "shown"), [
    (None, "unknown"), (0.0, "$0"), (0.000123456, "$0.000123"), (0.0123456, "$0.0123"), (0.5, "$0.500"),
    (3.14159, "$3.14"), (12.345, "$12.35"), (1234.5, "$1,234"), (-0.00456, "-$0.00456")])
def test_money_keeps_three_significant_figures(value: float | None, shown: str) -> None:
    assert usd(value) == shown


def test_an_unpriced_run_costs_its_compute_at_the_tables_price(tmp_path: Path) -> None:
    exp, task, test, done = classify_run(tmp_path, cost={"hardware_usd_per_hour": None})
    results = build_results(exp, tmp_path, "r1", task, test, done, {})
    price = results["cost_assumptions"]["hardware_price"]
    assert price["row"] and price["as_of"] and results["cost_assumptions"]["hardware_usd_per_hour"] == price["usd_per_hour"]
    for arm in results["arms"].values():
        assert arm["cost"]["per_1k_usd"] > 0 and usd(arm["cost"]["per_1k_usd"]) != "$0"
        per_1k = 1000 * arm["latency"]["compute_s_total"] / arm["summary"]["n"]
        assert arm["latency"]["compute_s_per_1k"] == pytest.approx(per_1k)
        assert arm["cost"]["per_1k_usd"] == pytest.approx(per_1k * price["usd_per_hour"] / 3600)
