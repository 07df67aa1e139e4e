r"""Convert a folder of class sub-folders into ImageNet-layout TFRecord shards.

    python -m autonl_tf.data.build_tfrecords --input_dir=DIR --output_dir=OUT \
        --split=train --num_shards=1024 [--synset_to_text=FILE] [--num_workers=N]

DIR/<class>/<image> for every class (ImageNet synsets such as n01440764, or any names). Classes
are sorted by name and get labels 1..K; the mapping is written to OUT/labels.txt
(`<label>\t<synset>\t<text>`, text from --synset_to_text lines `<synset>\t<text>`, else the
folder name). Build the train split first: later splits reuse OUT/labels.txt, so a validation
folder with fewer classes still gets the train labels. Train file order is shuffled with
--seed. Every image is re-encoded to RGB JPEG if it is not one already (PNG, CMYK, greyscale,
anything Pillow reads); unreadable files (not an image, zero bytes, no read permission, broken
symlinks and symlink loops) are logged by path, listed at the end and in
OUT/unreadable-<split>.txt, and skipped. Any file name the OS allows works: names that are not
valid UTF-8 are kept byte for byte on disk and written with backslash escapes into labels.txt
and image/filename. Only the shards match OUT/<split>-*: the side files (labels.txt,
metadata.json, unreadable-<split>.txt) never do. Shards are written atomically, and a rerun skips the
shards that are already complete.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np
from absl import app, flags, logging

from autonl_tf.data import records, writer
from autonl_tf.data.errors import DataError

# A private FlagValues: importing this module next to other absl programs (trainer, tests)
# must not clash with their flag names.
FLAGS = flags.FlagValues()
flags.DEFINE_string("input_dir", None, "Folder of class sub-folders.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", None, "Where the shards go (created).", flag_values=FLAGS)
flags.DEFINE_string("split", "train", "Split name: shard prefix, e.g. train, validation.",
                    flag_values=FLAGS)
flags.DEFINE_integer("num_shards", 8, "Number of shards.", flag_values=FLAGS)
flags.DEFINE_string("synset_to_text", None, "Optional `<synset>\\t<text>` file.",
                    flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the train file-order shuffle.", flag_values=FLAGS)
flags.DEFINE_enum("shuffle", "auto", ["auto", "true", "false"],
                  "Shuffle the file order (auto: only for the train split).", flag_values=FLAGS)
flags.DEFINE_integer("num_workers", 0, "Parallel shard writers (0 = CPU count).",
                     flag_values=FLAGS)

_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.]+$")


def list_classes(input_dir: str) -> list[str]:
    """Sorted names of the (non-hidden) sub-folders of input_dir."""
    if not os.path.isdir(input_dir):
        raise DataError(f"--input_dir {input_dir!r} is not a directory")
    classes = sorted(
        d for d in os.listdir(input_dir)
        if not d.startswith(".") and os.path.isdir(os.path.join(input_dir, d))
    )
    if not classes:
        raise DataError(
            f"No class sub-folder in {input_dir!r}: expected {input_dir}/<class>/<image files>"
        )
    return classes


def read_synset_to_text(path: str | None) -> dict[str, str]:
    """`<synset>\\t<text>` (or `<synset> <text>`) lines -> {synset: text}."""
    if not path:
        return {}
    mapping = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 1)
            if len(parts) == 1:
                parts = line.strip().split(None, 1)
            if parts and parts[0]:
                mapping[parts[0]] = parts[1].strip() if len(parts) > 1 else parts[0]
    return mapping


def printable(name: str) -> str:
    """A file name as valid UTF-8 text: bytes that are not UTF-8 (os.listdir keeps them as
    surrogates) become backslash escapes such as '\\xff'."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def assign_labels(
    classes: list[str], output_dir: str, synset_to_text: dict[str, str]
) -> dict[str, tuple[int, str]]:
    """{class: (label 1..K, text)}; reuses output_dir/labels.txt when it exists."""
    labels_path = os.path.join(output_dir, records.LABELS_FILE)
    if os.path.exists(labels_path):
        existing = records.read_labels_entries(labels_path)
        by_synset = {synset: (label, text) for label, (synset, text) in existing.items()}
        unknown = [printable(c) for c in classes if printable(c) not in by_synset]
        if unknown:
            raise DataError(
                f"Class folders {unknown[:5]} are not in the existing {labels_path}: the labels "
                "of this split would not match the other splits. Build all splits from the same "
                "set of class folders (train first), or use a new --output_dir."
            )
        return {c: by_synset[printable(c)] for c in classes}
    return {c: (i + 1, synset_to_text.get(printable(c), printable(c)))
            for i, c in enumerate(classes)}


