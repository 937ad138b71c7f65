"""The README and docs stay true and self-contained: every relative link names a file in the repository, no
link leaves it, and the figures the README quotes for the demo are the shipped example's settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_every_link_stays_inside_the_repository_and_resolves():
    problems = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if re.match(r"^[a-z]+:", target):
                problems.append(f"{doc.name}: {target} points outside the repository")
            elif path and not (doc.parent / path).exists():
                problems.append(f"{doc.name}: {target} does not exist")
    assert not problems, "\n".join(problems)


def test_the_readme_quotes_the_shipped_demo_settings():
    config = yaml.safe_load((ROOT / "examples" / "bbc-news.yaml").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    arms = {arm["name"]: arm for arm in config["arms"]}
    assert f"max_test: {config['split']['max_test']}" in readme
    assert f"max_examples: {config['evaluation']['robustness']['max_examples']}" in readme
    assert f"SmolLM2 on {arms['lora']['max_train_examples']} training articles" in readme
    assert f"MiniLM head trains on {arms['minilm-head']['max_train_examples']}" in readme
    for name in arms:
        assert f"│ {name} " in readme or name.split("@")[0] in readme, name
