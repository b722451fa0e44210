"""Model files are untrusted input. Before Keras sees a config we walk it ourselves and
refuse anything that could run code: Lambda layers (marshalled bytecode), references to
modules outside Keras, custom/registered classes, and absurd sizes that would exhaust memory.
Keras' own safe mode (>= 3.11.3 also for .h5) stays on as a second line."""

from __future__ import annotations

from dataclasses import dataclass, field

#: built-in layer classes a pruning user can meet in an image classifier
SAFE_LAYERS = frozenset("""
InputLayer Conv1D Conv2D Conv3D SeparableConv2D DepthwiseConv2D Conv2DTranspose Dense
MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D AveragePooling3D
GlobalMaxPooling2D GlobalAveragePooling2D GlobalMaxPooling1D GlobalAveragePooling1D
Flatten Reshape Permute RepeatVector Cropping2D ZeroPadding2D UpSampling2D
Activation ReLU LeakyReLU PReLU ELU Softmax ThresholdedReLU
Add Subtract Multiply Average Maximum Minimum Concatenate Dot
Dropout SpatialDropout2D GaussianNoise GaussianDropout AlphaDropout ActivityRegularization
BatchNormalization LayerNormalization GroupNormalization UnitNormalization
Rescaling Normalization Resizing CenterCrop Identity Masking Embedding
Functional Model Sequential
""".split())

#: classes that exist in Keras but load code or graphs from elsewhere
FORBIDDEN = {
    "Lambda": "a Lambda layer, which would run Python code stored in the file",
    "TFSMLayer": "a TFSMLayer, which would load an external TensorFlow graph",
    "TorchModuleWrapper": "a TorchModuleWrapper, which would unpickle a Torch module",
    "JaxLayer": "a JaxLayer, which would call external Python functions",
    "FlaxLayer": "a FlaxLayer, which would call external Python functions",
    "__lambda__": "a serialised Python lambda",
}

SAFE_ACTIVATIONS = frozenset("""relu relu6 sigmoid softmax softplus softsign tanh selu elu exponential
linear hard_sigmoid hard_silu hard_swish silu swish gelu leaky_relu log_softmax mish celu glu
sparse_plus squareplus soft_shrink hard_shrink tanh_shrink hard_tanh log_sigmoid sparsemax
threshold""".split())

SIZE_KEYS = {"units": 1_000_000, "filters": 100_000, "output_dim": 10_000_000,
             "input_dim": 10_000_000, "depth_multiplier": 10_000}
SHAPE_KEYS = ("batch_input_shape", "batch_shape", "input_shape", "target_shape")
MAX_DIM = 100_000
MAX_NODES = 200_000


class UnsafeModel(Exception):
    """Raised with a one-line reason; the caller adds the file name."""


@dataclass
class ConfigFacts:
    layer_classes: list[str] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    declared_sizes: dict[str, int] = field(default_factory=dict)  # layer -> units/filters


def check_config(config, *, allow_unsafe: bool = False) -> ConfigFacts:
    """Walk a Keras (2 or 3) model config; raise UnsafeModel on anything that can run code.

    ``allow_unsafe`` lets Lambda layers and foreign references through (the user said so
    explicitly); size limits are always enforced."""
    facts = ConfigFacts()
    budget = [MAX_NODES]

    def fail(msg: str) -> None:
        if not allow_unsafe:
            raise UnsafeModel(msg)

    def walk(obj, in_layers: bool, owner: str | None) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise UnsafeModel("the model config is absurdly large")
        if isinstance(obj, dict):
            cn = obj.get("class_name")
            name = owner
            if isinstance(cn, str):
                cfg = obj.get("config")
                if in_layers:
                    lname = obj.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
                    name = str(lname) if lname is not None else cn
                    facts.layer_classes.append(cn)
                    facts.layer_names.append(name)
                check_object(obj, cn, in_layers, name, fail)
            for key, val in obj.items():
                if key in SIZE_KEYS and isinstance(val, (int, float)) and not isinstance(val, bool):
                    if val > SIZE_KEYS[key]:
                        raise UnsafeModel(f"layer '{owner}' declares {key}={int(val):,}, far beyond any "
                                          "real model (refused to protect memory)")
                    if owner and key in ("units", "filters"):
                        facts.declared_sizes[owner] = int(val)
                if key in SHAPE_KEYS and isinstance(val, (list, tuple)):
                    for d in val:
                        if isinstance(d, (int, float)) and not isinstance(d, bool) and d > MAX_DIM:
                            raise UnsafeModel(f"layer '{owner}' declares a shape {list(val)} far beyond "
                                              "any real model (refused to protect memory)")
                if key in ("function", "function_type", "module_name") and obj.get("class_name") is None:
                    if key == "function_type" or (key == "function" and isinstance(val, (list, str))):
                        fail(f"layer '{owner}' holds serialised Python code ('{key}')")
                walk(val, key == "layers", name)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, in_layers, owner)

    walk(config, False, None)
    return facts


