"""The builder's core: image -> RGB JPEG -> `tf.train.Example` -> atomically written shards.

Used by the folder converter (`build_tfrecords`) and by the generated dataset (`embedded`), so
both produce byte-for-byte the same layout.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from autonl_tf import files
from autonl_tf.data import records

_log = logging.getLogger(__name__)

JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One image to write. `source`: a file path or the encoded image bytes."""

    source: str | bytes
    label: int  # as stored: 1..K in the ImageNet layout
    synset: str
    text: str
    filename: str


@dataclasses.dataclass
class ShardResult:
    path: str
    num_written: int
    skipped: bool  # True: the shard existed already and was left alone
    unreadable: list[tuple[str, str]]  # (path or filename, reason)


@dataclasses.dataclass
class BuildSummary:
    split: str
    shards: list[ShardResult]
    # Entries of the input folders that are not readable files (broken symlinks, loops).
    unlisted: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def num_written(self) -> int:
        return sum(s.num_written for s in self.shards)

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        return [u for s in self.shards for u in s.unreadable]


class UnreadableImage(Exception):
    """The image could not be decoded (reason in the message)."""


def encode_image(source: str | bytes) -> tuple[bytes, int, int]:
    """Any image Pillow reads -> (RGB baseline-compatible JPEG bytes, height, width).

    RGB JPEGs keep their original bytes (no generation loss); PNG, GIF, CMYK or greyscale
    JPEGs etc. are converted to RGB and re-encoded at quality 95.

    Raises:
      UnreadableImage: the data is not a (complete) image.
    """
    try:
        data = source if isinstance(source, bytes) else _read_bytes(source)
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes everything: truncated files fail here, not in training
            if image.format == "JPEG" and image.mode == "RGB":
                return data, image.height, image.width
            rgb = _to_rgb(image)
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
            return out.getvalue(), rgb.height, rgb.width
    except Image.UnidentifiedImageError as e:
        raise UnreadableImage("not an image format Pillow can read") from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # PIL signals bad data with OSError (truncated), UnidentifiedImageError (an OSError),
        # ValueError or SyntaxError depending on the codec.
        raise UnreadableImage(f"{type(e).__name__}: {e}") from e


