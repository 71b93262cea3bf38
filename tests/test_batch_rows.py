"""The batch's rows without servers: manifests parsed line by line (every refusal names its line), output names
that cannot leave the storage, and folders whose images and videos are told apart by their content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.batch.names import DEFAULT_OUTPUT_TEMPLATE, check_template, render_key
from faceswap_flows.flows.batch.plan import BatchPlan, PlannedItem, Planner, plan_rows
from faceswap_flows.flows.batch.report import BatchReport, ItemOutcome, plan_rows_table, report_rows
from faceswap_flows.flows.batch.rows import parse_manifest_lines
from faceswap_flows.flows.batch.sources import kind_of, source_rows
from faceswap_flows.flows.provenance.records import OutputOptions
from tests.media import make_photo_folder
from tests.vision import photos

HEADER = "operation,source_image,source_video,face_image,face_images,face_indexes,reference_images,enhance,trim_start"
MIXED_CSV = f"""{HEADER},trim_end,id
faceswap,a.jpg,,me.jpg,,,,,,,one
multi_faceswap,team.jpg,,,me.jpg|you.jpg,0|2,,,,,two
multi_faceswap,team.jpg,,,me.jpg,,boss.jpg,,,,three
video_faceswap,,clip.mp4,me.jpg,,,,1,0.5,2,four
multi_video_faceswap,,panel.mp4,,me.jpg|you.jpg,1|0,,,,,five
"""


def test_a_manifest_mixes_the_four_operations() -> None:
    lines = parse_manifest_lines(MIXED_CSV, "csv")
    assert [line.error for line in lines] == [None] * 5
    assert [line.line for line in lines] == [2, 3, 4, 5, 6]
    rows = [line.row for line in lines]
    assert [r.operation for r in rows] == ["faceswap", "multi_faceswap", "multi_faceswap", "video_faceswap",
                                           "multi_video_faceswap"]  # fmt: skip
    assert rows[1].face_images == ["me.jpg", "you.jpg"] and rows[1].face_indexes == [0, 2]
    assert rows[2].reference_images == ["boss.jpg"] and rows[2].face_indexes is None
    assert (rows[3].enhance, rows[3].trim_start, rows[3].trim_end) == (1, 0.5, 2.0)
    assert rows[4].face_indexes == [1, 0]


def test_a_manifest_names_an_operation_by_its_flow_or_the_api_and_the_plan_shows_the_flow() -> None:
    """`multi-faceswap` (the flow, as `run` names it) and `multi_faceswap` (the API's operation) are the same row
    (the same work: its fingerprint is made of the API's name); the plan and report columns name the flow."""
    by_flow = parse_manifest_lines(
        MIXED_CSV.replace("multi_", "multi-").replace("video_faceswap", "video-faceswap"), "csv"
    )
    assert [line.row for line in by_flow] == [line.row for line in parse_manifest_lines(MIXED_CSV, "csv")]
    items = [
        PlannedItem(position=i, line=i + 2, label=f"item {i}", operation=line.row.operation, status="run")
        for i, line in enumerate(by_flow)
    ]
    flows = ["faceswap", "multi-faceswap", "multi-faceswap", "video-faceswap", "multi-video-faceswap"]
    assert [row["operation"] for row in plan_rows_table(BatchPlan(items=items))] == flows
    outcomes = [ItemOutcome(position=i.position, id=i.label, operation=i.operation, status="stored") for i in items]
    assert [row["operation"] for row in report_rows(BatchReport.of(outcomes, 0))] == flows


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"operation": "faceswap", "source_image": "a.jpg"}', "faceswap takes one face_image"),
        ('{"operation": "swap", "source_image": "a.jpg", "face_image": "b.jpg"}', "operation: Input should be"),
        ('{"operation": "video_faceswap", "source_image": "a.jpg", "face_image": "b.jpg"}', "needs source_video"),
        (
            '{"operation": "multi_faceswap", "source_image": "a.jpg", "face_images": ["b.jpg", "c.jpg"], '
            '"face_indexes": [0]}',
            "face_images: give one face image per face to replace",
        ),
        (
            '{"operation": "multi_video_faceswap", "source_video": "v.mp4", "face_images": ["b", "c", "d", "e"]}',
            "face_images: give 1 to 3 face images",
        ),
        ('{"source_image": "a.jpg", "face_image": "b.jpg", "colour": "red"}', "colour: is not a field"),
        ('{"source_image": "a.jpg", "face_image": "b.jpg", "enhance": 1}', "options of videos"),
        ('{"source_image": "a.jpg", "face_image": ', "not a JSON object"),
        ("[1, 2]", "not an object of fields"),
    ],
)
def test_a_bad_jsonl_line_is_refused_with_its_line_number(line: str, says: str) -> None:
    good = json.dumps({"source_image": "a.jpg", "face_image": "b.jpg"})
    lines = parse_manifest_lines("\n".join([good, "", good, line, good]), "jsonl")
    assert [entry.line for entry in lines] == [1, 3, 4, 5]
    refused = [entry for entry in lines if entry.error]
    assert len(refused) == 1 and refused[0].line == 4 and refused[0].row is None
    assert refused[0].error.startswith("manifest line 4: ") and says in refused[0].error


