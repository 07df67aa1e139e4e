"""A rerun of the finished pipeline does not redo its evaluation or export."""
# bazel: suite=repo

import json

from autonl_tf import pipeline


def test_finished_eval_and_export_are_not_rerun(tmp_path):
    train, export = tmp_path / "train", tmp_path / "export"
    train.mkdir()
    export.mkdir()
    (train / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    (train / "ckpt-5.index").write_bytes(b"")
    assert pipeline.evaluated_already(str(train)) is None
    (train / "eval_results.json").write_text(json.dumps([{"step": 5, "ema": True}]))
    assert "ckpt-5" in pipeline.evaluated_already(str(train))
    assert pipeline.exported_already(str(train), str(export), "float32") is None
    card = {"weights": {"checkpoint": "ckpt-5", "step": 5, "ema": True},
            "tflite": {"float32": {}}}
    (export / "export_card.json").write_text(json.dumps(card))
    assert pipeline.exported_already(str(train), str(export), "float32")
    assert pipeline.exported_already(str(train), str(export), "float32,int8") is None
    (train / "checkpoint").write_text('model_checkpoint_path: "ckpt-9"\n')
    (train / "ckpt-9.index").write_bytes(b"")
    assert pipeline.evaluated_already(str(train)) is None
    assert pipeline.exported_already(str(train), str(export), "float32") is None
