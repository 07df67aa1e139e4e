"""The TFRecord builder: folder of class sub-folders -> ImageNet-layout shards."""
# bazel: suite=data

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from autonl_tf import files  # noqa: E402
from autonl_tf.data import DataError, build_tfrecords, read_labels_file, records, writer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _image(seed: int, size=(40, 52), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[0], size[1], 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def make_tree(root: Path) -> Path:
    """3 classes; odd formats (PNG with alpha, greyscale, CMYK), a corrupt and a hidden file."""
    for c, name in enumerate(("n001", "n002", "n003")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            _image(10 * c + i).save(root / name / f"{name}_{i}.JPEG", quality=90)
    _image(100, mode="RGBA").save(root / "n001" / "alpha.png")
    _image(101, mode="L").save(root / "n002" / "grey.jpg")
    _image(102, mode="CMYK").save(root / "n003" / "cmyk.jpg")
    (root / "n003" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "n002" / ".DS_Store").write_bytes(b"junk")
    return root


def _read_examples(files: list[str]) -> list[dict]:
    out = []
    for raw in tf.data.TFRecordDataset(files):
        example = tf.train.Example.FromString(raw.numpy())
        f = example.features.feature
        out.append(
            {
                "encoded": f["image/encoded"].bytes_list.value[0],
                "label": f["image/class/label"].int64_list.value[0],
                "synset": f["image/class/synset"].bytes_list.value[0].decode(),
                "text": f["image/class/text"].bytes_list.value[0].decode(),
                "height": f["image/height"].int64_list.value[0],
                "width": f["image/width"].int64_list.value[0],
                "filename": f["image/filename"].bytes_list.value[0].decode(),
                "format": f["image/format"].bytes_list.value[0].decode(),
            }
        )
    return out


def test_build_converts_formats_labels_and_reports_unreadable(tmp_path):
    src = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("n001\tfirst thing\nn002\tsecond thing\n")
    summary = build_tfrecords.build(str(src), str(out), "train", 2, synset_to_text=str(synsets))

    assert [p for p, _ in summary.unreadable] == [str(src / "n003" / "corrupt.jpg")]
    listing = out / "unreadable-train.txt"
    assert listing.read_text().startswith(str(src / "n003" / "corrupt.jpg"))
    files = records.list_shards(str(out), "train")
    assert [os.path.basename(f) for f in files] == ["train-00000-of-00002", "train-00001-of-00002"]
    examples = _read_examples(files)
    assert len(examples) == summary.num_written == 12  # 9 + png + grey + cmyk
    for ex in examples:
        assert ex["format"] == "JPEG"
        decoded = tf.io.decode_jpeg(ex["encoded"])  # every record is a JPEG now
        assert decoded.shape == (ex["height"], ex["width"], 3)
        assert ex["label"] == int(ex["synset"][-1])  # sorted folders -> 1..3
    by_name = {ex["filename"]: ex for ex in examples}
    assert {"alpha.png", "grey.jpg", "cmyk.jpg"} <= set(by_name)
    assert by_name["n001_0.JPEG"]["text"] == "first thing"
    assert by_name["cmyk.jpg"]["text"] == "n003"  # not in the mapping: the folder name
    # Shuffled train order: classes are mixed within the shards.
    assert len({ex["label"] for ex in examples[:6]}) > 1
    assert (out / "labels.txt").read_text().splitlines() == [
        "1\tn001\tfirst thing", "2\tn002\tsecond thing", "3\tn003\tn003",
    ]
    assert read_labels_file(str(out)) == ["first thing", "second thing", "n003"]
    assert records.read_metadata(str(out))["splits"]["train"]["num_examples"] == 12


def test_validation_split_reuses_train_labels(tmp_path):
    src = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    build_tfrecords.build(str(src), str(out), "train", 1)
    val = tmp_path / "val"
    (val / "n003").mkdir(parents=True)
    _image(7).save(val / "n003" / "v.jpg")
    build_tfrecords.build(str(val), str(out), "validation", 1)
    (example,) = _read_examples(records.list_shards(str(out), "validation"))
    assert example["label"] == 3  # n003 keeps its train label although it is the only class
    (val / "n999").mkdir()
    with pytest.raises(DataError, match="n999"):
        build_tfrecords.build(str(val), str(out), "validation2", 1)


def test_interrupted_shard_is_never_visible_and_rerun_resumes(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    # A temporary file left by a killed run: never matched by the shard pattern, removed later.
    leftover = out / f"{files.TMP_PREFIX}train-00000-of-00003.deadbeef"
    leftover.write_bytes(b"half a shard")
    real_encode = writer.encode_image
    calls = {"n": 0}

    def failing_encode(source):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # the run is interrupted in the middle of a shard
        return real_encode(source)

    monkeypatch.setattr(writer, "encode_image", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        build_tfrecords.build(str(src), str(out), "train", 3, num_workers=1)
    done = sorted(p.name for p in out.glob("train-*"))
    # The interrupted shard has no final name; shards that have one are complete (another
    # worker may have finished the last shard before the interruption reached the pool).
    assert "train-00000-of-00003" in done and "train-00001-of-00003" not in done
    assert sum(1 for _ in tf.data.TFRecordDataset([str(out / name) for name in done])) >= 4
    assert not any(p.name.startswith(files.TMP_PREFIX + "train-00001") for p in out.iterdir())

    monkeypatch.setattr(writer, "encode_image", real_encode)
    finished = out / "train-00000-of-00003"
    mtime = finished.stat().st_mtime_ns
    summary = build_tfrecords.build(str(src), str(out), "train", 3)
    assert [s.skipped for s in summary.shards] == [
        f"train-0000{i}-of-00003" in done for i in range(3)
    ]
    assert finished.stat().st_mtime_ns == mtime
    assert not leftover.exists()
    assert len(_read_examples(records.list_shards(str(out), "train"))) == 12
    assert records.read_metadata(str(out))["splits"]["train"]["num_examples"] == 12


def test_stray_temp_file_not_listed(tmp_path):
    (tmp_path / "train-00000-of-00001").write_bytes(b"")
    (tmp_path / f"{files.TMP_PREFIX}train-00000-of-00001.x").write_bytes(b"")
    (tmp_path / "train-00000-of-00001.tmp-123").write_bytes(b"")  # other tools' temp names
    assert [os.path.basename(f) for f in records.list_shards(str(tmp_path), "train")] == [
        "train-00000-of-00001"
    ]


def test_encode_image_keeps_rgb_jpeg_bytes_and_rejects_garbage():
    buffer = io.BytesIO()
    _image(3).save(buffer, format="JPEG")
    assert writer.encode_image(buffer.getvalue())[0] == buffer.getvalue()
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    with pytest.raises(writer.UnreadableImage):
        writer.encode_image(truncated)


def test_builder_input_errors(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        build_tfrecords.build(str(tmp_path / "nope"), str(tmp_path / "out"), "train", 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No class sub-folder"):
        build_tfrecords.build(str(tmp_path / "empty"), str(tmp_path / "out"), "train", 1)


def test_any_file_name_and_unreadable_entries_are_reported_by_path(tmp_path):
    """Non-UTF-8 names, spaces, a symlink loop, a zero-byte and a non-image file."""
    src = tmp_path / "src"
    good = np.full((20, 24, 3), 120, np.uint8)
    odd_class = os.path.join(os.fsencode(src), b"caf\xe9 class")  # Latin-1, not UTF-8
    os.makedirs(odd_class)
    os.makedirs(src / "plain")
    for folder in (odd_class, os.fsencode(src / "plain")):
        Image.fromarray(good).save(os.fsdecode(os.path.join(folder, b"with space.png")))
        Image.fromarray(good).save(os.fsdecode(os.path.join(folder, b"\xff\xfe name.jpg")))
    (src / "plain" / "empty.jpg").write_bytes(b"")
    (src / "plain" / "notes.txt").write_text("not an image")
    os.symlink("loop_b", src / "plain" / "loop_a")
    os.symlink("loop_a", src / "plain" / "loop_b")
    out = tmp_path / "out"
    summary = build_tfrecords.build(str(src), str(out), "train", 2, num_workers=1)

    assert summary.num_written == 4
    listing = (out / "unreadable-train.txt").read_text(encoding="utf-8")
    for name in ("empty.jpg", "notes.txt", "loop_a", "loop_b"):
        assert str(src / "plain" / name) in listing
    labels = (out / "labels.txt").read_text(encoding="utf-8")
    assert "caf\\xe9 class" in labels and "plain" in labels
    examples = _read_examples(records.list_shards(str(out), "train"))
    names = sorted(ex["filename"] for ex in examples)
    assert names.count("\\xff\\xfe name.jpg") == 2 and names.count("with space.png") == 2
    # Only the shards match the train-* pattern of other tools.
    assert sorted(p.name for p in out.glob("train-*")) == [
        "train-00000-of-00002", "train-00001-of-00002"]


@pytest.mark.slow
def test_command_line(tmp_path):
    src = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "autonl_tf.data.build_tfrecords", f"--input_dir={src}",
         f"--output_dir={out}", "--split=validation", "--num_shards=2"],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "corrupt.jpg" in proc.stderr  # unreadable image reported by path
    assert len(records.list_shards(str(out), "validation")) == 2
    # Validation keeps the sorted order (no shuffle).
    labels = [ex["label"] for ex in _read_examples(records.list_shards(str(out), "validation"))]
    assert labels == sorted(labels)
