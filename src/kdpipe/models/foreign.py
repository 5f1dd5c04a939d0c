"""A classifier kdpipe did not build (a pickled module, TorchScript, a ``torch.export`` program): its logits are
its own output, its feature is what one layer outputs, pooled when spatial.

Distillers read features through :meth:`FeatureClassifier.forward_with_features`; a foreign model has no such
method, so the feature is tapped where the model computes it, named by a *feature layer*:

- ``<module path>`` (``avgpool``, ``layer4.1``): that module's output; ``<module path>:input``: its input
  (``fc:input``, the input of the final linear layer, is what kdpipe finds on its own: :func:`find_feature_layer`);
- in a ``torch.export`` program also a graph node's name (``flatten``).

A plain module is tapped with a forward hook, a ``torch.export`` graph by interpreting it up to the node, a
TorchScript module (which takes no hooks) through a copy of its inlined graph that also returns the value.
Without a feature layer the features are empty (``feature_dim`` 0): logits-only methods still work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from kdpipe.models.base import FeatureClassifier

INPUT = ":input"
_SCOPE = re.compile(r"([^.()]+)\([^()]*\)")


class LayerNotFoundError(ValueError):
    """The feature layer names nothing in the model; ``candidates`` lists what it could name."""

    def __init__(self, layer: str, candidates: list[str]) -> None:
        super().__init__(f"no layer {layer!r}")
        self.candidates = candidates


def pool(feature: torch.Tensor) -> torch.Tensor:
    """A layer's output as one vector per image: spatial maps averaged, token sequences averaged, rest flattened."""
    if feature.dim() == 4:
        return feature.mean((2, 3))
    if feature.dim() == 3:
        return feature.mean(1)
    return feature.flatten(1)


def _split(layer: str) -> tuple[str, bool]:
    return (layer[: -len(INPUT)], True) if layer.endswith(INPUT) else (layer, False)


def _within(path: str, module: str) -> bool:
    return module == "" or path == module or path.startswith(module + ".")


# A plain nn.Module: a hook on the named module.


class _HookTap:
    def __init__(self, net: nn.Module, layer: str) -> None:
        self.path, self.input = _split(layer)
        names = [name for name, _ in net.named_modules() if name]
        if self.path not in names:
            raise LayerNotFoundError(layer, names)

    def __call__(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []
        target = net.get_submodule(self.path)
        if self.input:
            handle = target.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        else:
            handle = target.register_forward_hook(lambda _m, _args, out: seen.append(out))
        try:
            logits = net(x)
        finally:
            handle.remove()
        return logits, seen[-1]


# A torch.export program (its module()): the graph interpreted, the node's value kept.


def _stack_paths(node: fx.Node) -> list[str]:
    return [str(path) for path, _ in (node.meta.get("nn_module_stack") or {}).values()]


def _graph_node(gm: fx.GraphModule, layer: str) -> fx.Node:
    computed = [n for n in gm.graph.nodes if n.op == "call_function"]
    named = {n.name: n for n in computed}
    if layer in named:
        return named[layer]
    path, want_input = _split(layer)
    inside = [n for n in computed if any(_within(p, path) for p in _stack_paths(n)) and path]
    if not inside:
        paths = list(dict.fromkeys(p for n in computed for p in _stack_paths(n)[-1:] if p))
        raise LayerNotFoundError(layer, paths + list(named))
    if not want_input:
        return inside[-1]
    members = set(inside)
    return next(a for a in inside[0].all_input_nodes if a not in members)


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, node: str) -> None:
        super().__init__(gm)
        self.node, self.value = node, None

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name == self.node:
            self.value = out
        return out