def collect_items(input_dir: str, labels: dict[str, tuple[int, str]]
                  ) -> tuple[list[writer.ImageItem], list[tuple[str, str]]]:
    """All non-hidden files of the class folders, sorted (class, name), and the entries that
    cannot be read as files: [(path, reason)] (broken symlinks, symlink loops)."""
    items, unreadable = [], []
    for name, (label, text) in sorted(labels.items()):
        folder = os.path.join(input_dir, name)
        for file_name in sorted(os.listdir(folder)):
            path = os.path.join(folder, file_name)
            if file_name.startswith("."):
                continue
            if os.path.islink(path) and not os.path.exists(path):
                unreadable.append((path, "broken symlink or symlink loop"))
                continue
            if not os.path.isfile(path):
                continue  # sub-folders are not images of this class
            items.append(writer.ImageItem(path, label, printable(name), text,
                                          printable(file_name)))
    return items, unreadable


def build(
    input_dir: str,
    output_dir: str,
    split: str,
    num_shards: int,
    synset_to_text: str | None = None,
    seed: int = 0,
    shuffle: bool | None = None,
    num_workers: int | None = None,
) -> writer.BuildSummary:
    """Convert input_dir into `<split>-*-of-*` shards + labels.txt in output_dir.

    shuffle: None = shuffle only the 'train' split.
    """
    if not _SPLIT_RE.match(split):
        raise DataError(f"--split {split!r}: use letters, digits, '_' or '.'")
    if num_shards < 1:
        raise DataError(f"--num_shards must be >= 1, got {num_shards}")
    classes = list_classes(input_dir)
    labels = assign_labels(classes, output_dir, read_synset_to_text(synset_to_text))
    items, unlisted = collect_items(input_dir, labels)
    if not items:
        raise DataError(f"No files in the class folders of {input_dir!r}")
    if shuffle if shuffle is not None else split == "train":
        # Sorted input is grouped by class: shuffling spreads the classes over the shards.
        order = np.random.default_rng(seed).permutation(len(items))
        items = [items[i] for i in order]
    os.makedirs(output_dir, exist_ok=True)
    labels_path = os.path.join(output_dir, records.LABELS_FILE)
    if not os.path.exists(labels_path):
        writer.write_labels_file(output_dir, {lab: (printable(c), t)
                                              for c, (lab, t) in labels.items()})
    logging.info("%s: %d files of %d classes -> %d shards in %s",
                 split, len(items), len(classes), num_shards, output_dir)
    summary = writer.write_shards(items, output_dir, split, num_shards, num_workers)
    summary.unlisted = unlisted
    _report(summary, output_dir)
    return summary


def unreadable_list_path(output_dir: str, split: str) -> str:
    """Where the unreadable files of `split` are listed (never matches `<split>-*`)."""
    return os.path.join(output_dir, f"unreadable-{split}.txt")


def _report(summary: writer.BuildSummary, output_dir: str) -> None:
    skipped = sum(s.skipped for s in summary.shards)
    logging.info(
        "%s: done, %d images written in %d new shards (%d complete shards kept from before)",
        summary.split, summary.num_written, len(summary.shards) - skipped, skipped,
    )
    bad = [(printable(path), reason) for path, reason in summary.unlisted + summary.unreadable]
    if bad:
        listing = unreadable_list_path(output_dir, summary.split)
        with open(listing, "w", encoding="utf-8") as f:
            f.writelines(f"{path}\t{reason}\n" for path, reason in bad)
        logging.warning(
            "%s: %d unreadable images skipped (also listed in %s):\n  %s",
            summary.split, len(bad), listing,
            "\n  ".join(f"{path}: {reason}" for path, reason in bad),
        )


def main(argv: list[str]) -> int:
    del argv
    if not FLAGS.input_dir or not FLAGS.output_dir:
        print("build_tfrecords: error: --input_dir and --output_dir are required",
              file=sys.stderr)
        return 2
    from autonl_tf import errors

    shuffle = {"auto": None, "true": True, "false": False}[FLAGS.shuffle]
    with errors.exit_on_errors("build_tfrecords"):  # DataError: one line, exit 2
        build(
            FLAGS.input_dir, FLAGS.output_dir, FLAGS.split, FLAGS.num_shards,
            synset_to_text=FLAGS.synset_to_text, seed=FLAGS.seed, shuffle=shuffle,
            num_workers=FLAGS.num_workers or None,
        )
    return 0


def _parse_flags(argv: list[str]) -> list[str]:
    # This module's flags first; what is left (absl's --verbosity, --logtostderr...) goes to
    # the global FLAGS, which app.run requires to be parsed.
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
        print(__doc__)
        print(FLAGS.get_help())
        sys.exit(0)
    rest = FLAGS(argv, known_only=True)
    return flags.FLAGS(rest)


def run(argv: list[str] | None = None) -> None:
    """Entry point; parses this module's own FlagValues (see FLAGS)."""
    app.run(main, argv=argv or sys.argv, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
