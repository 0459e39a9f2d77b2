"""``framestream label convert|export|import``: label files between formats, and the labelling round trip.

``convert SRC --from F --to F --out DIR``: label files from one format to another.
``export --since 24h [--camera C] --format F --out DIR``: the hard examples ClickHouse holds, as a
labelling task with the model's boxes as pre-annotations (``framestream/labels/tasks.py``).
``import SRC --format F --camera C``: corrected labels back as the camera's evaluation set,
``<data_dir>/eval-sets/<camera>/annotations.json`` (COCO), which ``framestream eval`` reads.

Formats: cvat (CVAT for images 1.1 XML file), coco (COCO JSON file), yolo (an Ultralytics data.yaml
or the folder holding it), voc (a folder of Pascal VOC / LabelImg XML files). Images are referenced,
not copied (``import`` copies them into the eval set). A bad label file stops the command with file,
field and problem on stderr (exit 1); ClickHouse or the example store unavailable: exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framestream.settings import Settings
from schemas.labels import LABEL_FORMATS

EXIT_BAD_INPUT = 1
EXIT_UNAVAILABLE = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "label", help="convert label files (CVAT, COCO, YOLO, VOC); export hard examples; import corrected labels"
    )
    actions = parser.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    convert = actions.add_parser("convert", help="read labels in one format, write them in another")
    convert.add_argument("source", type=Path, metavar="SRC", help="label file or folder")
    convert.add_argument("--from", dest="source_format", required=True, choices=LABEL_FORMATS)
    convert.add_argument("--to", dest="target_format", required=True, choices=LABEL_FORMATS)
    convert.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    convert.set_defaults(handler=run_convert)
    export = actions.add_parser("export", help="hard examples from ClickHouse as a labelling task (pre-annotated)")
    export.add_argument("--since", default="24h", help="captured within this long ago: 90s, 30m, 24h, 7d")
    export.add_argument("--camera", default=None, help="only this camera's examples")
    export.add_argument("--format", dest="target_format", required=True, choices=LABEL_FORMATS)
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="task folder")
    export.set_defaults(handler=run_export)
    imported = actions.add_parser("import", help="corrected labels back as a camera's evaluation set")
    imported.add_argument("source", type=Path, metavar="SRC", help="label file or folder")
    imported.add_argument("--format", dest="source_format", required=True, choices=LABEL_FORMATS)
    imported.add_argument("--camera", required=True, help="the camera whose evaluation set this extends")
    imported.add_argument("--eval-sets", type=Path, default=None, metavar="DIR", help="default: <data_dir>/eval-sets")
    imported.set_defaults(handler=run_import)


def run_convert(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.labels import read_labels, write_labels
    from processors.labels import LabelError

    try:
        labels = read_labels(args.source, args.source_format)
        written = write_labels(labels, args.target_format, args.out)
    except LabelError as error:
        print(f"framestream label: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    boxes = sum(len(image.boxes) for image in labels.images)
    print(
        f"{len(labels.images)} images, {boxes} boxes, {len(labels.classes)} classes -> "
        f"{args.target_format}: {len(written)} files in {args.out}"
    )
    return 0


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    from framestream.labels.tasks import export_task, parse_duration, query_examples
    from processors.labels import LabelError
    from streams.delivery import STAGE_RETRY
    from streams.example_store import StoreError, fetch, file_path
    from streams.hard_examples import HardExampleSettings
    from streams.sinks.clickhouse_db import ChdbBusyError, connect

    try:
        since = parse_duration(args.since)
    except ValueError as error:
        print(f"framestream label: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        client = connect(settings.clickhouse, settings.data_dir)
        try:
            examples = query_examples(client, since, args.camera)
        finally:
            client.close()
    except ValueError as error:
        print(f"framestream label: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ChdbBusyError, OSError, OperationalError) as error:
        print(f"framestream label: ClickHouse unavailable: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DatabaseError as error:
        print(
            f"framestream label: cannot read hard_examples (run `framestream migrate` first?): {error}",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    endpoint = HardExampleSettings().s3_endpoint_url or None
    stop = threading.Event()

    def local_path(uri: str) -> Path | None:
        return file_path(uri) if uri.startswith("file:") else None

    def download(uri: str) -> bytes:
        return fetch(uri, retry=STAGE_RETRY, stop=stop, endpoint_url=endpoint)

    try:
        summary = export_task(examples, args.target_format, args.out, local_path, download)
    except LabelError as error:
        print(f"framestream label: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreError as error:
        print(f"framestream label: example store: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    gone = f"; {summary.without_image} without image (frame gone), left out" if summary.without_image else ""
    print(
        f"{summary.images} images, {summary.boxes} pre-annotated boxes -> {args.target_format}: "
        f"{len(summary.written)} files in {args.out}{gone}"
    )
    return 0


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.labels.tasks import import_eval_set
    from processors.labels import LabelError

    eval_sets = args.eval_sets or settings.data_dir / "eval-sets"
    try:
        summary = import_eval_set(args.source, args.source_format, args.camera, eval_sets)
    except LabelError as error:
        print(f"framestream label: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    others = f" ({summary.other_cameras} images of other cameras skipped)" if summary.other_cameras else ""
    print(
        f"{summary.images} images, {summary.boxes} boxes of {args.camera}{others} -> {summary.annotations} "
        f"({summary.total_images} images in the set); score with: framestream eval --dataset "
        f"{summary.annotations} --format coco"
    )
    return 0
