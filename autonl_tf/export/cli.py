"""``python -m autonl_tf.export``: export a training directory as SavedModel (+ TFLite).

    python -m autonl_tf.export --model_dir=runs/autonl_s --export_dir=exports/autonl_s
    python -m autonl_tf.export --model_dir=runs/autonl_s --export_dir=exports/autonl_s \\
        --tflite=float32,float16,dynamic_int8,int8 --min_top1_agreement=0.9

The first writes the default modes (float32 and int8; int8 is left out, with the reason in the
export card, when it fails verification). The second asks for every mode: each must reach
--min_top1_agreement, so it exits 1 on a network whose int8 model agrees less (a weakly trained
demo network: 74%).

Exports the EMA weights by default (--nouse_ema for the raw weights). Every exported model is
compared with the TensorFlow model on the first --num_verify_images eval images; the next
--num_calibration_images calibrate the full-integer 'int8' model. Exit status (shared by every
autonl_tf command): 0 exported; 2 bad input (flags, empty model_dir, missing or damaged data),
one line on stderr; 1 an exported model failed verification (non-finite outputs, or top-1
agreement with TensorFlow below --min_top1_agreement). A failed export writes nothing at
--export_dir and leaves an earlier export there untouched.

The flags are defined when the command runs (`define_flags`), not at import, so that importing
this module next to train_main.py/eval_main.py (which define --model_dir too) is harmless.
"""

from __future__ import annotations

import functools
import sys

from absl import app, flags

from autonl_tf._startup import quiet_tensorflow_startup
from autonl_tf.export.modes import (
    DEFAULT_TFLITE_MODES,
    LIGHTNL_PRODUCT_CHOICES,
    TFLITE_MODES,
    ExportError,
    parse_tflite_modes,
)

__all__ = ["PROGRAM", "define_flags", "main", "run"]

PROGRAM = "python -m autonl_tf.export"


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
    flags.DEFINE_enum("lightnl_products", "auto", list(LIGHTNL_PRODUCT_CHOICES),
                      "How the 'int8' model computes LightNL's products of two activations: "
                      "auto = in int8 inside XNNPACK, or in float32 between DEQUANTIZE and "
                      "QUANTIZE when the int8 products fail their check or verification (the "
                      "model's card says which and why); int8 = fail instead; float32 = always "
                      "the float32 islands.", **fv)
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
    """Runs the export described by parsed ``flag_values``; returns the exit status.

    0 exported; 2 bad input (flags, model_dir, data, checkpoint), one line on stderr; 1 the
    export ran but an exported model failed verification (non-finite outputs, disagreement).
    """
    from autonl_tf.runner import cli as cli_lib

    try:
        with cli_lib.exit_on_user_errors(PROGRAM):
            result = _export(argv, flag_values)
    except SystemExit as e:
        return int(e.code)
    print(result.summary())
    return cli_lib.EXIT_OK


def _export(argv: list[str], f: flags.FlagValues):
    if len(argv) > 1:
        raise ExportError(f"unexpected arguments: {' '.join(argv[1:])}")
    for required in ("model_dir", "export_dir"):
        if not f[required].value:
            raise ExportError(f"--{required} is required")
    try:
        parse_tflite_modes(f.tflite)
    except ValueError as e:
        raise ExportError(f"--tflite: {e}") from None
    quiet_tensorflow_startup()  # the flags are fine: now TensorFlow, without its CUDA-probe noise
    from autonl_tf.export.model_dir import export_from_model_dir

    try:
        return export_from_model_dir(
            f.model_dir, f.export_dir, use_ema=f.use_ema, checkpoint_path=f.checkpoint_path,
            tflite_modes=f.tflite, int8_io=f.tflite_int8_io, top_k=f.top_k,
            lightnl_products=f.lightnl_products,
            # Default modes are shipped when they pass verification; asked-for ones must.
            optional_tflite_modes=() if f["tflite"].present else ("int8",),
            labels_file=f.labels_file, data_dir=f.data_dir,
            num_calibration_images=f.num_calibration_images,
            num_verify_images=f.num_verify_images,
            min_top1_agreement=f.min_top1_agreement or None)
    except ValueError as e:
        if type(e) is not ValueError:  # DataError, CheckpointMismatchError...: as they are
            raise
        raise ExportError(str(e)) from None  # a bad argument combination


def run() -> None:
    """``python -m autonl_tf.export``: defines the flags, lists them in --help, runs `main`."""
    define_flags()
    # --help lists the key flags of the main module (sys.argv[0]): the flags defined above
    # belong to this module, so register them for the main module too.
    for flag in flags.FLAGS.get_key_flags_for_module(__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    from autonl_tf.runner import cli as cli_lib

    # TensorFlow is loaded once `_export` has checked the flags.
    app.run(lambda argv: sys.exit(main(argv)),
            flags_parser=functools.partial(cli_lib.parse_flags, load_tensorflow=False))


if __name__ == "__main__":
    run()
