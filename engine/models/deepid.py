"""The lab's DeepID network (layer names as in the lab's bd_net.h5)."""

from __future__ import annotations

from engine.core.tfsetup import keras

LAB_INPUT = (55, 47, 3)
LAB_CLASSES = 1283


def build_deepid(n_classes: int = LAB_CLASSES, input_shape=LAB_INPUT, seed: int | None = None):
    """Input 55×47×3 → conv_1 20@4×4 → pool_1 → conv_2 40@3×3 → pool_2 → conv_3 60@3×3 → pool_3
    → [flatten_1 → fc_1 160] + [conv_4 80@2×2 → flatten_2 → fc_2 160] → add_1 → relu → output."""
    k = keras()
    L = k.layers
    init = (lambda i: k.initializers.GlorotUniform(seed=seed + i)) if seed is not None else (lambda i: "glorot_uniform")
    x = k.Input(shape=tuple(input_shape), name="input")
    h = L.Conv2D(20, 4, activation="relu", name="conv_1", kernel_initializer=init(1))(x)
    h = L.MaxPooling2D(2, name="pool_1")(h)
    h = L.Conv2D(40, 3, activation="relu", name="conv_2", kernel_initializer=init(2))(h)
    h = L.MaxPooling2D(2, name="pool_2")(h)
    h = L.Conv2D(60, 3, activation="relu", name="conv_3", kernel_initializer=init(3))(h)
    p3 = L.MaxPooling2D(2, name="pool_3")(h)
    c4 = L.Conv2D(80, 2, activation="relu", name="conv_4", kernel_initializer=init(4))(p3)
    f1 = L.Flatten(name="flatten_1")(p3)
    f2 = L.Flatten(name="flatten_2")(c4)
    a = L.Dense(160, name="fc_1", kernel_initializer=init(5))(f1)
    b = L.Dense(160, name="fc_2", kernel_initializer=init(6))(f2)
    h = L.Add(name="add_1")([a, b])
    h = L.Activation("relu", name="activation_1")(h)
    out = L.Dense(int(n_classes), activation="softmax", name="output", kernel_initializer=init(7))(h)
    return k.Model(x, out, name="model_1")
