"""``python -m autonl_tf.export``: export a training directory as SavedModel (+ TFLite).

    python -m autonl_tf.export --model_dir=runs/autonl_s --export_dir=exports/autonl_s \\
        --tflite=float32,float16,dynamic_int8,int8 --min_top1_agreement=0.9

Exports the EMA weights by default (--nouse_ema for the raw weights). Every exported model is
compared with the TensorFlow model on the first --num_verify_images eval images; the next
--num_calibration_images calibrate the full-integer 'int8' model. Exit status 0 on success; 1
with a one-paragraph message on stderr when the export failed (bad flags, empty model_dir,
missing data, or an exported model whose top-1 agrees with TensorFlow on fewer than
--min_top1_agreement of the verification images). A failed export writes nothing at
--export_dir and leaves an earlier export there untouched.

The flags are defined when the command runs (`define_flags`), not at import, so that importing
this module next to train_main.py/eval_main.py (which define --model_dir too) is harmless.
"""

from __future__ import annotations

import sys

from absl import app, flags

from autonl_tf.export.tflite import DEFAULT_TFLITE_MODES, TFLITE_MODES

__all__ = ["define_flags", "main", "run"]


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the export flags in ``flag_values``."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model_dir", None, "Training directory (config.json + checkpoints).", **fv)
    flags.DEFINE_string("export_dir", None, "Output directory; replaced as a whole if it holds "
                        "an earlier export.", **fv)
    flags.DEFINE_string("checkpoint_path", None,
                        "Checkpoint to export (default: the latest in model_dir).", **fv)
    flags.DEFINE_bool("use_ema", True, "Export the EMA weights (what eval reports).", **fv)
    flags.DEFINE_string("tflite", ",".join(DEFAULT_TFLITE_MODES),
                        "Comma-separated TFLite modes to write next to the SavedModel: "
                        f"{', '.join(TFLITE_MODES)} (empty: SavedModel only). The default modes "
                        "are the accurate and fast ones (each model's card says why); by "
                        "default int8 is left out, with the reason in the export card, when "
                        "it fails verification, while a mode asked for fails the export.",
                        **fv)
    flags.DEFINE_bool("tflite_int8_io", False,
                      "int8 input/output tensors for the 'int8' TFLite model.", **fv)
    flags.DEFINE_integer("top_k", 5, "Classes returned by the serving_default signature.",
                         lower_bound=1, **fv)
    flags.DEFINE_string("labels_file", None, "Class names, one per line (default: those of the "
                        "run's data config).", **fv)
    flags.DEFINE_string("data_dir", None, "Overrides data.data_dir of the run (labels, "
                        "calibration and verification images).", **fv)
    flags.DEFINE_integer("num_calibration_images", 200, "Eval images (after the verification "
                         "ones) to calibrate the full-integer 'int8' model.", lower_bound=0, **fv)
    flags.DEFINE_integer("num_verify_images", 100, "Eval images to compare every exported model "
                         "with TensorFlow (0: no verification).", lower_bound=0, **fv)
    flags.DEFINE_float("min_top1_agreement", 0.9, "Fail when an exported model's top-1 agrees "
                       "with TensorFlow on a smaller fraction of the verification images "
                       "(0 disables the check).", lower_bound=0.0, upper_bound=1.0, **fv)


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """Runs the export described by parsed ``flag_values``; returns the exit status."""
    if len(argv) > 1:
        print(f"export failed: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    from autonl_tf.data import DataError
    from autonl_tf.export.atomic import ExportError
    from autonl_tf.export.model_dir import export_from_model_dir

    f = flag_values
    for required in ("model_dir", "export_dir"):
        if not f[required].value:
            print(f"export failed: --{required} is required", file=sys.stderr)
            return 1
    try:
        result = export_from_model_dir(
            f.model_dir, f.export_dir, use_ema=f.use_ema, checkpoint_path=f.checkpoint_path,
            tflite_modes=f.tflite, int8_io=f.tflite_int8_io, top_k=f.top_k,
            # Default modes are shipped when they pass verification; asked-for ones must.
            optional_tflite_modes=() if f["tflite"].present else ("int8",),
            labels_file=f.labels_file, data_dir=f.data_dir,
            num_calibration_images=f.num_calibration_images,
            num_verify_images=f.num_verify_images,
            min_top1_agreement=f.min_top1_agreement or None)
    except (ExportError, DataError, ValueError, FileNotFoundError) as e:
        # NoCheckpointError is a FileNotFoundError, CheckpointMismatchError a ValueError.
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def run() -> None:
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
