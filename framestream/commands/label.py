"""``framestream label convert SRC --from F --to F --out DIR``: label files from one format to another.

Formats: cvat (CVAT for images 1.1 XML file), coco (COCO JSON file), yolo (an Ultralytics data.yaml
or the folder holding it), voc (a folder of Pascal VOC / LabelImg XML files). Images are referenced,
not copied. A bad label file stops the command with file, field and problem on stderr (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framestream.settings import Settings
from schemas.labels import LABEL_FORMATS

EXIT_BAD_INPUT = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("label", help="convert label files between CVAT, COCO, YOLO and Pascal VOC")
    actions = parser.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    convert = actions.add_parser("convert", help="read labels in one format, write them in another")
    convert.add_argument("source", type=Path, metavar="SRC", help="label file or folder")
    convert.add_argument("--from", dest="source_format", required=True, choices=LABEL_FORMATS)
    convert.add_argument("--to", dest="target_format", required=True, choices=LABEL_FORMATS)
    convert.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    convert.set_defaults(handler=run_convert)


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