def test_csv_lines_count_physical_lines_with_quoted_newlines_and_refuse_extra_values() -> None:
    text = 'source_image,face_image,id\n"a\nb.jpg",me.jpg,x\n\nc.jpg,me.jpg,y,extra\nd.jpg,,z\ne.jpg,me.jpg,w\n'
    lines = parse_manifest_lines(text, "csv")
    assert [(entry.line, entry.error is None) for entry in lines] == [(2, True), (5, False), (6, False), (7, True)]
    assert "4 values for 3 columns" in lines[1].error and "faceswap takes one face_image" in lines[2].error
    assert lines[3].row.id == "w"


def test_a_csv_header_without_a_source_column_is_refused_on_line_1() -> None:
    (line,) = parse_manifest_lines("source,face\na.png,b.png\n", "csv")
    assert line.line == 1 and line.error.startswith("manifest line 1: source_image")


@pytest.mark.parametrize(
    "template", ["/etc/{source_stem}.{ext}", "../{source_stem}.{ext}", "results/../../{id}", "C:/x/{id}", "a//{id}"]
)
def test_an_output_template_may_not_leave_the_storage(template: str) -> None:
    with pytest.raises(InputValidationError, match=r"output_template: .* leaves the storage's basepath"):
        check_template(template)


def test_output_names_are_made_safe_and_unknown_fields_refused() -> None:
    check_template(DEFAULT_OUTPUT_TEMPLATE)
    key = render_key("results/{date}/{source_stem}__{face_stem}.{ext}", {
        "date": "2026-12-03", "source_stem": "../../etc/passwd", "face_stem": "me and/you", "ext": "png"})  # fmt: skip
    assert key == "results/2026-12-03/etc_passwd__me_and_you.png"
    with pytest.raises(InputValidationError, match=r"unknown field\(s\) \['name'\]"):
        check_template("results/{name}.{ext}")


def test_images_and_videos_are_told_apart_by_content(tmp_path: Path) -> None:
    files = make_photo_folder(tmp_path / "in")
    video = photos.write_video(tmp_path / "in" / "clip.mp4", lambda i: photos.face_video_frame(i)[0], 3)
    shutil.copy(files["grace"], tmp_path / "in" / "grace-without-extension")
    shutil.copy(video, tmp_path / "in" / "clip-named.png")
    assert kind_of(video.read_bytes()[:64]) == "video" and kind_of(files["cat"].read_bytes()[:64]) == "image"
    assert kind_of(b"not an image") is None
    storage = MediaStorage(basepath=str(tmp_path / "store"))
    lines, ignored = source_rows(
        storage, str(tmp_path / "in"), face_image=str(files["grace"]), exclude=["cat.png", "group.*"]
    )
    by_name = {line.row.id: line.row for line in lines}
    # grace.png is the face put in: a source folder holding it does not swap it onto itself
    assert set(by_name) == {"astronaut.png", "grace-without-extension", "clip.mp4", "clip-named.png"}
    assert by_name["grace-without-extension"].operation == "faceswap"
    assert by_name["clip-named.png"].operation == "video_faceswap" and by_name["clip-named.png"].source_video
    assert sorted(ignored) == ["empty.png", "note.txt"]
    only_png, _ = source_rows(storage, str(tmp_path / "in" / "*.png"), face_map={"0": "a.png", "1": "b.png"})
    assert {line.row.id for line in only_png} == {"astronaut.png", "grace.png", "cat.png", "group.png",
                                                  "clip-named.png"}  # fmt: skip
    assert {line.row.operation for line in only_png} == {"multi_faceswap", "multi_video_faceswap"}


def test_the_plan_refuses_the_same_work_twice_unless_forced_and_skips_beyond_the_budget(tmp_path: Path) -> None:
    files = make_photo_folder(tmp_path / "in")
    storage = MediaStorage(basepath=str(tmp_path / "store"))
    pair = {"source_image": str(files["astronaut"]), "face_image": str(files["grace"])}
    other = {"source_image": str(files["grace"]), "face_image": str(files["astronaut"])}
    text = "\n".join(json.dumps(row) for row in (pair, pair, other, other))
    lines = parse_manifest_lines(text, "jsonl")

    def planned(force: bool, template: str = DEFAULT_OUTPUT_TEMPLATE, budget: int | None = None):
        planner = Planner(storage, tmp_path / f"work-{force}", template, OutputOptions(), force)
        return plan_rows(planner, lines, budget)

    items = planned(False)
    assert [i.status for i in items] == ["run", "refused", "run", "refused"]
    assert "the same work as astronaut.png (same inputs and options): done once" in items[1].reason
    forced = planned(True, budget=6)
    assert [i.status for i in forced] == ["run", "run", "run", "skipped"] and forced[3].reason == "over max_credits (6)"
    assert len({i.result_key for i in forced}) == 4 and sum(i.credits for i in forced[:3]) == 6
    clash = planned(False, template="results/{date}.{ext}")
    assert [i.status for i in clash] == ["run", "refused", "refused", "refused"]
    assert "output_template gives results/" in clash[2].reason and "add {fingerprint} or {id}" in clash[2].reason
