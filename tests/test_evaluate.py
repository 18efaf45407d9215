"""The SpaceNet scorer on hand-computed cases (SpaceNet CSV format)."""

from __future__ import annotations

import json

import pytest

from trainer.cli import main

HEADER = "ImageId,BuildingId,PolygonWKT_Pix,Confidence\n"
SQUARE = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"
SHIFTED_4 = "POLYGON ((4 0, 14 0, 14 10, 4 10, 4 0))"  # IoU with SQUARE = 60/140 = 0.43
SHIFTED_2 = "POLYGON ((2 0, 12 0, 12 10, 2 10, 2 0))"  # IoU with SQUARE = 80/120 = 0.67
FAR = "POLYGON ((100 100, 110 100, 110 110, 100 110, 100 100))"
BOWTIE = "POLYGON ((0 0, 10 10, 10 0, 0 10, 0 0))"
MULTI = "MULTIPOLYGON (((0 0, 10 0, 10 10, 0 10, 0 0)), ((20 0, 30 0, 30 10, 20 10, 20 0)))"


def score(tmp_path, capsys, truth_rows, pred_rows, *extra):
    truth, pred = tmp_path / "truth.csv", tmp_path / "pred.csv"
    truth.write_text(HEADER + "".join(f'{image},{i},"{wkt}",1\n' for i, (image, wkt) in enumerate(truth_rows)))
    pred.write_text(HEADER + "".join(f'{image},{i},"{wkt}",{conf}\n' for i, (image, wkt, conf) in enumerate(pred_rows)))
    capsys.readouterr()
    assert main(["evaluate", "--truth", str(truth), "--pred", str(pred), "--json", "--min-area", "0", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def counts(result):
    return result["tp"], result["fp"], result["fn"]


def test_no_proposals(tmp_path, capsys):
    result = score(tmp_path, capsys, [("a", SQUARE), ("a", FAR)], [("a", "POLYGON EMPTY", 1)])
    assert counts(result) == (0, 0, 2) and result["f1"] == 0


def test_no_truth(tmp_path, capsys):
    result = score(tmp_path, capsys, [("a", "POLYGON EMPTY")], [("a", SQUARE, 0.9)])
    assert counts(result) == (0, 1, 0) and result["precision"] == 0


def test_duplicates_match_once(tmp_path, capsys):
    result = score(tmp_path, capsys, [("a", SQUARE)], [("a", SQUARE, 0.9), ("a", SQUARE, 0.8)])
    assert counts(result) == (1, 1, 0)
    assert result["precision"] == 0.5 and result["recall"] == 1.0 and result["f1"] == pytest.approx(0.6667, abs=1e-4)


def test_iou_threshold_and_confidence_order(tmp_path, capsys):
    assert counts(score(tmp_path, capsys, [("a", SQUARE)], [("a", SHIFTED_4, 1)])) == (0, 1, 1)
    assert counts(score(tmp_path, capsys, [("a", SQUARE)], [("a", SHIFTED_4, 1)], "--iou", "0.4")) == (1, 0, 0)
    # The more confident proposal claims the truth first, even with the lower IoU.
    result = score(tmp_path, capsys, [("a", SQUARE)], [("a", SHIFTED_2, 0.9), ("a", SQUARE, 0.1)])
    assert counts(result) == (1, 1, 0)


def test_multipolygon_and_invalid_ring(tmp_path, capsys):
    # The multipolygon truth (area 200) vs one of its squares (100): IoU 0.5 counts at >= 0.5.
    assert counts(score(tmp_path, capsys, [("a", MULTI)], [("a", SQUARE, 1)])) == (1, 0, 0)
    # A bow-tie proposal is repaired (two triangles, area 50) and scores IoU 0.5 with SQUARE.
    assert counts(score(tmp_path, capsys, [("a", SQUARE)], [("a", BOWTIE, 1)])) == (1, 0, 0)


def test_per_image_counts_and_min_area(tmp_path, capsys):
    tiny = "POLYGON ((50 50, 53 50, 53 53, 50 53, 50 50))"  # 9 px
    result = score(tmp_path, capsys, [("a", SQUARE), ("a", tiny), ("b", SQUARE)],
                   [("a", SQUARE, 1), ("b", FAR, 1)], "--min-area", "20")
    assert counts(result) == (1, 1, 1)
    assert counts(result["images"]["a"]) == (1, 0, 0) and counts(result["images"]["b"]) == (0, 1, 1)


def test_bad_csv_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,geometry\n1,POINT(0 0)\n")
    assert main(["evaluate", "--truth", str(bad), "--pred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "PolygonWKT_Pix" in err and err.count("\n") == 1


def test_error_kinds_tell_missed_merged_and_split_buildings():
    from shapely.geometry import box

    from trainer.scoring import error_kinds

    truth = [box(0, 0, 10, 10), box(12, 0, 22, 10),  # two neighbours, merged by one proposal
             box(40, 0, 50, 10),  # split in two halves
             box(80, 0, 90, 10),  # missed (a sliver of 10% only)
             box(100, 0, 110, 10)]  # found
    proposals = [box(0, 0, 22, 10), box(40, 0, 45, 10), box(45, 0, 50, 10), box(80, 0, 81, 10), box(100, 0, 110, 10)]
    kinds = error_kinds(truth, proposals)
    assert (kinds.missed, kinds.merged, kinds.split) == (1, 2, 1)
    assert error_kinds(truth, []).missed == 5
    only_first_and_third = error_kinds(truth, proposals, counted={0, 2})
    assert (only_first_and_third.missed, only_first_and_third.merged, only_first_and_third.split) == (0, 1, 1)
