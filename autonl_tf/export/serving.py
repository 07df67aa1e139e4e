"""The serving graph of an exported classifier: a `tf.Module` with three signatures.

``serving_default`` (encoded images in, top-k out)
  inputs:  ``image_bytes``  string [B]: JPEG or PNG files, any size.
  outputs: ``classes``      int32 [B, k]: class ids, best first (-1 for an invalid image),
           ``probabilities`` float32 [B, k]: softmax probabilities (0 for an invalid image),
           ``class_names``  string [B, k]: only when the export has labels ("" when invalid),
           ``valid``        bool [B]: False when the image could not be decoded, or when
                            the network's logits for it are not finite (NaN/Inf).
  The eval preprocessing runs in the graph (`autonl_tf.data.preprocess_for_eval`: central crop
  of size/(size+crop_padding) of the shorter side, bicubic resize, ImageNet mean/std).

  A bad image never fails the request: each image is decoded on its own inside a `tf.data`
  pipeline whose errors are dropped (`Dataset.ignore_errors`), after a magic-number check that
  only admits JPEG (FF D8 FF) and PNG (89 50 4E 47). Whatever cannot be decoded (garbage,
  truncated or corrupt files, GIF/BMP, empty strings) becomes ``valid=False`` with class -1,
  zero probabilities and an empty name, while the other images of the batch are served
  normally. An empty batch returns empty outputs.

``serving_images`` (decoded, already resized pixels in, logits out)
  inputs:  ``images`` uint8 [B, S, S, 3]: RGB, 0..255, already cropped and resized to the
           export's image size S (e.g. by the central crop + bicubic resize above).
  outputs: ``logits`` float32 [B, num_classes]. Normalisation by the ImageNet mean/std runs in
           the graph.

``serving_normalized`` (model input in, logits out)
  inputs:  ``images`` float32 [B, S, S, 3]: already normalised, (pixel - mean) / std.
  outputs: ``logits`` float32 [B, num_classes]. Exactly the Keras model's forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from autonl_tf.data import preprocessing

__all__ = [
    "SERVING_BYTES",
    "SERVING_IMAGES",
    "SERVING_NORMALIZED",
    "ClassifierServingModule",
    "looks_like_jpeg_or_png",
]

SERVING_BYTES = "serving_default"
SERVING_IMAGES = "serving_images"
SERVING_NORMALIZED = "serving_normalized"

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG"


def looks_like_jpeg_or_png(image_bytes: tf.Tensor) -> tf.Tensor:
    """bool []: whether a string [] starts with the JPEG or PNG magic number."""
    is_jpeg = tf.equal(tf.strings.substr(image_bytes, 0, len(_JPEG_MAGIC)), _JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_MAGIC)), _PNG_MAGIC)
    return tf.logical_or(is_jpeg, is_png)


def _unique_variables(functions) -> list[tf.Variable]:
    seen: dict[int, tf.Variable] = {}
    for function in functions:
        for variable in function.variables:
            seen.setdefault(id(variable), variable)
    return list(seen.values())


class ClassifierServingModule(tf.Module):
    """Wraps a Keras classifier (input [B, S, S, 3] normalised, output [B, C] logits).

    The Keras model itself is deliberately not tracked: the module tracks exactly the TF
    variables its signature functions capture. This keeps the SavedModel small and makes the
    TFLite converter freeze those variables into constants (tracking the Keras model instead
    leaves unfrozen VAR_HANDLE/READ_VARIABLE ops that compute NaNs).
    """

    def __init__(self, model: keras.Model, image_size: int, labels: Sequence[str] | None = None,
                 top_k: int = 5, crop_padding: int = 32):
        super().__init__(name="autonl_classifier")
        num_classes = int(model.output_shape[-1])
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for a model with {num_classes} classes")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self._forward: Callable[[tf.Tensor], tf.Tensor] = lambda x: model(x, training=False)
        self._image_size = int(image_size)
        self._num_classes = num_classes
        self._top_k = min(int(top_k), num_classes)
        self._crop_padding = int(crop_padding)
        self._labels = list(labels) if labels is not None else None

        size = self._image_size
        self.serve_bytes = tf.function(self._serve_bytes, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes")])
        self.serve_images = tf.function(self._serve_images, input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
        self.serve_normalized = tf.function(self._serve_normalized, input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        self.captured_variables = _unique_variables(
            f.get_concrete_function() for f in self.signatures.values())

    @property
    def signatures(self) -> dict[str, tf.types.experimental.PolymorphicFunction]:
        """Signature name -> tf.function, as passed to `tf.saved_model.save`."""
        return {SERVING_BYTES: self.serve_bytes, SERVING_IMAGES: self.serve_images,
                SERVING_NORMALIZED: self.serve_normalized}

    @property
    def top_k(self) -> int:
        return self._top_k

    # -- the signature bodies.
    def _logits(self, images: tf.Tensor) -> tf.Tensor:
        # The network cannot run on an empty batch (BatchNorm broadcasting fails), so an empty
        # batch runs on one blank image and is sliced back to zero rows.
        count = tf.shape(images)[0]
        padded = tf.pad(images, [[0, tf.maximum(1 - count, 0)], [0, 0], [0, 0], [0, 0]])
        return tf.cast(self._forward(padded), tf.float32)[:count]

    def _serve_normalized(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self._logits(images)}

    def _serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self._logits(preprocessing.normalize(images))}

    def _decode_batch(self, image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """string [B] -> (normalised float32 [B, S, S, 3] with zeros where invalid, bool [B])."""
        size = self._image_size
        count = tf.shape(image_bytes)[0]

        def decode_one(index, encoded):
            checked = tf.debugging.Assert(looks_like_jpeg_or_png(encoded),
                                          ["not a JPEG or PNG image"])
            with tf.control_dependencies([checked]):
                image = preprocessing.preprocess_for_eval(
                    tf.identity(encoded), size, tf.float32, crop_padding=self._crop_padding)
            return index, image

        decoded = (tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes))
                   .map(decode_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
                   .ignore_errors()
                   .batch(tf.cast(tf.maximum(count, 1), tf.int64)))
        # At most one batch; reduce() also copes with zero batches (every image invalid).
        empty = (tf.zeros([0], tf.int32), tf.zeros([0, size, size, 3], tf.float32))
        indices, images = decoded.reduce(
            empty, lambda acc, batch: (tf.concat([acc[0], batch[0]], 0),
                                       tf.concat([acc[1], batch[1]], 0)))
        images = tf.scatter_nd(indices[:, None], images, tf.stack([count, size, size, 3]))
        valid = tf.scatter_nd(indices[:, None], tf.ones_like(indices), [count]) > 0
        return images, valid

    def _serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images, decoded = self._decode_batch(image_bytes)
        logits = self._logits(images)
        # An image on which the network diverges (NaN/Inf logits) is not served as an answer.
        finite = tf.reduce_all(tf.math.is_finite(logits), axis=-1)
        valid = tf.logical_and(decoded, finite)
        probabilities = tf.nn.softmax(tf.where(finite[:, None], logits, 0.0), axis=-1)
        top_probabilities, top_classes = tf.math.top_k(probabilities, k=self._top_k)
        valid_k = tf.broadcast_to(valid[:, None], tf.shape(top_classes))
        outputs = {
            "classes": tf.where(valid_k, top_classes, -1),
            "probabilities": tf.where(valid_k, top_probabilities, 0.0),
            "valid": valid,
        }
        if self._labels is not None:
            names = tf.gather(tf.constant(self._labels, tf.string), top_classes)
            outputs["class_names"] = tf.where(valid_k, names, "")
        return outputs
