"""Own data as it is really written (issue 18, second round): flat JSON/JSONL records, CSVs with an unbalanced
quote, semicolon and pipe delimiters, French Windows-1252 text, duplicated headers in a workbook. Each test builds
its own small file."""

from __future__ import annotations

import json

import owndata_files as files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import invoke

from tunewise.data.encoding import _reads_western, decode_bytes
from tunewise.data.formats import read_examples
from tunewise.data.shapes import ColumnMapping
from tunewise.data.split import find_leakage
from tunewise.data.textnorm import normalise


def _reviews(n: int = 30) -> list[dict[str, str]]:
    return [{"review": f"the parcel arrived {'late' if i % 2 else 'early'} on day {i} and the box was fine",
             "sentiment": "np"[i % 2]} for i in range(n)]


def test_flat_jsonl_records_get_their_columns_inferred_like_a_csv(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _reviews()))
    data = read_examples(path)
    assert (data.mapping.input, data.mapping.output) == ("review", "sentiment")
    assert len(data.examples) == 30 and not data.issues
    code, out, _ = invoke("check", path, "--no-pii")
    assert code == 0 and "missing_messages_list" not in out
    assert "input=review, output=sentiment" in out


def test_flat_jsonl_with_a_tags_list_is_still_a_table(tmp_path):
    path = tmp_path / "tagged.jsonl"
    path.write_text("".join(json.dumps({**r, "tags": ["a", "b"]}) + "\n" for r in _reviews()))
    data = read_examples(path)
    assert data.mapping is not None and data.mapping.input == "review" and len(data.examples) == 30


def test_json_list_of_records_and_dict_of_columns_are_inferred(tmp_path):
    rows = _reviews()
    listed, columns = tmp_path / "list.json", tmp_path / "columns.json"
    listed.write_text(json.dumps(rows, indent=1))
    columns.write_text(json.dumps({key: [r[key] for r in rows] for key in rows[0]}, indent=1))
    for path in (listed, columns):
        data = read_examples(path)
        assert (data.mapping.input, data.mapping.output) == ("review", "sentiment"), path.name
        assert len(data.examples) == 30 and not data.issues
    by_column = read_examples(columns)
    # a record's line is where its first cell stands: `{`, `"review": [`, then one value a line
    assert [e.line for e in by_column.examples[:3]] == [3, 4, 5]
    pandas_default = tmp_path / "pandas.json"  # DataFrame.to_json(): {"column": {"row index": value}}
    pandas_default.write_text(json.dumps({key: {str(i): r[key] for i, r in enumerate(rows)} for key in rows[0]}))
    data = read_examples(pandas_default)
    assert (data.mapping.input, data.mapping.output) == ("review", "sentiment") and len(data.examples) == 30
    assert data.examples[2].input == rows[2]["review"] and not data.issues
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps({"review": ["a", "b"], "sentiment": ["p"]}))
    assert [i.code for i in read_examples(ragged).issues] == ["data_type"]


def test_chat_and_prompt_completion_jsonl_keep_their_shapes(tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q {i}"},
                                                     {"role": "assistant", "content": f"a {i}"}]}) + "\n"
                            for i in range(5)))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q {i}", "completion": f"a {i}"}) + "\n" for i in range(5)))
    assert read_examples(chat).shape == "chat" and read_examples(chat).inferred is None
    assert read_examples(pairs).shape == "prompt_completion" and read_examples(pairs).inferred is None
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"messages": "hello"}) + "\n")
    assert [i.code for i in read_examples(broken).issues] == ["missing_messages_list"]
    sharegpt = tmp_path / "sharegpt.jsonl"
    sharegpt.write_text(json.dumps({"conversation": [{"from": "human", "value": "hi"}]}) + "\n")
    assert "missing_messages_list" in [i.code for i in read_examples(sharegpt).issues]


def _tweets_with(tmp_path, line: int, old: str, new: str, n: int = 240):
    path = files.tweets_csv(tmp_path, n=n)
    lines = path.read_text().split("\n")
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines))
    return path


def test_a_quote_never_closed_is_an_error_naming_the_merged_lines(tmp_path):
    path = _tweets_with(tmp_path, 200, ",@airline", ',"@airline')  # open to the end of the file
    data = read_examples(path)
    merged = [i for i in data.issues if i.code == "unbalanced_quote"]
    assert len(merged) == 1 and merged[0].line == 200 and merged[0].field == "text"
    assert "lines 200-241" in merged[0].message and "Close the quote on line 200" in merged[0].hint
    assert len(data.examples) == 198 and not [i for i in data.issues if i.code == "invalid_csv"]


