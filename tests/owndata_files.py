"""Small files shaped like the real ones newcomers bring (issue 18): a tweets CSV, a drug-review TSV with an
unnamed index column and metadata, legacy encodings, HTML entities, a workbook, a train/test pair and a dated
CSV. Each builder is seeded, writes a few hundred rows at most, and returns the path."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

AIRLINE = {
    "positive": ["love the new seats on this plane", "great crew and a smooth flight home", "on time and the staff "
                 "were friendly", "thanks for the upgrade today", "best service I had in years"],
    "negative": ["delayed three hours again tonight", "lost my bag and nobody helps", "rude agent at the gate this "
                 "morning", "cancelled with no notice at all", "worst customer service ever"],
    "neutral": ["what time does boarding start", "is wifi available on this route", "flying to boston tomorrow",
                "how much is a checked bag", "which terminal for the evening flight"],
}
DRUGS = [("Lipitor", "cholesterol"), ("Zoloft", "depression"), ("Advil", "pain"), ("Prozac", "depression")]
GOOD = ["it worked well for me", "my symptoms are gone after a week", "I feel great and have no side effects",
        "it helped a lot with little trouble"]
BAD = ["it did nothing for me", "terrible side effects and headaches", "I had to stop after two days",
       "it made everything worse"]


def tweets_rows(n: int = 240, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["positive", "negative", "neutral"][i % 3]
        text = f"@airline {rng.choice(AIRLINE[label])} flight {i} {rng.choice(['#travel', '#fly', ''])}".strip()
        rows.append((label, f"{rng.random():.3f}", text))
    return rows


def write_csv(path: Path, header: list[str], rows: list[tuple], *, delimiter: str = ",", encoding: str = "utf-8",
              newline: str = "\n") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def tweets_csv(folder: Path, n: int = 240, name: str = "tweets.csv") -> Path:
    return write_csv(folder / name, ["sentiment", "confidence", "text"], tweets_rows(n))


def drug_rows(n: int = 200, seed: int = 1, entities: bool = False) -> list[tuple]:
    """`rating` 1-10 follows the review's words; drug and condition and useful count are metadata."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        drug, condition = DRUGS[i % len(DRUGS)]
        good = i % 2 == 0
        words = rng.choice(GOOD if good else BAD)
        if entities:
            words = words.replace("it ", "it&#039;s been ", 1) + " &amp; I&rsquo;m glad<br /><br />"
        rating = rng.choice([8, 9, 10]) if good else rng.choice([1, 2, 3])
        date = f"20{10 + i % 10:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        rows.append((1000 + i, drug, condition, f'"{words} ({drug}, day {i})"', rating, date, rng.randint(0, 90)))
    return rows


def drug_tsv(folder: Path, n: int = 200, entities: bool = False, name: str = "drugs.tsv") -> Path:
    header = ["", "drugName", "condition", "review", "rating", "date", "usefulCount"]
    return write_csv(folder / name, header, drug_rows(n, entities=entities), delimiter="\t")


CP1252_WORDS = ["caf\u00e9", "na\u00efve", "r\u00e9sum\u00e9", "don\u2019t", "\u201cgreat\u201d", "fa\u00e7ade",
                "d\u00e9j\u00e0 vu", "\u2026"]


def cp1252_csv(folder: Path, n: int = 120) -> Path:
    """Every third row has Windows-1252 characters (curly quotes, accents); the rest is ASCII."""
    rows = []
    for i, (label, _, text) in enumerate(tweets_rows(n, seed=3)):
        if i % 3 == 0:
            text = f"{text} {CP1252_WORDS[i % len(CP1252_WORDS)]}"
        rows.append((text, label))
    return write_csv(folder / "legacy.csv", ["text", "sentiment"], rows, encoding="cp1252", newline="\r\n")


def utf16_csv(folder: Path, n: int = 90) -> Path:
    rows = [(text + " \u00fcber", label) for label, _, text in tweets_rows(n, seed=4)]
    return write_csv(folder / "wide.csv", ["review", "label"], rows, encoding="utf-16")


def xlsx_file(folder: Path, n: int = 90) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "tickets"
    sheet.append(["ticket_id", "category", "body", "priority"])
    for i, (label, _, text) in enumerate(tweets_rows(n, seed=5)):
        sheet.append([i + 1, label, text, ["low", "high"][i % 2]])
    book.create_sheet("notes").append(["nothing", "here"])
    path = folder / "tickets.xlsx"
    book.save(path)
    return path


def train_test_pair(folder: Path, leak: bool = True) -> tuple[Path, Path]:
    rows = tweets_rows(240, seed=6)
    train, test = rows[:180], rows[180:]
    if leak:
        test = test[:-1] + [(train[7][0], "0.5", train[7][2].upper() + "!")]  # a near duplicate of a training row
    header = ["sentiment", "confidence", "text"]
    return write_csv(folder / "train.csv", header, train), write_csv(folder / "test.csv", header, test)


def dated_csv(folder: Path, n: int = 150, bad_dates: int = 2) -> Path:
    """Rows in shuffled order with a `date` column in mixed formats; `bad_dates` rows have unparseable dates."""
    rng = random.Random(8)
    rows = []
    for i, (label, _, text) in enumerate(tweets_rows(n, seed=9)):
        day = 1 + i % 28
        month = 1 + (i // 28) % 12
        date = f"2023-{month:02d}-{day:02d}" if i % 2 else f"{day:02d} {['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][month - 1]} 2023"
        rows.append((text, label, date))
    for k in range(bad_dates):
        rows[k * 5] = (rows[k * 5][0], rows[k * 5][1], "sometime")
    rng.shuffle(rows)
    return write_csv(folder / "dated.csv", ["text", "sentiment", "date"], rows)