def check_object(obj: dict, cn: str, is_layer: bool, name: str | None, fail) -> None:
    where = f"layer '{name}'" if name else "the model config"
    if cn in FORBIDDEN:
        fail(f"{where} is {FORBIDDEN[cn]}")
        return
    module = obj.get("module")
    registered = obj.get("registered_name")
    if module is not None and not isinstance(module, str):
        fail(f"{where} names a non-text module")
        return
    if isinstance(module, str) and module and not (module == "keras" or module.startswith("keras.")):
        fail(f"{where} refers to module '{module}' outside Keras")
        return
    if cn == "function":
        fn = obj.get("config")
        if not (isinstance(module, str) and "activations" in module and fn in SAFE_ACTIVATIONS):
            fail(f"{where} refers to a Python function '{fn}' in module '{module}'")
        return
    if isinstance(registered, str) and registered not in (cn, "") and not registered.startswith("keras"):
        fail(f"{where} uses a custom registered class '{registered}'")
        return
    if ">" in cn or "." in cn:
        fail(f"{where} uses a custom class '{cn}'")
        return
    if is_layer and cn not in SAFE_LAYERS and not _is_keras_op(module, cn):
        fail(f"{where} has the unknown or custom class '{cn}'")
        return
    if not is_layer and not cn.startswith("__") and module is None:
        # Keras 2 style nested objects (initializers, regularizers, constraints) carry no
        # module; accept only names that Keras itself defines.
        if not _is_keras_name(cn):
            fail(f"{where} refers to the unknown or custom class '{cn}'")


_KNOWN: set[str] | None = None


def _is_keras_op(module, cn: str) -> bool:
    """Keras 3 records ``keras.ops`` calls in functional graphs (G uses argmax/equal) as
    operations from ``keras.src.ops.*``; accept those that really are Keras operations."""
    if not (isinstance(module, str) and module.startswith("keras.src.ops.")):
        return False
    import importlib

    from engine.core.tfsetup import keras

    keras()
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return False
    cls = getattr(mod, cn, None)
    from keras.src.ops.operation import Operation

    return isinstance(cls, type) and issubclass(cls, Operation)


def _is_keras_name(cn: str) -> bool:
    global _KNOWN
    if _KNOWN is None:
        from engine.core.tfsetup import keras

        k = keras()
        names: set[str] = set(SAFE_LAYERS) | {"DTypePolicy", "Policy", "FloatDTypePolicy"}
        for mod in (k.initializers, k.regularizers, k.constraints, k.optimizers, k.losses,
                    k.metrics, k.dtype_policies):
            names.update(n for n in dir(mod) if not n.startswith("_"))
        _KNOWN = names
    return cn in _KNOWN


def check_activation_strings(config, *, allow_unsafe: bool = False) -> None:
    """``"activation": "<name>"`` must be a Keras activation, not a custom object name."""

    def walk(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k == "activation" and isinstance(v, str) and v not in SAFE_ACTIVATIONS and not allow_unsafe:
                    raise UnsafeModel(f"uses the unknown activation '{v}'")
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(config)
