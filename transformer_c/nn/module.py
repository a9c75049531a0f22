"""The module protocol shared by every layer (DESIGN.md section 4).

A module is stateless apart from its parameters and hyper-parameters:
- ``parameters`` (property): a tree (nested dicts) of ndarrays;
- ``forward(**inputs) -> ndarray``: inputs by keyword (``x=``, or ``q=, k=, v=``);
- ``backward(gradient_outputs, **inputs) -> (param_grads, input_grads)``: the same inputs
  as forward; param_grads has exactly the structure of ``parameters`` and input_grads
  exactly the keys of ``inputs`` (integer inputs get zeros);
- ``with_parameters(tree) -> new module`` (self unchanged);
- ``create(..., random_generator)``: a reproducible factory.
Backward recomputes what it needs from the inputs (the protocol has no cache); every
computation runs in the C kernels of :mod:`transformer_c.functional`.
"""
import abc

import numpy as np

__all__ = ["Module", "CachedModule", "glorot_uniform", "check_dtype"]


class Module(abc.ABC):
    """Base class: subclasses define parameters, with_parameters, forward and backward."""

    @property
    def parameters(self):
        """The parameter tree: nested dicts (and lists) of ndarrays (empty here)."""
        return {}

    def with_parameters(self, parameters):
        """A new module of the same kind and hyper-parameters with the parameters of the
        tree ``parameters`` (the structure of ``self.parameters``); self is unchanged."""
        if parameters:
            raise ValueError(f"{type(self).__name__} has no parameters, got keys {sorted(parameters)}")
        return self

    @abc.abstractmethod
    def forward(self, **inputs):
        """The module's output for keyword inputs."""

    @abc.abstractmethod
    def backward(self, gradient_outputs, **inputs):
        """(param_grads, input_grads) for the upstream gradient at the same inputs."""

    def __call__(self, **inputs):
        return self.forward(**inputs)

    def __repr__(self):
        shapes = {k: getattr(v, "shape", "...") for k, v in self.parameters.items()}
        return f"{type(self).__name__}({shapes})"


class CachedModule(Module):
    """A module defined by the pair the models chain without recomputation:
    ``forward_cached(x, **options) -> (y, cache)`` and ``backward_cached(g, cache) ->
    (param_grads, dx)``. forward / backward follow from them; extra keyword inputs (masks)
    pass through to forward_cached and get zero input gradients."""

    def forward(self, x, **options):
        """forward_cached's output y for input x (shapes as the subclass documents)."""
        return self.forward_cached(x, **options)[0]

    def backward(self, gradient_outputs, x, **options):
        """(param_grads, {"x": dx, mask names: zeros}) at input x; gradient_outputs has
        the output's shape."""
        grads, dx = self.backward_cached(gradient_outputs, self.forward_cached(x, **options)[1])
        return grads, with_zero_grads({"x": dx}, options)


def with_zero_grads(grads, inputs):
    """grads plus a zero gradient (own shape and dtype) for every non-None entry of
    ``inputs`` (the non-differentiable inputs that were given: masks, seeds)."""
    for name, value in inputs.items():
        if value is not None:
            grads[name] = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)
    return grads


def glorot_uniform(random_generator, fan_in, fan_out, shape=None, dtype=np.float64):
    """Glorot/Xavier uniform init: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)).

    shape defaults to (fan_out, fan_in); the draw uses ``random_generator`` (a
    numpy.random.Generator) so a seed reproduces it.
    """
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    shape = (fan_out, fan_in) if shape is None else shape
    return random_generator.uniform(-limit, limit, size=shape).astype(dtype)


def check_dtype(dtype):
    """np.dtype(dtype), which must be float32 or float64 (ValueError naming dtype otherwise)."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def replace_keys(module, parameters, expected):
    """Validate that ``parameters`` has exactly the keys ``expected`` (ValueError otherwise)."""
    if not isinstance(parameters, dict) or set(parameters) != set(expected):
        got = sorted(parameters) if isinstance(parameters, dict) else type(parameters).__name__
        raise ValueError(f"{type(module).__name__}.with_parameters expects keys "
                         f"{sorted(expected)}, got {got}")
    return parameters