def test_a_quote_closed_rows_later_no_longer_merges_rows_silently(tmp_path):
    path = _tweets_with(tmp_path, 100, ",@airline", ',"@airline')
    lines = path.read_text().split("\n")
    lines[129] = lines[129].replace("@airline", '@air"line', 1)  # a stray quote 30 lines on closes the field
    path.write_text("\n".join(lines))
    data = read_examples(path)
    assert [(i.code, i.line) for i in data.issues if i.severity.value == "error"] == [("unbalanced_quote", 100)]
    assert "lines 100-130 (31 lines" in data.issues[0].message
    out = tmp_path / "clean.csv"
    code, printed, _ = invoke("check", path, "--no-pii", "--fix", out)
    assert code == 2 and "lost 31 line(s) that an unbalanced quote merged into one field (lines 100-130)" in printed
    report = json.loads((tmp_path / "clean.csv.fix-report.json").read_text())
    assert report["merged_by_unbalanced_quote"] == [{"lines": [100, 130], "count": 31}]
    assert len(read_examples(out).examples) == 240 - 31


def test_long_multi_line_texts_are_not_taken_for_merged_rows(tmp_path):
    rows = [(f"Dear team,\nI liked flight {i}, mostly\nbut the food, honestly,\nwas cold", "ab"[i % 2])
            for i in range(40)]
    data = read_examples(files.write_csv(tmp_path / "letters.csv", ["text", "label"], rows))
    assert len(data.examples) == 40 and not data.issues


def test_semicolon_and_pipe_delimited_csvs_are_sniffed(tmp_path):
    rows = [(f"très bien, vraiment, commande {i}", "pos" if i % 2 else "neg") for i in range(30)]
    for delimiter, name in ((";", "semi.csv"), ("|", "pipe.csv")):
        data = read_examples(files.write_csv(tmp_path / name, ["avis", "note"], rows, delimiter=delimiter))
        assert (data.mapping.input, data.mapping.output) == ("avis", "note"), name
        assert len(data.examples) == 30 and not data.issues
        assert data.examples[3].input == "très bien, vraiment, commande 3"


def test_a_comma_csv_with_semicolons_in_its_text_stays_comma(tmp_path):
    rows = [(f"late again; no help; flight {i}", "ab"[i % 2]) for i in range(30)]
    data = read_examples(files.write_csv(tmp_path / "t.csv", ["text", "label"], rows))
    assert data.examples[0].input == "late again; no help; flight 0" and len(data.examples) == 30


FRENCH = ["Le cœur du problème : « service client » absent, payé 45 € pour rien;neg",
          "Garçon très aimable, je recommande à tous;pos", "Où est passé mon colis ? Noël approche, très déçu;neg"]


def test_french_windows_1252_reads_as_cp1252_with_euro_and_guillemets(tmp_path):
    path = tmp_path / "avis.csv"
    path.write_bytes(("texte;avis\n" + "\n".join(FRENCH * 4) + "\n").encode("cp1252"))
    data = read_examples(path, mapping=ColumnMapping(input="texte", output="avis"))
    assert data.encoding == "cp1252" and len(data.examples) == 12
    assert data.examples[0].input == FRENCH[0].split(";")[0]


def test_a_few_french_lines_are_not_read_as_a_nordic_code_page():
    """charset-normalizer ranked iso8859_10 first on these (chaos 0.02 lower: noise); è read as č before."""
    lines = ["Garçon très aimable, je recommande à tous;neg", "Hélas, la pièce était cassée, très déçu;pos",
             "Où est passé mon colis ? Noël approche;neg"]
    decoded = decode_bytes(("texte;avis\n" + "\n".join(lines)).encode("cp1252"))
    assert decoded.encoding == "cp1252" and "Hélas, la pièce" in decoded.text


def test_the_western_reading_is_refused_for_slavic_text():
    assert _reads_western("Le cœur « déçu », 45 € l’été")
    assert not _reads_western("Dzień dobry, łódź żółta".encode("cp1250").decode("cp1252"))
    assert not _reads_western("Привет мир, хороший отзыв".encode("cp1251").decode("cp1252"))
    assert decode_bytes(("text,label\n" + "Привет мир, хороший отзыв,a\n" * 20).encode("cp1251")).encoding == "cp1251"


