"""A real Keras model through tf2onnx, for tests/test_import.py: run by the TensorFlow environment
(`make tf-env`: build/tf-env), never by modelport's. Writes OUT.onnx, OUT.onnx.x.npy (a feed) and
OUT.onnx.want.npy (Keras's answer to it).

    build/tf-env/bin/python tests/tools/keras_to_onnx.py OUT.onnx
"""

import sys

import numpy as np
import tensorflow as tf
import tf2onnx

inputs = tf.keras.Input(shape=(16, 16, 3), name="image")
x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
x = tf.keras.layers.BatchNormalization()(x)
x = tf.keras.layers.MaxPooling2D()(x)
x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
x = tf.keras.layers.GlobalAveragePooling2D()(x)
out = tf.keras.layers.Dense(5, activation="softmax", name="probs")(x)
model = tf.keras.Model(inputs, out)
spec = (tf.TensorSpec((None, 16, 16, 3), tf.float32, name="image"),)
onnx_model, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=sys.argv[1])
x = np.random.default_rng(0).standard_normal((3, 16, 16, 3)).astype(np.float32)
np.save(sys.argv[1] + ".x.npy", x)
np.save(sys.argv[1] + ".want.npy", model(x).numpy())
print("tensorflow", tf.__version__, "tf2onnx", tf2onnx.__version__, [i.name for i in onnx_model.graph.input])