def _read_bytes(path: str) -> bytes:
    if "://" not in path:  # local: OSError (permissions, loops) is reported as unreadable
        with open(path, "rb") as f:
            return f.read()
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparent pixels on white rather than on whatever colour they hide.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping.
        array = np.asarray(image, dtype=np.float64)
        array = array * (255.0 / max(float(array.max()), 1.0))
        return Image.fromarray(array.astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _label_of(item: ImageItem) -> str:
    return item.source if isinstance(item.source, str) else item.filename


def write_shard(items: Sequence[ImageItem], path: str) -> ShardResult:
    """Write `items` as one TFRecord shard at `path`, atomically.

    Records go to a temporary file in the same directory (named '.tmp-...' so the shard
    pattern never matches it), which is flushed, fsync'ed and renamed over `path`: an
    interrupted run leaves no truncated file under a shard name. Unreadable images are
    skipped and reported in the result. An existing `path` is left alone (skipped=True).
    """
    if tf.io.gfile.exists(path):
        return ShardResult(path, 0, True, [])
    tmp_path = files.temporary_path(path)
    unreadable: list[tuple[str, str]] = []
    written = 0
    try:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for item in items:
                try:
                    encoded, height, width = encode_image(item.source)
                except UnreadableImage as e:
                    unreadable.append((_label_of(item), str(e)))
                    _log.warning("unreadable image skipped: %s (%s)", _label_of(item), e)
                    continue
                example = records.make_example(
                    encoded, item.label, synset=item.synset, text=item.text,
                    height=height, width=width, filename=item.filename,
                )
                writer.write(example.SerializeToString())
                written += 1
        files.commit(tmp_path, path, durable=True)
    except BaseException:
        if tf.io.gfile.exists(tmp_path):
            tf.io.gfile.remove(tmp_path)
        raise
    return ShardResult(path, written, False, unreadable)


def remove_stale_tmp_files(output_dir: str, split: str) -> None:
    """Delete temporary shards of `split` left by an interrupted run."""
    pattern = os.path.join(output_dir, f"{files.TMP_PREFIX}{split}-*")
    for stale in tf.io.gfile.glob(pattern):
        _log.info("removing the temporary file of an interrupted run: %s", stale)
        tf.io.gfile.remove(stale)


def split_into_shards(items: Sequence[ImageItem], num_shards: int) -> list[list[ImageItem]]:
    """Contiguous, near-equal chunks (sizes differ by at most one)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    bounds = np.linspace(0, len(items), num_shards + 1).astype(int)
    return [list(items[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def write_shards(
    items: Sequence[ImageItem],
    output_dir: str,
    split: str,
    num_shards: int,
    num_workers: int | None = None,
) -> BuildSummary:
    """Write `items` (in this order) as `<split>-%05d-of-%05d` shards, shards in parallel.

    Finished shards of a previous run are kept (a rerun resumes); progress is logged per shard.
    Threads suffice: Pillow's codecs and the TFRecord writer release the GIL.
    """
    tf.io.gfile.makedirs(output_dir)
    remove_stale_tmp_files(output_dir, split)
    chunks = split_into_shards(items, num_shards)
    paths = [
        os.path.join(output_dir, records.shard_name(split, i, num_shards))
        for i in range(num_shards)
    ]
    workers = max(1, min(num_workers or os.cpu_count() or 1, num_shards))
    results: dict[str, ShardResult] = {}
    start = time.monotonic()
    done_images = 0
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        futures = {
            pool.submit(write_shard, c, p): (p, len(c))
            for c, p in zip(chunks, paths, strict=True)
        }
        for future in concurrent.futures.as_completed(futures):
            path, size = futures[future]
            result = future.result()
            results[path] = result
            done_images += size
            state = "exists, skipped" if result.skipped else (
                f"{result.num_written} images, {len(result.unreadable)} unreadable"
            )
            _log.info(
                "[%s] shard %d/%d %s (%s) | %d/%d images, %.0f s elapsed",
                split, len(results), num_shards, os.path.basename(path), state,
                done_images, len(items), time.monotonic() - start,
            )
    except BaseException:
        # Interrupted or failed: start no new shard (running ones finish or clean up).
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    summary = BuildSummary(split, [results[p] for p in paths])
    _update_metadata(output_dir, summary)
    return summary


def _count_records(path: str) -> int:
    return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))


def _update_metadata(output_dir: str, summary: BuildSummary) -> None:
    """Record the shard sizes of the split in metadata.json (counted when a run skipped them)."""
    meta = records.read_metadata(output_dir)
    split_meta = meta.setdefault("splits", {}).get(summary.split, {})
    old_sizes = split_meta.get("shard_sizes", {})
    sizes = {}
    for shard in summary.shards:
        name = os.path.basename(shard.path)
        if not shard.skipped:
            sizes[name] = shard.num_written
        else:
            sizes[name] = old_sizes.get(name, None)
            if sizes[name] is None:
                sizes[name] = _count_records(shard.path)
    meta["format"] = "imagenet-tfrecord"
    meta["splits"][summary.split] = {
        "num_examples": int(sum(sizes.values())),
        "num_shards": len(sizes),
        "shard_sizes": sizes,
    }
    files.write_json_atomic(os.path.join(output_dir, records.METADATA_FILE), meta, indent=1,
                            sort_keys=True)


def write_labels_file(output_dir: str, labels: dict[int, tuple[str, str]]) -> str:
    """labels.txt: one `<label>\\t<synset>\\t<text>` line per class, by label."""
    path = os.path.join(output_dir, records.LABELS_FILE)
    lines = [f"{label}\t{synset}\t{text}\n" for label, (synset, text) in sorted(labels.items())]
    return files.write_atomic(path, "".join(lines))