class _GraphTap:
    def __init__(self, gm: fx.GraphModule, layer: str) -> None:
        self.node = _graph_node(gm, layer).name

    def __call__(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recorder = _Recorder(net, self.node)  # type: ignore[arg-type]
        out = recorder.run(x)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        return logits, recorder.value  # type: ignore[return-value]


# A TorchScript module: its inlined graph, returning the value too.


def _scope(node: torch._C.Node) -> str:
    """The module path a node of an inlined TorchScript graph belongs to (``SELF`` marks a method's own module)."""
    kept = []
    for part in _SCOPE.findall(node.getModuleHierarchy()):
        if part == "UNKNOWN_INSTANCE":
            break
        if part != "SELF":
            kept.append(part)
    return ".".join(kept)


def _is_tensor(value: torch._C.Value) -> bool:
    return value.type().isSubtypeOf(torch._C.TensorType.get())


def _all_nodes(block: torch._C.Block | torch._C.Graph) -> Iterator[torch._C.Node]:
    """Every node in program order, those inside branches and loops too."""
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _all_nodes(inner)


def _top_level(value: torch._C.Value) -> bool:
    """Defined outside every branch, so a value the graph can return."""
    return value.node().owningBlock().owningNode() is None


def _script_value(graph: torch._C.Graph, layer: str) -> torch._C.Value:
    path, want_input = _split(layer)
    nodes = [n for n in _all_nodes(graph) if _scope(n)]
    inside = [n for n in nodes if path and _within(_scope(n), path)]
    if not inside:
        raise LayerNotFoundError(layer, list(dict.fromkeys(_scope(n) for n in nodes)))
    if want_input:  # the module may run inside a branch (timm's forward_head): its input is defined outside it
        values = (v for n in inside for v in n.inputs() if _is_tensor(v) and not _within(_scope(v.node()), path))
    else:
        values = (v for n in reversed(inside) for v in n.outputs() if _is_tensor(v))
    found = next((v for v in values if _top_level(v)), None)
    if found is None:
        raise LayerNotFoundError(layer, list(dict.fromkeys(_scope(n) for n in nodes)))
    return found


class _ScriptTap:
    def __init__(self, net: torch.jit.ScriptModule, layer: str) -> None:
        graph = net.forward.graph.copy()
        torch._C._jit_pass_inline(graph)
        value = _script_value(graph, layer)
        ret = graph.return_node()
        both = graph.create("prim::TupleConstruct", [ret.input(), value])
        both.insertBefore(ret)
        both.output().setType(torch._C.TupleType([ret.input().type(), value.type()]))
        ret.replaceInput(0, both.output())
        self.function = torch._C._create_function_from_graph("forward_with_feature", graph)

    def __deepcopy__(self, memo: dict[int, Any]) -> _ScriptTap:
        return self  # a compiled function of the graph, not of one module's weights

    def __call__(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, feature = self.function(net._c, x)  # type: ignore[union-attr]
        return logits, feature


Tap = _HookTap | _GraphTap | _ScriptTap


def make_tap(net: nn.Module, layer: str) -> Tap:
    """How to read ``layer`` in ``net``; :class:`LayerNotFoundError` when it names nothing there."""
    if isinstance(net, torch.jit.ScriptModule):
        return _ScriptTap(net, layer)
    if isinstance(net, fx.GraphModule):
        return _GraphTap(net, layer)
    return _HookTap(net, layer)


def _graph_linears(net: nn.Module) -> Iterator[str]:
    """The module paths of the linear ops whose output is the graph's output, last first."""
    if isinstance(net, torch.jit.ScriptModule):
        graph = net.forward.graph.copy()
        torch._C._jit_pass_inline(graph)
        for node in reversed(list(_all_nodes(graph))):  # checked by ForeignClassifier.ends_in_feature_layer
            if node.kind() in ("aten::linear", "aten::addmm") and _scope(node):
                yield _scope(node)
        return
    assert isinstance(net, fx.GraphModule)
    returned = {a for n in net.graph.nodes if n.op == "output" for a in n.all_input_nodes}
    for node in reversed(list(net.graph.nodes)):
        if node in returned and "linear" in str(node.target) and _stack_paths(node):
            yield _stack_paths(node)[-1]


def find_feature_layer(net: nn.Module) -> str | None:
    """The input of the final linear layer, when the model ends in one: ``<path>:input``; else None.

    A plain module's last ``nn.Linear`` qualifies only when its output is the logits (checked by the caller's
    forward pass: :meth:`ForeignClassifier.measure`); in a graph the linear op must produce the output.
    """
    if isinstance(net, (torch.jit.ScriptModule, fx.GraphModule)):
        found = next(_graph_linears(net), None)
        return None if found is None else found + INPUT
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear) and name]
    return linears[-1] + INPUT if linears else None


class ForeignClassifier(FeatureClassifier):
    """``net``'s logits and the pooled output of ``feature_layer`` (None: no features, ``feature_dim`` 0).

    The wrapped net stays in the mode it was loaded in: a teacher is frozen, and a ``torch.export`` module
    refuses ``train()``/``eval()``. ``feature_dim`` is 0 until :meth:`measure` has seen a batch.
    """

    def __init__(self, net: nn.Module, feature_layer: str | None) -> None:
        super().__init__()
        self.net = net
        self.feature_layer = feature_layer
        self.tap = make_tap(net, feature_layer) if feature_layer else None
        self.classifier = nn.Identity()
        self.feature_dim = 0

    def train(self, mode: bool = True) -> ForeignClassifier:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tap is None:
            logits = self.forward(x)
            return logits.new_zeros(len(x), 0), logits
        logits, feature = self.tap(self.net, x)
        return pool(feature), logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]

    @torch.no_grad()
    def measure(self, x: torch.Tensor) -> torch.Tensor:
        """Set ``feature_dim`` from one batch; returns the batch's logits."""
        features, logits = self.forward_with_features(x)
        self.feature_dim = features.shape[1]
        return logits

    @torch.no_grad()
    def ends_in_feature_layer(self, x: torch.Tensor) -> bool:
        """Whether the logits are the feature layer's linear module applied to its input (what
        :func:`find_feature_layer` assumes of a last linear layer); a pt2 graph's is checked when found."""
        path, is_input = _split(self.feature_layer or "")
        if self.tap is None or not is_input or isinstance(self.net, fx.GraphModule):
            return True
        logits, seen = self.tap(self.net, x)
        head: Any = self.net
        for part in path.split("."):  # ScriptModules have no get_submodule
            head = getattr(head, part)
        weight, bias = getattr(head, "weight", None), getattr(head, "bias", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or seen.dim() != 2:
            return False
        return torch.allclose(F.linear(seen, weight, bias), logits, atol=1e-5)


def candidate_layers(net: nn.Module, limit: int = 8) -> list[str]:
    """The last ``limit`` names a feature layer could take in ``net`` (for an error that lists them)."""
    try:
        make_tap(net, "\0")
    except LayerNotFoundError as exc:
        return exc.candidates[-limit:]
    return []