def test_a_repeated_header_in_a_workbook_is_refused_like_in_a_csv(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append([None])  # a blank first row: the header is the sheet's row 2
    book.active.append(["comment", "label", "comment"])
    for i in range(20):
        book.active.append([f"ticket {i} text", "ab"[i % 2], f"agent note {i}"])
    path = tmp_path / "dup.xlsx"
    book.save(path)
    data = read_examples(path)
    assert [(i.code, i.line) for i in data.issues] == [("invalid_xlsx", 2)]
    assert "'comment' appear more than once" in data.issues[0].message and not data.examples
    code, out, _ = invoke("check", path, "--no-pii")
    assert code == 2 and "invalid_xlsx" in out
    csv_path = files.write_csv(tmp_path / "dup.csv", ["comment", "label", "comment"], [("a", "b", "c")] * 20)
    assert [i.code for i in read_examples(csv_path).issues] == ["invalid_csv"]


def test_html_entities_and_markup_do_not_hide_a_duplicate():
    assert normalise("I don&#039;t like it<br /><br />") == normalise("I don't like it")
    assert normalise("fish &amp; chips &lt;br&gt;") == normalise("fish & chips")
    assert normalise("a <b>bold</b> word") == normalise("a bold word")


def test_leakage_sees_an_escaped_copy_of_a_training_row(tmp_path):
    rows = [(text, label) for label, _, text in files.tweets_rows(60, seed=21)]
    train = files.write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows[:40])
    escaped = rows[40:-1] + [(rows[3][0].replace("the", "th&#101;") + "<br />", rows[3][1])]
    test = files.write_csv(tmp_path / "test.csv", ["text", "sentiment"], escaped)
    leaks = find_leakage(read_examples(train).examples, read_examples(test).examples)
    assert [(leak.a_line, leak.b_line) for leak in leaks] == [(5, 21)]


def test_unescape_html_fix_counts_what_it_repaired(tmp_path):
    path = files.drug_tsv(tmp_path, n=40, entities=True)
    out = tmp_path / "clean.tsv"
    code, printed, _ = invoke("check", path, "--no-pii", "--fix", out, "--unescape-html")
    assert code == 0 and "repaired 40," in printed
    report = json.loads((tmp_path / "clean.tsv.fix-report.json").read_text())
    assert len(report["repaired"]) == 40 and report["repaired"][0]["what"].startswith("HTML entities decoded")
    assert "&#039;" not in out.read_text() and "&#039;" in path.read_text()


def test_leakage_takes_a_sheet(tmp_path):
    import openpyxl

    rows = files.tweets_rows(60, seed=22)
    for name, part in (("train.xlsx", rows[:40]), ("test.xlsx", rows[40:] + [rows[0]])):
        book = openpyxl.Workbook()
        book.active.title = "readme"
        sheet = book.create_sheet("data")
        sheet.append(["sentiment", "confidence", "text"])
        for row in part:
            sheet.append(list(row))
        book.save(tmp_path / name)
    code, out, err = invoke("leakage", tmp_path / "train.xlsx", tmp_path / "test.xlsx", "--sheet", "data", "--json")
    assert code == 2, err
    assert [(leak["a_line"], leak["b_line"]) for leak in json.loads(out)] == [(2, 22)]


CSV_PIECES = st.sampled_from([",", ";", "|", "\t", '"', "\r", "\n", "\r\n", "a", "pos", "neg", " ", "é", "\x00"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(CSV_PIECES, max_size=120), header=st.sampled_from(["text,label\n", "text;label\n", "t|l|x\n"]))
def test_delimiter_sniffing_and_the_merged_rows_check_never_raise(tmp_path, pieces, header):
    path = tmp_path / "fuzz.csv"
    path.write_bytes((header + "".join(pieces)).encode("utf-8"))
    data = read_examples(path)
    assert all(i.line is None or i.line >= 1 for i in data.issues)


def test_leakage_reads_the_second_file_with_the_first_files_columns(tmp_path):
    """In 12 rows three sentiments are too many distinct values for a label: alone, the test file's columns
    cannot be inferred; read with the training file's mapping, it can be compared."""
    rows = [(label, text) for label, _, text in files.tweets_rows(200, seed=23)]
    train = files.write_csv(tmp_path / "train.csv", ["sentiment", "text"], rows)
    test = files.write_csv(tmp_path / "test.csv", ["sentiment", "text"], rows[:12])
    assert read_examples(test).mapping is None
    code, out, err = invoke("leakage", train, test, "--json")
    assert code == 2, err
    assert len(json.loads(out)) == 12
