"""Reading CSVs as people export them: encodings, delimiters, headers, ragged rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from aibackend.byom.training.csvfile import concat, read_header, read_table
from aibackend.training.common import TrainingError


def _write(tmp_path: Path, data: bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_bom_padded_headers_crlf_and_quoted_fields_are_read_as_meant(tmp_path: Path) -> None:
    # GIVEN an Excel-style UTF-8 file: BOM, spaces around headers, CRLF, quoted commas,
    # a quoted newline and a doubled quote
    data = (
        "\ufeff Customer ID ,  Monthly   Charges ($) ,Notes\r\n"
        'C-1,"$1,234.50","said ""hi"", left"\r\n'
        'C-2, 12 ,"two\r\nlines"\r\n'
    ).encode()
    # WHEN it is read
    table = read_table(_write(tmp_path, data))
    # THEN headers are clean, cells trimmed, quoted delimiters and newlines kept inside cells
    assert table.header == ("Customer ID", "Monthly Charges ($)", "Notes")
    assert table.encoding == "utf-8 with BOM"
    assert table.column("Monthly Charges ($)") == ("$1,234.50", "12")
    assert table.column("Notes") == ('said "hi", left', "two\r\nlines")
    assert table.rows == 2


def test_semicolons_and_windows_1252_are_detected(tmp_path: Path) -> None:
    # GIVEN a European export: semicolons, cp1252 (é, €), no BOM
    data = "Quartier;Prix (€)\nCroix-Rousse é;100\nGerland;90\n".encode("cp1252")
    table = read_table(_write(tmp_path, data))
    # THEN the delimiter and encoding are found, and the summary says what was assumed
    assert table.delimiter == ";"
    assert table.header == ("Quartier", "Prix (€)")
    assert table.column("Quartier") == ("Croix-Rousse é", "Gerland")
    assert any("Windows-1252" in n for n in table.notes)


def test_ragged_blank_and_trailing_rows_are_repaired_and_reported(tmp_path: Path) -> None:
    # GIVEN blank lines, a short row and a row ending in extra empty fields
    data = b"a,b,c\n1,2,3\n\n4,5\n6,7,8,,\n"
    table = read_table(_write(tmp_path, data))
    # THEN short rows read as blanks, empty extras are dropped, and each repair is noted
    assert table.columns == (("1", "4", "6"), ("2", "5", "7"), ("3", "", "8"))
    notes = " | ".join(table.notes)
    assert "1 blank line(s) skipped" in notes
    assert "1 row(s) had fewer fields" in notes
    assert "1 row(s) ended in extra empty fields" in notes


def test_a_row_with_more_values_than_headers_names_its_line_and_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, b"a,b\n1,2\n3,4,5\n")
    with pytest.raises(
        TrainingError,
        match=r"data\.csv: line 3 has 3 fields, the header has 2; "
        r"quote fields that contain the delimiter ','",
    ):
        read_table(path)


def test_blank_and_repeated_headers_get_names(tmp_path: Path) -> None:
    table = read_table(_write(tmp_path, b"x,,x\n1,2,3\n"))
    assert table.header == ("x", "column_2", "x_2")
    assert any("repeats" in n for n in table.notes)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty file"), (b" , \n", "empty file"), (b"a,b\n", "a header but no data rows")],
)
def test_files_without_data_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        read_table(_write(tmp_path, data))


def test_gzip_files_and_the_header_alone_can_be_read(tmp_path: Path) -> None:
    path = _write(tmp_path, gzip.compress(b"\xef\xbb\xbf a ;b\n1;2\n"), "data.csv.gz")
    assert read_table(path).header == ("a", "b")
    assert read_header(path) == ("a", "b")


def test_files_of_one_channel_must_share_a_header(tmp_path: Path) -> None:
    one = read_table(_write(tmp_path, b"a,b\n1,2\n", "1.csv"))
    two = read_table(_write(tmp_path, b"a,b\n3,4\n", "2.csv"))
    other = read_table(_write(tmp_path, b"a,c\n3,4\n", "3.csv"))
    assert concat([one, two]).columns == (("1", "3"), ("2", "4"))
    with pytest.raises(TrainingError, match=r"3\.csv: header \['a', 'c'\] differs"):
        concat([one, other])
